//! The pipeline config as Front50 stores it, typed where Gennaker reads it and lossless
//! everywhere: unknown keys live in `extra`, key order and empty values are restored on
//! write, and fields whose JSON form varies in the wild are [`Lenient`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lenient::{Lenient, RefId};
use crate::shape::{Shape, shaped_serde};

/// A stored pipeline config (Front50's `Pipeline`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Pipeline {
    /// Config id (a UUID); assigned by the store when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Owning application. Required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application: String,
    /// Name, unique (case-insensitively) within the application. Required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `"templatedPipeline"` for a pipeline built from a template; absent otherwise.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub pipeline_type: Option<String>,
    /// Templated pipeline schema (`"v2"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Free text shown in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The stage DAG.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// What starts the pipeline automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// Parameters a run may (or must) supply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_config: Vec<ParameterDefinition>,
    /// Pipeline-level notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
    /// Artifacts the pipeline expects from its trigger, a prior run or a default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_artifacts: Vec<ExpectedArtifact>,
    /// Queue a run while another run of this pipeline is RUNNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_concurrent: Option<Lenient<bool>>,
    /// A cap on concurrent runs when `limitConcurrent` is off (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_executions: Option<Lenient<u64>>,
    /// With `limitConcurrent`: keep every queued run (true) or only the newest (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_waiting_pipelines: Option<Lenient<bool>>,
    /// Triggers do not fire for a disabled pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Lenient<bool>>,
    /// Expression evaluator version (`"v4"`; absent means `"v3"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spel_evaluator: Option<String>,
    /// Position in the UI's pipeline list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Lenient<u64>>,
    /// Who saved this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<String>,
    /// When this revision was saved: epoch millis, as a string in Front50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_ts: Option<Lenient<String>>,
    /// Roles whose permissions automated triggers run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Lenient<Vec<String>>>,
    /// The service account automated triggers run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// UI lock: `{ui, allowUnlockUi, description}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<Value>,
    /// `[{name, value}]` labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    /// Template reference of a templated pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    /// Every other key, verbatim (`variables`, `appConfig`, `parallel`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Pipeline);

/// The error of [`Pipeline::from_value`]: the JSON does not fit the model.
///
/// Run [`crate::validate_pipeline_value`] first to get every problem with its path; this
/// error only carries serde's first complaint.
#[derive(Debug, thiserror::Error)]
#[error("not a pipeline config: {0}")]
pub struct ModelError(#[from] serde_json::Error);

impl Pipeline {
    /// An empty pipeline of `application` named `name` (the other fields are public:
    /// set them on the value).
    pub fn new(application: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            application: application.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Reads a pipeline from its JSON value.
    pub fn from_value(value: Value) -> Result<Self, ModelError> {
        Ok(serde_json::from_value(value)?)
    }

    /// Writes the pipeline as JSON: for a pipeline read by [`Pipeline::from_value`] and
    /// not changed, the same value it was read from, in the same key order.
    pub fn to_value(&self) -> Value {
        // Serializing these types to a Value cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A top-level key not modelled as a field.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.extra.get(key)
    }

    /// The stage with this refId (compared as strings, as Orca does).
    pub fn stage(&self, ref_id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.ref_id.key() == ref_id)
    }
}

/// One stage of a pipeline. Everything but `refId` and `requisiteStageRefIds` becomes the
/// stage context at run time; type-specific fields live in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Stage {
    /// The stage's id in the DAG.
    pub ref_id: RefId,
    /// The stages this one waits for: none = a root, several = a join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requisite_stage_ref_ids: Vec<RefId>,
    /// The stage type (`wait`, `deploy`, …).
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub stage_type: String,
    /// Display name; `#stage('name')` looks stages up by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Skip the stage unless the expression is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_enabled: Option<Lenient<StageEnabled>>,
    /// On failure, fail the pipeline (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_pipeline: Option<Lenient<bool>>,
    /// On failure, mark FAILED_CONTINUE and run downstream stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_pipeline: Option<Lenient<bool>>,
    /// On failure, let other branches finish, then fail the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_other_branches_then_fail: Option<Lenient<bool>>,
    /// Stage timeout; also inherited by synthetic stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_timeout_ms: Option<Lenient<u64>>,
    /// Only run within `restrictedExecutionWindow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict_execution_during_time_window: Option<Lenient<bool>>,
    /// `{whitelist[{startHour,startMin,endHour,endMin}], days[], jitter{}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_execution_window: Option<Value>,
    /// Whether `notifications` are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_notifications: Option<Lenient<bool>>,
    /// Stage-level notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
    /// A failed expression in this stage fails it (instead of keeping the raw text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_failed_expressions: Option<Lenient<bool>>,
    /// Free-text notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// Type-specific fields and every other key, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Stage);

impl Stage {
    /// A new stage with just an id and a type.
    pub fn new(ref_id: impl Into<RefId>, stage_type: impl Into<String>) -> Self {
        Self {
            ref_id: ref_id.into(),
            requisite_stage_ref_ids: Vec::new(),
            stage_type: stage_type.into(),
            name: None,
            stage_enabled: None,
            fail_pipeline: None,
            continue_pipeline: None,
            complete_other_branches_then_fail: None,
            stage_timeout_ms: None,
            restrict_execution_during_time_window: None,
            restricted_execution_window: None,
            send_notifications: None,
            notifications: Vec::new(),
            fail_on_failed_expressions: None,
            comments: None,
            extra: Map::new(),
            shape: Shape::default(),
        }
    }

    /// A type-specific field.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.extra.get(key)
    }

    /// `failPipeline` with Orca's default (true).
    pub fn fails_pipeline(&self) -> bool {
        self.fail_pipeline
            .as_ref()
            .and_then(Lenient::as_bool)
            .unwrap_or(true)
    }

    /// The timeout in milliseconds, when set to a readable number.
    pub fn timeout_ms(&self) -> Option<u64> {
        self.stage_timeout_ms.as_ref().and_then(Lenient::as_u64)
    }
}

