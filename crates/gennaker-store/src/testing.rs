//! Throw-away databases for tests, one per test, on both backends.
//!
//! PostgreSQL is reached through `GENNAKER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`): each test creates its own database there and
//! drops it afterwards. `scripts/test.sh` makes sure a server is listening.

use crate::error::{Result, StoreError};
use crate::sql::SqlStore;

/// The database kinds a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// A database that exists for as long as this value lives.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to connect to.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    drop_postgres: Option<(String, String)>,
}

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("GENNAKER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

impl TestDatabase {
    /// Creates an empty database of the given kind.
    pub async fn create(backend: TestBackend) -> Result<Self> {
        match backend {
            TestBackend::Sqlite => {
                let dir = tempfile::tempdir()
                    .map_err(|e| StoreError::Conflict(format!("cannot create temp dir: {e}")))?;
                let url = format!("sqlite://{}", dir.path().join("gennaker.db").display());
                Ok(TestDatabase {
                    url,
                    _dir: Some(dir),
                    drop_postgres: None,
                })
            }
            TestBackend::Postgres => Self::create_postgres_with("").await,
        }
    }

    /// Creates an empty PostgreSQL database with extra `CREATE DATABASE` options, e.g. a
    /// collation other than the server's default.
    pub async fn create_postgres_with(options: &str) -> Result<Self> {
        let admin = postgres_admin_url();
        let name = format!("gennaker_t_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&admin).await.map_err(|e| {
            StoreError::Conflict(format!(
                "cannot reach the test PostgreSQL at {admin} ({e}); start one (scripts/test.sh does) or set GENNAKER_TEST_POSTGRES_URL"
            ))
        })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} {options}"
        )))
        .execute(&pool)
        .await?;
        pool.close().await;
        Ok(TestDatabase {
            url: replace_database(&admin, &name),
            _dir: None,
            drop_postgres: Some((admin, name)),
        })
    }

    /// Creates a database and connects a migrated store to it.
    pub async fn store(backend: TestBackend) -> Result<(Self, SqlStore)> {
        let db = Self::create(backend).await?;
        let store = SqlStore::connect(&db.url).await?;
        Ok((db, store))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.drop_postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
        // with its own small runtime. FORCE ends connections a pool may still hold.
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                    pool.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
