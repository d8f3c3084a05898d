//! The store's error type.

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
    Database(#[from] sqlx::Error),
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
    /// A stored document could not be read back.
    #[error("stored document is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
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
