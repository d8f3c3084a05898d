//! Tasks: the async units of work a stage is made of.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_store::{ExecutionStore, Store};
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::expressions::{ExpressionSupport, PipelineIds};
use crate::message::Message;
use gennaker_core::execution::{Execution, StageExecution, TaskExecution};

/// How a task run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Done; the stage moves to its next task.
    Succeeded,
    /// Not done yet: run again after the backoff (or `retry_after`).
    Running,
    /// Failed; the stage fails as its `failPipeline` / `continuePipeline` say.
    Terminal,
    /// Failed, but the pipeline goes on regardless of the stage's settings.
    FailedContinue,
    /// The work was canceled.
    Canceled,
}

/// What a task run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    /// How it ended.
    pub status: TaskStatus,
    /// Keys merged into the stage's context.
    pub context: Map<String, Value>,
    /// Keys merged into the stage's outputs (visible to later stages).
    pub outputs: Map<String, Value>,
    /// For `Running`: when to run again, instead of the task's backoff.
    pub retry_after: Option<Duration>,
    /// Executions to create and start in the same transaction (child pipelines).
    pub start_executions: Vec<Execution>,
    /// Messages for other executions, sent in the same transaction.
    pub messages: Vec<Message>,
}

impl TaskResult {
    fn with_status(status: TaskStatus) -> Self {
        Self {
            status,
            context: Map::new(),
            outputs: Map::new(),
            retry_after: None,
            start_executions: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Done.
    pub fn succeeded() -> Self {
        Self::with_status(TaskStatus::Succeeded)
    }

    /// Not done yet; run again after the task's backoff.
    pub fn running() -> Self {
        Self::with_status(TaskStatus::Running)
    }

    /// Not done yet; run again after `after`.
    pub fn running_after(after: Duration) -> Self {
        Self {
            retry_after: Some(after),
            ..Self::with_status(TaskStatus::Running)
        }
    }

    /// Failed, with the error shown in the stage (`context.exception`).
    pub fn terminal(error: impl Into<String>) -> Self {
        Self::with_status(TaskStatus::Terminal).with_context("exception", exception(error))
    }

    /// Any status.
    pub fn status(status: TaskStatus) -> Self {
        Self::with_status(status)
    }

    /// Adds a context key.
    pub fn with_context(mut self, key: impl Into<String>, value: Value) -> Self {
        self.context.insert(key.into(), value);
        self
    }

    /// Adds an output.
    pub fn with_output(mut self, key: impl Into<String>, value: Value) -> Self {
        self.outputs.insert(key.into(), value);
        self
    }
}

/// Spinnaker's `context.exception` shape for an error message.
pub fn exception(error: impl Into<String>) -> Value {
    let error = error.into();
    serde_json::json!({
        "exceptionType": "TaskFailed",
        "shouldRetry": false,
        "details": {"error": error, "errors": [error]}
    })
}

/// A stage's `exception` for something Gennaker cannot do (see
/// [`StageExecution::failed_unsupported`]): it ends the execution TERMINAL.
pub fn unsupported_exception(error: impl Into<String>) -> Value {
    let mut details = exception(error);
    details["details"]["unsupported"] = Value::Bool(true);
    details
}

/// A task could not do its work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Worth retrying with backoff (a connection refused, a 503).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (a bad field, a 404): the task fails.
    #[error("{0}")]
    Permanent(String),
    /// The stage asks for something Gennaker cannot do here (a precondition type it
    /// does not support, a cloud provider or account that is not configured): the
    /// execution ends TERMINAL whatever the stage's `failPipeline` says. The message
    /// names the stage's field and what is unsupported.
    #[error("{0}")]
    Unsupported(String),
}

/// What the engine lends a task.
#[derive(Clone)]
pub struct Services {
    /// Applications and pipeline configs.
    pub store: Arc<dyn Store>,
    /// Executions (a child pipeline's status).
    pub executions: Arc<dyn ExecutionStore>,
    /// The HTTP client for webhooks: [`outbound`](Self::outbound)'s, so it reaches
    /// only what the policy allows.
    pub http: reqwest::Client,
    /// The outbound policy: URLs are checked against it before they are called, and
    /// responses are kept up to its size cap.
    pub outbound: gennaker_outbound::OutboundPolicy,
    /// The engine's clock.
    pub clock: Arc<dyn Clock>,
    /// Expression evaluation against an execution.
    pub expressions: ExpressionSupport,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// What a task sees when it runs.
#[derive(Debug, Clone, Copy)]
pub struct TaskContext<'a> {
    /// The execution (as of this step).
    pub execution: &'a Execution,
    /// The task's stage, its context already evaluated.
    pub stage: &'a StageExecution,
    /// The task.
    pub task: &'a TaskExecution,
    /// Now (epoch ms), from the engine's clock.
    pub now: i64,
    /// What the engine lends.
    pub services: &'a Services,
    /// The application's pipeline ids, when the stage uses `#pipelineId`.
    pub pipeline_ids: Option<&'a PipelineIds>,
}

impl TaskContext<'_> {
    /// The root object this stage's expressions see.
    pub fn expression_root(&self) -> Value {
        self.services
            .expressions
            .stage_root(self.execution, self.stage, self.pipeline_ids)
    }

    /// Evaluates an expression, bare (as in `stageEnabled` or a precondition) or
    /// `${…}`, against this stage's view of the execution.
    pub fn evaluate(&self, expression: &str) -> Result<Value, gennaker_expr::ExprError> {
        self.services
            .expressions
            .evaluate_in(&self.expression_root(), expression)
    }

    /// A context value as a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.stage.context.get(key).and_then(Value::as_str)
    }
}

/// A unit of work. Tasks must be idempotent: after a crash a task may run again, so
/// one that acts on the world first looks for its own effect.
#[async_trait]
pub trait Task: Send + Sync {
    /// The name recorded as the task's `implementingClass`.
    fn name(&self) -> &'static str;

    /// Does (or checks on) the work.
    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError>;

    /// How long to wait before running again after `Running`.
    fn backoff(&self, _stage: &StageExecution) -> Duration {
        Duration::from_secs(1)
    }

    /// How long the task may take before it fails (`None`: only the stage timeout).
    fn timeout(&self, _stage: &StageExecution) -> Option<Duration> {
        None
    }

    /// How many transient errors are retried before the task fails.
    fn max_retries(&self) -> u32 {
        5
    }

    /// Whether the task is pure and quick (no I/O), so the engine runs it within the
    /// step that started it instead of a separate queue hop.
    fn inline(&self) -> bool {
        false
    }
}
