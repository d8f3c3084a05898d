//! The messages that drive executions through the durable queue.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use gennaker_core::execution::ExecutionStatus;

/// One instruction to the engine. Every message names the partition it belongs to:
/// its execution, or for [`Message::StartWaiting`] its pipeline config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Message {
    /// Start an execution (or buffer it behind a running one).
    StartExecution {
        /// The execution.
        execution: String,
    },
    /// Start a stage whose upstream stages are done.
    StartStage {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
    },
    /// Run (or poll again) a task.
    RunTask {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
        /// The task id.
        task: String,
        /// The task's `runToken` when this message was sent.
        token: u64,
    },
    /// A task finished with this status.
    CompleteTask {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
        /// The task id.
        task: String,
        /// The task's final status.
        status: ExecutionStatus,
    },
    /// A stage's tasks and synthetic stages are done.
    CompleteStage {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
    },
    /// Check whether the execution is done.
    CompleteExecution {
        /// The execution.
        execution: String,
    },
    /// Run a stage's cancellation routine (cancel a child pipeline, call a cancel endpoint).
    CancelStage {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
    },
    /// A user cancels the execution.
    CancelExecution {
        /// The execution.
        execution: String,
        /// Who.
        user: String,
        /// Why.
        reason: Option<String>,
    },
    /// A user pauses the execution.
    PauseExecution {
        /// The execution.
        execution: String,
        /// Who.
        user: String,
    },
    /// A user resumes the execution.
    ResumeExecution {
        /// The execution.
        execution: String,
        /// Who.
        user: String,
    },
    /// A user restarts a completed top-level stage and everything after it.
    RestartStage {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
        /// Who.
        user: String,
    },
    /// A user skips a running stage.
    SkipStage {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
        /// Who.
        user: String,
    },
    /// A user adds to a running stage's context (a judgment, `skipRemainingWait`); the
    /// stage's waiting task runs at once.
    PatchStage {
        /// The execution.
        execution: String,
        /// The stage id.
        stage: String,
        /// Who.
        user: String,
        /// The keys to set.
        context: Map<String, Value>,
    },
    /// A pipeline's active execution finished: start what waits behind it.
    StartWaiting {
        /// The pipeline config id.
        pipeline_config_id: String,
    },
}

/// Prefix of the partitions of messages about a pipeline config rather than an
/// execution.
pub(crate) const PIPELINE_PARTITION_PREFIX: &str = "pipeline:";

fn pipeline_partition(pipeline_config_id: &str) -> String {
    format!("{PIPELINE_PARTITION_PREFIX}{pipeline_config_id}")
}

impl Message {
    /// The queue partition this message belongs to.
    pub fn partition(&self) -> String {
        match self {
            Message::StartWaiting { pipeline_config_id } => pipeline_partition(pipeline_config_id),
            Message::StartExecution { execution }
            | Message::StartStage { execution, .. }
            | Message::RunTask { execution, .. }
            | Message::CompleteTask { execution, .. }
            | Message::CompleteStage { execution, .. }
            | Message::CompleteExecution { execution }
            | Message::CancelStage { execution, .. }
            | Message::CancelExecution { execution, .. }
            | Message::PauseExecution { execution, .. }
            | Message::ResumeExecution { execution, .. }
            | Message::RestartStage { execution, .. }
            | Message::SkipStage { execution, .. }
            | Message::PatchStage { execution, .. } => execution.clone(),
        }
    }

    /// A queue key that makes a newer message of the same kind replace an older one
    /// still waiting: a task has at most one scheduled run.
    pub fn replace_key(&self) -> Option<String> {
        match self {
            Message::RunTask { stage, task, .. } => Some(run_key(stage, task)),
            _ => None,
        }
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::StartExecution { .. } => "StartExecution",
            Message::StartStage { .. } => "StartStage",
            Message::RunTask { .. } => "RunTask",
            Message::CompleteTask { .. } => "CompleteTask",
            Message::CompleteStage { .. } => "CompleteStage",
            Message::CompleteExecution { .. } => "CompleteExecution",
            Message::CancelStage { .. } => "CancelStage",
            Message::CancelExecution { .. } => "CancelExecution",
            Message::PauseExecution { .. } => "PauseExecution",
            Message::ResumeExecution { .. } => "ResumeExecution",
            Message::RestartStage { .. } => "RestartStage",
            Message::SkipStage { .. } => "SkipStage",
            Message::PatchStage { .. } => "PatchStage",
            Message::StartWaiting { .. } => "StartWaiting",
        }
    }
}

/// The replace key of a task's scheduled run.
pub(crate) fn run_key(stage: &str, task: &str) -> String {
    format!("run:{stage}:{task}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let message = Message::RunTask {
            execution: "e".into(),
            stage: "s".into(),
            task: "1".into(),
            token: 3,
        };
        let text = serde_json::to_string(&message).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"kind":"runTask","execution":"e","stage":"s","task":"1","token":3}"#
        );
        let back: Message = serde_json::from_str(&text).unwrap_or(Message::CompleteExecution {
            execution: String::new(),
        });
        assert_eq!(back, message);
        assert_eq!(
            Message::StartWaiting {
                pipeline_config_id: "p".into()
            }
            .partition(),
            "pipeline:p"
        );
    }
}
