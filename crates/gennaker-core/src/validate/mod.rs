//! Validation of pipeline configs: works on any JSON, never panics, and reports every
//! problem of a document at once with its JSON path.

mod artifacts;
mod fields;
mod graph;
mod notifications;
mod parameters;
mod stage_rules;
mod stages;
mod triggers;

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

pub use notifications::{NOTIFICATION_EVENTS, NOTIFICATION_TYPES, SENT_NOTIFICATION_TYPES};
pub use triggers::TRIGGER_TYPES;

use crate::application::validate_application_name;
use crate::naming::{MAX_PIPELINE_NAME_LEN, display_name_problem};
use crate::problems::{JsonPath, Problem, ValidationReport};
pub use fields::{Fields, is_blank, is_expression, type_name};

use crate::stage_types::StageCatalog;

/// Characters Deck refuses in pipeline names: they break URLs and the UI's routing.
const FORBIDDEN_NAME_CHARS: &[char] = &['/', '\\', '?', '%', '#'];

/// What a stage's rules may consult beyond the stage itself.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// The pipeline's application (a deploy cluster without one deploys into it).
    pub application: Option<&'a str>,
    /// The expected-artifact ids the pipeline and its stages declare.
    pub artifact_ids: &'a HashSet<String>,
    /// The cloud providers this server deploys through; `None` when unknown (offline
    /// validation), and then provider checks are skipped.
    pub cloud_providers: Option<&'a BTreeSet<String>>,
}

/// Validates a pipeline config given as JSON, with the stage types of `catalog`.
pub fn validate_pipeline_value(value: &Value, catalog: &StageCatalog) -> ValidationReport {
    let mut report = ValidationReport::default();
    let root = JsonPath::root();
    let Value::Object(map) = value else {
        report.push(Problem::error(
            &root,
            format!(
                "a pipeline must be a JSON object with application, name and stages, not {}",
                type_name(value)
            ),
        ));
        return report;
    };
    let pipeline = Fields::new(map, root);
    check_identity(&pipeline, &mut report);
    check_top_level_fields(&pipeline, &mut report);

    let artifact_ids = artifacts::check_expected_artifacts(&pipeline, &mut report);
    let templated = pipeline.get("type").and_then(Value::as_str) == Some("templatedPipeline");
    if templated {
        report.push(
            Problem::warning(
                pipeline.at("type"),
                "templated pipelines (pipeline templates v2) are accepted, but Gennaker cannot run them yet",
            )
            .with_hint("export the rendered pipeline from Spinnaker (Pipeline actions > Show JSON) and import that"),
        );
    }
    let application = pipeline.get("application").and_then(Value::as_str);
    let context = CheckContext {
        application,
        artifact_ids: &artifact_ids,
        cloud_providers: catalog.cloud_providers(),
    };
    stages::check_stages(&pipeline, templated, catalog, &context, &mut report);
    triggers::check_triggers(&pipeline, &artifact_ids, &mut report);
    parameters::check_parameters(&pipeline, &mut report);
    notifications::check_notifications(&pipeline, notifications::Level::Pipeline, &mut report);
    report
}

/// Validates a pipeline for saving under `application`: everything
/// [`validate_pipeline_value`] checks, plus that its `application` field names that
/// application.
pub fn validate_pipeline_for_application(
    value: &Value,
    application: &str,
    catalog: &StageCatalog,
) -> ValidationReport {
    let mut report = validate_pipeline_value(value, catalog);
    if let Some(declared) = value.get("application").and_then(Value::as_str)
        && !declared.is_empty()
        && declared != application
    {
        report.push(
            Problem::error(
                JsonPath::root().key("application"),
                format!("the pipeline belongs to application '{declared}' but is being saved under '{application}'"),
            )
            .with_hint(format!("set \"application\": \"{application}\" or save it under '{declared}'")),
        );
    }
    report
}

fn check_identity(pipeline: &Fields<'_>, report: &mut ValidationReport) {
    if let Some(app) = pipeline.required_string("application", "the owning application", report) {
        validate_application_name(app, &pipeline.at("application"), report);
    }
    if let Some(name) = pipeline.required_string("name", "the pipeline name", report) {
        if name.trim().is_empty() {
            report.push(Problem::error(
                pipeline.at("name"),
                "the pipeline name is blank",
            ));
        }
        if let Some(bad) = name.chars().find(|c| FORBIDDEN_NAME_CHARS.contains(c)) {
            report.push(Problem::error(
                pipeline.at("name"),
                format!("the pipeline name contains '{bad}'; names may not contain / \\ ? % or #"),
            ));
        }
        if let Some(problem) = display_name_problem("pipeline name", name, MAX_PIPELINE_NAME_LEN) {
            report.push(Problem::error(pipeline.at("name"), problem));
        }
    }
    pipeline.string("id", report);
}

fn check_top_level_fields(pipeline: &Fields<'_>, report: &mut ValidationReport) {
    for key in [
        "description",
        "type",
        "schema",
        "lastModifiedBy",
        "serviceAccount",
    ] {
        pipeline.string(key, report);
    }
    for key in ["limitConcurrent", "keepWaitingPipelines", "disabled"] {
        pipeline.boolean(key, report);
    }
    pipeline.non_negative("maxConcurrentExecutions", report);
    pipeline.number("index", report);
    if let Some(version) = pipeline.string("spelEvaluator", report)
        && !matches!(version, "v2" | "v3" | "v4")
    {
        report.push(Problem::warning(
            pipeline.at("spelEvaluator"),
            format!("unknown spelEvaluator '{version}'; Gennaker evaluates expressions like v4"),
        ));
    }
    pipeline.strings("roles", report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_objects_are_one_error() {
        for v in [json!(null), json!([]), json!("x"), json!(1)] {
            let report = validate_pipeline_value(&v, &StageCatalog::spinnaker());
            assert_eq!(report.errors().count(), 1, "{v}");
        }
    }
}
