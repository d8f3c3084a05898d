//! Status changes, published after each committed step for live views and
//! notifications.

use serde::{Deserialize, Serialize};

use gennaker_core::execution::{Execution, ExecutionStatus};
use gennaker_store::NewNotification;

use crate::expressions::ExpressionSupport;

/// One status change of an execution, a stage or a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionEvent {
    /// The execution.
    pub execution_id: String,
    /// Its application.
    pub application: String,
    /// Its pipeline's name.
    pub pipeline_name: String,
    /// The stage, for stage and task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<String>,
    /// The stage's refId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_id: Option<String>,
    /// The stage's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    /// The task's name, for task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The new status.
    pub status: ExecutionStatus,
    /// When (epoch ms).
    pub time: i64,
}

impl ExecutionEvent {
    /// `execution`, `stage` or `task`.
    pub fn scope(&self) -> &'static str {
        match (&self.stage_id, &self.task) {
            (None, _) => "execution",
            (Some(_), None) => "stage",
            (Some(_), Some(_)) => "task",
        }
    }
}

/// Turns a step's status changes into notifications to send (pipeline and stage
/// `notifications[]`). The engine calls it with the execution as the step leaves it,
/// before the commit, and writes what it returns in the step's own transaction: a
/// notification exists exactly when the status change that caused it does.
pub trait NotificationPlanner: Send + Sync + std::fmt::Debug {
    /// The notifications `events` cause. `version` is the execution version the step
    /// writes: with the execution id it tells steps apart in dedupe keys. Must not fail
    /// nor block: a notification that cannot be prepared is returned with the reason.
    fn plan(
        &self,
        execution: &Execution,
        version: i64,
        events: &[ExecutionEvent],
        expressions: &ExpressionSupport,
    ) -> Vec<NewNotification>;
}
