//! The realistic Spinnaker pipelines in `tests/fixtures/pipelines`: each validates with
//! exactly the expected warnings and survives JSON, typed-model and YAML round trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use gennaker_core::{
    DocumentFormat, Pipeline, parse_document, to_json_pretty, to_yaml_string,
    validate_pipeline_value,
};
use serde_json::Value;

/// The fixture files (`crates/gennaker/tests/pipeline_fixtures.rs` checks the exact
/// warnings each produces with every stage type the binary runs).
const FIXTURES: &[&str] = &[
    "deploy-redblack-docker.json",
    "deploy-highlander-cron.json",
    "deploy-rollingredblack.json",
    "manual-judgment-branches.json",
    "webhook-wait-for-completion.json",
    "parallel-branches-join.json",
    "check-preconditions.json",
    "child-pipeline.json",
    "kayenta-canary.json",
    "kayenta-canary-automatic.json",
    "evaluate-variables-stage-enabled.json",
    "k8s-deploy-manifest.json",
    "bake-jenkins-legacy.json",
    "server-group-operations.json",
    "load-balancer-firewall.json",
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines")
}

fn load(name: &str) -> (String, Value) {
    let text = std::fs::read_to_string(fixture_dir().join(name)).unwrap();
    let value = parse_document(&text, DocumentFormat::Json).unwrap();
    (text, value)
}

#[test]
fn every_fixture_file_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|n| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 12);
}

#[test]
fn fixtures_have_no_errors() {
    for name in FIXTURES {
        let (_, value) = load(name);
        let report = validate_pipeline_value(&value, &catalog());
        assert!(
            report.errors().next().is_none(),
            "{name}: unexpected errors:\n{report}"
        );
    }
}

#[test]
fn typed_model_round_trip_is_lossless() {
    for name in FIXTURES {
        let (_, value) = load(name);
        let pipeline = Pipeline::from_value(value.clone()).unwrap();
        let back = pipeline.to_value();
        assert_eq!(back, value, "{name}");
        // Key order survives too, so a saved pipeline diffs cleanly against its import.
        assert_eq!(
            to_json_pretty(&back),
            to_json_pretty(&value),
            "{name}: key order"
        );
    }
}

#[test]
fn json_text_round_trip() {
    for name in FIXTURES {
        let (text, value) = load(name);
        let pretty = to_json_pretty(&value);
        assert_eq!(
            parse_document(&pretty, DocumentFormat::Json).unwrap(),
            value,
            "{name}"
        );
        // The fixtures are written pretty with two spaces; the writer reproduces them.
        assert_eq!(pretty.trim_end(), text.trim_end(), "{name}");
    }
}

#[test]
fn yaml_round_trip() {
    for name in FIXTURES {
        let (_, value) = load(name);
        let yaml = to_yaml_string(&value).unwrap();
        let back = parse_document(&yaml, DocumentFormat::Yaml).unwrap();
        assert_eq!(back, value, "{name}:\n{yaml}");
        let typed = Pipeline::from_value(back).unwrap();
        assert_eq!(typed.to_value(), value, "{name}");
    }
}

#[test]
fn typed_fields_read_what_spinnaker_wrote() {
    let (_, value) = load("bake-jenkins-legacy.json");
    let pipeline = Pipeline::from_value(value).unwrap();
    assert_eq!(
        pipeline.limit_concurrent.as_ref().and_then(|l| l.as_bool()),
        Some(true)
    );
    assert_eq!(pipeline.stages[2].timeout_ms(), Some(3_600_000));
    assert_eq!(pipeline.stages[1].requisite_stage_ref_ids[0].key(), "1");
    assert!(pipeline.stage("3").is_some());
    assert_eq!(pipeline.field("executionEngine"), Some(&Value::from("v2")));

    let (_, value) = load("k8s-deploy-manifest.json");
    let pipeline = Pipeline::from_value(value).unwrap();
    assert_eq!(pipeline.triggers[0].trigger_type, "git");
    assert_eq!(pipeline.triggers[0].expected_artifact_ids.len(), 2);
    let artifact = pipeline.expected_artifacts[0]
        .match_artifact
        .as_ref()
        .unwrap();
    assert_eq!(
        artifact
            .artifact_type
            .as_ref()
            .and_then(|t| t.typed())
            .map(String::as_str),
        Some("github/file")
    );
}

#[test]
fn pipelines_built_in_code_serialize_like_front50() {
    let mut pipeline = Pipeline::new("shop", "Deploy");
    let mut stage = gennaker_core::Stage::new("1", "wait");
    stage.extra.insert("waitTime".to_owned(), Value::from(30));
    pipeline.stages.push(stage);
    let value = pipeline.to_value();
    assert_eq!(
        value,
        serde_json::json!({"application": "shop", "name": "Deploy",
            "stages": [{"refId": "1", "type": "wait", "waitTime": 30}]})
    );
    assert!(validate_pipeline_value(&value, &catalog()).is_valid());
}

/// Core knows Spinnaker's stage types; the runnable ones' rules live with their code and
/// are tested with the whole catalog in the binary's `pipeline_validation` tests.
fn catalog() -> gennaker_core::StageCatalog {
    gennaker_core::StageCatalog::spinnaker()
}
