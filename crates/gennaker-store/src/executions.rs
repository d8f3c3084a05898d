//! Executions and the engine's durable queue.
//!
//! The engine keeps each execution as one JSON document and drives it with messages.
//! Every step it takes is committed with [`ExecutionStore::commit_step`]: the changed
//! execution documents (each under an optimistic version check), the messages it
//! consumed and the messages it produced, in ONE transaction. After a crash the
//! unconsumed messages are simply delivered again, so an execution can never be left
//! without a message to move it on, and a step is either wholly done or not at all.

use async_trait::async_trait;
use gennaker_core::ExecutionStatus;

use crate::error::Result;

/// An execution as stored: the engine's JSON document plus the columns it is found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRow {
    /// The execution id.
    pub id: String,
    /// The application, as spelled by the execution.
    pub application: String,
    /// The pipeline config the execution runs, if any (ad-hoc orchestrations have none).
    pub pipeline_config_id: Option<String>,
    /// The pipeline's name when the execution started.
    pub pipeline_name: Option<String>,
    /// The execution's status, stored under Spinnaker's name (`RUNNING`, `SUCCEEDED`, …).
    pub status: ExecutionStatus,
    /// When the execution was created (epoch ms).
    pub created_at: i64,
    /// When it started running (epoch ms).
    pub start_time: Option<i64>,
    /// When it ended (epoch ms).
    pub end_time: Option<i64>,
    /// The trigger's correlation id: a second execution with the same one is refused.
    pub correlation_id: Option<String>,
    /// Incremented by every write; writers state the version they read.
    pub version: i64,
    /// The execution document (JSON text, owned by the engine).
    pub document: String,
}

/// A write of one execution within a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionWrite {
    /// The row to write, with `version` set to the NEW version.
    pub row: ExecutionRow,
    /// The version the writer read (`None` inserts a new execution).
    pub expected_version: Option<i64>,
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The partition (usually the execution id): messages of one partition are never
    /// leased to two workers at once.
    pub partition: String,
    /// The message (JSON text, owned by the engine).
    pub payload: String,
    /// When it may be delivered (epoch ms).
    pub deliver_at: i64,
    /// A key unique within the partition: a new message with the key of one still
    /// waiting replaces it (a task has at most one scheduled run).
    pub replace_key: Option<String>,
    /// Whose work the partition is (the user who started the execution); claims take
    /// turns across tenants, so one tenant's backlog cannot hold up another's work.
    /// Read only when the message creates its partition; `None` is the engine's own.
    pub tenant: Option<String>,
}

/// A message leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedMessage {
    /// The message id, used to acknowledge it.
    pub id: i64,
    /// Its partition.
    pub partition: String,
    /// The message.
    pub payload: String,
    /// How many times it has been leased, this time included.
    pub attempts: i32,
    /// When it was due (epoch ms).
    pub deliver_at: i64,
}

/// What [`ExecutionStore::commit_step_and_lease`] leases once the step is written: the
/// worker that queued a partition's next message carries on with it, saving a claim
/// (and the other workers a wake-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextLease {
    /// The partition whose due messages are leased (the step's own, typically).
    pub partition: String,
    /// Messages due at or before this time are leased (epoch ms).
    pub now: i64,
    /// Until when (epoch ms).
    pub lease_until: i64,
    /// At most this many, oldest first.
    pub limit: i64,
}

/// Refuses a step that would start too many executions of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyGuard {
    /// The pipeline config.
    pub pipeline_config_id: String,
    /// The execution being started (not counted).
    pub execution_id: String,
    /// How many other executions may be active (`RUNNING`, `PAUSED` or `SUSPENDED`).
    pub max_active: i64,
}

