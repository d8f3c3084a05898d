//! Property tests: no input makes the parser or the validators panic, and every
//! document the validator accepts loads into the typed model and writes back unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use gennaker_core::{
    DocumentFormat, Pipeline, parse_document, to_yaml_string, validate_application_value,
    validate_pipeline_value,
};
use proptest::prelude::*;
use serde_json::{Map, Value};
use support::local_server_catalog;

/// Keys real pipelines use, so generated trees reach deep into the validators.
const KEYS: &[&str] = &[
    "application",
    "name",
    "id",
    "stages",
    "triggers",
    "parameterConfig",
    "notifications",
    "expectedArtifacts",
    "limitConcurrent",
    "keepWaitingPipelines",
    "disabled",
    "refId",
    "requisiteStageRefIds",
    "type",
    "waitTime",
    "stageTimeoutMs",
    "failPipeline",
    "continuePipeline",
    "stageEnabled",
    "expression",
    "clusters",
    "account",
    "credentials",
    "stack",
    "freeFormDetails",
    "capacity",
    "min",
    "max",
    "desired",
    "strategy",
    "url",
    "method",
    "waitForCompletion",
    "statusUrlResolution",
    "statusJsonPath",
    "pipeline",
    "variables",
    "key",
    "value",
    "preconditions",
    "context",
    "cronExpression",
    "expectedArtifactIds",
    "matchArtifact",
    "defaultArtifact",
    "useDefaultArtifact",
    "when",
    "address",
    "options",
    "hasOptions",
    "default",
    "canaryConfig",
    "canaryConfigId",
    "scoreThresholds",
    "pass",
    "marginal",
    "scopes",
    "cluster",
    "target",
    "action",
    "restrictedExecutionWindow",
    "whitelist",
    "days",
    "startHour",
    "roles",
    "permissions",
    "READ",
    "EXECUTE",
    "cloudProviders",
    "email",
    "spelEvaluator",
    "index",
    "x-extra",
];

/// String values real pipelines use.
const STRINGS: &[&str] = &[
    "",
    "1",
    "2",
    "3",
    "wait",
    "deploy",
    "webhook",
    "manualJudgment",
    "pipeline",
    "bake",
    "wiat",
    "evaluateVariables",
    "checkPreconditions",
    "kayentaCanary",
    "resizeServerGroup",
    "cron",
    "docker",
    "git",
    "slack",
    "email",
    "expression",
    "true",
    "false",
    "${x}",
    "0 0 12 * * ?",
    "shop",
    "shop-prod",
    "a-b",
    "redblack",
    "https://x.example.com",
    "getMethod",
    "webhookResponse",
    "pipeline.failed",
    "current_asg_dynamic",
    "PT1H",
    "75",
    "scale_exact",
    "EXPLICIT",
    "v4",
    "café",
    "\u{0}",
    "[",
    "'",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ]
}

/// Arbitrary JSON trees whose object keys are mostly real pipeline keys.
fn pipeline_like() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
                        1 => "[a-zA-Z ]{0,6}",
                    ],
                    inner,
                ),
                0..8,
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Checks every invariant on one value.
fn check_value(value: &Value) {
    let report = validate_pipeline_value(value, &local_server_catalog());
    let _ = validate_application_value(value);
    if report.is_valid() {
        let pipeline = Pipeline::from_value(value.clone())
            .unwrap_or_else(|e| panic!("valid but not loadable: {e}\n{value}"));
        assert_eq!(&pipeline.to_value(), value, "round trip");
    }
    if let Ok(yaml) = to_yaml_string(value) {
        let back = parse_document(&yaml, DocumentFormat::Yaml);
        // Floats that YAML cannot spell exactly are allowed to differ; everything else
        // must come back as it was.
        if !contains_float(value) {
            assert_eq!(back.as_ref().ok(), Some(value), "yaml:\n{yaml}");
        }
    }
}

fn contains_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(contains_float),
        Value::Object(map) => map.values().any(contains_float),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        for format in [DocumentFormat::Json, DocumentFormat::Yaml] {
            if let Ok(value) = parse_document(&text, format) {
                check_value(&value);
            }
        }
    }

    #[test]
    fn arbitrary_yamlish_text_never_panics(text in "[-:{}\\[\\],&*!|>'\"#?% \n\ta-z0-9]{0,200}") {
        for format in [DocumentFormat::Json, DocumentFormat::Yaml] {
            if let Ok(value) = parse_document(&text, format) {
                check_value(&value);
            }
        }
    }

    #[test]
    fn arbitrary_trees_validate_without_panicking(value in pipeline_like()) {
        check_value(&value);
    }

    #[test]
    fn wrapped_trees_reach_the_stage_validators(
        stages in prop::collection::vec(pipeline_like(), 0..6),
        triggers in prop::collection::vec(pipeline_like(), 0..3),
        extra in pipeline_like(),
    ) {
        let mut doc = serde_json::json!({"application": "shop", "name": "p"});
        doc["stages"] = Value::Array(stages);
        doc["triggers"] = Value::Array(triggers);
        doc["extra"] = extra;
        check_value(&doc);
    }

    #[test]
    fn valid_stage_graphs_round_trip(
        edges in prop::collection::vec(prop::collection::vec(0usize..8, 0..3), 1..8),
        numeric in any::<bool>(),
    ) {
        let stages: Vec<Value> = edges.iter().enumerate().map(|(i, deps)| {
            let id = |n: usize| if numeric { Value::from(n + 1) } else { Value::from((n + 1).to_string()) };
            serde_json::json!({
                "refId": id(i),
                "type": "wait",
                "waitTime": 1,
                "requisiteStageRefIds": deps.iter().map(|d| id(*d)).collect::<Vec<_>>(),
            })
        }).collect();
        let doc = serde_json::json!({"application": "shop", "name": "p", "stages": stages});
        let report = validate_pipeline_value(&doc, &local_server_catalog());
        // Edges only to earlier stages form a DAG: then every problem must be a dangling,
        // self or cycle error that the generated edges really contain.
        let is_dag = edges.iter().enumerate().all(|(i, deps)| deps.iter().all(|d| *d < i));
        if is_dag {
            prop_assert!(report.is_valid(), "{}", report);
        }
        check_value(&doc);
    }
}
