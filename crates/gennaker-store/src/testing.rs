//! Throw-away databases for tests, one per test, on both backends.
//!
//! PostgreSQL is reached through `GENNAKER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`): each test creates its own database there and
//! drops it afterwards. `scripts/test.sh` makes sure a server is listening.
//!
//! [`FaultyExecutions`] and [`FaultyStore`] wrap the real store to inject faults.

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

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a fresh,
/// migrated [`SqlStore`] bound to `$store`: one behaviour suite, both backends. The
/// PostgreSQL pool is closed before its database is dropped.
#[macro_export]
macro_rules! store_test {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($store: $crate::SqlStore) $body

            #[tokio::test]
            async fn sqlite() {
                let (_db, store) = $crate::testing::TestDatabase::store(
                    $crate::testing::TestBackend::Sqlite,
                )
                .await
                .unwrap();
                run(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (_db, store) = $crate::testing::TestDatabase::store(
                    $crate::testing::TestBackend::Postgres,
                )
                .await
                .unwrap();
                run(store.clone()).await;
                store.close().await;
            }
        }
    };
}

/// Shown every commit that goes through.
type CommitObserver = Box<dyn Fn(&crate::StepCommit) + Send + Sync>;

/// The real executions store with faults injected into `commit_step`, for the
/// fault-injection tests of the engine and of stage crates (STYLE.md §5.6).
///
/// With `repeat_every_step`, the first commit of every step fails as if the server had
/// crashed just before it, so every step (and every task run, with its side effects)
/// is done twice. Every successful commit is shown to the observer, counted and
/// announced on [`committed`](Self::committed).
pub struct FaultyExecutions {
    inner: SqlStore,
    repeat_every_step: bool,
    seen_steps: std::sync::Mutex<std::collections::HashSet<Vec<i64>>>,
    observer: Option<CommitObserver>,
    /// Commits failed on purpose.
    pub repeated: std::sync::atomic::AtomicUsize,
    /// Commits that went through.
    pub commits: std::sync::atomic::AtomicUsize,
    /// Notified after every commit that went through.
    pub committed: tokio::sync::Notify,
}

impl std::fmt::Debug for FaultyExecutions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyExecutions")
            .field("repeat_every_step", &self.repeat_every_step)
            .finish_non_exhaustive()
    }
}

impl FaultyExecutions {
    /// Wraps `inner`; with `repeat_every_step`, the first commit of each step fails.
    pub fn new(inner: SqlStore, repeat_every_step: bool) -> Self {
        Self {
            inner,
            repeat_every_step,
            seen_steps: std::sync::Mutex::default(),
            observer: None,
            repeated: std::sync::atomic::AtomicUsize::new(0),
            commits: std::sync::atomic::AtomicUsize::new(0),
            committed: tokio::sync::Notify::new(),
        }
    }

    /// Shows every commit that goes through to `observer` (e.g. a ledger of stage
    /// completions that flags a stage completed twice).
    #[must_use]
    pub fn observe(
        mut self,
        observer: impl Fn(&crate::StepCommit) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &SqlStore {
        &self.inner
    }
}

#[async_trait::async_trait]
impl crate::ExecutionStore for FaultyExecutions {
    async fn get_execution(&self, id: &str) -> Result<Option<crate::ExecutionRow>> {
        self.inner.get_execution(id).await
    }
    async fn list_executions(
        &self,
        query: &crate::ExecutionQuery,
    ) -> Result<Vec<crate::ExecutionRow>> {
        self.inner.list_executions(query).await
    }
    async fn commit_step(&self, step: &crate::StepCommit) -> Result<crate::CommitOutcome> {
        use std::sync::atomic::Ordering;
        if self.repeat_every_step && !step.acknowledged.is_empty() {
            let mut key = step.acknowledged.clone();
            key.sort_unstable();
            let first = self
                .seen_steps
                .lock()
                .map(|mut seen| seen.insert(key))
                .unwrap_or(false);
            if first {
                self.repeated.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Conflict("injected crash before commit".into()));
            }
        }
        let outcome = self.inner.commit_step(step).await?;
        if outcome == crate::CommitOutcome::Committed {
            if let Some(observer) = &self.observer {
                observer(step);
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            self.committed.notify_waiters();
        }
        Ok(outcome)
    }
    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        partitions: i64,
        per_partition: i64,
    ) -> Result<Vec<crate::LeasedMessage>> {
        self.inner
            .claim_messages(owner, now, until, partitions, per_partition)
            .await
    }
    async fn extend_leases(&self, owner: &str, ids: &[i64], until: i64) -> Result<()> {
        self.inner.extend_leases(owner, ids, until).await
    }
    async fn release_messages(&self, owner: &str, ids: &[i64], at: i64) -> Result<()> {
        self.inner.release_messages(owner, ids, at).await
    }
    async fn release_all_leases(&self) -> Result<u64> {
        self.inner.release_all_leases().await
    }
    async fn next_delivery(&self) -> Result<Option<i64>> {
        self.inner.next_delivery().await
    }
    async fn queue_depth(&self) -> Result<i64> {
        self.inner.queue_depth().await
    }
    async fn partition_messages(&self, partition: &str) -> Result<Vec<crate::LeasedMessage>> {
        self.inner.partition_messages(partition).await
    }
}

/// Decides, before each call a [`FaultyStore`] passes on, whether and when it goes through.
#[async_trait::async_trait]
pub trait StoreFaults: Send + Sync + std::fmt::Debug {
    /// Runs before `method` (the [`Store`](crate::Store) method's name, e.g.
    /// `append_audit`) reaches the real store. It may wait; an error is returned to the
    /// caller instead of calling the store.
    async fn before(&self, method: &'static str) -> Result<()>;
}

/// The real store with [`StoreFaults`] before every [`Store`](crate::Store) call, to see
/// what callers do when the database is slow or failing (STYLE.md §5.6).
#[derive(Debug)]
pub struct FaultyStore {
    inner: SqlStore,
    faults: std::sync::Arc<dyn StoreFaults>,
}

impl FaultyStore {
    /// Wraps `inner`, consulting `faults` before each call.
    pub fn new(inner: SqlStore, faults: std::sync::Arc<dyn StoreFaults>) -> Self {
        Self { inner, faults }
    }
}

crate::store::forward_store!(
    FaultyStore,
    self => self.inner,
    before |method| self.faults.before(method).await?
);

/// `text` without its sealed values (`gnk-sealed:v1:<base64url>`), for tests that look
/// for a secret in stored documents: a ciphertext's base64 may spell any short word by
/// chance, and it is not the secret.
pub fn without_sealed_values(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(gennaker_core::redact::SEALED_PREFIX) {
        kept.push_str(&rest[..at]);
        let sealed = &rest[at + gennaker_core::redact::SEALED_PREFIX.len()..];
        let end = sealed
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':')))
            .unwrap_or(sealed.len());
        kept.push_str("<sealed>");
        rest = &sealed[end..];
    }
    kept.push_str(rest);
    kept
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

    #[test]
    fn sealed_values_are_left_out_and_the_rest_kept() {
        let text = r#"{"a":"gnk-sealed:v1:xpa55_-Q","b":"pa55","c":"gnk-sealed:v1:Zz"}"#;
        assert_eq!(
            super::without_sealed_values(text),
            r#"{"a":"<sealed>","b":"pa55","c":"<sealed>"}"#
        );
    }
}
