//! `checkPreconditions`: fails (or stops its branch) unless every precondition holds.
//!
//! As in Orca (`CheckPreconditionsStage`), the stage plans one synthetic before-stage
//! per entry of `preconditions[{type, context, failPipeline}]`, all in parallel, each
//! of the same type with `preconditionType`, `context` and its own `failPipeline`
//! (default true). A precondition that fails with `failPipeline: false` therefore ends
//! STOPPED rather than TERMINAL: its branch halts but the pipeline does not fail.
//!
//! Types: `expression` (`context.expression`, bare or `${…}`, must be true) and
//! `stageStatus` (`context.stageName` must have status `context.stageStatus`).
//! `clusterSize` needs a deployment provider and is refused with a clear error.

use async_trait::async_trait;
use gennaker_core::{
    CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport, type_name,
};
use serde_json::{Map, Value};

use crate::stage::{StageDefinition, StageRegistry, SyntheticSpec, TaskSpec, parallel};
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::{ExecutionStatus, StageExecution};

/// Registers the `checkPreconditions` stage and its tasks.
pub(super) fn register(registry: &mut StageRegistry) {
    registry
        .stage(CheckPreconditionsStage)
        .task(CheckPreconditionsTask)
        .task(ExpressionPreconditionTask)
        .task(StageStatusPreconditionTask)
        .task(UnsupportedPreconditionTask);
}

const STAGE_TYPE: &str = "checkPreconditions";

/// The precondition types this engine checks.
const SUPPORTED: &str = "expression, stageStatus";

/// Context keys of a synthetic precondition stage.
const PRECONDITION_TYPE: &str = "preconditionType";
const PRECONDITION_INDEX: &str = "preconditionIndex";

struct CheckPreconditionsStage;

/// A synthetic stage planned for one precondition (rather than the user's stage):
/// only those carry `preconditionType`, whatever their nesting.
fn is_precondition(stage: &StageExecution) -> bool {
    stage.context.contains_key(PRECONDITION_TYPE)
}

impl StageDefinition for CheckPreconditionsStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            STAGE_TYPE,
            Origin::Orca,
            "Check Preconditions",
            "fail unless expressions, cluster sizes or other stages' statuses hold",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        check_preconditions(stage, report);
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        if !is_precondition(stage) {
            // Runs after the preconditions passed; reports a malformed list.
            return vec![TaskSpec::new("checkPreconditionsTask")];
        }
        let task = match stage.context.get(PRECONDITION_TYPE).and_then(Value::as_str) {
            Some("expression") => "expressionPreconditionTask",
            Some("stageStatus") => "stageStatusPreconditionTask",
            _ => "unsupportedPreconditionTask",
        };
        vec![TaskSpec {
            name: "checkPrecondition".into(),
            implementing_class: task,
        }]
    }

    /// The tasks evaluate the preconditions themselves, so that an error can quote the
    /// expression as written rather than its value.
    fn deferred_context_keys(&self) -> &'static [&'static str] {
        &["preconditions", "context"]
    }

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        if is_precondition(stage) {
            return Vec::new();
        }
        let Some(Value::Array(preconditions)) = stage.context.get("preconditions") else {
            return Vec::new();
        };
        let children = preconditions
            .iter()
            .enumerate()
            .map(|(index, precondition)| {
                let kind = precondition
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut context = Map::new();
                context.insert(PRECONDITION_TYPE.into(), Value::String(kind.to_owned()));
                context.insert(PRECONDITION_INDEX.into(), Value::from(index));
                context.insert(
                    "context".into(),
                    precondition
                        .get("context")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Map::new())),
                );
                // Orca's Precondition.failPipeline defaults to true; a child fails on
                // its own terms, not its parent's.
                let fail_pipeline = match precondition.get("failPipeline") {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
                    _ => true,
                };
                context.insert("failPipeline".into(), Value::Bool(fail_pipeline));
                let name = format!("Check precondition ({kind})");
                (STAGE_TYPE.to_owned(), name, context)
            })
            .collect();
        parallel(children)
    }
}

/// The user's stage, after every precondition passed: checks the list was usable.
struct CheckPreconditionsTask;

#[async_trait]
impl Task for CheckPreconditionsTask {
    fn name(&self) -> &'static str {
        "checkPreconditionsTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        match ctx.stage.context.get("preconditions") {
            // No preconditions is vacuously true, as in Orca.
            None | Some(Value::Null) | Some(Value::Array(_)) => Ok(TaskResult::succeeded()),
            Some(other) => Err(TaskError::Permanent(format!(
                "preconditions must be a list like [{{\"type\": \"expression\", \"context\": {{\"expression\": \"parameters.env == 'prod'\"}}}}], not {other}"
            ))),
        }
    }

    fn inline(&self) -> bool {
        true
    }
}

