//! Database URLs, reopening, migrations and the order of listings.

use super::*;

#[tokio::test]
async fn rejects_unknown_database_urls() {
    let err = SqlStore::connect("mysql://localhost/x").await.unwrap_err();
    assert!(
        err.to_string().contains("use sqlite://PATH or postgres://"),
        "{err}"
    );
    // The URL is repeated, its passwords are not.
    let err = SqlStore::connect("mysql://me:hunter2@localhost/x?password=hunter3")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mysql://me:***@localhost/x?password=***"),
        "{err}"
    );
    assert!(!err.contains("hunter"), "{err}");
}

#[test]
fn database_urls_are_redacted() {
    for (url, redacted) in [
        ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        (
            "postgres://u@h/db?sslmode=require&password=secret",
            "postgres://u@h/db?sslmode=require&password=***",
        ),
        (
            "postgresql://h/db?PASSWORD=a&sslpassword=b&application_name=x",
            "postgresql://h/db?PASSWORD=***&sslpassword=***&application_name=x",
        ),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ("sqlite::memory:", "sqlite::memory:"),
    ] {
        assert_eq!(redact_database_url(url), redacted, "{url}");
    }
}

#[tokio::test]
async fn reopening_a_sqlite_file_keeps_data_and_migrations_are_idempotent() {
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let store = SqlStore::connect(&db.url).await.unwrap();
    store
        .create_application("keep", &json!({"name": "keep"}), "a")
        .await
        .unwrap();
    store.close().await;
    let again = SqlStore::connect(&db.url).await.unwrap();
    assert!(again.get_application("keep").await.unwrap().is_some());
}

/// Roles and grants as a database from before role names were lower-cased might hold them.
const MIXED_CASE_ROLES: &[&str] = &[
    "INSERT INTO users (name_key, name, admin, created_at) VALUES ('u', 'u', FALSE, 0)",
    "INSERT INTO users (name_key, name, admin, created_at) VALUES ('v', 'v', FALSE, 0)",
    "INSERT INTO roles (name, description, created_at) VALUES ('Dev', 'mixed', 1), ('dev', 'lower', 2), ('OPS', 'upper', 3), ('Qa', 'a', 4), ('QA', 'b', 5)",
    "INSERT INTO user_roles (user_key, role) VALUES ('u', 'Dev'), ('u', 'dev'), ('u', 'OPS'), ('v', 'Qa'), ('v', 'QA')",
];

/// After the lower-casing migration, every role exists once, lower-case, and every user
/// keeps what they were granted.
async fn assert_roles_merged(store: &SqlStore) {
    let roles: Vec<_> = store
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.description))
        .collect();
    assert_eq!(
        roles,
        [
            ("dev".to_owned(), "lower".to_owned()),
            ("ops".to_owned(), "upper".to_owned()),
            ("qa".to_owned(), "a".to_owned()),
        ]
    );
    assert_eq!(
        store.get_user("u").await.unwrap().unwrap().roles,
        ["dev", "ops"]
    );
    assert_eq!(store.get_user("v").await.unwrap().unwrap().roles, ["qa"]);
}

