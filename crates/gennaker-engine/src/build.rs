//! Turning a pipeline config and a run request into a new execution.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use gennaker_core::execution::{
    Authentication, Execution, ExecutionStatus, ExecutionType, StageExecution,
};
use gennaker_core::lenient::Lenient;
use gennaker_core::{ParameterDefinition, Pipeline};

/// A request to run a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// Parameter values by name.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Artifacts handed to the execution (`type`, `name`, `version`, `reference`, …).
    #[serde(default)]
    pub artifacts: Vec<Value>,
    /// De-duplicates starts: a second request with the same id is refused.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Extra trigger fields (`type` defaults to `manual`).
    #[serde(default)]
    pub trigger: Map<String, Value>,
}

/// Who asks, and from where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requester {
    /// The user.
    pub user: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// `api`, `cli`, `pipeline`, …
    pub origin: String,
}

/// Why a pipeline cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A required parameter has no value and no default.
    #[error(
        "parameter '{name}' is required: pass it with -p {name}=VALUE (or \"parameters\": {{\"{name}\": …}})"
    )]
    MissingParameter {
        /// The parameter.
        name: String,
    },
    /// A parameter with options got a value that is not one of them.
    #[error("parameter '{name}' must be one of {options:?}, not '{value}'")]
    NotAnOption {
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// The allowed values.
        options: Vec<String>,
    },
    /// The pipeline is disabled.
    #[error("pipeline '{0}' is disabled: enable it (\"disabled\": false) before running it")]
    Disabled(String),
    /// The stored config cannot be run.
    #[error("pipeline config cannot run: {0}")]
    InvalidConfig(String),
}

/// A new id for an execution or stage: a UUID v7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Builds a NOT_STARTED execution of `pipeline` (a stored pipeline config).
pub fn pipeline_execution(
    application: &str,
    pipeline: &Pipeline,
    request: &RunRequest,
    requester: &Requester,
    now: i64,
) -> Result<Execution, BuildError> {
    let name = pipeline.name.clone();
    let flag =
        |value: &Option<Lenient<bool>>| value.as_ref().and_then(Lenient::as_bool) == Some(true);
    if flag(&pipeline.disabled) {
        return Err(BuildError::Disabled(name));
    }
    let parameters = resolve_parameters(&pipeline.parameter_config, &request.parameters)?;
    let mut trigger = request.trigger.clone();
    trigger
        .entry("type")
        .or_insert_with(|| Value::String("manual".into()));
    trigger.insert("user".into(), Value::String(requester.user.clone()));
    trigger.insert("parameters".into(), Value::Object(parameters));
    trigger.insert("artifacts".into(), Value::Array(request.artifacts.clone()));
    if let Some(correlation) = &request.correlation_id {
        trigger.insert("correlationId".into(), Value::String(correlation.clone()));
    }
    let config = pipeline.to_value();
    let stages = config
        .get("stages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(stage_from_config)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Execution {
        id: new_id(),
        execution_type: ExecutionType::Pipeline,
        application: application.to_owned(),
        name,
        pipeline_config_id: pipeline.id.clone(),
        status: ExecutionStatus::NotStarted,
        build_time: now,
        start_time: None,
        end_time: None,
        canceled: false,
        canceled_by: None,
        cancellation_reason: None,
        limit_concurrent: flag(&pipeline.limit_concurrent),
        max_concurrent_executions: pipeline
            .max_concurrent_executions
            .as_ref()
            .and_then(Lenient::as_u64)
            .and_then(|n| i64::try_from(n).ok())
            .unwrap_or(0),
        keep_waiting_pipelines: flag(&pipeline.keep_waiting_pipelines),
        authentication: Authentication {
            user: requester.user.clone(),
            roles: requester.roles.clone(),
        },
        paused: None,
        origin: requester.origin.clone(),
        trigger,
        spel_evaluator: pipeline.spel_evaluator.clone(),
        stages,
        pipeline_config: config,
    })
}

/// An ad-hoc execution (Spinnaker's "orchestration", a Gate `POST /applications/{app}/tasks`):
/// the `job` stages run one after the other, in order.
pub fn orchestration_execution(
    application: &str,
    description: &str,
    job: &[Value],
    requester: &Requester,
    now: i64,
) -> Result<Execution, BuildError> {
    let stages: Vec<Value> = job
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let mut stage = stage.as_object().cloned().unwrap_or_default();
            stage.insert("refId".into(), Value::String((index + 1).to_string()));
            let requisites = if index == 0 {
                Vec::new()
            } else {
                vec![Value::String(index.to_string())]
            };
            stage.insert("requisiteStageRefIds".into(), Value::Array(requisites));
            Value::Object(stage)
        })
        .collect();
    let config = serde_json::json!({ "name": description, "stages": stages });
    let pipeline = Pipeline::from_value(config)
        .map_err(|err| BuildError::InvalidConfig(format!("the task's job: {err}")))?;
    let mut execution = pipeline_execution(
        application,
        &pipeline,
        &RunRequest::default(),
        requester,
        now,
    )?;
    execution.execution_type = ExecutionType::Orchestration;
    Ok(execution)
}

