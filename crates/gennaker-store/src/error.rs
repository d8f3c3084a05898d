//! The store's error type.

use sqlx::error::DatabaseError;
use thiserror::Error;

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// What kind of thing (application, pipeline, user…).
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// The change conflicts with what is stored (a duplicate name, a dependent record…).
    #[error("{0}")]
    Conflict(String),
    /// The database URL is not one Gennaker can use.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database is busy with other writers: SQLite's `SQLITE_BUSY`/`SQLITE_LOCKED`
    /// after its busy timeout, PostgreSQL's serialization failure, deadlock or lock
    /// timeout. The same request is likely to succeed when tried again.
    #[error("the database is busy: {0}")]
    Busy(sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored execution has a status this version does not know (a newer server wrote
    /// it, or the row was edited by hand).
    #[error("execution '{execution}' has unknown status '{status}'")]
    UnknownStatus {
        /// The execution's id.
        execution: String,
        /// The status as stored.
        status: String,
    },
    /// A stored notification has a status this version does not know.
    #[error("notification {id} has unknown status '{status}'")]
    UnknownNotificationStatus {
        /// The notification's id.
        id: i64,
        /// The status as stored.
        status: String,
    },
    /// The key that seals secrets at rest cannot be used.
    #[error(
        "secrets key file {path}: {problem}; set [secrets] key_file in gennaker.toml to \
         the key this database's executions were sealed with (servers sharing a \
         database share one key)"
    )]
    SecretsKey {
        /// The key file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A secret could not be sealed.
    #[error("cannot seal a secret: {0}")]
    Sealing(String),
    /// A stored execution holds secrets this server's key cannot open.
    #[error(
        "execution '{execution}' holds secrets sealed with another key; every server on \
         this database must use the same secrets key: set [secrets] key_file in \
         gennaker.toml to the key it was written with"
    )]
    SealedWithAnotherKey {
        /// The execution's id.
        execution: String,
    },
    /// A document is larger than the store keeps; the message says which and the limit.
    #[error("{0}")]
    TooLarge(String),
    /// A stored document could not be read back.
    #[error("stored document is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_busy(&err) {
            StoreError::Busy(err)
        } else {
            StoreError::Database(err)
        }
    }
}

/// SQLite's primary result codes for a database another connection holds
/// (`SQLITE_BUSY`) or a table locked in a shared cache (`SQLITE_LOCKED`); the extended
/// codes (`SQLITE_BUSY_SNAPSHOT`, …) keep them in their low byte.
const SQLITE_BUSY_CODES: [i32; 2] = [5, 6];

/// PostgreSQL's SQLSTATEs for a transaction that lost to a concurrent one: serialization
/// failure, deadlock detected, lock not available (`lock_timeout`).
const POSTGRES_BUSY_STATES: [&str; 3] = ["40001", "40P01", "55P03"];

/// Whether `err` says the database is busy with others rather than broken.
fn is_busy(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        return sqlite
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| SQLITE_BUSY_CODES.contains(&(code & 0xff)));
    }
    if let Some(postgres) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return POSTGRES_BUSY_STATES.contains(&postgres.code());
    }
    false
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            name: name.into(),
        }
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
