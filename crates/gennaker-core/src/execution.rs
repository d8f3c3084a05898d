//! Executions, stages and tasks, in the JSON shape Spinnaker's API returns.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lenient::truthy;

/// Spinnaker's execution statuses (Orca's `ExecutionStatus`), used for executions,
/// stages and tasks alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Not started yet.
    NotStarted,
    /// Running.
    Running,
    /// Paused by a user.
    Paused,
    /// Suspended (kept for Spinnaker compatibility; Gennaker does not suspend).
    Suspended,
    /// Finished successfully.
    Succeeded,
    /// Failed, but the pipeline goes on (`continuePipeline`, `failPipeline: false`).
    FailedContinue,
    /// Failed and halted the pipeline.
    Terminal,
    /// Canceled.
    Canceled,
    /// Failed and halted its branch only (`failPipeline: false`).
    Stopped,
    /// Not run (`stageEnabled` was false, or skipped by a user).
    Skipped,
    /// Waiting for a concurrency slot (`limitConcurrent`).
    Buffered,
}

impl ExecutionStatus {
    /// Spinnaker's name, e.g. `FAILED_CONTINUE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::NotStarted => "NOT_STARTED",
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Paused => "PAUSED",
            ExecutionStatus::Suspended => "SUSPENDED",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::FailedContinue => "FAILED_CONTINUE",
            ExecutionStatus::Terminal => "TERMINAL",
            ExecutionStatus::Canceled => "CANCELED",
            ExecutionStatus::Stopped => "STOPPED",
            ExecutionStatus::Skipped => "SKIPPED",
            ExecutionStatus::Buffered => "BUFFERED",
        }
    }

    /// Parses Spinnaker's name (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        ALL_STATUSES
            .iter()
            .copied()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether nothing more will happen (Orca's `isComplete`).
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Succeeded
                | ExecutionStatus::FailedContinue
                | ExecutionStatus::Terminal
                | ExecutionStatus::Canceled
                | ExecutionStatus::Stopped
                | ExecutionStatus::Skipped
        )
    }

    /// Whether this status stops what follows (Orca's `isHalt`).
    pub fn is_halt(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Terminal | ExecutionStatus::Canceled | ExecutionStatus::Stopped
        )
    }

    /// Whether what follows may start (complete and not halting).
    pub fn lets_downstream_run(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Succeeded | ExecutionStatus::FailedContinue | ExecutionStatus::Skipped
        )
    }
}

/// Every status, in declaration order.
pub const ALL_STATUSES: [ExecutionStatus; 11] = [
    ExecutionStatus::NotStarted,
    ExecutionStatus::Running,
    ExecutionStatus::Paused,
    ExecutionStatus::Suspended,
    ExecutionStatus::Succeeded,
    ExecutionStatus::FailedContinue,
    ExecutionStatus::Terminal,
    ExecutionStatus::Canceled,
    ExecutionStatus::Stopped,
    ExecutionStatus::Skipped,
    ExecutionStatus::Buffered,
];

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pipeline run, or an ad-hoc orchestration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionType {
    /// A run of a stored pipeline.
    Pipeline,
    /// An ad-hoc list of stages.
    Orchestration,
}

/// Who started an execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// The user.
    pub user: String,
    /// The user's roles when it started (a child pipeline and judgments check them).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// When and by whom an execution was paused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausedDetails {
    /// Who paused it.
    pub paused_by: Option<String>,
    /// When (epoch ms).
    pub pause_time: Option<i64>,
    /// Who resumed it.
    pub resumed_by: Option<String>,
    /// When (epoch ms).
    pub resume_time: Option<i64>,
    /// Total paused time over all pauses (excluded from timeouts).
    #[serde(default)]
    pub paused_ms: i64,
}

