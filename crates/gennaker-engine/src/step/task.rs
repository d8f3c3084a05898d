//! Tasks: running one (retries with backoff, stage and task timeouts), scheduling its
//! next run, and moving on to the next task when it completes.

use std::time::Duration;

use serde_json::Value;

use gennaker_core::execution::{ExecutionStatus, TaskExecution};
use gennaker_core::lenient::{truthy, value_as_i64};

use super::Step;
use crate::clock::millis;
use crate::error::EngineError;
use crate::message::Message;
use crate::task::{TaskContext, TaskError, TaskStatus, exception, unsupported_exception};

/// Longest backoff between retries of a failing task.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

impl Step<'_> {
    pub(super) async fn run_task(
        &mut self,
        stage_id: &str,
        task_id: &str,
        token: u64,
    ) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        let stage = &self.execution.stages[index];
        let Some(task) = stage.task(task_id) else {
            return Ok(());
        };
        if stage.status != ExecutionStatus::Running
            || task.status != ExecutionStatus::Running
            || task.run_token != token
            || self.execution.status != ExecutionStatus::Running
        {
            return Ok(());
        }
        let Some(runner) = self
            .engine
            .registry
            .task_named(&task.implementing_class)
            .cloned()
        else {
            let error = format!(
                "task '{}' is not known to this Gennaker version",
                task.implementing_class
            );
            return self.finish_task_with_error(index, task_id, error, None);
        };
        let task_timeout = runner.timeout(stage);
        let task_snapshot = task.clone();
        if let Some(outcome) = self.timed_out(index, &task_snapshot, task_timeout) {
            return outcome;
        }
        self.load_pipeline_ids_if_used(index).await?;
        let stage = &self.execution.stages[index];
        let task = &task_snapshot;
        let ctx = TaskContext {
            execution: &self.execution,
            stage,
            task,
            now: self.now,
            services: &self.engine.services,
            pipeline_ids: self.pipeline_ids.as_ref(),
        };
        let result = runner.execute(&ctx).await;
        let backoff = runner.backoff(stage);
        let max_retries = runner.max_retries();
        if let Some(task) = self.execution.stages[index].task_mut(task_id) {
            task.server = Some(self.engine.owner.clone());
        }
        match result {
            Ok(result) => {
                let max = self.engine.registry.catalog().max_stages();
                if let Some(child) = result
                    .start_executions
                    .iter()
                    .find(|c| c.stages.len() > max)
                {
                    let error = format!(
                        "the child pipeline '{}' has {} stages; a pipeline may have at most {max}: split it into smaller pipelines",
                        child.name,
                        child.stages.len()
                    );
                    return self.finish_task_with_exception(index, task_id, exception(error), None);
                }
                let stage = &mut self.execution.stages[index];
                stage.context.extend(result.context);
                stage.outputs.extend(result.outputs);
                for child in result.start_executions {
                    self.queue_at(
                        &Message::StartExecution {
                            execution: child.id.clone(),
                        },
                        self.now,
                    )?;
                    self.inserts.push(child);
                }
                for message in result.messages {
                    self.send(message)?;
                }
                let status = match result.status {
                    TaskStatus::Running => {
                        let wait = result.retry_after.unwrap_or(backoff);
                        return self.schedule_run(index, task_id, self.now + millis(wait));
                    }
                    TaskStatus::Succeeded => ExecutionStatus::Succeeded,
                    TaskStatus::Terminal => self.execution.stages[index].failure_status(),
                    TaskStatus::FailedContinue => ExecutionStatus::FailedContinue,
                    TaskStatus::Canceled => ExecutionStatus::Canceled,
                };
                self.send(Message::CompleteTask {
                    execution: self.execution.id.clone(),
                    stage: stage_id.to_owned(),
                    task: task_id.to_owned(),
                    status,
                })
            }
            Err(TaskError::Transient(error)) => {
                let stage = &mut self.execution.stages[index];
                let Some(task) = stage.task_mut(task_id) else {
                    return Ok(());
                };
                task.retries += 1;
                let retries = task.retries;
                if retries > max_retries {
                    let error = format!("{error} (gave up after {max_retries} retries)");
                    return self.finish_task_with_error(index, task_id, error, None);
                }
                let mut details = exception(error);
                details["shouldRetry"] = Value::Bool(true);
                stage.context.insert("exception".into(), details);
                let factor = 2u32.saturating_pow(retries.saturating_sub(1).min(16));
                let wait = backoff.saturating_mul(factor).min(MAX_RETRY_BACKOFF);
                self.schedule_run(index, task_id, self.now + millis(wait))
            }
            Err(TaskError::Permanent(error)) => {
                self.finish_task_with_error(index, task_id, error, None)
            }
            Err(TaskError::Unsupported(error)) => {
                let name = &self.execution.stages[index].name;
                let failure = unsupported_exception(format!("stage '{name}': {error}"));
                self.finish_task_with_exception(index, task_id, failure, None)
            }
        }
    }

    fn finish_task_with_error(
        &mut self,
        index: usize,
        task_id: &str,
        error: String,
        status: Option<ExecutionStatus>,
    ) -> Result<(), EngineError> {
        self.finish_task_with_exception(index, task_id, exception(error), status)
    }

    /// Records `failure` as the stage's exception and completes the task with `status`,
    /// or else the status the failure gives the stage (TERMINAL for an unsupported one).
    fn finish_task_with_exception(
        &mut self,
        index: usize,
        task_id: &str,
        failure: Value,
        status: Option<ExecutionStatus>,
    ) -> Result<(), EngineError> {
        let stage = &mut self.execution.stages[index];
        stage.context.insert("exception".into(), failure);
        let status = status.unwrap_or_else(|| stage.failure_status());
        let message = Message::CompleteTask {
            execution: self.execution.id.clone(),
            stage: stage.id.clone(),
            task: task_id.to_owned(),
            status,
        };
        self.send(message)
    }

    /// The stage's timeout (its own `stageTimeoutMs`, else the nearest ancestor's) or the
    /// task's, excluding time paused.
    fn timed_out(
        &mut self,
        index: usize,
        task: &TaskExecution,
        task_timeout: Option<Duration>,
    ) -> Option<Result<(), EngineError>> {
        let stage = &self.execution.stages[index];
        let task_id = task.id.clone();
        let mut timeout_owner = Some(stage);
        let mut stage_timeout = None;
        while let Some(candidate) = timeout_owner {
            if let Some(ms) = candidate
                .context
                .get("stageTimeoutMs")
                .and_then(value_as_i64)
            {
                stage_timeout = Some((ms, candidate));
                break;
            }
            timeout_owner = candidate
                .parent_stage_id
                .as_deref()
                .and_then(|p| self.execution.stage(p));
        }
        if let Some((limit, owner)) = stage_timeout {
            let started = owner.start_time.unwrap_or(self.now);
            let elapsed = self.now - started - owner.paused_ms;
            if limit > 0 && elapsed > limit {
                let message = format!(
                    "stage '{}' timed out after {} (stageTimeoutMs is {limit}); raise stageTimeoutMs if it needs longer",
                    owner.name,
                    human_ms(elapsed)
                );
                let succeed = truthy(stage.context.get("markSuccessfulOnTimeout"));
                return Some(self.finish_task_with_error(
                    index,
                    &task_id,
                    message,
                    succeed.then_some(ExecutionStatus::Succeeded),
                ));
            }
        }
        if let Some(limit) = task_timeout {
            let started = task.start_time.unwrap_or(self.now);
            let elapsed = self.now - started - stage.paused_ms;
            if elapsed > millis(limit) {
                let message = format!(
                    "task '{}' of stage '{}' timed out after {}",
                    task.name,
                    stage.name,
                    human_ms(elapsed)
                );
                return Some(self.finish_task_with_error(index, &task_id, message, None));
            }
        }
        None
    }

    pub(super) fn complete_task(
        &mut self,
        stage_id: &str,
        task_id: &str,
        status: ExecutionStatus,
    ) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        let running = self.execution.stages[index]
            .task(task_id)
            .is_some_and(|t| t.status == ExecutionStatus::Running);
        if !running || self.execution.stages[index].status != ExecutionStatus::Running {
            return Ok(());
        }
        self.set_task_status(index, task_id, status);
        if status == ExecutionStatus::Succeeded {
            let next = self.execution.stages[index]
                .tasks
                .iter()
                .find(|t| t.status == ExecutionStatus::NotStarted)
                .map(|t| t.id.clone());
            return match next {
                Some(next) => self.start_task(index, &next),
                None => self.start_after_stages(stage_id),
            };
        }
        self.send(Message::CompleteStage {
            execution: self.execution.id.clone(),
            stage: stage_id.to_owned(),
        })
    }

    /// Runs a running task again now, superseding any run already scheduled.
    pub(super) fn rerun_task(&mut self, index: usize, task_id: &str) -> Result<(), EngineError> {
        self.schedule_run(index, task_id, self.now)
    }

    /// Schedules the task's next run. Each schedule carries a new token and the task
    /// remembers the latest, so exactly one scheduled run is live: one left over from
    /// before a pause, a judgment or a redelivery is ignored.
    fn schedule_run(&mut self, index: usize, task_id: &str, at: i64) -> Result<(), EngineError> {
        let stage = &mut self.execution.stages[index];
        let stage_id = stage.id.clone();
        let Some(task) = stage.task_mut(task_id) else {
            return Ok(());
        };
        task.run_token += 1;
        let message = Message::RunTask {
            execution: self.execution.id.clone(),
            stage: stage_id,
            task: task_id.to_owned(),
            token: task.run_token,
        };
        self.send_at(message, at)
    }
}

/// `1m 30s`-style durations for messages.
fn human_ms(ms: i64) -> String {
    let seconds = ms / 1000;
    match seconds {
        s if s < 60 => format!("{}.{:03}s", s, ms % 1000),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_ms(1500), "1.500s");
        assert_eq!(human_ms(90_000), "1m 30s");
        assert_eq!(human_ms(3_720_000), "1h 2m");
    }
}
