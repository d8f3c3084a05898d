//! Completing: a stage from its tasks and synthetic stages, what runs after it
//! (downstream stages, joins, the parent of a synthetic group), and the execution once
//! no branch can go on.

use serde_json::{Map, Value};

use gennaker_core::execution::{ExecutionStatus, StageExecution, SyntheticStageOwner};
use gennaker_core::lenient::truthy;

use super::start::ON_FAILURE_MARKER;
use super::{ENGINE_USER, Step};
use crate::error::EngineError;
use crate::message::Message;

impl Step<'_> {
    pub(super) fn complete_stage(&mut self, stage_id: &str) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        let stage = &self.execution.stages[index];
        if stage.status != ExecutionStatus::Running {
            return Ok(());
        }
        let mut statuses: Vec<ExecutionStatus> = stage.tasks.iter().map(|t| t.status).collect();
        statuses.extend(
            self.execution
                .stages
                .iter()
                .filter(|s| s.parent_stage_id.as_deref() == Some(stage_id))
                .map(|s| s.status),
        );
        if statuses
            .iter()
            .any(|s| matches!(s, ExecutionStatus::Running | ExecutionStatus::Paused))
        {
            return Ok(());
        }
        let has = |wanted: ExecutionStatus| statuses.contains(&wanted);
        let status = if has(ExecutionStatus::Terminal) {
            // A synthetic stage's unsupported failure must not pass for a mere STOPPED.
            self.adopt_child_exception(index, stage_id);
            self.execution.stages[index].failure_status()
        } else if has(ExecutionStatus::Stopped) {
            ExecutionStatus::Stopped
        } else if has(ExecutionStatus::Canceled) {
            ExecutionStatus::Canceled
        } else if has(ExecutionStatus::FailedContinue) {
            ExecutionStatus::FailedContinue
        } else {
            ExecutionStatus::Succeeded
        };
        let failed = status.is_halt() || status == ExecutionStatus::FailedContinue;
        if failed && self.plan_on_failure_stages(index)? {
            // The stage completes, with its failure, once they have run.
            return Ok(());
        }
        self.set_stage_status(index, status);
        if status != ExecutionStatus::Succeeded {
            self.adopt_child_exception(index, stage_id);
        }
        if status.is_halt() || status == ExecutionStatus::FailedContinue {
            // As Orca's CompleteStageHandler: a stage that fails stops (or undoes) what
            // it started, e.g. a timed-out webhook's remote job, a deploy's new server
            // group under `rollback.onFailure`.
            self.queue_cancel_routine(index)?;
        }
        self.after_stage_done(index)
    }

    /// Plans and starts the failed stage's on-failure stages, unless it has none or
    /// planned them already (their ref ids carry `!`, so a repeated completion, also
    /// after a restart, finds them). Its after stages that had not started go: they
    /// were for success. `false`: nothing was planned and the stage completes now.
    fn plan_on_failure_stages(&mut self, index: usize) -> Result<bool, EngineError> {
        if self.execution.status != ExecutionStatus::Running {
            return Ok(false);
        }
        let stage = &self.execution.stages[index];
        let Some(definition) = self.engine.registry.definition(&stage.stage_type).cloned() else {
            return Ok(false);
        };
        let id = stage.id.clone();
        let marker = format!("{}{ON_FAILURE_MARKER}", stage.ref_id);
        let planned = self.execution.stages.iter().any(|s| {
            s.parent_stage_id.as_deref() == Some(id.as_str()) && s.ref_id.starts_with(&marker)
        });
        if planned {
            return Ok(false);
        }
        let specs = definition.on_failure_stages(stage);
        // As Orca: stages that already ran after the tasks (e.g. the same cleanup, which
        // has just failed) are not planned again.
        let ran_after: Vec<&str> = self
            .execution
            .stages
            .iter()
            .filter(|s| {
                s.parent_stage_id.as_deref() == Some(id.as_str())
                    && s.synthetic_stage_owner == Some(SyntheticStageOwner::StageAfter)
                    && s.status.is_complete()
            })
            .map(|s| s.name.as_str())
            .collect();
        if specs.is_empty() || specs.iter().any(|s| ran_after.contains(&s.name.as_str())) {
            return Ok(false);
        }
        let unstarted_after = |s: &StageExecution| {
            s.parent_stage_id.as_deref() == Some(id.as_str())
                && s.synthetic_stage_owner == Some(SyntheticStageOwner::StageAfter)
                && s.status == ExecutionStatus::NotStarted
        };
        let removed = self
            .execution
            .stages
            .iter()
            .filter(|s| unstarted_after(s))
            .count();
        let max = self.engine.config.max_execution_stages;
        if self.execution.stages.len() - removed + specs.len() > max {
            let stage = &mut self.execution.stages[index];
            stage.context.insert(
                "onFailureStagesError".into(),
                Value::String(format!(
                    "the stage's {} on-failure stages were not run: the execution would hold more than {max} stages",
                    specs.len()
                )),
            );
            return Ok(false);
        }
        self.execution.stages.retain(|s| !unstarted_after(s));
        let initial = self.add_synthetic_marked(
            &id,
            SyntheticStageOwner::StageAfter,
            specs,
            ON_FAILURE_MARKER,
        );
        for stage in initial {
            self.send(Message::StartStage {
                execution: self.execution.id.clone(),
                stage,
            })?;
        }
        Ok(true)
    }

    /// A stage that failed because one of its synthetic stages did shows that stage's
    /// error as its own, so the execution view names the cause at the top level. An
    /// unsupported failure comes first: it decides the stage's status.
    fn adopt_child_exception(&mut self, index: usize, stage_id: &str) {
        if self.execution.stages[index]
            .context
            .contains_key("exception")
        {
            return;
        }
        let halted: Vec<&StageExecution> = self
            .execution
            .stages
            .iter()
            .filter(|s| s.parent_stage_id.as_deref() == Some(stage_id) && s.status.is_halt())
            .collect();
        let child_error = halted
            .iter()
            .find(|s| s.failed_unsupported())
            .or_else(|| halted.iter().find(|s| s.context.contains_key("exception")))
            .and_then(|s| s.context.get("exception").cloned());
        if let Some(exception) = child_error {
            self.execution.stages[index]
                .context
                .insert("exception".into(), exception);
        }
    }

    /// What follows a stage that has just completed (or been skipped).
    pub(super) fn after_stage_done(&mut self, index: usize) -> Result<(), EngineError> {
        let stage = &self.execution.stages[index];
        let status = stage.status;
        let parent = stage.parent_stage_id.clone();
        let owner = stage.synthetic_stage_owner;
        let ref_id = stage.ref_id.clone();
        let mut started_any = false;
        if status.lets_downstream_run() {
            let downstream: Vec<usize> = self
                .execution
                .stages
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.parent_stage_id == parent
                        && s.synthetic_stage_owner == owner
                        && s.status == ExecutionStatus::NotStarted
                        && s.requisite_stage_ref_ids.contains(&ref_id)
                })
                .map(|(i, _)| i)
                .collect();
            for i in downstream {
                if self.upstream_state(i).0 {
                    started_any = true;
                    let id = self.execution.stages[i].id.clone();
                    self.send(Message::StartStage {
                        execution: self.execution.id.clone(),
                        stage: id,
                    })?;
                }
            }
        }
        match (parent, owner) {
            (Some(parent), Some(owner)) => {
                let group_active = started_any
                    || self
                        .execution
                        .siblings(Some(&parent), Some(owner))
                        .any(|s| {
                            matches!(s.status, ExecutionStatus::Running | ExecutionStatus::Paused)
                        });
                if group_active {
                    return Ok(());
                }
                self.continue_parent(&parent, owner)
            }
            _ => {
                if started_any {
                    return Ok(());
                }
                self.send(Message::CompleteExecution {
                    execution: self.execution.id.clone(),
                })
            }
        }
    }

    fn continue_parent(
        &mut self,
        parent_id: &str,
        owner: SyntheticStageOwner,
    ) -> Result<(), EngineError> {
        let Some(parent_index) = self.index(parent_id) else {
            return Ok(());
        };
        if self.execution.stages[parent_index].status != ExecutionStatus::Running {
            return Ok(());
        }
        let halted = self
            .execution
            .siblings(Some(parent_id), Some(owner))
            .any(|s| s.status.is_halt());
        if owner == SyntheticStageOwner::StageBefore && !halted {
            return self.start_tasks_or_after(parent_id);
        }
        self.send(Message::CompleteStage {
            execution: self.execution.id.clone(),
            stage: parent_id.to_owned(),
        })
    }

    pub(super) fn complete_execution(&mut self) -> Result<(), EngineError> {
        if self.execution.status.is_complete() {
            return Ok(());
        }
        let top: Vec<&StageExecution> = self.execution.top_level_stages().collect();
        let any = |wanted: ExecutionStatus| top.iter().any(|s| s.status == wanted);
        let status = if any(ExecutionStatus::Terminal) {
            ExecutionStatus::Terminal
        } else if any(ExecutionStatus::Canceled) {
            ExecutionStatus::Canceled
        } else {
            let active = top
                .iter()
                .any(|s| matches!(s.status, ExecutionStatus::Running | ExecutionStatus::Paused))
                || self.execution.stages.iter().enumerate().any(|(i, s)| {
                    s.parent_stage_id.is_none()
                        && s.status == ExecutionStatus::NotStarted
                        && self.upstream_state(i).0
                });
            if active {
                return Ok(());
            }
            let stopped_failing = top.iter().any(|s| {
                s.status == ExecutionStatus::Stopped
                    && truthy(s.context.get("completeOtherBranchesThenFail"))
            });
            if stopped_failing {
                ExecutionStatus::Terminal
            } else {
                ExecutionStatus::Succeeded
            }
        };
        if status.is_halt() {
            self.cancel_running_stages(ExecutionStatus::Canceled)?;
        }
        self.set_execution_status(status);
        self.after_execution_done()
    }
    /// What follows the end of an execution: waiting executions of the same pipeline,
    /// and the parent pipeline stage that waits for this one.
    pub(super) fn after_execution_done(&mut self) -> Result<(), EngineError> {
        if let Some(pipeline) = self.execution.pipeline_config_id.clone()
            && self.concurrency_limit().is_some()
        {
            self.pipeline_lock = Some(pipeline.clone());
            self.send(Message::StartWaiting {
                pipeline_config_id: pipeline,
            })?;
        }
        let parent_stage = self
            .execution
            .trigger
            .get("parentPipelineStageId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let (Some(parent), Some(stage)) = (
            self.execution.parent_execution_id().map(str::to_owned),
            parent_stage,
        ) {
            self.send(Message::PatchStage {
                execution: parent,
                stage,
                user: ENGINE_USER.into(),
                context: Map::new(),
            })?;
        }
        Ok(())
    }
}
