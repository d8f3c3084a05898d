//! The `stages` array: each stage's common fields, its type, and the DAG.

use serde_json::Value;

use super::CheckContext;
use super::fields::{Fields, is_expression, type_name};
use super::notifications::{self, Level};
use super::{graph, stage_rules};
use crate::problems::{Problem, ValidationReport};
use crate::stage_types::StageCatalog;

/// A stage that passed the shape checks, for the graph checks.
pub(super) struct StageRef<'a> {
    pub(super) index: usize,
    pub(super) obj: Fields<'a>,
    /// The refId as Orca compares it (numbers as decimal strings).
    pub(super) ref_id: Option<String>,
}

pub(super) fn check_stages(
    pipeline: &Fields<'_>,
    templated: bool,
    catalog: &StageCatalog,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    let max = catalog.max_stages();
    if let Some(Value::Array(items)) = pipeline.map.get("stages")
        && items.len() > max
    {
        // Checking each of them would only bury this in a report as long as the pipeline.
        report.push(
            Problem::error(
                pipeline.at("stages"),
                format!(
                    "the pipeline has {} stages; a pipeline may have at most {max}",
                    items.len()
                ),
            )
            .with_hint("split it into smaller pipelines and chain them with `pipeline` stages"),
        );
        return;
    }
    let stages = pipeline.objects("stages", "a stage", report);
    let absent_or_empty = match pipeline.map.get("stages") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    if absent_or_empty && !templated {
        report.push(Problem::warning(
            pipeline.at("stages"),
            "the pipeline has no stages; a run would end immediately as TERMINAL",
        ));
    }
    let mut checked = Vec::with_capacity(stages.len());
    for (index, stage) in stages {
        let ref_id = check_ref_id(&stage, report);
        check_common_fields(&stage, report);
        check_type(&stage, catalog, context, report);
        checked.push(StageRef {
            index,
            obj: stage,
            ref_id,
        });
    }
    graph::check_graph(&checked, report);
}

fn check_ref_id(stage: &Fields<'_>, report: &mut ValidationReport) -> Option<String> {
    match stage.map.get("refId") {
        None | Some(Value::Null) => {
            report.push(
                Problem::error(stage.at("refId"), "the stage has no refId")
                    .with_hint("give every stage a unique refId, e.g. \"1\", \"2\", …"),
            );
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            report.push(Problem::error(
                stage.at("refId"),
                "the stage's refId is empty",
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            report.push(Problem::error(
                stage.at("refId"),
                format!(
                    "refId must be a string or a number, not {}",
                    type_name(other)
                ),
            ));
            None
        }
    }
}

fn check_common_fields(stage: &Fields<'_>, report: &mut ValidationReport) {
    stage.string("name", report);
    stage.string("comments", report);
    for key in [
        "failPipeline",
        "continuePipeline",
        "completeOtherBranchesThenFail",
        "restrictExecutionDuringTimeWindow",
        "sendNotifications",
        "failOnFailedExpressions",
    ] {
        stage.boolean(key, report);
    }
    stage.non_negative("stageTimeoutMs", report);
    if stage.flag("failPipeline") == Some(true) && stage.flag("continuePipeline") == Some(true) {
        report.push(Problem::warning(
            stage.at("continuePipeline"),
            "failPipeline and continuePipeline are both true; continuePipeline wins (the stage ends FAILED_CONTINUE)",
        ));
    }
    check_stage_enabled(stage, report);
    check_execution_window(stage, report);
    notifications::check_notifications(stage, Level::Stage, report);
}

fn check_stage_enabled(stage: &Fields<'_>, report: &mut ValidationReport) {
    let Some(enabled) = stage.object("stageEnabled", report) else {
        return;
    };
    enabled.string("type", report);
    // Without an expression the stage is enabled, as in Orca (Deck saves `{}`).
    match enabled.get("expression") {
        None | Some(Value::String(_) | Value::Bool(_)) => {}
        Some(other) => report.push(Problem::error(
            enabled.at("expression"),
            format!(
                "stageEnabled.expression must be a string, not {}",
                type_name(other)
            ),
        )),
    }
}

fn check_execution_window(stage: &Fields<'_>, report: &mut ValidationReport) {
    let Some(window) = stage.object("restrictedExecutionWindow", report) else {
        if stage.flag("restrictExecutionDuringTimeWindow") == Some(true) {
            report.push(Problem::warning(
                stage.at("restrictedExecutionWindow"),
                "restrictExecutionDuringTimeWindow is on but no restrictedExecutionWindow is set; the stage runs at any time",
            ));
        }
        return;
    };
    for (_, range) in window.objects("whitelist", "a time range", report) {
        for (key, max) in [
            ("startHour", 23),
            ("endHour", 23),
            ("startMin", 59),
            ("endMin", 59),
        ] {
            if let Some(v) = range.non_negative(key, report)
                && v > max
            {
                report.push(Problem::error(
                    range.at(key),
                    format!("{key} must be between 0 and {max}, not {v}"),
                ));
            }
        }
    }
    if let Some(days) = window.array("days", report) {
        for (i, day) in days.iter().enumerate() {
            let ok = crate::lenient::value_as_u64(day).is_some_and(|d| (1..=7).contains(&d));
            if !ok && !is_expression(day) {
                report.push(Problem::error(
                    window.at("days").index(i),
                    format!("a day must be 1 (Sunday) to 7 (Saturday), not {day}"),
                ));
            }
        }
    }
}

fn check_type(
    stage: &Fields<'_>,
    catalog: &StageCatalog,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    stage_rules::check_artifact_references(stage, context.artifact_ids, report);
    let Some(stage_type_name) = stage.required_string("type", "the stage type", report) else {
        return;
    };
    let path = stage.at("type");
    match catalog.get(stage_type_name) {
        Some(entry) if entry.descriptor.runnable => {
            if let Some(rules) = entry.rules() {
                rules.check(stage, context, report);
            }
        }
        Some(entry) => {
            let mut problem = Problem::warning(
                &path,
                format!(
                    "stage type '{stage_type_name}' is a Spinnaker stage Gennaker cannot run yet: the pipeline is accepted, but a run stops (TERMINAL) at this stage"
                ),
            );
            if entry.descriptor.stage_type != stage_type_name {
                problem = problem.with_hint(format!(
                    "'{stage_type_name}' is a legacy name for '{}'",
                    entry.descriptor.stage_type
                ));
            }
            report.push(problem);
            stage_rules::check_spinnaker_only(&entry.descriptor.stage_type, stage, report);
        }
        None => {
            let suggestion = catalog.suggest(stage_type_name);
            let did_you_mean = crate::suggest::did_you_mean_phrase(suggestion);
            let problem = Problem::warning(
                &path,
                format!(
                    "unknown stage type '{stage_type_name}'{did_you_mean}: the pipeline is accepted, but a run stops (TERMINAL) at this stage"
                ),
            );
            report.push(match suggestion {
                Some(s) => problem.with_hint(format!("set \"type\": \"{s}\"")),
                None => problem.with_hint(
                    "a preconfigured webhook stage must be defined in the server's [[webhooks.preconfigured]] before pipelines can run it",
                ),
            });
        }
    }
}
