//! Databases that already hold a queue get its partition table built by the migration.

use super::*;

/// The queue of a server that was stopped mid-work, as the schema before partitions kept
/// it: alice's execution e1 with a message leased until 500 and one due at 20, bob's
/// e2 with one message due at 30, and a pipeline's partition with no execution.
const OLD_QUEUE: &[&str] = &[
    r#"INSERT INTO executions (id, application_key, application, status, created_at, version, document) VALUES
       ('e1', 'shop', 'shop', 'RUNNING', 1, 1, '{"id":"e1","authentication":{"user":"alice","roles":[]}}'),
       ('e2', 'shop', 'shop', 'RUNNING', 2, 1, '{"id":"e2","authentication":{"user":"bob","roles":[]}}')"#,
    "INSERT INTO queue_messages (partition_key, payload, deliver_at, attempts, lease_owner, lease_until, created_at) VALUES
       ('e1', 'e1-leased', 10, 1, 'old-server', 500, 10),
       ('e1', 'e1-due', 20, 0, NULL, NULL, 20),
       ('e2', 'e2-due', 30, 0, NULL, NULL, 30),
       ('pipeline:p', 'start-waiting', 40, 0, NULL, NULL, 40)",
];

async fn assert_queue_carried_over(store: &SqlStore) {
    // e1 waits for its lease; next is whatever becomes ready first.
    assert_eq!(store.next_delivery().await.unwrap(), Some(30));
    let claimed = store
        .claim_messages("w1", 100, 1_000, 10, 10)
        .await
        .unwrap();
    assert_eq!(payloads(&claimed), ["e2-due", "start-waiting"]);
    assert!(
        store
            .claim_messages("w2", 499, 1_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let e1 = store
        .claim_messages("w2", 500, 1_000, 10, 10)
        .await
        .unwrap();
    assert_eq!(payloads(&e1), ["e1-leased", "e1-due"]);
    assert_eq!(e1[0].attempts, 2);
}

/// The migration reads each partition's tenant from its execution: with alice's,
/// bob's and the engine's ('') partitions ready, a claim of three takes one of each.
async fn assert_tenants_carried_over(store: &SqlStore) {
    assert_eq!(store.release_all_leases().await.unwrap(), 1);
    enqueue(store, vec![tenant_message("alice", "e3", "e3", 5)]).await;
    let claimed = store.claim_messages("w1", 100, 1_000, 3, 10).await.unwrap();
    // Alice's oldest is e3 (due at 5, before e1 at 10); had every partition landed in
    // one tenant, e1 would have been claimed instead of e2.
    assert_eq!(payloads(&claimed), ["e3", "e2-due", "start-waiting"]);
}

#[tokio::test]
async fn migration_builds_partitions_from_a_sqlite_queue() {
    use std::str::FromStr;
    for check in [0, 1] {
        let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run_to(6, &pool)
            .await
            .unwrap();
        for sql in OLD_QUEUE {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = SqlStore::connect(&db.url).await.unwrap();
        if check == 0 {
            assert_queue_carried_over(&store).await;
        } else {
            assert_tenants_carried_over(&store).await;
        }
        store.close().await;
    }
}

#[tokio::test]
async fn migration_builds_partitions_from_a_postgres_queue() {
    for check in [0, 1] {
        let db = TestDatabase::create(TestBackend::Postgres).await.unwrap();
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::migrate!("./migrations/postgres")
            .run_to(6, &pool)
            .await
            .unwrap();
        for sql in OLD_QUEUE {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let store = SqlStore::connect(&db.url).await.unwrap();
        if check == 0 {
            assert_queue_carried_over(&store).await;
        } else {
            assert_tenants_carried_over(&store).await;
        }
        store.close().await;
    }
}
