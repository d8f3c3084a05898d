//! Canceling: an execution on request or when it cannot go on, the stages it was
//! running, and their stage types' cancellation routines.

use serde_json::Value;

use gennaker_core::execution::ExecutionStatus;

use super::Step;
use crate::error::EngineError;
use crate::message::Message;
use crate::task::exception;

impl Step<'_> {
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

    pub(super) async fn cancel_stage(&mut self, stage_id: &str) -> Result<(), EngineError> {
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

    pub(super) fn cancel_execution(
        &mut self,
        user: &str,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
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

    /// Marks every running stage and task with `status`, and queues the stages'
    /// cancellation routines.
    pub(super) fn cancel_running_stages(
        &mut self,
        status: ExecutionStatus,
    ) -> Result<(), EngineError> {
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
    pub(super) fn queue_cancel_routine(&mut self, index: usize) -> Result<(), EngineError> {
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
}
