//! [`SqlStore`]: the [`Store`](crate::Store) on SQLite or PostgreSQL.
//!
//! Both backends run the same SQL text (sqlx's SQLite driver understands `$N`
//! placeholders). The `on_db!` macro expands each method body once per backend, so the
//! queries are written once but type-checked against each driver.
//!
//! The [`Store`](crate::Store) methods live on [`Backend`], one module per entity
//! (applications, pipelines, users and roles, tokens, audit), each method named after
//! the `Store` method it implements; `SqlStore` passes every call on to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, PoisonError, Weak};

use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, Sqlite, Transaction};

use crate::error::{Result, StoreError};
use crate::store::forward_store;

/// The current time as Unix epoch milliseconds.
pub fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The pool of the database in use.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A [`Store`](crate::Store) backed by SQLite or PostgreSQL through sqlx.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    /// Writes the audit log as a group commit; shared by the store's clones, so every
    /// caller's entries meet in one queue.
    audit: Arc<audit::AuditWriter>,
}

/// What [`Store`](crate::Store) calls run on: the backend's per-entity methods (through
/// `Deref`), except the audit log's appends, which go to the batched writer.
struct StoreTarget<'a> {
    backend: &'a Backend,
    audit: &'a Arc<audit::AuditWriter>,
}

impl StoreTarget<'_> {
    async fn append_audit(
        &self,
        entry: &crate::records::NewAuditEntry,
    ) -> Result<crate::records::AuditEntry> {
        self.audit.append(entry).await
    }
}

impl std::ops::Deref for StoreTarget<'_> {
    type Target = Backend;
    fn deref(&self) -> &Backend {
        self.backend
    }
}

impl SqlStore {
    /// A store on `backend`.
    fn new(backend: Backend) -> Self {
        let audit = audit::AuditWriter::new(backend.clone());
        Self { backend, audit }
    }

    fn target(&self) -> StoreTarget<'_> {
        StoreTarget {
            backend: &self.backend,
            audit: &self.audit,
        }
    }
}

/// Expands `$body` once for each backend with `$db` bound to that backend's pool;
/// `$backend` is a `&Backend`.
macro_rules! on_db {
    ($backend:expr, $db:ident => $body:expr) => {
        match $backend {
            Backend::Sqlite($db) => $body,
            Backend::Postgres($db) => $body,
        }
    };
}

/// Starting a write transaction differs: SQLite must take its write lock up front
/// (`BEGIN IMMEDIATE`), or two read-then-write transactions fail with SQLITE_BUSY instead
/// of waiting for each other. PostgreSQL locks rows with `FOR UPDATE` in the queries.
trait WritePool {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<WriteTx<Self::Db>>;
    /// Reads an application's name and, on PostgreSQL, locks its row until the transaction
    /// ends, which serialises changes to that application's pipelines.
    fn lock_application_sql(&self) -> &'static str;
    /// Reads a user's key and, on PostgreSQL, locks the row until the transaction ends,
    /// which serialises changes to that user's roles.
    fn lock_user_sql(&self) -> &'static str;
}

/// A write transaction; on SQLite it holds this process's write gate for the database
/// file until it ends.
struct WriteTx<DB: sqlx::Database> {
    tx: Transaction<'static, DB>,
    // After `tx`: fields drop in order, so the gate opens once the transaction ended.
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    async fn rollback(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for WriteTx<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

/// The write gate of one SQLite database file: this process's writers queue on it,
/// woken the moment it opens, instead of in SQLite's busy handler, which sleeps 1, 2,
/// 5, 10… ms between tries however soon the lock is free (with the engine's workers
/// all writing, those sleeps were most of a step's time). Writers in other processes
/// still meet in the busy handler. A gate lives while someone holds or awaits it.
fn sqlite_write_gate(pool: &SqlitePool) -> Arc<tokio::sync::Mutex<()>> {
    type Gates = HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>;
    static GATES: LazyLock<std::sync::Mutex<Gates>> = LazyLock::new(Default::default);
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(gate) = gates.get(&file).and_then(Weak::upgrade) {
        return gate;
    }
    // Tests open many databases: forget the gates nobody holds.
    if gates.len() >= 64 {
        gates.retain(|_, gate| gate.strong_count() > 0);
    }
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    gates.insert(file, Arc::downgrade(&gate));
    gate
}

impl WritePool for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<WriteTx<Sqlite>> {
        let gate = sqlite_write_gate(self).lock_owned().await;
        let tx = self.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx {
            tx,
            _gate: Some(gate),
        })
    }
    fn lock_application_sql(&self) -> &'static str {
        "SELECT name FROM applications WHERE name_key = $1"
    }
    fn lock_user_sql(&self) -> &'static str {
        "SELECT name_key FROM users WHERE name_key = $1"
    }
}

impl WritePool for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<WriteTx<Postgres>> {
        Ok(WriteTx {
            tx: self.begin().await?,
            _gate: None,
        })
    }
    fn lock_application_sql(&self) -> &'static str {
        "SELECT name FROM applications WHERE name_key = $1 FOR UPDATE"
    }
    fn lock_user_sql(&self) -> &'static str {
        "SELECT name_key FROM users WHERE name_key = $1 FOR UPDATE"
    }
}

/// The lookup key of a name: names of applications, pipelines and users are unique
/// without regard to case and keep their spelling beside the key; role names are stored
/// as their key (Fiat lower-cases roles), so every comparison of roles ignores case.
fn key(name: &str) -> String {
    name.to_lowercase()
}

/// A document as stored: JSON text.
fn to_text(value: &Value) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Maps a unique-constraint violation to a conflict with a message the user can act on.
fn conflict_on_duplicate(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::from(err),
    }
}

impl Backend {
    async fn ping(&self) -> Result<()> {
        on_db!(self, db => {
            sqlx::query("SELECT 1").execute(db).await?;
            Ok(())
        })
    }

    fn backend(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

forward_store!(SqlStore, self => self.target());

mod applications;
mod audit;
mod batched;
mod canary_configs;
mod connect;
mod executions;
mod metric_samples;
pub(crate) mod notifications;
mod pipelines;
mod resources;
mod tokens;
mod triggers;
mod users;

pub use connect::redact_database_url;
pub use executions::{
    EVENTS_CHANNEL, MAX_NOTICE_BYTES, Notification, QUEUE_CHANNEL, QueueListener,
};
pub use pipelines::MAX_PIPELINE_REVISIONS;
