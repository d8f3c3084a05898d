//! One engine step: the messages of one execution, applied in memory, then committed
//! atomically by the worker. Follow-up messages for the same execution are handled in
//! the same step (so a chain of quick stages costs one transaction); anything that
//! waits, does I/O or concerns another execution is queued.

use std::collections::VecDeque;
use std::time::Duration;

use gennaker_store::{ConcurrencyGuard, NewMessage};
use serde_json::{Map, Value, json};

use crate::clock::millis;
use crate::engine::EngineInner;
use crate::error::EngineError;
use crate::events::ExecutionEvent;
use crate::expressions::PipelineIds;
use crate::message::{Message, run_key};
use crate::stage::SyntheticSpec;
use crate::task::{TaskContext, TaskError, TaskStatus, exception, unsupported_exception};
use gennaker_core::execution::{
    Execution, ExecutionStatus, PausedDetails, StageExecution, SyntheticStageOwner, TaskExecution,
};
use gennaker_core::lenient::truthy;
use gennaker_core::lenient::value_as_i64;

/// The user recorded for what the engine does on its own.
pub(crate) const ENGINE_USER: &str = "gennaker";

/// Longest backoff between retries of a failing task.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// The in-memory state of one step.
pub(crate) struct Step<'e> {
    engine: &'e EngineInner,
    /// The execution as changed by this step.
    pub(crate) execution: Execution,
    /// Messages still to handle within this step.
    local: VecDeque<Message>,
    /// Messages to queue.
    pub(crate) outgoing: Vec<NewMessage>,
    /// Scheduled runs to drop from the queue (partition, replace key): runs of tasks
    /// that were canceled, paused or skipped.
    pub(crate) dropped_runs: Vec<(String, String)>,
    /// Executions to create.
    pub(crate) inserts: Vec<Execution>,
    /// Events to publish after commit.
    pub(crate) events: Vec<ExecutionEvent>,
    /// Serialise with other steps on this pipeline config.
    pub(crate) pipeline_lock: Option<String>,
    /// Refuse the step if the pipeline has too many active executions.
    pub(crate) concurrency: Option<ConcurrencyGuard>,
    /// Buffer instead of starting (the guard refused a first attempt).
    force_buffer: bool,
    now: i64,
    handled: usize,
    pipeline_ids: Option<PipelineIds>,
}

impl<'e> Step<'e> {
    pub(crate) fn new(
        engine: &'e EngineInner,
        execution: Execution,
        messages: Vec<Message>,
        force_buffer: bool,
    ) -> Self {
        Self {
            now: engine.clock.now(),
            engine,
            execution,
            local: messages.into(),
            outgoing: Vec::new(),
            dropped_runs: Vec::new(),
            inserts: Vec::new(),
            events: Vec::new(),
            pipeline_lock: None,
            concurrency: None,
            force_buffer,
            handled: 0,
            pipeline_ids: None,
        }
    }

    /// Handles every message, and the follow-ups they produce, up to the step budget.
    pub(crate) async fn run(&mut self) -> Result<(), EngineError> {
        while let Some(message) = self.local.pop_front() {
            if self.handled >= self.engine.config.max_messages_per_step {
                // Too long a chain for one transaction: queue the rest.
                self.queue_at(&message, self.now)?;
                continue;
            }
            self.handled += 1;
            self.now = self.engine.clock.now();
            self.handle(message).await?;
        }
        Ok(())
    }

    fn queue_at(&mut self, message: &Message, deliver_at: i64) -> Result<(), EngineError> {
        let queued = self.engine.new_message(message, deliver_at)?;
        self.outgoing.push(queued);
        Ok(())
    }

    /// Sends a message: handled within this step when it is for this execution and
    /// needs no wait; queued otherwise.
    fn send(&mut self, message: Message) -> Result<(), EngineError> {
        self.send_at(message, self.now)
    }

    fn send_at(&mut self, message: Message, deliver_at: i64) -> Result<(), EngineError> {
        let local = deliver_at <= self.now
            && message.partition() == self.execution.id
            && match &message {
                Message::RunTask { stage, task, .. } => self.task_is_inline(stage, task),
                Message::CancelStage { .. } => false,
                _ => true,
            };
        if local {
            self.local.push_back(message);
            Ok(())
        } else {
            self.queue_at(&message, deliver_at)
        }
    }

