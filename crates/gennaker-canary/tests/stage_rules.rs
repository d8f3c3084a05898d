//! Save-time rules of `kayentaCanary`: the stored shapes of real Spinnaker pipelines
//! (Deck's strings for numbers, ids or names, real-time, retrospective and legacy
//! lifetimes) save without a problem; real mistakes are errors at their JSON paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stage_kit;

use std::sync::Arc;

use gennaker_core::{Severity, ValidationReport, validate_pipeline_value};
use gennaker_engine::StageRegistry;
use serde_json::{Value, json};

/// Validates a pipeline of this one stage, on a server whose metrics accounts are
/// `accounts` (empty: unknown, as offline).
fn validate(stage: Value, accounts: &[&str]) -> ValidationReport {
    let metrics = Arc::new(stage_kit::FakeMetrics::default());
    let mut sources = gennaker_canary::MetricSources::new();
    for account in accounts {
        sources.insert(*account, metrics.clone());
    }
    let mut registry = StageRegistry::standard();
    gennaker_canary::stage::register(&mut registry, sources, stage_kit::configs());
    let pipeline =
        json!({"application": "sampleapp", "name": "Automated Canary", "stages": [stage]});
    validate_pipeline_value(&pipeline, registry.catalog())
}

fn problems(report: &ValidationReport) -> Vec<(Severity, String, String)> {
    report
        .errors()
        .chain(report.warnings())
        .map(|p| (p.severity, p.path.clone(), p.message.clone()))
        .collect()
}

/// The `kayentaCanary` stage of spinnaker/spinnaker
/// `solutions/kayenta/pipelines/automated-canary.json`, as stored.
fn spinnaker_solution() -> Value {
    json!({
      "analysisType": "realTime",
      "canaryConfig": {
        "beginCanaryAnalysisAfterMins": "0", "canaryAnalysisIntervalMins": "5",
        "canaryConfigId": "CANARY_CONFIG_ID", "combinedCanaryResultStrategy": "LOWEST",
        "lifetimeDuration": "PT0H5M", "metricsAccountName": "kayenta-tutorial",
        "scopes": [{"controlLocation": "default", "controlScope": "sampleapp-baseline",
                    "experimentLocation": "default", "experimentScope": "sampleapp-canary",
                    "extendedScopeParams": {"perSeriesAligner": "ALIGN_RATE", "resourceType": "k8s_container"},
                    "scopeName": "default"}],
        "scoreThresholds": {"marginal": "75", "pass": "90"},
        "storageAccountName": "kayenta-minio"
      },
      "comments": "", "completeOtherBranchesThenFail": false, "continuePipeline": true,
      "failPipeline": false, "name": "Canary Analysis", "refId": "11", "requisiteStageRefIds": [],
      "type": "kayentaCanary"
    })
}

/// The sample of the canary-stage reference (§1).
fn reference_sample() -> Value {
    json!({"type": "kayentaCanary", "name": "Canary Analysis", "refId": "11", "requisiteStageRefIds": [],
      "analysisType": "realTime", "continuePipeline": true, "failPipeline": false,
      "canaryConfig": {"canaryConfigId": "9a2f2f0e-3c1e-4f6a-9b8d-7e6f5a4b3c2d", "metricsAccountName": "prom",
        "storageAccountName": "minio", "lifetimeDuration": "PT0H5M", "beginCanaryAnalysisAfterMins": "0",
        "canaryAnalysisIntervalMins": "5", "scoreThresholds": {"marginal": "75", "pass": "90"},
        "scopes": [{"scopeName": "default", "controlScope": "sampleapp-baseline", "controlLocation": "default",
                    "experimentScope": "sampleapp-canary", "experimentLocation": "default",
                    "extendedScopeParams": {"resourceType": "k8s_container"}}]}})
}

#[test]
fn real_spinnaker_shapes_save_without_problems() {
    assert_eq!(
        problems(&validate(spinnaker_solution(), &[])),
        [],
        "offline"
    );
    assert_eq!(
        problems(&validate(
            spinnaker_solution(),
            &["kayenta-tutorial", "prom"]
        )),
        []
    );
    assert_eq!(problems(&validate(reference_sample(), &["prom"])), []);
    // Numbers as numbers, empty strings for unset minutes, a step, the offset, siteLocal.
    let mut stage = reference_sample();
    let config = &mut stage["canaryConfig"];
    config["lookbackMins"] = json!("");
    config["baselineAnalysisOffsetInMins"] = json!(60);
    config["canaryAnalysisIntervalMins"] = json!(0.25);
    config["configurationAccountName"] = json!("front50");
    config["siteLocal"] = json!({"notificationEmail": "a@example.com"});
    config["scopes"][0]["step"] = json!(60);
    config["scoreThresholds"] = json!({"marginal": 75, "pass": 90});
    assert_eq!(problems(&validate(stage, &[])), []);
    // A config by name, the legacy lifetimeHours, expressions in scopes.
    let mut stage = reference_sample();
    let config = stage["canaryConfig"].as_object_mut().unwrap();
    config.remove("canaryConfigId");
    config.remove("lifetimeDuration");
    config.insert("canaryConfigName".into(), json!("sampleapp-canary-config"));
    config.insert("lifetimeHours".into(), json!("1.5"));
    stage["canaryConfig"]["scopes"][0]["experimentScope"] =
        json!("${ deployedServerGroups[0].serverGroup }");
    assert_eq!(problems(&validate(stage, &[])), []);
    // Retrospective: Deck removes lifetime and warm-up and sets the window.
    let mut stage = reference_sample();
    stage["analysisType"] = json!("retrospective");
    let config = stage["canaryConfig"].as_object_mut().unwrap();
    config.remove("lifetimeDuration");
    config.remove("beginCanaryAnalysisAfterMins");
    stage["canaryConfig"]["scopes"][0]["startTimeIso"] = json!("2024-05-01T12:00:00Z");
    stage["canaryConfig"]["scopes"][0]["endTimeIso"] = json!("2024-05-01T13:00:00.000Z");
    assert_eq!(problems(&validate(stage, &[])), []);
}

