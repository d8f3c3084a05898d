//! The realistic Spinnaker pipelines in `crates/gennaker-core/tests/fixtures/pipelines`
//! validate with exactly the expected warnings against every stage type the binary runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use support::local_server_catalog;

use gennaker_core::{DocumentFormat, Severity, parse_document, validate_pipeline_value};
use serde_json::Value;

/// Fixture file, and the (path, message fragment) of every warning it must produce.
const FIXTURES: &[(&str, &[(&str, &str)])] = &[
    ("deploy-redblack-docker.json", &[]),
    ("deploy-highlander-cron.json", &[]),
    ("deploy-rollingredblack.json", &[]),
    ("manual-judgment-branches.json", &[]),
    ("webhook-wait-for-completion.json", &[]),
    ("parallel-branches-join.json", &[]),
    ("check-preconditions.json", &[]),
    ("child-pipeline.json", &[]),
    ("kayenta-canary.json", &[]),
    ("kayenta-canary-automatic.json", &[]),
    ("evaluate-variables-stage-enabled.json", &[]),
    (
        "k8s-deploy-manifest.json",
        &[
            (
                "$.stages[0].type",
                "'bakeManifest' is a Spinnaker stage Gennaker cannot run yet",
            ),
            (
                "$.stages[1].account",
                "no Kubernetes account is configured on this server",
            ),
            (
                "$.stages[2].account",
                "no Kubernetes account is configured on this server",
            ),
        ],
    ),
    (
        "bake-jenkins-legacy.json",
        &[
            (
                "$.stages[0].type",
                "'jenkins' is a Spinnaker stage Gennaker cannot run yet",
            ),
            (
                "$.stages[1].type",
                "'bake' is a Spinnaker stage Gennaker cannot run yet",
            ),
            (
                "$.stages[2].clusters[0].cloudProvider",
                "cloud provider 'aws' is not configured on this server",
            ),
        ],
    ),
    (
        "server-group-operations.json",
        &[(
            "$.stages[0].type",
            "'findArtifactFromExecution' is a Spinnaker stage Gennaker cannot run yet",
        )],
    ),
    ("load-balancer-firewall.json", &[]),
];

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gennaker-core/tests/fixtures/pipelines")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    parse_document(&text, DocumentFormat::Json).unwrap()
}

#[test]
fn fixtures_validate_with_exactly_the_expected_warnings() {
    let catalog = local_server_catalog();
    for (name, expected) in FIXTURES {
        let value = load(name);
        let report = validate_pipeline_value(&value, &catalog);
        let errors: Vec<_> = report.errors().collect();
        assert!(errors.is_empty(), "{name}: unexpected errors:\n{report}");
        let warnings: Vec<_> = report.warnings().collect();
        assert_eq!(
            warnings.len(),
            expected.len(),
            "{name}: warnings:\n{report}"
        );
        for (path, fragment) in *expected {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.path == *path && w.message.contains(fragment)),
                "{name}: no warning at {path} containing {fragment:?}:\n{report}"
            );
        }
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.severity == Severity::Warning)
        );
    }
}
