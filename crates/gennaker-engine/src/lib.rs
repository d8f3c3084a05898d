//! Gennaker's orchestration engine.
//!
//! An execution is one JSON document in the store, driven by messages on the store's
//! durable queue. A worker leases all due messages of one execution, applies them (and
//! the follow-ups they cause) in memory as one [step](crate::Engine), and commits the
//! new document, the consumed messages and the produced messages in ONE transaction.
//! A crash at any instant therefore leaves either the old state with its messages or
//! the new state with the next ones: no execution is ever left without a message to
//! move it on, and no step is half done.
//!
//! Semantics follow Spinnaker's Orca: the statuses, the refId DAG with parallel
//! branches and joins, `stageEnabled`, `failPipeline` / `continuePipeline` /
//! `completeOtherBranchesThenFail`, stage timeouts, task retries with backoff, cancel,
//! pause/resume, restart, `limitConcurrent` / `keepWaitingPipelines`, synthetic
//! before/after stages, and expressions evaluated when a stage starts.

mod authz;
mod build;
mod clock;
mod engine;
mod error;
mod events;
mod expressions;
mod message;
mod precondition;
mod stage;
mod stages;
mod step;
mod task;
#[cfg(feature = "test-support")]
pub mod testing;
mod worker;

pub use authz::{Principal, StageTarget};
pub use build::{
    BuildError, Requester, RunRequest, new_id, orchestration_execution, pipeline_execution,
    stage_from_config,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Actor, Engine, EngineConfig, Judgment, MAX_EXECUTION_STAGES};
pub use error::EngineError;
pub use events::{ExecutionEvent, NotificationPlanner};
pub use expressions::{ExpressionSupport, PipelineIds, ancestors};
pub use gennaker_core::Access;
pub use gennaker_core::execution::{
    ALL_STATUSES, Authentication, Execution, ExecutionStatus, ExecutionType, PausedDetails,
    StageExecution, SyntheticStageOwner, TaskExecution,
};
pub use gennaker_core::lenient::truthy;
pub use message::Message;
pub use precondition::{Precondition, PreconditionSite};
pub use stage::{
    CancelOutcome, StageDefinition, StageRegistry, SyntheticSpec, TaskSpec, parallel, sequential,
};
pub use stages::{
    PreconfiguredWebhook, PreconfiguredWebhookStage, WebhookConfigError, WebhookParameter,
    preconfigured_webhook_stages, register_preconfigured,
};
pub use task::{
    Services, Task, TaskContext, TaskError, TaskResult, TaskStatus, exception,
    unsupported_exception,
};
