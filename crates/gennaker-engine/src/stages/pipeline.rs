//! `pipeline`: runs another stored pipeline as a child execution and, with
//! `waitForCompletion` (the default), waits for it (Orca's `PipelineStage`).
//!
//! Fields: `application` (default: this execution's), `pipeline` (the config's id, or
//! its name), `pipelineParameters`, `waitForCompletion`. The child's trigger is
//! `type: "pipeline"` with `parentExecution`, `parentPipelineStageId`,
//! `parentPipelineId` and `user`; the stage records `executionId` and `executionName`.
//! When the child ends the engine wakes this stage at once (the child's end sends it a
//! `PatchStage`), so the monitor's poll is only a safety net. Cancelling the stage
//! cancels the child.
//!
//! A pipeline of another application runs only when the user who started this
//! execution holds EXECUTE there now (see [`crate::authz`]); the child runs as that user.

use gennaker_core::{Access, Pipeline};
use gennaker_core::{CheckContext, Fields, Origin, StageTypeDescriptor, ValidationReport};
use std::time::Duration;

use async_trait::async_trait;
use gennaker_store::PipelineRecord;
use serde_json::{Map, Value, json};

use crate::authz::{Principal, StageTarget};
use crate::build::{Requester, RunRequest, pipeline_execution};
use crate::message::Message;
use crate::stage::{CancelOutcome, StageDefinition, StageRegistry, TaskSpec};
use crate::step::ENGINE_USER;
use crate::task::{Services, Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::{Execution, ExecutionStatus, StageExecution};

/// Registers the `pipeline` stage and its tasks.
pub(super) fn register(registry: &mut StageRegistry) {
    registry
        .stage(PipelineStage)
        .task(StartPipelineTask)
        .task(MonitorPipelineTask);
}

/// Orca's MonitorPipelineTask polls every 15 s; here the child's end wakes the stage,
/// so the poll only guards against a lost wake-up.
const MONITOR_POLL: Duration = Duration::from_secs(15);

/// Orca's MonitorPipelineTask gives a child twelve hours unless `stageTimeoutMs` says
/// otherwise.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

struct PipelineStage;

/// `waitForCompletion` defaults to true: only an explicit false starts and moves on.
fn waits_for_completion(stage: &StageExecution) -> bool {
    match stage.context.get("waitForCompletion") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
        _ => true,
    }
}

#[async_trait]
impl StageDefinition for PipelineStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            "pipeline",
            Origin::Front50,
            "Pipeline",
            "run another pipeline, optionally waiting for it to finish",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        check_pipeline_stage(stage, report);
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        let mut tasks = vec![TaskSpec::new("startPipeline")];
        if waits_for_completion(stage) {
            tasks.push(TaskSpec::new("monitorPipeline"));
        }
        tasks
    }

    fn has_cancel_routine(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        _services: &Services,
    ) -> Result<CancelOutcome, TaskError> {
        let Some(child) = stage.context.get("executionId").and_then(Value::as_str) else {
            return Ok(CancelOutcome::default());
        };
        // Cancelling an execution that already ended is a no-op, so sending this again
        // after a crash is harmless.
        let user = execution
            .canceled_by
            .clone()
            .unwrap_or_else(|| ENGINE_USER.to_owned());
        let reason = format!(
            "its parent execution {} (pipeline '{}') canceled stage '{}'",
            execution.id, execution.name, stage.name
        );
        Ok(CancelOutcome {
            context: Map::new(),
            messages: vec![Message::CancelExecution {
                execution: child.to_owned(),
                user,
                reason: Some(reason),
            }],
        })
    }
}

// ----- startPipeline -----

/// Builds the child execution; the engine stores and starts it in the same
/// transaction that records `executionId`, so a repeated run never starts two.
struct StartPipelineTask;

/// The pipeline config the stage names, by id (within the application) or by name.
async fn find_pipeline(
    services: &Services,
    application: &str,
    wanted: &str,
) -> Result<Option<PipelineRecord>, TaskError> {
    let unavailable =
        |e: gennaker_store::StoreError| TaskError::Transient(format!("cannot read pipelines: {e}"));
    if let Some(record) = services
        .store
        .get_pipeline_by_id(wanted)
        .await
        .map_err(unavailable)?
        && record.application.eq_ignore_ascii_case(application)
    {
        return Ok(Some(record));
    }
    services
        .store
        .get_pipeline(application, wanted)
        .await
        .map_err(unavailable)
}

