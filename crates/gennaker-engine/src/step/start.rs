//! Starting: an execution's root stages (behind its pipeline's concurrency limit), a
//! stage's `stageEnabled` and expressions, its tasks and synthetic stages, and the
//! executions that waited for a free slot.

use std::collections::HashMap;

use serde_json::{Map, Value};

use gennaker_core::artifacts::{ResolveError, resolve_expected_artifacts, uses_prior};
use gennaker_core::execution::{
    Execution, ExecutionStatus, StageExecution, SyntheticStageOwner, TaskExecution,
};
use gennaker_core::lenient::truthy;
use gennaker_store::{ConcurrencyGuard, ExecutionQuery};

use super::{ENGINE_USER, Step};
use crate::error::EngineError;
use crate::message::Message;
use crate::stage::SyntheticSpec;
use crate::task::{exception, unsupported_exception};

impl Step<'_> {
    pub(super) async fn start_execution(&mut self) -> Result<(), EngineError> {
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
        // Once, when it is first taken up (a buffered execution was resolved then).
        if self.execution.status == ExecutionStatus::NotStarted
            && let Err(error) = self.resolve_artifacts().await?
        {
            // Orca's startup failure: TERMINAL before any stage, the reason recorded.
            self.execution.canceled = true;
            self.execution.canceled_by = Some(ENGINE_USER.into());
            self.execution.cancellation_reason = Some(format!("Failed on startup: {error}"));
            self.set_execution_status(ExecutionStatus::Terminal);
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

    /// Binds the pipeline's `expectedArtifacts` to the trigger's artifacts (see
    /// [`gennaker_core::artifacts`]) and records the result in the trigger;
    /// `Ok(Err(_))` when the execution cannot start (a required artifact is missing or
    /// ambiguous).
    async fn resolve_artifacts(&mut self) -> Result<Result<(), ResolveError>, EngineError> {
        let expected = self
            .execution
            .pipeline_config
            .get("expectedArtifacts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if expected.is_empty() {
            return Ok(Ok(()));
        }
        let received = self
            .execution
            .trigger
            .get("artifacts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let required: Vec<String> = self
            .execution
            .trigger
            .get("expectedArtifactIds")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let prior = if expected.iter().any(uses_prior) {
            self.prior_bindings().await?
        } else {
            HashMap::new()
        };
        let resolution = match resolve_expected_artifacts(&expected, &received, &required, &prior) {
            Ok(resolution) => resolution,
            Err(error) => return Ok(Err(error)),
        };
        let trigger = &mut self.execution.trigger;
        trigger.insert("expectedArtifacts".into(), Value::Array(expected));
        trigger.insert(
            "resolvedExpectedArtifacts".into(),
            Value::Array(resolution.resolved),
        );
        trigger.insert("artifacts".into(), Value::Array(resolution.artifacts));
        Ok(Ok(()))
    }

    /// What each expected artifact id was bound to in the pipeline's most recent
    /// SUCCEEDED execution (`usePriorArtifact`): the artifact that last got through.
    async fn prior_bindings(&self) -> Result<HashMap<String, Value>, EngineError> {
        let Some(pipeline) = self.execution.pipeline_config_id.clone() else {
            return Ok(HashMap::new());
        };
        let rows = self
            .engine
            .executions
            .list_executions(&ExecutionQuery {
                pipeline_config_id: Some(pipeline),
                statuses: vec![ExecutionStatus::Succeeded],
                limit: 1,
                ..ExecutionQuery::default()
            })
            .await?;
        let mut bindings = HashMap::new();
        for row in rows.iter().filter(|r| r.id != self.execution.id) {
            // An unreadable old document binds nothing; it must not stall this start.
            let Ok(document) = serde_json::from_str::<Value>(&row.document) else {
                continue;
            };
            for entry in document["trigger"]["resolvedExpectedArtifacts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let (Some(id), Some(bound)) = (
                    entry.get("id").and_then(Value::as_str),
                    entry.get("boundArtifact").filter(|b| b.is_object()),
                ) {
                    bindings.insert(id.to_owned(), bound.clone());
                }
            }
        }
        Ok(bindings)
    }

    /// How many other executions of this pipeline may be active, if limited.
    pub(super) fn concurrency_limit(&self) -> Option<i64> {
        self.execution.pipeline_config_id.as_ref()?;
        if self.execution.limit_concurrent {
            Some(1)
        } else if self.execution.max_concurrent_executions > 0 {
            Some(self.execution.max_concurrent_executions)
        } else {
            None
        }
    }

    pub(super) fn upstream_state(&self, index: usize) -> (bool, bool) {
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

    pub(super) async fn start_stage(&mut self, stage_id: &str) -> Result<(), EngineError> {
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
        let stage_type = self.execution.stages[index].stage_type.clone();
        let definition = self.engine.registry.definition(&stage_type).cloned();
        if let Some(definition) = &definition {
            definition.prepare(&mut self.execution.stages[index].context);
        }
        self.load_pipeline_ids_if_used(index).await?;
        // The root holds the whole execution as a JSON value: build it only for a
        // stage with something to evaluate (a `wait` stage has nothing), as a stage
        // with no `${` and no `stageEnabled` comes out of the evaluation unchanged.
        let root = if has_expressions(&self.execution.stages[index].context) {
            self.engine.services.expressions.stage_root(
                &self.execution,
                &self.execution.stages[index],
                self.pipeline_ids.as_ref(),
            )
        } else {
            Value::Null
        };
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
            return self.fail_stage_now(index, exception(error));
        }
        self.set_stage_status(index, ExecutionStatus::Running);
        let Some(definition) = definition else {
            let name = self.execution.stages[index].name.clone();
            let what = match self.engine.registry.catalog().get(&stage_type) {
                Some(_) => "is a Spinnaker stage type Gennaker cannot run yet",
                None => "is not a stage type this server knows (GET /api/v1/stageTypes lists them)",
            };
            let error = format!(
                "stage '{name}': type '{stage_type}' {what}; remove the stage or disable it with stageEnabled, then run the pipeline again"
            );
            return self.fail_stage_now(index, unsupported_exception(error));
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
                server: None,
            })
            .collect();
        let before = definition.before_stages(stage);
        let after = definition.after_stages(stage);
        let planned = before.len() + after.len();
        let max = self.engine.config.max_execution_stages;
        if self.execution.stages.len() + planned > max {
            let error = format!(
                "stage '{}' plans {planned} synthetic stages, which would make {} stages in this execution; an execution may hold at most {max}: plan fewer (fewer targets, smaller fan-out) or split the pipeline",
                stage.name,
                self.execution.stages.len() + planned
            );
            return self.fail_stage_now(index, exception(error));
        }
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

    pub(super) async fn load_pipeline_ids_if_used(
        &mut self,
        index: usize,
    ) -> Result<(), EngineError> {
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
        let marker = match owner {
            SyntheticStageOwner::StageBefore => '<',
            SyntheticStageOwner::StageAfter => '>',
        };
        self.add_synthetic_marked(parent_id, owner, specs, marker)
    }

    /// Adds synthetic stages whose ref ids are the parent's, `marker` and their place;
    /// returns the ids of those that wait for none.
    pub(super) fn add_synthetic_marked(
        &mut self,
        parent_id: &str,
        owner: SyntheticStageOwner,
        specs: Vec<SyntheticSpec>,
        marker: char,
    ) -> Vec<String> {
        let Some(parent_index) = self.index(parent_id) else {
            return Vec::new();
        };
        let parent_ref = self.execution.stages[parent_index].ref_id.clone();
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
}

/// The ref-id marker of on-failure stages (before stages have `<`, after stages `>`).
pub(super) const ON_FAILURE_MARKER: char = '!';

impl Step<'_> {
    pub(super) fn start_tasks_or_after(&mut self, stage_id: &str) -> Result<(), EngineError> {
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

    pub(super) fn start_task(&mut self, index: usize, task_id: &str) -> Result<(), EngineError> {
        self.set_task_status(index, task_id, ExecutionStatus::Running);
        self.rerun_task(index, task_id)
    }

    pub(super) fn start_after_stages(&mut self, stage_id: &str) -> Result<(), EngineError> {
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

/// Whether evaluating a stage's `context` could change it or skip the stage: it has a
/// `stageEnabled`, or a key or string somewhere in it holds `${`.
fn has_expressions(context: &Map<String, Value>) -> bool {
    fn any_template(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains("${"),
            Value::Array(items) => items.iter().any(any_template),
            Value::Object(map) => map
                .iter()
                .any(|(key, item)| key.contains("${") || any_template(item)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    context.contains_key("stageEnabled")
        || context
            .iter()
            .any(|(key, item)| key.contains("${") || any_template(item))
}

#[cfg(test)]
mod tests {
    use super::has_expressions;
    use serde_json::{Value, json};

    fn context(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        }
    }

    #[test]
    fn only_contexts_with_something_to_evaluate_need_the_execution() {
        assert!(!has_expressions(&context(json!({
            "waitTime": 0, "name": "stage 1", "list": ["a", {"b": "$c"}], "n": null,
        }))));
        assert!(has_expressions(&context(
            json!({"waitTime": "${parameters.t}"})
        )));
        assert!(has_expressions(&context(
            json!({"deep": [{"x": ["${a}"]}]})
        )));
        assert!(has_expressions(&context(json!({"m": {"${key}": 1}}))));
        assert!(has_expressions(&context(json!({
            "stageEnabled": {"type": "expression", "expression": "false"},
        }))));
    }
}