/// Everything one engine step changes, committed atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepCommit {
    /// The worker whose leases are acknowledged.
    pub owner: String,
    /// Leased messages the step consumed; they are deleted.
    pub acknowledged: Vec<i64>,
    /// The partition of every acknowledged message, when the caller knows it (a
    /// worker's leased messages come from one partition): a SQLite commit then need not
    /// read it first. Each acknowledged message's delete checks it, so a wrong one
    /// makes the step stale instead of leaving a partition's row out of date.
    pub acknowledged_partition: Option<String>,
    /// Executions written.
    pub executions: Vec<ExecutionWrite>,
    /// Waiting messages to drop, by partition and replace key (runs of tasks that
    /// were canceled or paused); dropped before `enqueue` is written.
    pub remove: Vec<(String, String)>,
    /// Messages produced.
    pub enqueue: Vec<NewMessage>,
    /// Partitions whose waiting, unleased messages become due at `wake_at` (a judgment
    /// or a finished child pipeline wakes the task that polls for it).
    pub wake: Vec<String>,
    /// When woken messages become due (epoch ms).
    pub wake_at: i64,
    /// Serialises this step with every other step naming the same pipeline config
    /// (starting and finishing executions of a concurrency-limited pipeline).
    pub pipeline_lock: Option<String>,
    /// Refuses the step when the pipeline already has enough active executions.
    pub concurrency: Option<ConcurrencyGuard>,
    /// Announcements for the other servers sharing the database (the step's status
    /// events), sent when the step commits and only then: on PostgreSQL each one is a
    /// notification on `EVENTS_CHANNEL` (one longer than `MAX_NOTICE_BYTES` is not
    /// sent); SQLite serves a single server and drops them.
    pub notices: Vec<String>,
    /// Notifications the step's status changes cause, queued with them (see
    /// [`NotificationStore`](crate::NotificationStore)); one whose dedupe key exists is
    /// ignored.
    pub notifications: Vec<crate::NewNotification>,
}

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything was written.
    Committed,
    /// Nothing was written: an execution changed since it was read, or a lease was
    /// lost. The step must be redone from fresh state.
    Stale(String),
    /// Nothing was written: the concurrency guard refused.
    ConcurrencyLimited,
    /// Nothing was written: an execution with the same correlation id exists.
    DuplicateCorrelation(String),
}

/// Which executions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionQuery {
    /// Only this application's (case-insensitive).
    pub application: Option<String>,
    /// Only this pipeline config's.
    pub pipeline_config_id: Option<String>,
    /// Only executions whose pipeline had this name (case-insensitive).
    pub pipeline_name: Option<String>,
    /// Only these statuses.
    pub statuses: Vec<ExecutionStatus>,
    /// At most this many (newest first unless `oldest_first`).
    pub limit: i64,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// Only executions whose trigger has this `type` (`manual`, `cron`, `webhook`…).
    pub trigger_type: Option<String>,
    /// Only executions created at or after this time (epoch milliseconds).
    pub created_after: Option<i64>,
    /// Only executions created before this time (epoch milliseconds).
    pub created_before: Option<i64>,
}

/// Storage for executions and the engine's queue.
#[async_trait]
pub trait ExecutionStore: Send + Sync + std::fmt::Debug {
    /// Reads an execution.
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>>;
    /// Lists executions.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionRow>>;
    /// Commits one engine step atomically; see [`StepCommit`].
    async fn commit_step(&self, step: &StepCommit) -> Result<CommitOutcome>;
    /// Commits one step like [`commit_step`](Self::commit_step) and, in the same
    /// transaction, leases to `step.owner` the messages of `next.partition` that are
    /// due, when the step acknowledged messages of that partition (so this worker held
    /// it) and no other worker's lease in it is live; they come back ordered by due
    /// time. What is not leased here is claimed as usual,
    /// so leasing nothing (this default) is always correct.
    async fn commit_step_and_lease(
        &self,
        step: &StepCommit,
        next: &NextLease,
    ) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
        let _ = next;
        Ok((self.commit_step(step).await?, Vec::new()))
    }
    /// Leases the due messages of up to `partitions` partitions that no other worker
    /// holds (at most `per_partition` each, oldest first), until `lease_until`.
    ///
    /// A partition is claimable once its earliest message is due and no lease on any of
    /// its messages is live. Tenants take turns: the tenant served least recently goes
    /// first, and within a tenant the partition that has been claimable longest. The
    /// cost depends on the number of tenants and the messages leased, not on how many
    /// messages are queued. The messages come back ordered by due time.
    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        partitions: i64,
        per_partition: i64,
    ) -> Result<Vec<LeasedMessage>>;
    /// Keeps a worker's leases alive while it works.
    async fn extend_leases(&self, owner: &str, ids: &[i64], lease_until: i64) -> Result<()>;
    /// Gives leased messages back, due at `deliver_at` (a step that must be redone).
    async fn release_messages(&self, owner: &str, ids: &[i64], deliver_at: i64) -> Result<()>;
    /// Drops every lease: for a single server (SQLite) starting up, whose previous
    /// process can no longer hold any.
    async fn release_all_leases(&self) -> Result<u64>;
    /// When the next message becomes deliverable (due, or its lease expires).
    async fn next_delivery(&self) -> Result<Option<i64>>;
    /// How many messages are queued.
    async fn queue_depth(&self) -> Result<i64>;
    /// The messages of one partition, oldest first (for inspection and tests).
    async fn partition_messages(&self, partition: &str) -> Result<Vec<LeasedMessage>>;
}