/// One run of a pipeline: the frozen config, the trigger, and the state of every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// The execution id.
    pub id: String,
    /// `PIPELINE` or `ORCHESTRATION`.
    #[serde(rename = "type")]
    pub execution_type: ExecutionType,
    /// The application.
    pub application: String,
    /// The pipeline's name.
    pub name: String,
    /// The pipeline config's id.
    #[serde(default)]
    pub pipeline_config_id: Option<String>,
    /// Overall status.
    pub status: ExecutionStatus,
    /// When it was created (epoch ms).
    pub build_time: i64,
    /// When it started running.
    #[serde(default)]
    pub start_time: Option<i64>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<i64>,
    /// Whether a user canceled it.
    #[serde(default)]
    pub canceled: bool,
    /// Who canceled it.
    #[serde(default)]
    pub canceled_by: Option<String>,
    /// Why.
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    /// At most one active execution of the pipeline at a time.
    #[serde(default)]
    pub limit_concurrent: bool,
    /// Cap on active executions when `limitConcurrent` is off (0 = none).
    #[serde(default)]
    pub max_concurrent_executions: i64,
    /// Whether waiting executions all run in turn (`true`) or only the newest (`false`).
    #[serde(default)]
    pub keep_waiting_pipelines: bool,
    /// Who started it.
    #[serde(default)]
    pub authentication: Authentication,
    /// Pause bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PausedDetails>,
    /// Where the request came from (`api`, `cli`, `pipeline`, …).
    #[serde(default)]
    pub origin: String,
    /// The trigger: `type`, `user`, `parameters`, `artifacts`, … (Spinnaker's shape).
    pub trigger: Map<String, Value>,
    /// Spinnaker's `spelEvaluator` (kept for the record; Gennaker evaluates at stage start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spel_evaluator: Option<String>,
    /// Every stage, synthetic ones included, in planning order.
    pub stages: Vec<StageExecution>,
    /// The pipeline config as it was when the execution was created; restarts rebuild
    /// stage contexts from it.
    #[serde(default)]
    pub pipeline_config: Value,
}

/// Where a synthetic stage sits relative to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyntheticStageOwner {
    /// Runs before the parent's tasks.
    StageBefore,
    /// Runs after the parent's tasks.
    StageAfter,
}

/// One stage of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageExecution {
    /// Unique within the execution, stable across restarts.
    pub id: String,
    /// The pipeline config's `refId` (synthetic stages: `<parent><N` / `<parent>>N`).
    pub ref_id: String,
    /// The stage type.
    #[serde(rename = "type")]
    pub stage_type: String,
    /// The stage name.
    pub name: String,
    /// Status.
    pub status: ExecutionStatus,
    /// When it started (epoch ms).
    #[serde(default)]
    pub start_time: Option<i64>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<i64>,
    /// The stage's config fields, evaluated when it starts, plus what its tasks add.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// Values published to later stages.
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// The stage's tasks.
    #[serde(default)]
    pub tasks: Vec<TaskExecution>,
    /// The stages this one waits for (same parent).
    #[serde(default)]
    pub requisite_stage_ref_ids: Vec<String>,
    /// The stage that planned this synthetic stage.
    #[serde(default)]
    pub parent_stage_id: Option<String>,
    /// Before or after the parent.
    #[serde(default)]
    pub synthetic_stage_owner: Option<SyntheticStageOwner>,
    /// When the stage last changed.
    #[serde(default)]
    pub last_modified: Option<i64>,
    /// Time spent paused while this stage ran (excluded from its timeout).
    #[serde(default)]
    pub paused_ms: i64,
    /// How many times a user restarted the stage (part of webhook idempotency keys).
    #[serde(default)]
    pub restarts: u32,
}

/// One task of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExecution {
    /// `1`, `2`, … within the stage.
    pub id: String,
    /// The registered task that runs it.
    pub implementing_class: String,
    /// A readable name.
    pub name: String,
    /// Status.
    pub status: ExecutionStatus,
    /// When it started (epoch ms).
    #[serde(default)]
    pub start_time: Option<i64>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<i64>,
    /// Whether it is the stage's first task.
    #[serde(default)]
    pub stage_start: bool,
    /// Whether it is the stage's last task.
    #[serde(default)]
    pub stage_end: bool,
    /// Failed attempts so far (transient errors are retried with backoff).
    #[serde(default)]
    pub retries: u32,
    /// Identifies the one live scheduled run of the task; a `RunTask` message carrying
    /// another token (superseded by a pause, a judgment or a later schedule) is ignored.
    #[serde(default)]
    pub run_token: u64,
    /// The server whose worker ran the task last (its engine's id, as `/readyz`
    /// reports it): where to look when several servers share one database. Not
    /// Spinnaker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl Execution {
    /// The stage with this id.
    pub fn stage(&self, id: &str) -> Option<&StageExecution> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The stage with this id, mutably.
    pub fn stage_mut(&mut self, id: &str) -> Option<&mut StageExecution> {
        self.stages.iter_mut().find(|s| s.id == id)
    }

    /// The index of the stage with this id.
    pub fn stage_index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }

    /// Top-level (non-synthetic) stages.
    pub fn top_level_stages(&self) -> impl Iterator<Item = &StageExecution> {
        self.stages.iter().filter(|s| s.parent_stage_id.is_none())
    }

    /// The stages sharing `parent` and `owner` (the top level when both are `None`).
    pub fn siblings<'a>(
        &'a self,
        parent: Option<&'a str>,
        owner: Option<SyntheticStageOwner>,
    ) -> impl Iterator<Item = &'a StageExecution> + 'a {
        self.stages.iter().filter(move |s| {
            s.parent_stage_id.as_deref() == parent && s.synthetic_stage_owner == owner
        })
    }

    /// The trigger's parameters.
    pub fn parameters(&self) -> Map<String, Value> {
        match self.trigger.get("parameters") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }

    /// Whether the execution is a child of another (a `pipeline` stage started it).
    pub fn parent_execution_id(&self) -> Option<&str> {
        self.trigger
            .get("parentExecution")
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .or_else(|| {
                self.trigger
                    .get("parentExecutionId")
                    .and_then(Value::as_str)
            })
    }
}

