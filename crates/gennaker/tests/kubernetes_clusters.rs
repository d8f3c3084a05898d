//! The clusters view of a Kubernetes account through the real `gennaker server` and
//! `gennaker` CLI processes, on the real test API server (`../shared/k8s`, or the one
//! `GENNAKER_TEST_KUBECONFIG` names; skipped with one line saying so when there is
//! none): a ReplicaSet as a server group, its pods as instances, one Ready and one not;
//! a Service and an Ingress routing to it as load balancers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api as KubeApi, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::api::Api;
use support::{BIN, Server, TOKEN, test_host_policy};

/// The admin kubeconfig of the test cluster, started (or reused) like the provider
/// crate's tests do.
fn kubeconfig() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GENNAKER_TEST_KUBECONFIG") {
        return Some(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("../shared/k8s/start-cluster");
    let dir = root.join("target/k8s-test-cluster");
    let started = script.is_file()
        && Command::new(&script)
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
    if !started {
        eprintln!(
            "skipped: no Kubernetes API server; set GENNAKER_TEST_KUBECONFIG to an admin kubeconfig (scripts/test.sh starts ../shared/k8s and sets it)"
        );
        return None;
    }
    Some(dir.join("kubeconfig"))
}

fn cli(server: &Server, home: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("GENNAKER_URL", server.url(""))
        .env("GENNAKER_TOKEN", TOKEN)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gennaker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn set_ready(pods: &KubeApi<Pod>, name: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"phase": "Running", "podIP": "10.244.1.8",
        "conditions": [{"type": "Ready", "status": status, "message": if ready { "" } else { "readiness probe failed" }},
                       {"type": "ContainersReady", "status": status}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_api_and_cli_show_kubernetes_workloads_with_health() {
    let Some(kubeconfig) = kubeconfig() else {
        return;
    };
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let namespace = format!("kview-{nanos:08x}-{}", std::process::id());
    let namespaces: KubeApi<Namespace> = KubeApi::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let accounts: KubeApi<ServiceAccount> = KubeApi::namespaced(client.clone(), &namespace);
    for _ in 0..200 {
        if accounts.get_opt("default").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gennaker.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[kubernetes.accounts]]\nname = \"k8s\"\nkubeconfig = {:?}\nnamespaces = [{namespace:?}]\n",
            test_host_policy(),
            kubeconfig.display().to_string()
        ),
    )
    .unwrap();
    let url = format!("sqlite://{}/gennaker.db", dir.path().display());
    let server = Server::start_with(
        dir.path().to_path_buf(),
        url,
        vec!["--config".into(), config.display().to_string()],
    );
    let api = Api::new(&server);
    server.ready(&api.http).await;
    api.post(
        "/api/v1/applications",
        json!({"name": "kview", "email": "team@example.com"}),
    )
    .await;

    let sets: KubeApi<ReplicaSet> = KubeApi::namespaced(client.clone(), &namespace);
    sets.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "kview-prod-v000", "annotations": {"moniker.spinnaker.io/application": "kview"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "kview"}},
                     "template": {"metadata": {"labels": {"app": "kview"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let pods: KubeApi<Pod> = KubeApi::namespaced(client.clone(), &namespace);
    let mut names = Vec::new();
    for _ in 0..200 {
        names = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        if names.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    names.sort();
    assert_eq!(names.len(), 2, "the ReplicaSet controller made two pods");
    set_ready(&pods, &names[0], true).await;
    set_ready(&pods, &names[1], false).await;

    // The API: the server group with one Up and one Down instance.
    let mut group = Value::Null;
    for _ in 0..200 {
        let groups = api
            .get("/api/v1/applications/kview/serverGroups?cloudProvider=kubernetes")
            .await;
        group = groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "kview-prod-v000")
            .cloned()
            .unwrap_or(Value::Null);
        let health: Vec<&str> = group["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["health"].as_str())
            .collect();
        if health.contains(&"Up") && health.contains(&"Down") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(group["cloudProvider"], "kubernetes", "{group:#}");
    assert_eq!(group["account"], "k8s");
    let down = group["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == names[1].as_str())
        .unwrap();
    assert_eq!(down["health"], "Down", "{group:#}");
    assert!(down["reason"].as_str().unwrap().contains("not ready"));
    let clusters = api
        .get("/api/v1/applications/kview/clusters?cloudProvider=kubernetes")
        .await;
    assert_eq!(clusters[0]["name"], "kview-prod", "{clusters:#}");
    assert_eq!(clusters[0]["serverGroups"], json!(["kview-prod-v000"]));

    // The CLI: the same, as a table and one group's instances.
    let table = cli(
        &server,
        dir.path(),
        &["cluster", "list", "kview", "--cloud-provider", "kubernetes"],
    );
    let row = table
        .lines()
        .find(|l| l.contains("kview-prod-v000"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("kview-prod") && row.contains("k8s"), "{table}");
    assert!(row.contains("1/2 up") && row.contains("enabled"), "{table}");
    let shown = cli(
        &server,
        dir.path(),
        &[
            "servergroup",
            "get",
            "kview",
            "kview-prod-v000",
            "--cloud-provider",
            "kubernetes",
        ],
    );
    for (pod, health) in [(&names[0], "Up"), (&names[1], "Down")] {
        let line = shown
            .lines()
            .find(|l| l.contains(pod.as_str()))
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(line.contains(health), "{shown}");
    }

    // An Ingress is a load balancer of its own, routing through its Service to the
    // group: in the API and the CLI.
    let services: KubeApi<Service> = KubeApi::namespaced(client.clone(), &namespace);
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "kview-web", "annotations": {"moniker.spinnaker.io/application": "kview"}},
                "spec": {"selector": {"app": "kview"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let ingresses: KubeApi<Ingress> = KubeApi::namespaced(client.clone(), &namespace);
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "kview"},
                "spec": {"ingressClassName": "nginx", "rules": [{"host": "kview.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "kview-web", "port": {"number": 80}}}}]}}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut ingress = Value::Null;
    for _ in 0..200 {
        let balancers = api
            .get("/api/v1/applications/kview/loadBalancers?cloudProvider=kubernetes")
            .await;
        ingress = balancers
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "ingress kview")
            .cloned()
            .unwrap_or(Value::Null);
        if !ingress["weights"].as_object().is_none_or(|w| w.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ingress["backends"],
        json!(["service kview-web"]),
        "{ingress:#}"
    );
    assert_eq!(
        ingress["weights"],
        json!({"kview-prod-v000": 100}),
        "{ingress:#}"
    );
    assert_eq!(ingress["address"], "kview.example", "{ingress:#}");
    assert_eq!(ingress["details"]["kind"], "ingress", "{ingress:#}");
    let table = cli(
        &server,
        dir.path(),
        &[
            "loadbalancer",
            "list",
            "kview",
            "--cloud-provider",
            "kubernetes",
        ],
    );
    let row = table
        .lines()
        .find(|l| l.contains("ingress kview"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("via service kview-web: kview-prod-v000 100%"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("kview-web")),
        "the Service too: {table}"
    );

    drop(server);
    let _ = namespaces
        .delete(&namespace, &DeleteParams::background())
        .await;
}
