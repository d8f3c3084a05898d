//! `checkPreconditions`: fails (or stops its branch) unless every precondition holds.
//!
//! As in Orca (`CheckPreconditionsStage`), the stage plans one synthetic before-stage
//! per entry of `preconditions[{type, context, failPipeline}]`, all in parallel, each
//! of the same type with `preconditionType`, `context` and its own `failPipeline`
//! (default true). A precondition that fails with `failPipeline: false` therefore ends
//! STOPPED rather than TERMINAL: its branch halts but the pipeline does not fail.
//!
//! The precondition types are pluggable ([`StageRegistry::precondition`]): the engine
//! registers `expression` and `stageStatus`, the deployment crate `clusterSize`. A type
//! that is not registered fails with [`TaskError::Unsupported`], so the execution ends
//! TERMINAL even under `failPipeline: false`: "not checked" never passes for "holds".

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport};
use serde_json::{Map, Value};

use crate::precondition::{PRECONDITION_INDEX, PRECONDITION_TYPE, PreconditionSite};
use crate::stage::{
    PreconditionTypes, StageDefinition, StageRegistry, SyntheticSpec, TaskSpec, parallel,
};
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::StageExecution;

/// (Re-)registers the `checkPreconditions` stage and its tasks, for the precondition
/// types registered so far.
pub(crate) fn register(registry: &mut StageRegistry) {
    let types = registry.preconditions().clone();
    registry
        .stage(CheckPreconditionsStage {
            types: types.clone(),
        })
        .task(CheckPreconditionsTask)
        .task(UnsupportedPreconditionTask {
            supported: types.keys().copied().collect(),
        });
}

const STAGE_TYPE: &str = "checkPreconditions";

/// Spinnaker's precondition types (Orca's `PreconditionTask`s): one not registered here
/// is accepted at save time with a warning, as a Spinnaker-only stage type is.
const SPINNAKER_TYPES: &[&str] = &["expression", "clusterSize", "stageStatus"];

/// The task of a precondition whose type is not registered.
const UNSUPPORTED_TASK: &str = "unsupportedPreconditionTask";

struct CheckPreconditionsStage {
    types: PreconditionTypes,
}

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

    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
        check_preconditions(&self.types, stage, context, report);
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        if !is_precondition(stage) {
            // Runs after the preconditions passed; reports a malformed list.
            return vec![TaskSpec::new("checkPreconditionsTask")];
        }
        let kind = PreconditionSite::of(stage).kind();
        let task = self.types.get(kind).map_or(UNSUPPORTED_TASK, |p| p.name());
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

/// A precondition of a type that is not registered: unsupported, whatever its
/// `failPipeline`, naming the user's stage, the field and the types there are.
struct UnsupportedPreconditionTask {
    supported: Vec<&'static str>,
}

#[async_trait]
impl Task for UnsupportedPreconditionTask {
    fn name(&self) -> &'static str {
        UNSUPPORTED_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let site = PreconditionSite::of(ctx.stage);
        let index = site.index();
        let parent = site.stage_name(ctx.execution);
        let what = match site.kind() {
            "" => "has no type".to_owned(),
            kind => format!("has type '{kind}', which this server does not check"),
        };
        Err(TaskError::Unsupported(format!(
            "precondition {} of stage '{parent}' {what}: set preconditions[{index}].type to one of {}",
            index + 1,
            self.supported.join(", ")
        )))
    }

    fn inline(&self) -> bool {
        true
    }
}

fn check_preconditions(
    types: &PreconditionTypes,
    stage: &Fields<'_>,
    check_context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    if !stage.has("preconditions") {
        report.push(
            Problem::error(stage.at("preconditions"), "checkPreconditions has no preconditions")
                .with_hint("add e.g. {\"type\": \"expression\", \"context\": {\"expression\": \"${trigger.user != 'anonymous'}\"}}"),
        );
        return;
    }
    let supported: Vec<&str> = types.keys().copied().collect();
    for (_, precondition) in stage.objects("preconditions", "a precondition", report) {
        precondition.boolean("failPipeline", report);
        let Some(kind) = precondition.required_string("type", "the precondition type", report)
        else {
            continue;
        };
        if !types.contains_key(kind) && SPINNAKER_TYPES.contains(&kind) {
            report.push(
                Problem::warning(
                    precondition.at("type"),
                    format!(
                        "precondition type '{kind}' is Spinnaker's, but this server does not check it: the pipeline is accepted, but a run stops (TERMINAL) at this precondition"
                    ),
                )
                .with_hint(format!("use one of: {}", supported.join(", "))),
            );
            continue;
        }
        let Some(kind) = precondition.one_of("type", &supported, report) else {
            continue;
        };
        let Some(context) = precondition.object("context", report) else {
            report.push(Problem::error(
                precondition.at("context"),
                format!("a {kind} precondition needs a context"),
            ));
            continue;
        };
        if let Some(definition) = types.get(kind) {
            definition.check(&context, check_context, report);
        }
    }
}

#[cfg(test)]
mod tests {
    use gennaker_core::{Severity, validate_pipeline_value};
    use serde_json::json;

    use crate::stage::StageRegistry;

    /// The problems (severity, path, message) of a pipeline with one
    /// `checkPreconditions` stage, checked against the engine's own stage types.
    fn problems(preconditions: serde_json::Value) -> Vec<(Severity, String, String)> {
        let pipeline = json!({"application": "shop", "name": "p", "stages": [
            {"refId": "1", "type": "checkPreconditions", "preconditions": preconditions}
        ]});
        validate_pipeline_value(&pipeline, StageRegistry::standard().catalog())
            .problems
            .into_iter()
            .map(|p| (p.severity, p.path, p.message))
            .collect()
    }

    #[test]
    fn only_registered_types_are_checked_and_spinnakers_others_are_warned_about() {
        assert_eq!(
            StageRegistry::standard().precondition_types(),
            ["expression", "stageStatus"]
        );
        assert!(
            problems(json!([{"type": "expression", "context": {"expression": "true"}}])).is_empty()
        );
        let spinnaker = problems(json!([{"type": "clusterSize", "context": {}}]));
        assert_eq!(spinnaker.len(), 1, "{spinnaker:?}");
        assert_eq!(spinnaker[0].0, Severity::Warning);
        assert_eq!(spinnaker[0].1, "$.stages[0].preconditions[0].type");
        assert!(
            spinnaker[0].2.contains("a run stops (TERMINAL)"),
            "{spinnaker:?}"
        );
        let typo = problems(json!([{"type": "stagestatus", "context": {}}]));
        assert_eq!(typo.len(), 1, "{typo:?}");
        assert_eq!(typo[0].0, Severity::Error);
        assert!(
            typo[0].2.contains("did you mean 'stageStatus'?"),
            "{typo:?}"
        );
        let fields = problems(json!([{"type": "stageStatus", "context": {"stageName": "a"}}]));
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(
            fields[0].1, "$.stages[0].preconditions[0].context.stageStatus",
            "a type's own rules run"
        );
    }
}