/// The error a failed stage recorded in its `exception` context value
/// (`details.errors` joined with "; ", else `details.error`), verbatim: what the API's
/// readers (the CLI, the web UI) show as the stage's failure.
pub fn exception_error(exception: &Value) -> Option<String> {
    let details = exception.get("details")?;
    let errors: Vec<&str> = details
        .get("errors")
        .and_then(Value::as_array)
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !errors.is_empty() {
        return Some(errors.join("; "));
    }
    details
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl StageExecution {
    /// Orca's `failureStatus()`: what a failure of this stage becomes.
    pub fn failure_status(&self) -> ExecutionStatus {
        if self.failed_unsupported() {
            ExecutionStatus::Terminal
        } else if truthy(self.context.get("continuePipeline")) {
            ExecutionStatus::FailedContinue
        } else if self
            .context
            .get("failPipeline")
            .is_none_or(|v| v.is_null() || truthy(Some(v)))
        {
            ExecutionStatus::Terminal
        } else {
            ExecutionStatus::Stopped
        }
    }

    /// Whether the stage failed because Gennaker cannot do what it asks (an unknown
    /// stage type, an unsupported precondition, an unconfigured cloud provider): its
    /// exception says `"unsupported": true`. Such a failure ends the execution TERMINAL
    /// whatever `failPipeline` says, so "not supported" never passes for success.
    pub fn failed_unsupported(&self) -> bool {
        self.context
            .get("exception")
            .and_then(|e| e.get("details"))
            .and_then(|d| d.get("unsupported"))
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// Whether the stage may be restarted or judged: not synthetic.
    pub fn is_top_level(&self) -> bool {
        self.parent_stage_id.is_none()
    }

    /// The task with this id, mutably.
    pub fn task_mut(&mut self, id: &str) -> Option<&mut TaskExecution> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }

    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&TaskExecution> {
        self.tasks.iter().find(|t| t.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage(context: Value) -> StageExecution {
        StageExecution {
            id: "s".into(),
            ref_id: "1".into(),
            stage_type: "wait".into(),
            name: "Wait".into(),
            status: ExecutionStatus::NotStarted,
            start_time: None,
            end_time: None,
            context: context.as_object().cloned().unwrap_or_default(),
            outputs: Map::new(),
            tasks: vec![],
            requisite_stage_ref_ids: vec![],
            parent_stage_id: None,
            synthetic_stage_owner: None,
            last_modified: None,
            paused_ms: 0,
            restarts: 0,
        }
    }

    #[test]
    fn failure_status_follows_orca() {
        assert_eq!(stage(json!({})).failure_status(), ExecutionStatus::Terminal);
        assert_eq!(
            stage(json!({"failPipeline": null})).failure_status(),
            ExecutionStatus::Terminal
        );
        assert_eq!(
            stage(json!({"failPipeline": false})).failure_status(),
            ExecutionStatus::Stopped
        );
        assert_eq!(
            stage(json!({"failPipeline": "false", "continuePipeline": "true"})).failure_status(),
            ExecutionStatus::FailedContinue
        );
        assert_eq!(
            stage(json!({"failPipeline": false, "completeOtherBranchesThenFail": true}))
                .failure_status(),
            ExecutionStatus::Stopped
        );
        let unsupported = json!({"failPipeline": false, "continuePipeline": true,
            "exception": {"details": {"error": "x", "unsupported": true}}});
        assert_eq!(
            stage(unsupported).failure_status(),
            ExecutionStatus::Terminal
        );
    }

    #[test]
    fn statuses_round_trip_by_name() {
        for status in ALL_STATUSES {
            assert_eq!(ExecutionStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).unwrap_or_default();
            assert_eq!(json, json!(status.as_str()));
        }
        assert!(ExecutionStatus::Stopped.is_halt() && ExecutionStatus::Stopped.is_complete());
        assert!(!ExecutionStatus::Buffered.is_complete());
    }
}
