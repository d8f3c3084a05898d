//! `gennaker canary config list|get|save|delete` against a real `gennaker server`
//! process, and `gennaker canary judge` still offline beside them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};

mod support;

use support::{BIN, Server, TOKEN};

/// Runs a client verb against `server` as the admin.
fn run(server: &Server, home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("GENNAKER_URL", server.url(""))
        .env("GENNAKER_TOKEN", TOKEN)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap()
}

fn ok(server: &Server, home: &Path, args: &[&str]) -> String {
    let output = run(server, home, args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const YAML: &str = r#"name: checkout-latency
applications: [checkout]
description: latency and errors of checkout
metrics:
  - name: errors
    groups: [errors]
    query: {type: builtin, metricName: error_rate}
    analysisConfigurations:
      canary: {direction: increase, critical: true}
  - name: p99
    groups: [latency]
    query: {type: prometheus, metricName: http_seconds, customFilterTemplate: by-pod}
templates:
  by-pod: 'pod=~"${scope}-.*"'
classifier:
  groupWeights: {errors: 60, latency: 40}
"#;

#[tokio::test]
async fn canary_configs_through_the_cli() {
    let data_dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let server = Server::start(data_dir.path().to_path_buf(), db.url.clone());
    server.ready(&reqwest::Client::new()).await;
    let home = home.path();
    ok(
        &server,
        home,
        &[
            "app",
            "save",
            "--name",
            "checkout",
            "--email",
            "t@example.com",
        ],
    );

    // save FILE (YAML) creates and prints the id.
    let file = data_dir.path().join("latency.yaml");
    std::fs::write(&file, YAML).unwrap();
    let saved = ok(
        &server,
        home,
        &["canary", "config", "save", file.to_str().unwrap()],
    );
    assert!(
        saved.contains("Created canary config 'checkout-latency' (revision 1)"),
        "{saved}"
    );
    let id = saved
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id in {saved}"))
        .trim()
        .to_owned();

    // Saving the file again (it has no id) updates the config of that name.
    let again = ok(
        &server,
        home,
        &["canary", "config", "save", file.to_str().unwrap()],
    );
    assert!(
        again.contains("is unchanged (still revision 1)") && again.contains(&id),
        "{again}"
    );
    std::fs::write(
        &file,
        YAML.replace("errors: 60, latency: 40", "errors: 70, latency: 30"),
    )
    .unwrap();
    let updated = ok(
        &server,
        home,
        &["canary", "config", "save", file.to_str().unwrap()],
    );
    assert!(
        updated.contains("as revision 2") && updated.contains(&id),
        "{updated}"
    );

    // list, with and without --application.
    let listed = ok(&server, home, &["canary", "config", "list"]);
    assert!(
        listed.contains("checkout-latency") && listed.contains(&id),
        "{listed}"
    );
    let none = ok(
        &server,
        home,
        &["canary", "config", "list", "--application", "other"],
    );
    assert!(!none.contains("checkout-latency"), "{none}");
    let as_json: Value = serde_json::from_str(&ok(
        &server,
        home,
        &[
            "canary",
            "config",
            "list",
            "--application",
            "checkout",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(as_json[0]["id"], id.as_str());

    // get by name or id; -o json prints the document to edit, which saves back by id.
    let shown = ok(
        &server,
        home,
        &["canary", "config", "get", "checkout-latency"],
    );
    assert!(
        shown.contains("errors (70)") && shown.contains("prometheus http_seconds"),
        "{shown}"
    );
    let document: Value = serde_json::from_str(&ok(
        &server,
        home,
        &["canary", "config", "get", &id, "-o", "json"],
    ))
    .unwrap();
    assert_eq!(document["id"], id.as_str());
    assert_eq!(document["classifier"]["groupWeights"]["errors"], json!(70));
    let mut renamed = document;
    renamed["name"] = json!("checkout-canary");
    let json_file = data_dir.path().join("renamed.json");
    std::fs::write(&json_file, serde_json::to_string(&renamed).unwrap()).unwrap();
    let saved = ok(
        &server,
        home,
        &["canary", "config", "save", json_file.to_str().unwrap()],
    );
    assert!(
        saved.contains("'checkout-canary' as revision 3") && saved.contains(&id),
        "{saved}"
    );
    let yaml = ok(
        &server,
        home,
        &["canary", "config", "get", "checkout-canary", "-o", "yaml"],
    );
    assert!(yaml.contains("name: checkout-canary"), "{yaml}");

    // An invalid document is refused with its paths; nothing is stored.
    let bad = data_dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"name": "bad", "applications": ["checkout"], "metrics": [{"name": "m", "query": {"type": "graphiteish"}}]}"#).unwrap();
    let output = run(
        &server,
        home,
        &["canary", "config", "save", bad.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("$.metrics[0].query.type"), "{stderr}");
    let output = run(&server, home, &["canary", "config", "get", "bad"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found"));

    // delete by name.
    let deleted = ok(
        &server,
        home,
        &["canary", "config", "delete", "checkout-canary"],
    );
    assert!(
        deleted.contains("Deleted canary config 'checkout-canary'"),
        "{deleted}"
    );
    let output = run(&server, home, &["canary", "config", "get", &id]);
    assert!(!output.status.success());

    // The offline judge is still there, and refuses server options.
    let output = Command::new(BIN)
        .args([
            "canary", "judge", "--config", "c.json", "--data", "d.json", "--url", "http://x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--url"));
}