#[async_trait]
impl Task for StartPipelineTask {
    fn name(&self) -> &'static str {
        "startPipeline"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        // Our own effect first: the child was started in the step that recorded it.
        if ctx.str("executionId").is_some() {
            return Ok(TaskResult::succeeded());
        }
        let execution = ctx.execution;
        let application = ctx
            .str("pipelineApplication")
            .or_else(|| ctx.str("application"))
            .filter(|a| !a.trim().is_empty())
            .unwrap_or(&execution.application)
            .to_owned();
        let wanted = match ctx.stage.context.get("pipeline") {
            Some(Value::String(p)) if !p.trim().is_empty() => p.trim().to_owned(),
            _ => {
                return Err(TaskError::Permanent(
                    "the pipeline stage names no pipeline: set \"pipeline\" to the id (or name) of the pipeline to run".into(),
                ));
            }
        };
        // Checked before the lookup: a refusal must not list another application's
        // pipelines. The child belongs to the application asked for (the lookup only
        // finds its pipelines), so this is the check of the child, at run time.
        ctx.authorize(
            StageTarget {
                kind: "pipeline",
                name: &wanted,
                application: &application,
            },
            Access::Execute,
        )
        .await?;
        let Some(record) = find_pipeline(ctx.services, &application, &wanted).await? else {
            let known = ctx
                .services
                .store
                .list_pipelines(&application)
                .await
                .map(|list| list.into_iter().map(|p| p.name).collect::<Vec<_>>())
                .unwrap_or_default();
            let known = if known.is_empty() {
                format!("application '{application}' has no pipelines")
            } else {
                format!("its pipelines are: {}", known.join(", "))
            };
            return Err(TaskError::Permanent(format!(
                "application '{application}' has no pipeline with id or name '{wanted}' ({known}); fix the stage's \"pipeline\" (or \"application\")"
            )));
        };
        let parameters = match ctx.stage.context.get("pipelineParameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(other) => {
                return Err(TaskError::Permanent(format!(
                    "pipelineParameters must be an object of parameter names to values, not {other}"
                )));
            }
        };
        let mut config = Pipeline::from_value(record.config.clone()).map_err(|e| {
            TaskError::Permanent(format!(
                "pipeline '{}' of application '{}' cannot run: {e}",
                record.name, record.application
            ))
        })?;
        config.id = Some(record.id.clone());
        config.application.clone_from(&record.application);
        let mut trigger = Map::new();
        trigger.insert("type".into(), json!("pipeline"));
        trigger.insert(
            "parentExecution".into(),
            json!({
                "id": execution.id,
                "application": execution.application,
                "name": execution.name,
                "pipelineConfigId": execution.pipeline_config_id,
            }),
        );
        trigger.insert("parentPipelineStageId".into(), json!(ctx.stage.id));
        trigger.insert(
            "parentPipelineId".into(),
            json!(execution.pipeline_config_id),
        );
        trigger.insert("parentPipelineName".into(), json!(execution.name));
        trigger.insert(
            "parentPipelineApplication".into(),
            json!(execution.application),
        );
        // A system-started parent lends its child the service account it runs as.
        if let Principal::RunAs(run_as) = Principal::of(execution) {
            trigger.insert("runAsUser".into(), json!(run_as));
        }
        let request = RunRequest {
            parameters,
            trigger,
            ..RunRequest::default()
        };
        // The child runs as whoever ran the parent; its own cross-application stages
        // are checked against that user's rights when they run.
        let requester = Requester {
            user: execution.authentication.user.clone(),
            roles: execution.authentication.roles.clone(),
            origin: "pipeline".into(),
        };
        let child = pipeline_execution(&record.application, &config, &request, &requester, ctx.now)
            .map_err(|e| {
                TaskError::Permanent(format!(
                    "cannot start pipeline '{}' of application '{}': {e}",
                    record.name, record.application
                ))
            })?;
        let mut result = TaskResult::succeeded()
            .with_context("executionId", json!(child.id))
            .with_context("executionName", json!(record.name))
            .with_output("executionId", json!(child.id))
            .with_output("executionName", json!(record.name));
        result.start_executions.push(child);
        Ok(result)
    }
}