/// Where a precondition stage's error points: `precondition 2 (stageStatus)`.
fn label(stage: &StageExecution) -> String {
    let index = stage
        .context
        .get(PRECONDITION_INDEX)
        .and_then(Value::as_u64)
        .map_or_else(String::new, |i| format!(" {}", i + 1));
    let kind = stage
        .context
        .get(PRECONDITION_TYPE)
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("precondition{index} ({kind})")
}

/// The JSON path of a precondition's field in the stage config, for "how to fix".
fn field(stage: &StageExecution, name: &str) -> String {
    let index = stage
        .context
        .get(PRECONDITION_INDEX)
        .and_then(Value::as_u64)
        .unwrap_or_default();
    format!("preconditions[{index}].context.{name}")
}

fn precondition_context(stage: &StageExecution) -> Map<String, Value> {
    match stage.context.get("context") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// `expression`: `context.expression` must evaluate to true (or "true").
struct ExpressionPreconditionTask;

/// What an expression precondition came to.
enum Verdict {
    Holds,
    Fails(String),
}

fn verdict_of(value: &Value, text: &str) -> Verdict {
    match value {
        Value::Bool(true) => Verdict::Holds,
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Verdict::Holds,
        Value::Bool(false) => Verdict::Fails(format!("expression `{text}` is false")),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => {
            Verdict::Fails(format!("expression `{text}` is false"))
        }
        other => Verdict::Fails(format!(
            "expression `{text}` evaluated to {other}, not true or false; make it a boolean test"
        )),
    }
}

#[async_trait]
impl Task for ExpressionPreconditionTask {
    fn name(&self) -> &'static str {
        "expressionPreconditionTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let label = label(ctx.stage);
        let mut context = precondition_context(ctx.stage);
        let (verdict, result) = match context.get("expression") {
            // Already a value: written as a JSON boolean, or evaluated by an engine that
            // did not defer the key.
            Some(value @ Value::Bool(_)) => (verdict_of(value, &value.to_string()), value.clone()),
            Some(Value::String(text))
                if text.trim().eq_ignore_ascii_case("true")
                    || text.trim().eq_ignore_ascii_case("false") =>
            {
                let value = Value::String(text.clone());
                (verdict_of(&value, text), value)
            }
            // Bare (`parameters.env == 'prod'`) or wrapped (`${…}`): evaluate it now.
            Some(Value::String(text)) => match ctx.evaluate(text) {
                Ok(value) => (verdict_of(&value, text), value),
                Err(error) => {
                    return Ok(TaskResult::terminal(format!(
                        "{label} failed: expression `{text}` could not be evaluated: {error}; fix {}",
                        field(ctx.stage, "expression")
                    )));
                }
            },
            Some(other) => {
                return Err(TaskError::Permanent(format!(
                    "{label}: context.expression must be a string like \"parameters.env == 'prod'\", not {other}; fix {}",
                    field(ctx.stage, "expression")
                )));
            }
            None => {
                return Err(TaskError::Permanent(format!(
                    "{label} has no context.expression: set {} to a boolean expression, e.g. \"parameters.env == 'prod'\"",
                    field(ctx.stage, "expression")
                )));
            }
        };
        // Orca records the outcome next to the expression.
        context.insert("expressionResult".into(), result);
        let outcome = match verdict {
            Verdict::Holds => TaskResult::succeeded(),
            Verdict::Fails(why) => TaskResult::terminal(format!("{label} failed: {why}")),
        };
        Ok(outcome.with_context("context", Value::Object(context)))
    }

    fn inline(&self) -> bool {
        true
    }
}

/// `stageStatus`: the stage named `context.stageName` must have status
/// `context.stageStatus`.
struct StageStatusPreconditionTask;