/// A stage of the config as a NOT_STARTED stage execution; every field but `refId`
/// and `requisiteStageRefIds` becomes its context, as in Orca.
pub fn stage_from_config(config: &Value) -> Result<StageExecution, BuildError> {
    let Some(fields) = config.as_object() else {
        return Err(BuildError::InvalidConfig("a stage is not an object".into()));
    };
    let ref_id = fields
        .get("refId")
        .and_then(id_text)
        .ok_or_else(|| BuildError::InvalidConfig("a stage has no refId".into()))?;
    let stage_type = fields
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| BuildError::InvalidConfig(format!("stage {ref_id} has no type")))?
        .to_owned();
    let requisites = fields
        .get("requisiteStageRefIds")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(id_text).collect())
        .unwrap_or_default();
    let mut context = fields.clone();
    context.remove("refId");
    context.remove("requisiteStageRefIds");
    Ok(StageExecution {
        id: new_id(),
        name: fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&stage_type)
            .to_owned(),
        ref_id,
        stage_type,
        status: ExecutionStatus::NotStarted,
        start_time: None,
        end_time: None,
        context,
        outputs: Map::new(),
        tasks: Vec::new(),
        requisite_stage_ref_ids: requisites,
        parent_stage_id: None,
        synthetic_stage_owner: None,
        last_modified: None,
        paused_ms: 0,
        restarts: 0,
    })
}

/// Deck writes refIds as strings or numbers.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Applies `parameterConfig`: defaults for what is missing, required ones present,
/// values with options among them. Parameters the config does not declare pass through.
fn resolve_parameters(
    declared: &[ParameterDefinition],
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, BuildError> {
    let mut resolved = given.clone();
    let flag =
        |value: &Option<Lenient<bool>>| value.as_ref().and_then(Lenient::as_bool) == Some(true);
    for parameter in declared {
        let name = parameter.name.as_str();
        if name.is_empty() {
            continue;
        }
        let present = resolved.get(name).is_some_and(|v| !is_blank(v));
        if !present {
            match &parameter.default {
                Some(default) if !is_blank(default) => {
                    resolved.insert(name.to_owned(), default.clone());
                }
                _ if flag(&parameter.required) => {
                    return Err(BuildError::MissingParameter {
                        name: name.to_owned(),
                    });
                }
                _ => {
                    resolved
                        .entry(name.to_owned())
                        .or_insert(Value::String(String::new()));
                }
            }
        }
        if flag(&parameter.has_options)
            && let Some(value) = resolved.get(name)
            && !is_blank(value)
        {
            let allowed: Vec<String> = parameter
                .options
                .iter()
                .filter_map(|o| o.get("value"))
                .map(text)
                .collect();
            let value = text(value);
            if !allowed.is_empty() && !allowed.contains(&value) {
                return Err(BuildError::NotAnOption {
                    name: name.to_owned(),
                    value,
                    options: allowed,
                });
            }
        }
    }
    Ok(resolved)
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "id": "p1", "name": "Deploy", "limitConcurrent": true,
            "parameterConfig": [
                {"name": "env", "required": true, "hasOptions": true, "options": [{"value": "staging"}, {"value": "prod"}]},
                {"name": "region", "default": "eu-west-1"},
                {"name": "note"}
            ],
            "stages": [
                {"refId": 1, "type": "wait", "name": "Wait", "waitTime": 5},
                {"refId": "2", "requisiteStageRefIds": [1], "type": "evaluateVariables"}
            ]
        })
    }

    fn requester() -> Requester {
        Requester {
            user: "alice".into(),
            roles: vec![],
            origin: "api".into(),
        }
    }

    fn run(parameters: Value) -> Result<Execution, BuildError> {
        let request = RunRequest {
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            ..RunRequest::default()
        };
        let pipeline = Pipeline::from_value(config()).unwrap_or_else(|e| panic!("{e}"));
        pipeline_execution("shop", &pipeline, &request, &requester(), 1000)
    }

    #[test]
    fn builds_stages_and_trigger_from_config() {
        let execution = run(json!({"env": "prod"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(execution.status, ExecutionStatus::NotStarted);
        assert!(execution.limit_concurrent);
        assert_eq!(execution.stages.len(), 2);
        assert_eq!(execution.stages[0].ref_id, "1");
        assert_eq!(execution.stages[1].requisite_stage_ref_ids, vec!["1"]);
        assert_eq!(execution.stages[1].name, "evaluateVariables");
        assert!(!execution.stages[0].context.contains_key("refId"));
        assert_eq!(execution.stages[0].context["waitTime"], 5);
        assert_eq!(execution.trigger["type"], "manual");
        assert_eq!(execution.trigger["user"], "alice");
        assert_eq!(
            Value::Object(execution.parameters()),
            json!({"env": "prod", "region": "eu-west-1", "note": ""})
        );
    }

    #[test]
    fn required_parameters_and_options_are_enforced() {
        assert_eq!(
            run(json!({})).unwrap_err(),
            BuildError::MissingParameter { name: "env".into() }
        );
        let err = run(json!({"env": "qa"})).unwrap_err();
        assert!(err.to_string().contains("must be one of"), "{err}");
    }

    #[test]
    fn disabled_pipelines_do_not_run() {
        let mut config = config();
        config["disabled"] = json!(true);
        let pipeline = Pipeline::from_value(config).unwrap_or_else(|e| panic!("{e}"));
        let err = pipeline_execution("shop", &pipeline, &RunRequest::default(), &requester(), 0)
            .unwrap_err();
        assert_eq!(err, BuildError::Disabled("Deploy".into()));
    }
}
