//! Gennaker's persistence.
//!
//! Everything Gennaker keeps lives behind the [`Store`] trait. [`SqlStore`] implements it
//! for two databases with one set of queries: SQLite (the embedded default, WAL mode) and
//! PostgreSQL (for several servers sharing one database). Each backend has its own
//! migrations under `migrations/<backend>`, embedded in the binary and applied on connect.
//! [`ExecutionStore`] holds executions and the engine's durable queue; [`ResourceStore`]
//! the infrastructure providers manage; [`MetricSampleStore`] the built-in load
//! balancer's traffic samples for canary analysis; [`CanaryConfigStore`] Kayenta's canary
//! configs; [`TriggerStore`] the triggers' event inbox, log and seen Docker tags;
//! [`NotificationStore`] the notifications waiting to be sent; [`SealedExecutions`]
//! keeps the secrets in
//! execution documents encrypted at rest.

mod canary_configs;
mod error;
mod executions;
mod metric_samples;
mod notifications;
mod records;
mod resources;
mod sealing;
mod sql;
mod store;
mod triggers;

pub use canary_configs::{
    CanaryConfigRecord, CanaryConfigRevision, CanaryConfigSave, CanaryConfigStore,
    MAX_CANARY_CONFIG_BYTES, MAX_CANARY_CONFIG_REVISIONS,
};
pub use error::{Result, StoreError};
pub use executions::{
    CommitOutcome, ConcurrencyGuard, ExecutionQuery, ExecutionRow, ExecutionStore, ExecutionWrite,
    LeasedMessage, NewMessage, NextLease, StepCommit,
};
pub use metric_samples::{LatencyBucket, MetricSample, MetricSampleStore, RequestCounts};
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
    EVENTS_CHANNEL, MAX_NOTICE_BYTES, MAX_PIPELINE_REVISIONS, Notification, QUEUE_CHANNEL,
    QueueListener, SqlStore, now_millis, redact_database_url,
};
pub use store::Store;
pub use triggers::{TriggerEventRecord, TriggerLogEntry, TriggerStore};

#[cfg(feature = "test-support")]
pub mod testing;