    fn task_is_inline(&self, stage_id: &str, task_id: &str) -> bool {
        self.execution
            .stage(stage_id)
            .and_then(|s| s.task(task_id))
            .and_then(|t| self.engine.registry.task_named(&t.implementing_class))
            .is_some_and(|t| t.inline())
    }

    async fn handle(&mut self, message: Message) -> Result<(), EngineError> {
        match message {
            Message::StartExecution { .. } => self.start_execution(),
            Message::StartStage { stage, .. } => self.start_stage(&stage).await,
            Message::RunTask {
                stage, task, token, ..
            } => self.run_task(&stage, &task, token).await,
            Message::CompleteTask {
                stage,
                task,
                status,
                ..
            } => self.complete_task(&stage, &task, status),
            Message::CompleteStage { stage, .. } => self.complete_stage(&stage),
            Message::CompleteExecution { .. } => self.complete_execution(),
            Message::CancelStage { stage, .. } => self.cancel_stage(&stage).await,
            Message::CancelExecution { user, reason, .. } => self.cancel_execution(&user, reason),
            Message::PauseExecution { user, .. } => {
                self.pause(&user);
                Ok(())
            }
            Message::ResumeExecution { user, .. } => self.resume(&user),
            Message::RestartStage { stage, user, .. } => self.restart_stage(&stage, &user),
            Message::SkipStage { stage, user, .. } => self.skip_stage(&stage, &user),
            Message::PatchStage {
                stage,
                user,
                context,
                ..
            } => self.patch_stage(&stage, &user, context),
            // Handled by the worker without an execution.
            Message::StartWaiting { .. } => Ok(()),
        }
    }

    /// Fails the execution after its messages kept failing, so it does not hang.
    pub(crate) fn abandon(&mut self, error: &str) -> Result<(), EngineError> {
        if self.execution.status.is_complete() {
            return Ok(());
        }
        let error = format!("Gennaker could not process this execution and stopped it: {error}");
        for stage in &mut self.execution.stages {
            if matches!(
                stage.status,
                ExecutionStatus::Running | ExecutionStatus::Paused
            ) {
                stage
                    .context
                    .insert("exception".into(), exception(error.clone()));
            }
        }
        self.cancel_running_stages(ExecutionStatus::Terminal)?;
        self.set_execution_status(ExecutionStatus::Terminal);
        self.after_execution_done()
    }

    // ----- events and status bookkeeping -----

    fn event(&mut self, stage: Option<usize>, task: Option<String>, status: ExecutionStatus) {
        let stage = stage.map(|i| &self.execution.stages[i]);
        self.events.push(ExecutionEvent {
            execution_id: self.execution.id.clone(),
            application: self.execution.application.clone(),
            pipeline_name: self.execution.name.clone(),
            stage_id: stage.map(|s| s.id.clone()),
            ref_id: stage.map(|s| s.ref_id.clone()),
            stage_name: stage.map(|s| s.name.clone()),
            task,
            status,
            time: self.now,
        });
    }

    fn set_execution_status(&mut self, status: ExecutionStatus) {
        if self.execution.status == status {
            return;
        }
        self.execution.status = status;
        if status == ExecutionStatus::Running && self.execution.start_time.is_none() {
            self.execution.start_time = Some(self.now);
        }
        if status.is_complete() {
            self.execution.end_time = Some(self.now);
        }
        self.event(None, None, status);
    }

    fn set_stage_status(&mut self, index: usize, status: ExecutionStatus) {
        let now = self.now;
        let stage = &mut self.execution.stages[index];
        if stage.status == status {
            return;
        }
        stage.status = status;
        stage.last_modified = Some(now);
        if status == ExecutionStatus::Running && stage.start_time.is_none() {
            stage.start_time = Some(now);
        }
        if status.is_complete() {
            stage.start_time.get_or_insert(now);
            stage.end_time = Some(now);
        }
        self.event(Some(index), None, status);
    }

    fn set_task_status(&mut self, index: usize, task_id: &str, status: ExecutionStatus) {
        let now = self.now;
        let run = (
            self.execution.id.clone(),
            run_key(&self.execution.stages[index].id, task_id),
        );
        let Some(task) = self.execution.stages[index].task_mut(task_id) else {
            return;
        };
        if task.status == status {
            return;
        }
        let was_running = task.status == ExecutionStatus::Running;
        task.status = status;
        if status == ExecutionStatus::Running && task.start_time.is_none() {
            task.start_time = Some(now);
        }
        if status.is_complete() {
            task.end_time = Some(now);
        }
        let name = task.name.clone();
        if was_running && status != ExecutionStatus::Running {
            // A run scheduled earlier in this same step goes too: the commit removes
            // queued runs before it writes new messages.
            self.outgoing.retain(|m| {
                m.partition != run.0 || m.replace_key.as_deref() != Some(run.1.as_str())
            });
            self.dropped_runs.push(run);
        }
        self.event(Some(index), Some(name), status);
    }

