//! The generic precondition types of `checkPreconditions`: `expression` (must be true)
//! and `stageStatus` (another stage must have a given status).

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Problem, ValidationReport, type_name};
use serde_json::Value;

use crate::precondition::{Precondition, PreconditionSite};
use crate::stage::StageRegistry;
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::ExecutionStatus;

/// Registers `expression` and `stageStatus` (and with them `checkPreconditions`).
pub(super) fn register(registry: &mut StageRegistry) {
    registry
        .precondition(ExpressionPrecondition)
        .precondition(StageStatusPrecondition);
}

/// `expression`: `context.expression` must evaluate to true (or "true").
struct ExpressionPrecondition;

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

impl Precondition for ExpressionPrecondition {
    fn precondition_type(&self) -> &'static str {
        "expression"
    }

    fn check(&self, context: &Fields<'_>, _: &CheckContext<'_>, report: &mut ValidationReport) {
        match context.get("expression") {
            Some(Value::String(_) | Value::Bool(_)) => {}
            Some(other) => report.push(Problem::error(
                context.at("expression"),
                format!("expression must be a string, not {}", type_name(other)),
            )),
            None => report.push(Problem::error(
                context.at("expression"),
                "an expression precondition needs context.expression",
            )),
        }
    }
}

#[async_trait]
impl Task for ExpressionPrecondition {
    fn name(&self) -> &'static str {
        "expressionPreconditionTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let site = PreconditionSite::of(ctx.stage);
        let label = site.label();
        let mut context = site.raw_context();
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
                        site.field("expression")
                    )));
                }
            },
            Some(other) => {
                return Err(TaskError::Permanent(format!(
                    "{label}: context.expression must be a string like \"parameters.env == 'prod'\", not {other}; fix {}",
                    site.field("expression")
                )));
            }
            None => {
                return Err(TaskError::Permanent(format!(
                    "{label} has no context.expression: set {} to a boolean expression, e.g. \"parameters.env == 'prod'\"",
                    site.field("expression")
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
struct StageStatusPrecondition;

impl Precondition for StageStatusPrecondition {
    fn precondition_type(&self) -> &'static str {
        "stageStatus"
    }

    fn check(&self, context: &Fields<'_>, _: &CheckContext<'_>, report: &mut ValidationReport) {
        context.required_string("stageName", "the stage whose status is checked", report);
        context.required_string("stageStatus", "the expected status", report);
    }
}

#[async_trait]
impl Task for StageStatusPrecondition {
    fn name(&self) -> &'static str {
        "stageStatusPreconditionTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let site = PreconditionSite::of(ctx.stage);
        let label = site.label();
        let context = match site.evaluated_context(ctx) {
            Ok(context) => context,
            Err(why) => return Ok(TaskResult::terminal(why)),
        };
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
                site.field("stageName")
            )));
        };
        let Some(wanted) = text("stageStatus") else {
            return Err(TaskError::Permanent(format!(
                "{label} has no context.stageStatus: set {} to the expected status, e.g. \"SUCCEEDED\"",
                site.field("stageStatus")
            )));
        };
        let Some(expected) = ExecutionStatus::parse(&wanted) else {
            let all: Vec<&str> = gennaker_core::execution::ALL_STATUSES
                .iter()
                .map(|s| s.as_str())
                .collect();
            return Err(TaskError::Permanent(format!(
                "{label}: '{wanted}' is not a stage status; set {} to one of {}",
                site.field("stageStatus"),
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
                site.field("stageName")
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
