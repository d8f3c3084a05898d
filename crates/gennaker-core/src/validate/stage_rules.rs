//! Rules for stages whose type Gennaker cannot run yet but whose mistakes are still worth
//! reporting on import, and the artifact references every stage type shares. The rules
//! of a runnable type live with its code (see [`crate::stage_types`]).

use std::collections::HashSet;

use serde_json::Value;

use super::fields::Fields;
use crate::problems::{Problem, ValidationReport};
use crate::suggest;

const ANALYSIS_TYPES: &[&str] = &["realTime", "realTimeAutomatic", "retrospective"];
/// Stage fields that name an expected artifact by id.
const ARTIFACT_ID_FIELDS: &[&str] = &["manifestArtifactId", "expectedArtifactId", "artifactId"];
const ARTIFACT_ID_LISTS: &[&str] = &["requiredArtifactIds", "expectedArtifactIds"];

/// Checks the fields of a Spinnaker-only stage type that has rules.
pub(super) fn check_spinnaker_only(
    stage_type: &str,
    stage: &Fields<'_>,
    report: &mut ValidationReport,
) {
    if stage_type == "kayentaCanary" {
        check_kayenta(stage, report);
    }
}

/// Stage fields that name expected artifacts must name one the pipeline (or a stage)
/// declares; Orca fails the stage at run time otherwise.
pub(super) fn check_artifact_references(
    stage: &Fields<'_>,
    artifact_ids: &HashSet<String>,
    report: &mut ValidationReport,
) {
    let mut check = |id: &str, path: crate::problems::JsonPath| {
        if !id.contains("${") && !artifact_ids.contains(id) {
            report.push(Problem::warning(
                path,
                format!(
                    "artifact id '{id}' is not declared in the pipeline's expectedArtifacts or any stage's expectedArtifacts{}",
                    suggest::did_you_mean(id, artifact_ids.iter().map(String::as_str))
                ),
            ));
        }
    };
    for key in ARTIFACT_ID_FIELDS {
        if let Some(Value::String(id)) = stage.get(key) {
            check(id, stage.at(key));
        }
    }
    for key in ARTIFACT_ID_LISTS {
        if let Some(Value::Array(ids)) = stage.get(key) {
            for (i, id) in ids.iter().enumerate() {
                if let Value::String(id) = id {
                    check(id, stage.at(key).index(i));
                }
            }
        }
    }
}

fn check_kayenta(stage: &Fields<'_>, report: &mut ValidationReport) {
    stage.one_of("analysisType", ANALYSIS_TYPES, report);
    let Some(config) = stage.object("canaryConfig", report) else {
        report.push(
            Problem::error(
                stage.at("canaryConfig"),
                "kayentaCanary needs a canaryConfig",
            )
            .with_hint("at least canaryConfigId, scopes and scoreThresholds"),
        );
        return;
    };
    config.required_string("canaryConfigId", "the canary config id", report);
    for key in [
        "metricsAccountName",
        "storageAccountName",
        "lifetimeDuration",
    ] {
        config.string(key, report);
    }
    if let Some(duration) = config.get("lifetimeDuration").and_then(Value::as_str)
        && !duration.contains("${")
        && !looks_like_iso_duration(duration)
    {
        report.push(
            Problem::error(
                config.at("lifetimeDuration"),
                format!("lifetimeDuration '{duration}' is not an ISO-8601 duration"),
            )
            .with_hint("e.g. \"PT1H\" or \"PT30M\""),
        );
    }
    for key in [
        "beginCanaryAnalysisAfterMins",
        "lookbackMins",
        "canaryAnalysisIntervalMins",
        "lifetimeHours",
    ] {
        config.number(key, report);
    }
    match config.object("scoreThresholds", report) {
        Some(thresholds) => {
            let marginal = thresholds.number("marginal", report);
            let pass = thresholds.number("pass", report);
            for (key, value) in [("marginal", marginal), ("pass", pass)] {
                if let Some(v) = value
                    && !(0.0..=100.0).contains(&v)
                {
                    report.push(Problem::error(
                        thresholds.at(key),
                        format!("{key} must be between 0 and 100, not {v}"),
                    ));
                }
            }
            if !thresholds.has("pass") {
                report.push(Problem::error(
                    thresholds.at("pass"),
                    "scoreThresholds needs a pass score",
                ));
            }
            if let (Some(m), Some(p)) = (marginal, pass)
                && m > p
            {
                report.push(Problem::error(
                    thresholds.at("marginal"),
                    format!("the marginal score ({m}) is above the pass score ({p})"),
                ));
            }
        }
        None => report.push(
            Problem::error(
                config.at("scoreThresholds"),
                "canaryConfig needs scoreThresholds",
            )
            .with_hint("e.g. {\"marginal\": 50, \"pass\": 75}"),
        ),
    }
    let scopes = config.objects("scopes", "a canary scope", report);
    if scopes.is_empty() && !config.has("scopes") {
        report.push(Problem::error(
            config.at("scopes"),
            "canaryConfig needs scopes naming the control and experiment",
        ));
    }
    // With deployments ("Real Time (Automatic)") the scopes are the groups deployed.
    let automatic = stage.has("deployments");
    for (_, scope) in scopes {
        if automatic {
            scope.string("controlScope", report);
            scope.string("experimentScope", report);
        } else {
            scope.required_string("controlScope", "the control (baseline) scope", report);
            scope.required_string("experimentScope", "the experiment (canary) scope", report);
        }
        for key in [
            "scopeName",
            "controlLocation",
            "experimentLocation",
            "startTimeIso",
            "endTimeIso",
        ] {
            scope.string(key, report);
        }
    }
}

/// `P[nD][T[nH][nM][nS]]`, enough to catch "1h" or "60".
fn looks_like_iso_duration(s: &str) -> bool {
    static ISO: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$").ok()
    });
    s.len() > 1 && s != "PT" && ISO.as_ref().is_some_and(|re| re.is_match(s))
}
