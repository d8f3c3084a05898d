//! The `stages` array: each stage's common fields, its type, and the DAG.

use std::collections::HashSet;

use serde_json::Value;

use super::fields::{Obj, is_expression, type_name};
use super::notifications::{self, Level};
use super::{graph, stage_rules};
use crate::problems::{Problem, ValidationReport};
use crate::stage_types::{Support, stage_type, suggest_stage_type};

/// A stage that passed the shape checks, for the graph checks.
pub(super) struct StageRef<'a> {
    pub(super) index: usize,
    pub(super) obj: Obj<'a>,
    /// The refId as Orca compares it (numbers as decimal strings).
    pub(super) ref_id: Option<String>,
}

pub(super) fn check_stages(
    pipeline: &Obj<'_>,
    templated: bool,
    artifact_ids: &HashSet<String>,
    report: &mut ValidationReport,
) {
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
        check_type(&stage, artifact_ids, report);
        checked.push(StageRef {
            index,
            obj: stage,
            ref_id,
        });
    }
    graph::check_graph(&checked, report);
}

fn check_ref_id(stage: &Obj<'_>, report: &mut ValidationReport) -> Option<String> {
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

fn check_common_fields(stage: &Obj<'_>, report: &mut ValidationReport) {
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

fn check_stage_enabled(stage: &Obj<'_>, report: &mut ValidationReport) {
    let Some(enabled) = stage.object("stageEnabled", report) else {
        return;
    };
    enabled.string("type", report);
    match enabled.get("expression") {
        None => report.push(
            Problem::error(enabled.at("expression"), "stageEnabled has no expression")
                .with_hint("e.g. {\"type\": \"expression\", \"expression\": \"${parameters.deploy == 'true'}\"}; remove stageEnabled to always run the stage"),
        ),
        Some(Value::String(_) | Value::Bool(_)) => {}
        Some(other) => report.push(Problem::error(
            enabled.at("expression"),
            format!("stageEnabled.expression must be a string, not {}", type_name(other)),
        )),
    }
}

fn check_execution_window(stage: &Obj<'_>, report: &mut ValidationReport) {
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

fn check_type(stage: &Obj<'_>, artifact_ids: &HashSet<String>, report: &mut ValidationReport) {
    let Some(stage_type_name) = stage.required_string("type", "the stage type", report) else {
        return;
    };
    let path = stage.at("type");
    match stage_type(stage_type_name) {
        Some(info) => match info.support {
            Support::Runnable => {
                stage_rules::check_stage_fields(stage_type_name, stage, artifact_ids, report)
            }
            Support::Planned | Support::NotSupported => {
                let mut problem = Problem::warning(
                    &path,
                    format!(
                        "stage type '{stage_type_name}' is a Spinnaker stage Gennaker cannot run yet; the pipeline is saved but running it will fail at this stage"
                    ),
                );
                if let Some(canonical) = info.alias_of {
                    problem = problem.with_hint(format!(
                        "'{stage_type_name}' is a legacy name for '{canonical}'"
                    ));
                }
                report.push(problem);
                stage_rules::check_artifact_references(stage, artifact_ids, report);
            }
        },
        None => {
            let mut problem = Problem::error(
                &path,
                format!(
                    "unknown stage type '{stage_type_name}'{}",
                    crate::suggest::did_you_mean(
                        stage_type_name,
                        crate::stage_types::STAGE_TYPES.iter().map(|i| i.name)
                    )
                ),
            );
            problem = match suggest_stage_type(stage_type_name) {
                Some(s) => problem.with_hint(format!("set \"type\": \"{s}\"")),
                None => problem.with_hint(
                    "a preconfigured webhook or job, or a plugin stage, must be defined in Gennaker before pipelines can use it",
                ),
            };
            report.push(problem);
        }
    }
}
