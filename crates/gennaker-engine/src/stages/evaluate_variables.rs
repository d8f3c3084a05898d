//! `evaluateVariables`: evaluates `variables` (`[{key, value}]`) in order, so a later
//! value may use an earlier key, and publishes each as an output.

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport};
use serde_json::{Map, Value};

use crate::stage::{StageDefinition, StageRegistry, TaskSpec};
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::StageExecution;
use gennaker_core::lenient::truthy;

pub(super) fn register(registry: &mut StageRegistry) {
    registry
        .stage(EvaluateVariablesStage)
        .task(EvaluateVariablesTask);
}

struct EvaluateVariablesStage;

impl StageDefinition for EvaluateVariablesStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            "evaluateVariables",
            Origin::Orca,
            "Evaluate Variables",
            "evaluate expressions into named outputs for later stages",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        check_evaluate_variables(stage, report);
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new("evaluateVariablesTask")]
    }

    fn deferred_context_keys(&self) -> &'static [&'static str] {
        &["variables"]
    }
}

struct EvaluateVariablesTask;

#[async_trait]
impl Task for EvaluateVariablesTask {
    fn name(&self) -> &'static str {
        "evaluateVariablesTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let variables = match ctx.stage.context.get("variables") {
            None | Some(Value::Null) => return Ok(TaskResult::succeeded()),
            Some(Value::Array(variables)) => variables,
            Some(other) => {
                return Err(TaskError::Permanent(format!(
                    "variables must be a list of {{\"key\": …, \"value\": …}}, not {other}"
                )));
            }
        };
        let expressions = &ctx.services.expressions;
        let mut root = ctx.expression_root();
        let mut outputs = Map::new();
        let mut summary = Map::new();
        let mut failed = Vec::new();
        for (i, variable) in variables.iter().enumerate() {
            let Some(key) = variable.get("key").and_then(Value::as_str) else {
                return Err(TaskError::Permanent(format!(
                    "variables[{i}] has no \"key\""
                )));
            };
            let raw = variable.get("value").cloned().unwrap_or(Value::Null);
            let transformed = expressions.transform(&raw, &root);
            if !transformed.failures.is_empty() {
                for (k, v) in transformed.evaluation_summary(ctx.now) {
                    summary.insert(format!("variables[{i}].{k}"), v);
                }
                failed.extend(
                    transformed
                        .failures
                        .iter()
                        .filter(|f| f.error.is_some())
                        .map(|f| format!("{key}: {}", f.message)),
                );
            }
            if let Value::Object(root) = &mut root {
                root.insert(key.to_owned(), transformed.value.clone());
            }
            outputs.insert(key.to_owned(), transformed.value);
        }
        let mut result =
            if !failed.is_empty() && truthy(ctx.stage.context.get("failOnFailedExpressions")) {
                TaskResult::terminal(format!(
                    "variables failed to evaluate: {}",
                    failed.join("; ")
                ))
            } else {
                TaskResult::succeeded()
            };
        if !summary.is_empty() {
            result = result.with_context("expressionEvaluationSummary", Value::Object(summary));
        }
        result.outputs = outputs;
        Ok(result)
    }

    fn inline(&self) -> bool {
        true
    }
}

fn check_evaluate_variables(stage: &Fields<'_>, report: &mut ValidationReport) {
    if !stage.has("variables") {
        report.push(
            Problem::error(stage.at("variables"), "evaluateVariables has no variables")
                .with_hint("add e.g. [{\"key\": \"version\", \"value\": \"${trigger.tag}\"}]"),
        );
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for (_, variable) in stage.objects("variables", "a variable", report) {
        if let Some(key) = variable.required_string("key", "the variable name", report)
            && !seen.insert(key.to_owned())
        {
            report.push(Problem::warning(
                variable.at("key"),
                format!("variable '{key}' is defined twice; the later value wins"),
            ));
        }
        if !variable.map.contains_key("value") {
            report.push(Problem::error(
                variable.at("value"),
                "the variable has no value",
            ));
        }
    }
}