/// The errors of `stage` (after `change`), as (path, message).
fn errors(change: impl FnOnce(&mut Value), accounts: &[&str]) -> Vec<(String, String)> {
    let mut stage = reference_sample();
    change(&mut stage);
    validate(stage, accounts)
        .errors()
        .map(|p| (p.path.clone(), p.message.clone()))
        .collect()
}

fn has(errors: &[(String, String)], path: &str, words: &str) -> bool {
    errors.iter().any(|(p, m)| p == path && m.contains(words))
}

/// Asserts that the reference sample after `change` has an error at `path` whose
/// message contains `words`.
#[track_caller]
fn assert_refused(change: impl FnOnce(&mut Value), path: &str, words: &str) {
    let e = errors(change, &[]);
    assert!(has(&e, path, words), "{e:?}");
}

#[test]
fn real_mistakes_are_errors_at_their_paths() {
    let at = "$.stages[0].canaryConfig";
    assert_refused(
        |s| s["canaryConfig"]["scopes"] = json!([]),
        &format!("{at}.scopes"),
        "at least one scope",
    );
    assert_refused(
        |s| {
            s["canaryConfig"]
                .as_object_mut()
                .unwrap()
                .remove("lifetimeDuration");
        },
        &format!("{at}.lifetimeDuration"),
        "lifetimeDuration",
    );
    assert_refused(
        |s| s["canaryConfig"]["scoreThresholds"]["pass"] = json!("high"),
        &format!("{at}.scoreThresholds.pass"),
        "must be a number",
    );
    assert_refused(
        |s| s["canaryConfig"]["scoreThresholds"] = json!({"marginal": "90", "pass": "75"}),
        &format!("{at}.scoreThresholds.pass"),
        "below the marginal",
    );
    assert_refused(
        |s| s["canaryConfig"]["scoreThresholds"]["pass"] = json!("150"),
        &format!("{at}.scoreThresholds.pass"),
        "between 0 and 100",
    );
    let e = errors(|_| {}, &["builtin", "prometheus"]);
    assert!(
        has(
            &e,
            &format!("{at}.metricsAccountName"),
            "'prom' is not configured"
        ),
        "{e:?}"
    );
    assert!(
        e[0].1.contains("builtin, prometheus"),
        "names the configured accounts: {e:?}"
    );
    assert_refused(
        |s| s["canaryConfig"]["lifetimeDuration"] = json!("5m"),
        &format!("{at}.lifetimeDuration"),
        "not an ISO-8601 duration",
    );
    assert_refused(
        |s| s["canaryConfig"]["canaryAnalysisIntervalMins"] = json!("five"),
        &format!("{at}.canaryAnalysisIntervalMins"),
        "must be a number",
    );
    assert_refused(
        |s| s["canaryConfig"]["beginCanaryAnalysisAfterMins"] = json!("-1"),
        &format!("{at}.beginCanaryAnalysisAfterMins"),
        "between 0",
    );
    assert_refused(
        |s| {
            s["canaryConfig"]
                .as_object_mut()
                .unwrap()
                .remove("canaryConfigId");
        },
        &format!("{at}.canaryConfigId"),
        "canaryConfigName",
    );
    assert_refused(
        |s| {
            s["canaryConfig"]["scopes"][0]
                .as_object_mut()
                .unwrap()
                .remove("controlScope");
        },
        &format!("{at}.scopes[0].controlScope"),
        "control",
    );
    assert_refused(
        |s| s["canaryConfig"]["scopes"][0]["endTimeIso"] = json!("2024-05-01T13:00:00Z"),
        &format!("{at}.scopes[0].startTimeIso"),
        "needs scopes[0].startTimeIso",
    );
    assert_refused(
        |s| s["canaryConfig"]["scopes"][0]["startTimeIso"] = json!("yesterday"),
        &format!("{at}.scopes[0].startTimeIso"),
        "not an ISO-8601 instant",
    );
    assert_refused(
        |s| {
            s["canaryConfig"]["lifetimeDuration"] = json!("PT1H");
            s["canaryConfig"]["canaryAnalysisIntervalMins"] = json!("0.02");
        },
        &format!("{at}.canaryAnalysisIntervalMins"),
        "judgements; at most",
    );
    assert_refused(
        |s| s["deployments"] = json!({"baseline": {"cluster": "app-prod"}}),
        "$.stages[0].deployments.serverGroupPairs",
        "at least one {control, experiment} pair",
    );
    assert_refused(
        |s| s["deployments"] = json!({"baseline": {"cluster": "app-prod"}}),
        "$.stages[0].deployments.baseline.application",
        "the production application",
    );
    assert_refused(
        |s| {
            s.as_object_mut().unwrap().remove("canaryConfig");
        },
        "$.stages[0].canaryConfig",
        "needs a canaryConfig",
    );
}

#[test]
fn the_synthetic_stage_types_cannot_be_used_on_their_own() {
    for stage_type in ["runCanaryIntervals", "runCanary"] {
        let stage = json!({"refId": "1", "type": stage_type, "name": "x"});
        let e: Vec<String> = validate(stage, &[])
            .errors()
            .map(|p| p.message.clone())
            .collect();
        assert!(
            e.iter()
                .any(|m| m.contains("planned by a kayentaCanary stage")),
            "{e:?}"
        );
    }
}