#[async_trait]
impl Task for StageStatusPreconditionTask {
    fn name(&self) -> &'static str {
        "stageStatusPreconditionTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let label = label(ctx.stage);
        // The context was left as written (see deferred_context_keys): evaluate any
        // `${…}` in it now.
        let raw = Value::Object(precondition_context(ctx.stage));
        // The task's root, so `#pipelineId` works here as in the stage's other fields.
        let transformed = ctx
            .services
            .expressions
            .transform(&raw, &ctx.expression_root());
        if let Some(failure) = transformed.failures.iter().find(|f| f.error.is_some()) {
            return Ok(TaskResult::terminal(format!(
                "{label} failed: `{}` could not be evaluated: {}",
                failure.template, failure.message
            )));
        }
        let context = transformed.value;
        let text = |key: &str| {
            context
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let Some(stage_name) = text("stageName") else {
            return Err(TaskError::Permanent(format!(
                "{label} has no context.stageName: set {} to the name of the stage to check",
                field(ctx.stage, "stageName")
            )));
        };
        let Some(wanted) = text("stageStatus") else {
            return Err(TaskError::Permanent(format!(
                "{label} has no context.stageStatus: set {} to the expected status, e.g. \"SUCCEEDED\"",
                field(ctx.stage, "stageStatus")
            )));
        };
        let Some(expected) = ExecutionStatus::parse(&wanted) else {
            let all: Vec<&str> = gennaker_core::execution::ALL_STATUSES
                .iter()
                .map(|s| s.as_str())
                .collect();
            return Err(TaskError::Permanent(format!(
                "{label}: '{wanted}' is not a stage status; set {} to one of {}",
                field(ctx.stage, "stageStatus"),
                all.join(", ")
            )));
        };
        // Prefer the user's stages over synthetic ones of the same name (Orca takes the
        // first match).
        let found = ctx
            .execution
            .top_level_stages()
            .find(|s| s.name == stage_name)
            .or_else(|| ctx.execution.stages.iter().find(|s| s.name == stage_name));
        let Some(found) = found else {
            let names: Vec<&str> = ctx
                .execution
                .top_level_stages()
                .map(|s| s.name.as_str())
                .collect();
            let hint = names
                .iter()
                .map(|n| (strsim::levenshtein(&stage_name, n), *n))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d)
                .map_or_else(
                    || format!("the stages are: {}", names.join(", ")),
                    |(_, n)| format!("did you mean '{n}'?"),
                );
            return Ok(TaskResult::terminal(format!(
                "{label} failed: there is no stage named '{stage_name}' ({hint}); fix {}",
                field(ctx.stage, "stageName")
            )));
        };
        if found.status == expected {
            Ok(TaskResult::succeeded())
        } else {
            Ok(TaskResult::terminal(format!(
                "{label} failed: stage '{stage_name}' is {}, expected {expected}",
                found.status
            )))
        }
    }

    fn inline(&self) -> bool {
        true
    }
}

/// Any other `type`: fails with what is supported.
struct UnsupportedPreconditionTask;

#[async_trait]
impl Task for UnsupportedPreconditionTask {
    fn name(&self) -> &'static str {
        "unsupportedPreconditionTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let index = ctx
            .stage
            .context
            .get(PRECONDITION_INDEX)
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let message = match ctx.str(PRECONDITION_TYPE).unwrap_or_default() {
            "" => format!(
                "precondition {} has no type: set preconditions[{index}].type to one of {SUPPORTED}",
                index + 1
            ),
            "clusterSize" => format!(
                "precondition {} (clusterSize) is not supported by Gennaker yet; replace preconditions[{index}] with an expression or stageStatus precondition",
                index + 1
            ),
            other => format!(
                "precondition {} has unknown type '{other}': set preconditions[{index}].type to one of {SUPPORTED}",
                index + 1
            ),
        };
        Err(TaskError::Permanent(message))
    }

    fn inline(&self) -> bool {
        true
    }
}

const PRECONDITION_TYPES: &[&str] = &["expression", "clusterSize", "stageStatus"];
const COMPARISONS: &[&str] = &["<", "<=", "==", "!=", ">=", ">"];

fn check_preconditions(stage: &Fields<'_>, report: &mut ValidationReport) {
    if !stage.has("preconditions") {
        report.push(
            Problem::error(stage.at("preconditions"), "checkPreconditions has no preconditions")
                .with_hint("add e.g. {\"type\": \"expression\", \"context\": {\"expression\": \"${trigger.user != 'anonymous'}\"}}"),
        );
        return;
    }
    for (_, precondition) in stage.objects("preconditions", "a precondition", report) {
        precondition.boolean("failPipeline", report);
        if precondition
            .required_string("type", "the precondition type", report)
            .is_none()
        {
            continue;
        }
        let Some(kind) = precondition.one_of("type", PRECONDITION_TYPES, report) else {
            continue;
        };
        let Some(context) = precondition.object("context", report) else {
            report.push(Problem::error(
                precondition.at("context"),
                format!("a {kind} precondition needs a context"),
            ));
            continue;
        };
        match kind {
            "expression" => match context.get("expression") {
                Some(Value::String(_) | Value::Bool(_)) => {}
                Some(other) => report.push(Problem::error(
                    context.at("expression"),
                    format!("expression must be a string, not {}", type_name(other)),
                )),
                None => report.push(Problem::error(
                    context.at("expression"),
                    "an expression precondition needs context.expression",
                )),
            },
            "clusterSize" => {
                context.required_string("cluster", "the cluster to count", report);
                if !context.has("credentials") && !context.has("account") {
                    context.require_account(report);
                }
                context.one_of("comparison", COMPARISONS, report);
                context.non_negative("expected", report);
                context.strings("regions", report);
            }
            "stageStatus" => {
                context.required_string("stageName", "the stage whose status is checked", report);
                context.required_string("stageStatus", "the expected status", report);
            }
            _ => {}
        }
    }
}
