//! Gennaker's persistence.
//!
//! Everything Gennaker keeps lives behind the [`Store`] trait. [`SqlStore`] implements it
//! for two databases with one set of queries: SQLite (the embedded default, WAL mode) and
//! PostgreSQL (for several servers sharing one database). Each backend has its own
//! migrations under `migrations/<backend>`, embedded in the binary and applied on connect.
//! [`ExecutionStore`] holds executions and the engine's durable queue; [`ResourceStore`]
//! the infrastructure providers manage; [`NotificationStore`] the notifications waiting
//! to be sent; [`SealedExecutions`] keeps the secrets in
//! execution documents encrypted at rest.

mod error;
mod executions;
mod notifications;
mod records;
mod resources;
mod sealing;
mod sql;
mod store;

pub use error::{Result, StoreError};
pub use executions::{
    CommitOutcome, ConcurrencyGuard, ExecutionQuery, ExecutionRow, ExecutionStore, ExecutionWrite,
    LeasedMessage, NewMessage, StepCommit,
};
pub use notifications::{
    DeliveryOutcome, NewNotification, NotificationRecord, NotificationStatus, NotificationStore,
};
pub use records::{
    ApiToken, ApplicationRecord, AuditEntry, AuditQuery, NewAuditEntry, NewToken, PipelineRecord,
    PipelineRevision, PipelineSave, Role, SaveOutcome, User,
};
pub use resources::{ExpectedVersion, Resource, ResourceStore};
pub use sealing::{KEY_LEN, SealedExecutions, SealingKey};
pub use sql::{
    MAX_PIPELINE_REVISIONS, QUEUE_CHANNEL, QueueListener, SqlStore, now_millis, redact_database_url,
};
pub use store::Store;

#[cfg(feature = "test-support")]
pub mod testing;
