//! Precondition types of the `checkPreconditions` stage: what a crate implements to add
//! one (`expression` and `stageStatus` here, `clusterSize` in the deployment crate, so
//! the engine never names a provider), and what its task reads of the synthetic stage
//! planned for it.

use gennaker_core::{CheckContext, Fields, ValidationReport};
use serde_json::{Map, Value};

use crate::task::{Task, TaskContext};
use gennaker_core::execution::{Execution, StageExecution};

/// Context key of a synthetic precondition stage: the precondition's `type`.
pub(crate) const PRECONDITION_TYPE: &str = "preconditionType";
/// Context key of a synthetic precondition stage: its index in the parent's list.
pub(crate) const PRECONDITION_INDEX: &str = "preconditionIndex";

/// A precondition type: the task that checks it at run time (registered under its
/// [`Task::name`], Orca's `…PreconditionTask`) and the save-time rules of its `context`.
///
/// The task runs in a synthetic stage whose context holds the precondition's `context`
/// (unevaluated: see [`PreconditionSite::evaluated_context`]) and its own
/// `failPipeline`. A precondition that does not hold is [`TaskResult::terminal`](crate::TaskResult::terminal), which
/// becomes STOPPED under `failPipeline: false`; one that asks for something this server
/// cannot check is [`TaskError::Unsupported`](crate::TaskError::Unsupported).
pub trait Precondition: Task {
    /// The `type` string (`clusterSize`).
    fn precondition_type(&self) -> &'static str;

    /// Save-time checks of the precondition's `context` object.
    fn check(
        &self,
        _context: &Fields<'_>,
        _check_context: &CheckContext<'_>,
        _report: &mut ValidationReport,
    ) {
    }
}

/// Where a synthetic precondition stage sits in its parent's `preconditions` list: what
/// its messages call it and which field they tell the user to fix.
#[derive(Debug, Clone, Copy)]
pub struct PreconditionSite<'a> {
    stage: &'a StageExecution,
}

impl<'a> PreconditionSite<'a> {
    /// The precondition `stage` checks.
    pub fn of(stage: &'a StageExecution) -> Self {
        Self { stage }
    }

    /// Its index in the parent's `preconditions`.
    pub fn index(&self) -> u64 {
        self.stage
            .context
            .get(PRECONDITION_INDEX)
            .and_then(Value::as_u64)
            .unwrap_or_default()
    }

    /// Its `type`.
    pub fn kind(&self) -> &'a str {
        self.stage
            .context
            .get(PRECONDITION_TYPE)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The name of the user's `checkPreconditions` stage it belongs to.
    pub fn stage_name(&self, execution: &'a Execution) -> &'a str {
        self.stage
            .parent_stage_id
            .as_deref()
            .and_then(|id| execution.stage(id))
            .map_or("checkPreconditions", |parent| parent.name.as_str())
    }

    /// `precondition 2 (stageStatus)`.
    pub fn label(&self) -> String {
        format!("precondition {} ({})", self.index() + 1, self.kind())
    }

    /// The JSON path of a field of its context in the stage config:
    /// `preconditions[1].context.stageName`.
    pub fn field(&self, name: &str) -> String {
        format!("preconditions[{}].context.{name}", self.index())
    }

    /// Its `context`, as written.
    pub fn raw_context(&self) -> Map<String, Value> {
        match self.stage.context.get("context") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }

    /// Its `context` with every `${…}` evaluated against the task's view of the
    /// execution (the stage leaves it as written), or why the precondition failed (for
    /// [`TaskResult::terminal`](crate::TaskResult::terminal)).
    pub fn evaluated_context(&self, ctx: &TaskContext<'_>) -> Result<Map<String, Value>, String> {
        let raw = Value::Object(self.raw_context());
        let transformed = ctx
            .services
            .expressions
            .transform(&raw, &ctx.expression_root());
        if let Some(failure) = transformed.failures.iter().find(|f| f.error.is_some()) {
            return Err(format!(
                "{} failed: `{}` could not be evaluated: {}",
                self.label(),
                failure.template,
                failure.message
            ));
        }
        match transformed.value {
            Value::Object(map) => Ok(map),
            _ => Ok(Map::new()),
        }
    }
}
