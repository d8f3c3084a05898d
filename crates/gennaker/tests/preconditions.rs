//! `clusterSize` preconditions against a real cluster: the server binary deploys the
//! demo app through the local provider, then pipelines count its server groups.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{Value, json};
use support::BIN;
use support::api::{Api, KillLeftovers, demo_processes, destroy_all, start_server};

/// A pipeline whose one stage checks that `shop-pre` has `expected` server groups.
fn gate() -> Value {
    json!({
        "application": "shop",
        "name": "gate",
        "parameterConfig": [{"name": "expected", "default": "1"}],
        "stages": [{
            "refId": "1", "type": "checkPreconditions", "name": "cluster size",
            "preconditions": [{"type": "clusterSize", "context": {
                "cluster": "shop-pre", "credentials": "local", "cloudProvider": "local",
                "regions": ["local"], "comparison": "==", "expected": "${parameters.expected}"
            }}]
        }]
    })
}

async fn run_gate(api: &Api, expected: u32) -> Value {
    let execution = api
        .post(
            "/api/v1/applications/shop/pipelines/gate/executions",
            json!({"parameters": {"expected": expected.to_string()}}),
        )
        .await;
    api.wait_end(execution["id"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_size_counts_the_server_groups_the_local_provider_runs() {
    let _leftovers = KillLeftovers("cs-");
    let (_dir, server) = start_server();
    let api = Api::new(&server);
    server.ready(&api.http).await;
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "email": "team@example.com"}),
    )
    .await;
    let deployed = api
        .task(json!({"job": [{"type": "deploy", "clusters": [{
            "application": "shop", "stack": "pre", "account": "local", "cloudProvider": "local",
            "capacity": {"min": 1, "max": 1, "desired": 1},
            "artifact": {"path": BIN}, "args": ["demo-app", "--version", "cs-v1"],
            "healthCheck": {"path": "/health"}
        }]}]}))
        .await;
    assert_eq!(deployed["status"], "SUCCEEDED", "{deployed:#}");
    assert_eq!(demo_processes("cs-v1").len(), 1);
    api.post("/api/v1/applications/shop/pipelines", gate())
        .await;

    let holds = run_gate(&api, 1).await;
    assert_eq!(holds["status"], "SUCCEEDED", "{holds:#}");

    let fails = run_gate(&api, 2).await;
    assert_eq!(fails["status"], "TERMINAL", "{fails:#}");
    let check = fails["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cluster size")
        .unwrap();
    assert_eq!(check["status"], "TERMINAL");
    let error = check["context"]["exception"]["details"]["error"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        error,
        "precondition 1 (clusterSize) failed: expected 2 server groups in cluster shop-pre (comparison ==) in region local of account local but found 1: shop-pre-v000",
        "{fails:#}"
    );
    destroy_all(&api, "cs-").await;
    drop(server);
}