    fn index(&self, stage_id: &str) -> Option<usize> {
        self.execution.stage_index(stage_id)
    }

    fn fail_stage_now(&mut self, index: usize, error: String) -> Result<(), EngineError> {
        let stage = &mut self.execution.stages[index];
        stage.context.insert("exception".into(), exception(error));
        let status = stage.failure_status();
        self.set_stage_status(index, status);
        self.after_stage_done(index)
    }

    // ----- StartExecution -----

    fn start_execution(&mut self) -> Result<(), EngineError> {
        if !matches!(
            self.execution.status,
            ExecutionStatus::NotStarted | ExecutionStatus::Buffered
        ) {
            return Ok(());
        }
        if self.execution.canceled {
            self.set_execution_status(ExecutionStatus::Canceled);
            return self.after_execution_done();
        }
        if let Some(limit) = self.concurrency_limit() {
            let pipeline = self
                .execution
                .pipeline_config_id
                .clone()
                .unwrap_or_default();
            if self.force_buffer {
                self.set_execution_status(ExecutionStatus::Buffered);
                return Ok(());
            }
            self.pipeline_lock = Some(pipeline.clone());
            self.concurrency = Some(ConcurrencyGuard {
                pipeline_config_id: pipeline,
                execution_id: self.execution.id.clone(),
                max_active: limit,
            });
        }
        let roots: Vec<String> = self
            .execution
            .top_level_stages()
            .filter(|s| s.requisite_stage_ref_ids.is_empty())
            .map(|s| s.id.clone())
            .collect();
        if roots.is_empty() {
            self.set_execution_status(ExecutionStatus::Terminal);
            return self.after_execution_done();
        }
        self.set_execution_status(ExecutionStatus::Running);
        for stage in roots {
            self.send(Message::StartStage {
                execution: self.execution.id.clone(),
                stage,
            })?;
        }
        Ok(())
    }

    /// How many other executions of this pipeline may be active, if limited.
    fn concurrency_limit(&self) -> Option<i64> {
        self.execution.pipeline_config_id.as_ref()?;
        if self.execution.limit_concurrent {
            Some(1)
        } else if self.execution.max_concurrent_executions > 0 {
            Some(self.execution.max_concurrent_executions)
        } else {
            None
        }
    }

    // ----- StartStage -----

    fn upstream_state(&self, index: usize) -> (bool, bool) {
        let stage = &self.execution.stages[index];
        let mut all_done = true;
        let mut any_halted = false;
        for ref_id in &stage.requisite_stage_ref_ids {
            let upstream = self.execution.stages.iter().find(|s| {
                &s.ref_id == ref_id
                    && s.parent_stage_id == stage.parent_stage_id
                    && s.synthetic_stage_owner == stage.synthetic_stage_owner
            });
            match upstream {
                Some(up) if up.status.lets_downstream_run() => {}
                Some(up) if up.status.is_halt() => any_halted = true,
                _ => all_done = false,
            }
        }
        (all_done && !any_halted, any_halted)
    }

