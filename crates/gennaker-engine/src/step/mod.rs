//! One engine step: the messages of one execution, applied in memory, then committed
//! atomically by the worker. Follow-up messages for the same execution are handled in
//! the same step (so a chain of quick stages costs one transaction); anything that
//! waits, does I/O or concerns another execution is queued.

mod cancel;
mod complete;
mod operator;
mod start;
mod task;

use std::collections::VecDeque;

use gennaker_core::execution::{Execution, ExecutionStatus};
use gennaker_store::{ConcurrencyGuard, NewMessage};

use crate::engine::EngineInner;
use crate::error::EngineError;
use crate::events::ExecutionEvent;
use crate::expressions::PipelineIds;
use crate::message::{Message, run_key};
use serde_json::Value;

pub(crate) use start::start_waiting;

/// The user recorded for what the engine does on its own.
pub(crate) const ENGINE_USER: &str = "gennaker";

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
        let queued =
            self.engine
                .new_message(message, deliver_at, &self.execution.authentication.user)?;
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
            Message::StartExecution { .. } => self.start_execution().await,
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

    fn fail_stage_now(&mut self, index: usize, failure: Value) -> Result<(), EngineError> {
        let stage = &mut self.execution.stages[index];
        stage.context.insert("exception".into(), failure);
        let status = stage.failure_status();
        self.set_stage_status(index, status);
        self.after_stage_done(index)
    }
}