/// `stageEnabled`: `{type: "expression", expression: "${...}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct StageEnabled {
    /// Always `"expression"` in practice.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub condition_type: Option<String>,
    /// The condition, with or without `${ }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<Lenient<String>>,
    /// Every other key, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(StageEnabled);

/// A pipeline trigger. Type-specific fields (`cronExpression`, `source`, `repository`,
/// `payloadConstraints`, …) live in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Trigger {
    /// `cron`, `webhook`, `git`, `docker`, `pipeline`, …
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub trigger_type: String,
    /// A disabled trigger does not fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Lenient<bool>>,
    /// The service account the run is attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<String>,
    /// Ids of the pipeline's expected artifacts this trigger must supply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_artifact_ids: Vec<String>,
    /// Every other key, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Trigger);

impl Trigger {
    /// A type-specific field.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.extra.get(key)
    }

    /// `enabled` with the UI's default (true).
    pub fn is_enabled(&self) -> bool {
        self.enabled
            .as_ref()
            .and_then(Lenient::as_bool)
            .unwrap_or(true)
    }
}

/// A notification (pipeline- or stage-level).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Notification {
    /// `email`, `slack`, `googlechat`, …
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub notification_type: String,
    /// Channel, address or URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `pipeline` or `stage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Events: `pipeline.failed`, `stage.complete`, `manualJudgment`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<String>,
    /// Every other key (`message`, `cc`, `customMessage`), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Notification);

/// One entry of `parameterConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct ParameterDefinition {
    /// The parameter name (`parameters.<name>` in expressions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Display label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default value (usually a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A run without a value (and no default) is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Lenient<bool>>,
    /// Restrict values to `options`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_options: Option<Lenient<bool>>,
    /// `[{value}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Value>,
    /// Shown even when collapsed in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Lenient<bool>>,
    /// Every other key (`condition`, …), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(ParameterDefinition);

impl ParameterDefinition {
    /// The option values that are plain scalars, as strings.
    pub fn option_values(&self) -> Vec<String> {
        self.options
            .iter()
            .filter_map(|o| o.get("value"))
            .filter_map(scalar_text)
            .collect()
    }
}

/// An entry of `expectedArtifacts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct ExpectedArtifact {
    /// Referenced by triggers' `expectedArtifactIds` and stages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// What an incoming artifact must look like (fields are regexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_artifact: Option<Artifact>,
    /// Used when nothing matches and `useDefaultArtifact` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_artifact: Option<Artifact>,
    /// Fall back to `defaultArtifact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_artifact: Option<Lenient<bool>>,
    /// Fall back to the artifact of the previous run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_prior_artifact: Option<Lenient<bool>>,
    /// Every other key, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(ExpectedArtifact);

/// An artifact (kork's `Artifact`). Jackson coerces scalars to strings, so the string
/// fields accept any scalar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Artifact {
    /// `docker/image`, `github/file`, `embedded/base64`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<Lenient<String>>,
    /// Name (e.g. `gcr.io/project/image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Lenient<String>>,
    /// Version (e.g. a tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Lenient<String>>,
    /// Region, namespace or similar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Lenient<String>>,
    /// How to fetch it (a URL, an image reference, base64 content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Lenient<String>>,
    /// The credentials used to fetch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_account: Option<Lenient<String>>,
    /// Every other key (`metadata`, `provenance`, `uuid`, `customKind`, …), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Artifact);

/// A JSON scalar as the string Jackson would coerce it to.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}