#[tokio::test]
async fn migration_merges_mixed_case_roles_sqlite() {
    use std::str::FromStr;
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate!("./migrations/sqlite")
        .run_to(2, &pool)
        .await
        .unwrap();
    for sql in MIXED_CASE_ROLES {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_roles_merged(&store).await;
}

#[tokio::test]
async fn migration_merges_mixed_case_roles_postgres() {
    let db = TestDatabase::create(TestBackend::Postgres).await.unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::migrate!("./migrations/postgres")
        .run_to(2, &pool)
        .await
        .unwrap();
    for sql in MIXED_CASE_ROLES {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_roles_merged(&store).await;
    store.close().await;
}

/// Names whose order differs between byte order and natural-language collations, which
/// ignore punctuation at first: byte order puts `a-c` first, `en-US` puts `a_b` first.
const COLLATION_PROBES: [&str; 5] = ["ab", "b", "a_b", "a.d", "a-c"];
const BYTE_ORDER: [&str; 5] = ["a-c", "a.d", "a_b", "ab", "b"];

/// Every listing comes back in byte order of the (lower-cased) names.
async fn assert_listings_in_byte_order(store: &SqlStore) {
    store
        .create_application("shop", &json!({"name": "shop"}), "a")
        .await
        .unwrap();
    for name in COLLATION_PROBES {
        store
            .create_application(name, &json!({ "name": name }), "a")
            .await
            .unwrap();
        store
            .save_pipeline("shop", &save(name, json!({ "name": name })), "a")
            .await
            .unwrap();
        store.create_user(name, false, &[]).await.unwrap();
        store.create_role(name, "").await.unwrap();
    }
    store
        .set_user_roles("b", &COLLATION_PROBES.map(str::to_owned))
        .await
        .unwrap();
    let applications: Vec<_> = store
        .list_applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .filter(|name| name != "shop")
        .collect();
    assert_eq!(applications, BYTE_ORDER);
    let pipelines: Vec<_> = store
        .list_pipelines("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(pipelines, BYTE_ORDER);
    let users: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(users, BYTE_ORDER);
    let roles: Vec<_> = store
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(roles, BYTE_ORDER);
    assert_eq!(
        store.get_user("b").await.unwrap().unwrap().roles,
        BYTE_ORDER
    );
}

#[tokio::test]
async fn listings_are_in_byte_order_on_sqlite() {
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    assert_listings_in_byte_order(&store).await;
}

#[tokio::test]
async fn listings_are_in_byte_order_on_postgres_with_a_language_collation() {
    // The test server's default collation may be C already; en-US (ICU) is not.
    let db = TestDatabase::create_postgres_with(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    )
    .await
    .unwrap();
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_listings_in_byte_order(&store).await;
    store.close().await;
}

/// The error of a second connection writing to a database whose first connection
/// holds the write lock in an open transaction.
macro_rules! second_writer_error {
    ($connection:ty, $url:expr, $take_lock:expr, $write:expr) => {{
        use sqlx::Connection;
        let mut holder = <$connection>::connect($url).await.unwrap();
        let mut waiter = <$connection>::connect($url).await.unwrap();
        sqlx::raw_sql($take_lock)
            .execute(&mut holder)
            .await
            .unwrap();
        let written = sqlx::raw_sql($write).execute(&mut waiter).await;
        holder.close().await.unwrap();
        waiter.close().await.unwrap();
        match written {
            Ok(_) => panic!("the second writer was let through"),
            Err(err) => StoreError::from(err),
        }
    }};
}

#[tokio::test]
async fn a_database_held_by_another_writer_is_busy_not_broken() {
    // SQLite: SQLITE_BUSY once the busy timeout (here none) runs out.
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let url = format!("{}?mode=rwc", db.url);
    let err = second_writer_error!(
        sqlx::SqliteConnection,
        &url,
        "BEGIN IMMEDIATE",
        "PRAGMA busy_timeout = 0; BEGIN IMMEDIATE"
    );
    assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("the database is busy: "),
        "{err}"
    );

    // PostgreSQL: a lock not granted within lock_timeout (55P03).
    let db = TestDatabase::create(TestBackend::Postgres).await.unwrap();
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql("CREATE TABLE held (id INT)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let err = second_writer_error!(
        sqlx::PgConnection,
        &db.url,
        "BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE",
        "SET lock_timeout = '10ms'; LOCK TABLE held IN ACCESS EXCLUSIVE MODE"
    );
    assert!(matches!(err, StoreError::Busy(_)), "{err:?}");

    // Other database errors stay errors.
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let err = {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", db.url))
            .await
            .unwrap();
        let missing = sqlx::raw_sql("SELECT * FROM no_such_table")
            .execute(&mut conn)
            .await;
        conn.close().await.unwrap();
        match missing {
            Ok(_) => panic!("a missing table was read"),
            Err(err) => StoreError::from(err),
        }
    };
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
}
