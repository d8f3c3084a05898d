//! Operator actions: pause, resume, restart a stage, skip a stage, and patch a running
//! stage's context (manual judgment, a child pipeline's news).

use serde_json::{Map, Value, json};

use gennaker_core::execution::{ExecutionStatus, PausedDetails};

use super::Step;
use crate::error::EngineError;
use crate::message::Message;

impl Step<'_> {
    pub(super) fn pause(&mut self, user: &str) {
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

    pub(super) fn resume(&mut self, user: &str) -> Result<(), EngineError> {
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

    pub(super) fn restart_stage(&mut self, stage_id: &str, user: &str) -> Result<(), EngineError> {
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

    pub(super) fn skip_stage(&mut self, stage_id: &str, user: &str) -> Result<(), EngineError> {
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

    pub(super) fn patch_stage(
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