    async fn start_stage(&mut self, stage_id: &str) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        if self.execution.stages[index].status != ExecutionStatus::NotStarted
            || self.execution.status != ExecutionStatus::Running
        {
            return Ok(());
        }
        let (ready, _) = self.upstream_state(index);
        if !ready {
            return Ok(());
        }
        self.load_pipeline_ids_if_used(index).await?;
        let root = self.engine.services.expressions.stage_root(
            &self.execution,
            &self.execution.stages[index],
            self.pipeline_ids.as_ref(),
        );
        if let Some(reason) = self.disabled_by_condition(index, &root) {
            let stage = &mut self.execution.stages[index];
            if let Some(reason) = reason {
                stage
                    .context
                    .insert("stageEnabledError".into(), Value::String(reason));
            }
            self.set_stage_status(index, ExecutionStatus::Skipped);
            return self.after_stage_done(index);
        }
        if let Some(error) = self.evaluate_context(index, &root) {
            self.set_stage_status(index, ExecutionStatus::Running);
            return self.fail_stage_now(index, error);
        }
        self.set_stage_status(index, ExecutionStatus::Running);
        let stage_type = self.execution.stages[index].stage_type.clone();
        let Some(definition) = self.engine.registry.definition(&stage_type).cloned() else {
            let name = self.execution.stages[index].name.clone();
            let what = match self.engine.registry.catalog().get(&stage_type) {
                Some(_) => "is a Spinnaker stage type Gennaker cannot run yet",
                None => "is not a stage type this server knows (GET /api/v1/stageTypes lists them)",
            };
            let error = format!(
                "stage '{name}': type '{stage_type}' {what}; remove the stage or disable it with stageEnabled, then run the pipeline again"
            );
            let stage = &mut self.execution.stages[index];
            stage
                .context
                .insert("exception".into(), unsupported_exception(error));
            self.set_stage_status(index, ExecutionStatus::Terminal);
            return self.after_stage_done(index);
        };
        let stage = &self.execution.stages[index];
        let specs = definition.tasks(stage);
        let count = specs.len();
        let tasks = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| TaskExecution {
                id: (i + 1).to_string(),
                implementing_class: spec.implementing_class.to_owned(),
                name: spec.name,
                status: ExecutionStatus::NotStarted,
                start_time: None,
                end_time: None,
                stage_start: i == 0,
                stage_end: i + 1 == count,
                retries: 0,
                run_token: 0,
            })
            .collect();
        let before = definition.before_stages(stage);
        let after = definition.after_stages(stage);
        self.execution.stages[index].tasks = tasks;
        let parent = self.execution.stages[index].id.clone();
        self.add_synthetic(&parent, SyntheticStageOwner::StageAfter, after);
        let before_ids = self.add_synthetic(&parent, SyntheticStageOwner::StageBefore, before);
        if before_ids.is_empty() {
            self.start_tasks_or_after(&parent)
        } else {
            for id in before_ids {
                self.send(Message::StartStage {
                    execution: self.execution.id.clone(),
                    stage: id,
                })?;
            }
            Ok(())
        }
    }

    async fn load_pipeline_ids_if_used(&mut self, index: usize) -> Result<(), EngineError> {
        if self.pipeline_ids.is_some() {
            return Ok(());
        }
        let uses =
            serde_json::to_string(&self.execution.stages[index].context)?.contains("#pipelineId");
        if uses {
            let pipelines = self
                .engine
                .store
                .list_pipelines(&self.execution.application)
                .await?;
            self.pipeline_ids = Some(pipelines.into_iter().map(|p| (p.name, p.id)).collect());
        }
        Ok(())
    }

    /// `Some(reason)` when `stageEnabled` says to skip the stage (`Some(None)`: plainly
    /// false; `Some(Some(error))`: the condition could not be evaluated).
    fn disabled_by_condition(&self, index: usize, root: &Value) -> Option<Option<String>> {
        let condition = self.execution.stages[index].context.get("stageEnabled")?;
        if condition.get("type").and_then(Value::as_str) != Some("expression") {
            return None;
        }
        let expression = condition.get("expression").and_then(Value::as_str)?;
        match self
            .engine
            .services
            .expressions
            .evaluate_in(root, expression)
        {
            Ok(value) if truthy(Some(&value)) => None,
            Ok(_) => Some(None),
            Err(error) => Some(Some(format!(
                "stageEnabled expression '{expression}' failed, so the stage was skipped: {error}"
            ))),
        }
    }

    /// Evaluates the stage's context in place; returns an error when an expression
    /// failed and the stage says `failOnFailedExpressions`.
    fn evaluate_context(&mut self, index: usize, root: &Value) -> Option<String> {
        let stage = &self.execution.stages[index];
        if truthy(stage.context.get("skipExpressionEvaluation")) {
            return None;
        }
        let mut context = stage.context.clone();
        // stageEnabled was evaluated already, and some stages evaluate keys themselves;
        // their text stays as written.
        let mut kept = Map::new();
        let deferred = self
            .engine
            .registry
            .definition(&stage.stage_type)
            .map(|d| d.deferred_context_keys())
            .unwrap_or_default();
        for key in std::iter::once("stageEnabled").chain(deferred.iter().copied()) {
            if let Some(value) = context.remove(key) {
                kept.insert(key.to_owned(), value);
            }
        }
        let transformed = self
            .engine
            .services
            .expressions
            .transform(&Value::Object(context), root);
        let Value::Object(mut evaluated) = transformed.value.clone() else {
            return None;
        };
        evaluated.extend(kept);
        let mut error = None;
        if !transformed.failures.is_empty() {
            let summary = transformed.evaluation_summary(self.now);
            evaluated.insert("expressionEvaluationSummary".into(), Value::Object(summary));
            let failed: Vec<String> = transformed
                .failures
                .iter()
                .filter(|f| f.error.is_some())
                .map(|f| format!("{}: {}", f.path, f.message))
                .collect();
            if !failed.is_empty() && truthy(evaluated.get("failOnFailedExpressions")) {
                error = Some(format!(
                    "expressions failed and failOnFailedExpressions is set: {}",
                    failed.join("; ")
                ));
            }
        }
        self.execution.stages[index].context = evaluated;
        error
    }

    fn add_synthetic(
        &mut self,
        parent_id: &str,
        owner: SyntheticStageOwner,
        specs: Vec<SyntheticSpec>,
    ) -> Vec<String> {
        let Some(parent_index) = self.index(parent_id) else {
            return Vec::new();
        };
        let parent_ref = self.execution.stages[parent_index].ref_id.clone();
        let marker = match owner {
            SyntheticStageOwner::StageBefore => '<',
            SyntheticStageOwner::StageAfter => '>',
        };
        let ref_of = |i: usize| format!("{parent_ref}{marker}{}", i + 1);
        let mut initial = Vec::new();
        let mut created = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let stage = StageExecution {
                id: crate::build::new_id(),
                ref_id: ref_of(i),
                stage_type: spec.stage_type,
                name: spec.name,
                status: ExecutionStatus::NotStarted,
                start_time: None,
                end_time: None,
                context: spec.context,
                outputs: Map::new(),
                tasks: Vec::new(),
                requisite_stage_ref_ids: spec.after.iter().map(|&a| ref_of(a)).collect(),
                parent_stage_id: Some(parent_id.to_owned()),
                synthetic_stage_owner: Some(owner),
                last_modified: None,
                paused_ms: 0,
                restarts: 0,
            };
            if stage.requisite_stage_ref_ids.is_empty() {
                initial.push(stage.id.clone());
            }
            created.push(stage);
        }
        let position = match owner {
            SyntheticStageOwner::StageBefore => parent_index,
            SyntheticStageOwner::StageAfter => parent_index + 1,
        };
        self.execution.stages.splice(position..position, created);
        initial
    }

    fn start_tasks_or_after(&mut self, stage_id: &str) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        let first = self.execution.stages[index]
            .tasks
            .iter()
            .find(|t| t.status == ExecutionStatus::NotStarted)
            .map(|t| t.id.clone());
        match first {
            Some(task) => self.start_task(index, &task),
            None => self.start_after_stages(stage_id),
        }
    }

    fn start_task(&mut self, index: usize, task_id: &str) -> Result<(), EngineError> {
        self.set_task_status(index, task_id, ExecutionStatus::Running);
        self.rerun_task(index, task_id)
    }

    fn start_after_stages(&mut self, stage_id: &str) -> Result<(), EngineError> {
        let initial: Vec<String> = self
            .execution
            .siblings(Some(stage_id), Some(SyntheticStageOwner::StageAfter))
            .filter(|s| {
                s.status == ExecutionStatus::NotStarted && s.requisite_stage_ref_ids.is_empty()
            })
            .map(|s| s.id.clone())
            .collect();
        if initial.is_empty() {
            return self.send(Message::CompleteStage {
                execution: self.execution.id.clone(),
                stage: stage_id.to_owned(),
            });
        }
        for id in initial {
            self.send(Message::StartStage {
                execution: self.execution.id.clone(),
                stage: id,
            })?;
        }
        Ok(())
    }

    // ----- RunTask -----

    async fn run_task(
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
        match result {
            Ok(result) => {
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
                let stage = &mut self.execution.stages[index];
                let name = stage.name.clone();
                let error = format!("stage '{name}': {error}");
                stage
                    .context
                    .insert("exception".into(), unsupported_exception(error.clone()));
                self.finish_task_with_error(index, task_id, error, Some(ExecutionStatus::Terminal))
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
        let stage = &mut self.execution.stages[index];
        if !stage.failed_unsupported() {
            stage.context.insert("exception".into(), exception(error));
        }
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

    // ----- CompleteTask -----

    fn complete_task(
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

    // ----- CompleteStage -----

    fn complete_stage(&mut self, stage_id: &str) -> Result<(), EngineError> {
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

    /// A stage that failed because one of its synthetic stages did shows that stage's
    /// error as its own, so the execution view names the cause at the top level.
    fn adopt_child_exception(&mut self, index: usize, stage_id: &str) {
        if self.execution.stages[index]
            .context
            .contains_key("exception")
        {
            return;
        }
        let child_error = self
            .execution
            .stages
            .iter()
            .filter(|s| s.parent_stage_id.as_deref() == Some(stage_id) && s.status.is_halt())
            .find_map(|s| s.context.get("exception").cloned());
        if let Some(exception) = child_error {
            self.execution.stages[index]
                .context
                .insert("exception".into(), exception);
        }
    }

    /// What follows a stage that has just completed (or been skipped).
    fn after_stage_done(&mut self, index: usize) -> Result<(), EngineError> {
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

    // ----- CompleteExecution -----

    fn complete_execution(&mut self) -> Result<(), EngineError> {
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

    /// Marks every running stage and task with `status`, and queues the stages'
    /// cancellation routines.
    fn cancel_running_stages(&mut self, status: ExecutionStatus) -> Result<(), EngineError> {
        let running: Vec<usize> = self
            .execution
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.status, ExecutionStatus::Running | ExecutionStatus::Paused))
            .map(|(i, _)| i)
            .collect();
        for index in running {
            let tasks: Vec<String> = self.execution.stages[index]
                .tasks
                .iter()
                .filter(|t| matches!(t.status, ExecutionStatus::Running | ExecutionStatus::Paused))
                .map(|t| t.id.clone())
                .collect();
            for task in tasks {
                self.set_task_status(index, &task, status);
            }
            self.set_stage_status(index, status);
            self.queue_cancel_routine(index)?;
        }
        Ok(())
    }

    /// Queues the stage's cancellation routine, when its type has one.
    fn queue_cancel_routine(&mut self, index: usize) -> Result<(), EngineError> {
        let stage = &self.execution.stages[index];
        let has_routine = self
            .engine
            .registry
            .definition(&stage.stage_type)
            .is_some_and(|d| d.has_cancel_routine());
        if !has_routine {
            return Ok(());
        }
        let message = Message::CancelStage {
            execution: self.execution.id.clone(),
            stage: stage.id.clone(),
        };
        self.send(message)
    }

    /// What follows the end of an execution: waiting executions of the same pipeline,
    /// and the parent pipeline stage that waits for this one.
    fn after_execution_done(&mut self) -> Result<(), EngineError> {
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

    // ----- operations -----

    async fn cancel_stage(&mut self, stage_id: &str) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        let stage = &self.execution.stages[index];
        let Some(definition) = self.engine.registry.definition(&stage.stage_type).cloned() else {
            return Ok(());
        };
        match definition
            .cancel(&self.execution, stage, &self.engine.services)
            .await
        {
            Ok(outcome) => {
                self.execution.stages[index].context.extend(outcome.context);
                for message in outcome.messages {
                    self.send(message)?;
                }
                Ok(())
            }
            Err(error) => {
                self.execution.stages[index].context.insert(
                    "cancelError".into(),
                    Value::String(format!("the stage's cancellation routine failed: {error}")),
                );
                Ok(())
            }
        }
    }

    fn cancel_execution(&mut self, user: &str, reason: Option<String>) -> Result<(), EngineError> {
        if self.execution.status.is_complete() {
            return Ok(());
        }
        self.execution.canceled = true;
        self.execution.canceled_by = Some(user.to_owned());
        self.execution.cancellation_reason = reason;
        if let Some(paused) = &mut self.execution.paused
            && paused.resume_time.is_none()
        {
            paused.resume_time = Some(self.now);
            paused.resumed_by = Some(user.to_owned());
        }
        self.cancel_running_stages(ExecutionStatus::Canceled)?;
        self.set_execution_status(ExecutionStatus::Canceled);
        self.after_execution_done()
    }

    fn pause(&mut self, user: &str) {
        if self.execution.status != ExecutionStatus::Running {
            return;
        }
        let previous = self.execution.paused.take().unwrap_or_default();
        self.execution.paused = Some(PausedDetails {
            paused_by: Some(user.to_owned()),
            pause_time: Some(self.now),
            resumed_by: None,
            resume_time: None,
            paused_ms: previous.paused_ms,
        });
        self.set_execution_status(ExecutionStatus::Paused);
        for index in 0..self.execution.stages.len() {
            if self.execution.stages[index].status != ExecutionStatus::Running {
                continue;
            }
            let tasks: Vec<String> = self.execution.stages[index]
                .tasks
                .iter()
                .filter(|t| t.status == ExecutionStatus::Running)
                .map(|t| t.id.clone())
                .collect();
            for task in tasks {
                self.set_task_status(index, &task, ExecutionStatus::Paused);
            }
            self.set_stage_status(index, ExecutionStatus::Paused);
        }
    }

    fn resume(&mut self, user: &str) -> Result<(), EngineError> {
        if self.execution.status != ExecutionStatus::Paused {
            return Ok(());
        }
        let now = self.now;
        let mut paused_for = 0;
        if let Some(paused) = &mut self.execution.paused {
            paused_for = now - paused.pause_time.unwrap_or(now);
            paused.paused_ms += paused_for;
            paused.resume_time = Some(now);
            paused.resumed_by = Some(user.to_owned());
        }
        self.set_execution_status(ExecutionStatus::Running);
        for index in 0..self.execution.stages.len() {
            if self.execution.stages[index].status != ExecutionStatus::Paused {
                continue;
            }
            self.execution.stages[index].paused_ms += paused_for;
            self.set_stage_status(index, ExecutionStatus::Running);
            let tasks: Vec<String> = self.execution.stages[index]
                .tasks
                .iter()
                .filter(|t| t.status == ExecutionStatus::Paused)
                .map(|t| t.id.clone())
                .collect();
            for task in tasks {
                self.set_task_status(index, &task, ExecutionStatus::Running);
                self.rerun_task(index, &task)?;
            }
        }
        // Stages whose turn came while paused.
        let ready: Vec<String> = (0..self.execution.stages.len())
            .filter(|&i| {
                let s = &self.execution.stages[i];
                s.parent_stage_id.is_none()
                    && s.status == ExecutionStatus::NotStarted
                    && self.upstream_state(i).0
            })
            .map(|i| self.execution.stages[i].id.clone())
            .collect();
        for stage in ready {
            self.send(Message::StartStage {
                execution: self.execution.id.clone(),
                stage,
            })?;
        }
        Ok(())
    }

    /// Runs a running task again now, superseding any run already scheduled.
    fn rerun_task(&mut self, index: usize, task_id: &str) -> Result<(), EngineError> {
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

    fn restart_stage(&mut self, stage_id: &str, user: &str) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        let stage = &self.execution.stages[index];
        if !stage.is_top_level()
            || !(stage.status.is_complete() || stage.status == ExecutionStatus::NotStarted)
        {
            return Ok(());
        }
        let previous_exception = stage.context.get("exception").cloned();
        // The stage and everything downstream of it start over.
        let mut reset = vec![stage.ref_id.clone()];
        let mut i = 0;
        while i < reset.len() {
            let current = reset[i].clone();
            for s in self.execution.top_level_stages() {
                if s.requisite_stage_ref_ids.contains(&current) && !reset.contains(&s.ref_id) {
                    reset.push(s.ref_id.clone());
                }
            }
            i += 1;
        }
        let reset_ids: Vec<String> = self
            .execution
            .top_level_stages()
            .filter(|s| reset.contains(&s.ref_id))
            .map(|s| s.id.clone())
            .collect();
        self.remove_synthetic_descendants(&reset_ids);
        let configs = self
            .execution
            .pipeline_config
            .get("stages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for id in &reset_ids {
            let Some(index) = self.index(id) else {
                continue;
            };
            let stage = &mut self.execution.stages[index];
            if let Some(fresh) = configs
                .iter()
                .filter_map(|c| crate::build::stage_from_config(c).ok())
                .find(|c| c.ref_id == stage.ref_id)
            {
                stage.context = fresh.context;
            }
            stage.outputs.clear();
            stage.tasks.clear();
            stage.start_time = None;
            stage.end_time = None;
            stage.paused_ms = 0;
            stage.restarts += 1;
            self.set_stage_status(index, ExecutionStatus::NotStarted);
        }
        if let Some(index) = self.index(stage_id) {
            self.execution.stages[index].context.insert(
                "restartDetails".into(),
                json!({
                    "restartedBy": user,
                    "restartTime": self.now,
                    "previousException": previous_exception,
                }),
            );
        }
        if self.execution.status.is_complete() {
            self.execution.end_time = None;
            self.execution.canceled = false;
            self.execution.canceled_by = None;
            self.execution.cancellation_reason = None;
            self.set_execution_status(ExecutionStatus::Running);
        }
        self.send(Message::StartStage {
            execution: self.execution.id.clone(),
            stage: stage_id.to_owned(),
        })
    }

    fn remove_synthetic_descendants(&mut self, roots: &[String]) {
        let mut doomed: Vec<String> = roots.to_vec();
        let mut i = 0;
        while i < doomed.len() {
            let current = doomed[i].clone();
            for s in &self.execution.stages {
                if s.parent_stage_id.as_deref() == Some(current.as_str()) {
                    doomed.push(s.id.clone());
                }
            }
            i += 1;
        }
        self.execution
            .stages
            .retain(|s| roots.contains(&s.id) || !doomed.contains(&s.id));
    }

    fn skip_stage(&mut self, stage_id: &str, user: &str) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        if self.execution.stages[index].status != ExecutionStatus::Running {
            return Ok(());
        }
        // Whatever runs inside the stage stops; its cancellation routine cleans up.
        let mut inside = vec![stage_id.to_owned()];
        let mut i = 0;
        while i < inside.len() {
            let current = inside[i].clone();
            for s in &self.execution.stages {
                if s.parent_stage_id.as_deref() == Some(current.as_str()) {
                    inside.push(s.id.clone());
                }
            }
            i += 1;
        }
        for id in inside.iter().rev() {
            let Some(i) = self.index(id) else {
                continue;
            };
            let active = |s: ExecutionStatus| {
                matches!(
                    s,
                    ExecutionStatus::Running
                        | ExecutionStatus::Paused
                        | ExecutionStatus::NotStarted
                )
            };
            let tasks: Vec<String> = self.execution.stages[i]
                .tasks
                .iter()
                .filter(|t| active(t.status))
                .map(|t| t.id.clone())
                .collect();
            for task in tasks {
                self.set_task_status(i, &task, ExecutionStatus::Skipped);
            }
            if active(self.execution.stages[i].status) {
                let was_running = self.execution.stages[i].status == ExecutionStatus::Running;
                self.set_stage_status(i, ExecutionStatus::Skipped);
                if was_running {
                    self.queue_cancel_routine(i)?;
                }
            }
        }
        let stage = &mut self.execution.stages[index];
        stage.context.insert("manualSkip".into(), Value::Bool(true));
        stage
            .context
            .insert("skippedBy".into(), Value::String(user.to_owned()));
        self.after_stage_done(index)
    }

    fn patch_stage(
        &mut self,
        stage_id: &str,
        user: &str,
        context: Map<String, Value>,
    ) -> Result<(), EngineError> {
        let Some(index) = self.index(stage_id) else {
            return Ok(());
        };
        if self.execution.stages[index].status != ExecutionStatus::Running
            || self.execution.status != ExecutionStatus::Running
        {
            return Ok(());
        }
        let stage = &mut self.execution.stages[index];
        if !context.is_empty() {
            stage.context.extend(context);
            stage
                .context
                .insert("lastModifiedBy".into(), Value::String(user.to_owned()));
        }
        let running: Vec<String> = stage
            .tasks
            .iter()
            .filter(|t| t.status == ExecutionStatus::Running)
            .map(|t| t.id.clone())
            .collect();
        for task in running {
            self.rerun_task(index, &task)?;
        }
        Ok(())
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

/// The messages that start executions waiting behind a pipeline's finished ones.
pub(crate) fn start_waiting(waiting: &[Execution], active: usize) -> Vec<Message> {
    let Some(first) = waiting.first() else {
        return Vec::new();
    };
    let slots = if first.limit_concurrent {
        1
    } else {
        usize::try_from(first.max_concurrent_executions.max(1)).unwrap_or(1)
    };
    let free = slots.saturating_sub(active);
    if free == 0 {
        return Vec::new();
    }
    let mut messages = Vec::new();
    if first.keep_waiting_pipelines {
        for execution in waiting.iter().take(free) {
            messages.push(Message::StartExecution {
                execution: execution.id.clone(),
            });
        }
    } else if let Some(newest) = waiting.last() {
        messages.push(Message::StartExecution {
            execution: newest.id.clone(),
        });
        for older in &waiting[..waiting.len() - 1] {
            messages.push(Message::CancelExecution {
                execution: older.id.clone(),
                user: ENGINE_USER.into(),
                reason: Some(format!(
                    "superseded by the newer execution {} (keepWaitingPipelines is false)",
                    newest.id
                )),
            });
        }
    }
    messages
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
