//! The audit log.

use super::*;

store_test!(audit_log_pages_newest_first, |store| {
    for n in 0..5 {
        store
            .append_audit(&NewAuditEntry {
                actor: if n % 2 == 0 {
                    "alice".into()
                } else {
                    "bob".into()
                },
                action: "POST /api/v1/applications".into(),
                target: format!("application:app{n}"),
                outcome: "success".into(),
                status: 201,
                detail: json!({"n": n}),
            })
            .await
            .unwrap();
    }
    let all = store
        .list_audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4, 3, 2, 1, 0]
    );
    let page = store
        .list_audit(&AuditQuery {
            limit: 2,
            before_id: Some(all[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1]
    );
    let bob = store
        .list_audit(&AuditQuery {
            limit: 10,
            actor: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 2);
    let one = store
        .list_audit(&AuditQuery {
            limit: 10,
            target_prefix: Some("application:app3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
});

fn numbered(n: usize, actor: &str) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.to_owned(),
        action: "POST /api/v1/applications/shop/pipelines/deploy/executions".into(),
        target: format!("applications/shop/{n}"),
        outcome: "success".into(),
        status: 202,
        detail: json!({"n": n}),
    }
}

/// Appends `entries` at once, each from its own task; the results in `entries`' order.
async fn append_concurrently(
    store: &SqlStore,
    entries: Vec<NewAuditEntry>,
) -> Vec<gennaker_store::Result<gennaker_store::AuditEntry>> {
    let tasks: Vec<_> = entries
        .into_iter()
        .map(|entry| {
            let store = store.clone();
            tokio::spawn(async move { store.append_audit(&entry).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

// More entries than one batch holds, appended at once: every entry is stored exactly
// once, each caller is told its own entry's id, and ids follow the entries' times.
store_test!(concurrent_appends_land_exactly_once, |store| {
    const ENTRIES: usize = 300;
    let entries = (0..ENTRIES).map(|n| numbered(n, "alice")).collect();
    let written: Vec<_> = append_concurrently(&store, entries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let listed = store
        .list_audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), ENTRIES);
    let mut by_n: Vec<Option<&gennaker_store::AuditEntry>> = vec![None; ENTRIES];
    for entry in &listed {
        let n = usize::try_from(entry.detail["n"].as_u64().unwrap()).unwrap();
        assert!(by_n[n].is_none(), "entry {n} was stored twice");
        by_n[n] = Some(entry);
    }
    for (n, returned) in written.iter().enumerate() {
        assert_eq!(
            Some(returned),
            by_n[n],
            "entry {n} as returned and as stored"
        );
    }
    // Newest first: ids fall, and times never rise.
    for pair in listed.windows(2) {
        assert!(pair[0].id > pair[1].id);
        assert!(pair[0].at >= pair[1].at, "{pair:?}");
    }
});

/// Makes the database refuse every audit entry whose actor is `mallory`.
async fn refuse_mallory(db: &TestDatabase, store: &SqlStore) {
    match store.postgres_pool() {
        Some(pool) => {
            sqlx::query(
                "CREATE FUNCTION refuse_mallory() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.actor = 'mallory' THEN RAISE EXCEPTION 'mallory is refused'; END IF; RETURN NEW; END $$",
            )
            .execute(pool)
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER refuse_mallory BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_mallory()",
            )
            .execute(pool)
            .await
            .unwrap();
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(
                "CREATE TRIGGER refuse_mallory BEFORE INSERT ON audit_log WHEN NEW.actor = 'mallory' \
                 BEGIN SELECT RAISE(ABORT, 'mallory is refused'); END",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

/// An entry the database refuses, appended among others: its caller gets the error,
/// and every other entry is stored, once.
async fn one_refused_entry_loses_no_other(backend: TestBackend) {
    const ENTRIES: usize = 40;
    const REFUSED: usize = 17;
    let (db, store) = TestDatabase::store(backend).await.unwrap();
    refuse_mallory(&db, &store).await;
    let entries = (0..ENTRIES)
        .map(|n| numbered(n, if n == REFUSED { "mallory" } else { "alice" }))
        .collect();
    let results = append_concurrently(&store, entries).await;
    for (n, result) in results.iter().enumerate() {
        match result {
            Err(err) if n == REFUSED => {
                assert!(err.to_string().contains("mallory is refused"), "{err}")
            }
            Ok(entry) if n != REFUSED => assert_eq!(entry.detail["n"], n),
            other => panic!("entry {n}: {other:?}"),
        }
    }
    let listed = store
        .list_audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored: Vec<u64> = listed
        .iter()
        .map(|e| e.detail["n"].as_u64().unwrap())
        .collect();
    stored.sort_unstable();
    let expected: Vec<u64> = (0..ENTRIES as u64)
        .filter(|&n| n != REFUSED as u64)
        .collect();
    assert_eq!(stored, expected);
    store.close().await;
}

#[tokio::test]
async fn one_refused_entry_loses_no_other_sqlite() {
    one_refused_entry_loses_no_other(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn one_refused_entry_loses_no_other_postgres() {
    one_refused_entry_loses_no_other(TestBackend::Postgres).await;
}