// ----- monitorPipeline -----

/// Waits for the child and takes on its outcome.
struct MonitorPipelineTask;

/// Why a child ended badly: its failed stages' errors, or who canceled it.
fn failure_reason(child: &Execution) -> String {
    let mut errors = Vec::new();
    for stage in child.stages.iter().filter(|s| s.status.is_halt()) {
        let details = stage
            .context
            .get("exception")
            .and_then(|e| e.get("details"));
        let listed: Vec<String> = details
            .and_then(|d| d.get("errors"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let messages = if listed.is_empty() {
            details
                .and_then(|d| d.get("error"))
                .and_then(Value::as_str)
                .map(|e| vec![e.to_owned()])
                .unwrap_or_default()
        } else {
            listed
        };
        for message in messages {
            errors.push(format!("stage '{}': {message}", stage.name));
        }
    }
    if !errors.is_empty() {
        return errors.join("; ");
    }
    if child.canceled {
        let by = child.canceled_by.as_deref().unwrap_or("someone");
        return match &child.cancellation_reason {
            Some(reason) => format!("canceled by {by} ({reason})"),
            None => format!("canceled by {by}"),
        };
    }
    "see the child execution for details".into()
}

#[async_trait]
impl Task for MonitorPipelineTask {
    fn name(&self) -> &'static str {
        "monitorPipeline"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let Some(id) = ctx.str("executionId") else {
            return Err(TaskError::Permanent(
                "the pipeline stage has no executionId to wait for; restart the stage to start the child pipeline again".into(),
            ));
        };
        let row = ctx
            .services
            .executions
            .get_execution(id)
            .await
            .map_err(|e| TaskError::Transient(format!("cannot read child execution {id}: {e}")))?;
        let Some(row) = row else {
            return Ok(TaskResult::terminal(format!(
                "child execution {id} no longer exists (was it deleted?); restart the stage to run the pipeline again"
            )));
        };
        let child: Execution = serde_json::from_str(&row.document).map_err(|e| {
            TaskError::Permanent(format!("child execution {id} cannot be read: {e}"))
        })?;
        let name = ctx.str("executionName").unwrap_or(&child.name).to_owned();
        match child.status {
            ExecutionStatus::Succeeded => {
                // Orca hands the child's outputs to the parent: later stages read them
                // as if this stage had produced them.
                let mut result = TaskResult::succeeded();
                for stage in child.stages.iter().filter(|s| s.is_top_level()) {
                    result.outputs.extend(stage.outputs.clone());
                }
                result.outputs.insert("executionId".into(), json!(child.id));
                result.outputs.insert("executionName".into(), json!(name));
                Ok(result)
            }
            status @ (ExecutionStatus::Terminal
            | ExecutionStatus::Canceled
            | ExecutionStatus::Stopped) => Ok(TaskResult::terminal(format!(
                "child pipeline '{name}' (execution {id}) ended {status}: {}",
                failure_reason(&child)
            ))),
            _ => Ok(TaskResult::running_after(MONITOR_POLL)),
        }
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        MONITOR_POLL
    }

    fn timeout(&self, stage: &StageExecution) -> Option<Duration> {
        // Orca's OverridableTimeoutRetryableTask: stageTimeoutMs replaces the default.
        if stage.context.contains_key("stageTimeoutMs") {
            None
        } else {
            Some(MONITOR_TIMEOUT)
        }
    }
}

/// The pipeline to run is named; its application defaults to this pipeline's (as at run
/// time).
fn check_pipeline_stage(stage: &Fields<'_>, report: &mut ValidationReport) {
    stage.string("application", report);
    stage.required_string("pipeline", "the id of the pipeline to run", report);
    stage.object("pipelineParameters", report);
    stage.boolean("waitForCompletion", report);
}
