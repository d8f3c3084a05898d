//! The manifest stages on a real API server (see `support`): skipped, with one line
//! saying how to point them at a cluster, when there is none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use gennaker_engine::ExecutionStatus;
use gennaker_kubernetes::AccountSettings;
use gennaker_kubernetes::manifest::{
    ARTIFACT_TYPE, ARTIFACT_VERSION, MONIKER_APPLICATION, MONIKER_CLUSTER,
};
use serde_json::{Value, json};
use support::{Behaviour, Kit, error, succeeded};

fn replica_set(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image,
                    "envFrom": [{"configMapRef": {"name": "web-config"}}]}]}}}
    })
}

fn config_map(value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"},
           "data": {"greeting": value}})
}

fn deployment(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {"replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": image}]}}}
    })
}

fn deploy(name: &str, manifests: Vec<Value>) -> Value {
    json!({"name": name, "type": "deployManifest", "source": "text", "manifests": manifests,
           "moniker": {"app": "shop"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_and_config_maps_are_versioned_and_identical_content_reuses_its_version() {
    let Some(kit) = Kit::new("version", vec![]).await else {
        return;
    };
    let first = kit
        .run(vec![deploy(
            "v0",
            vec![replica_set("nginx:1.25"), config_map("hello")],
        )])
        .await;
    succeeded(&first);
    assert_eq!(kit.names("apps/v1", "ReplicaSet").await, ["web-v000"]);
    let rs = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    let annotations = &rs["metadata"]["annotations"];
    assert_eq!(annotations[MONIKER_APPLICATION], "shop");
    assert_eq!(annotations[MONIKER_CLUSTER], "replicaSet web");
    assert_eq!(annotations[ARTIFACT_TYPE], "kubernetes/replicaSet");
    assert_eq!(annotations[ARTIFACT_VERSION], "v000");
    assert_eq!(
        rs["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "web-config-v000",
        "the reference follows the versioned ConfigMap"
    );
    let managers: Vec<&str> = rs["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"gennaker"), "{managers:?}");

    // The same content again: same versions, nothing new.
    let again = kit
        .run(vec![deploy(
            "same",
            vec![replica_set("nginx:1.25"), config_map("hello")],
        )])
        .await;
    succeeded(&again);
    assert_eq!(kit.names("apps/v1", "ReplicaSet").await, ["web-v000"]);
    assert_eq!(
        kit.names("v1", "ConfigMap").await,
        ["kube-root-ca.crt", "web-config-v000"]
    );

    // New content: v001, with only the changed ConfigMap getting a new version too.
    let next = kit
        .run(vec![deploy(
            "v1",
            vec![replica_set("nginx:1.26"), config_map("hello")],
        )])
        .await;
    succeeded(&next);
    assert_eq!(
        kit.names("apps/v1", "ReplicaSet").await,
        ["web-v000", "web-v001"]
    );
    let outputs = &gennaker_engine::testing::stage(&next, "v1").outputs;
    assert_eq!(
        outputs["manifestNamesByNamespace"][&kit.namespace],
        json!(["configMap web-config-v000", "replicaSet web-v001"])
    );
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deployment_is_watched_to_completion_and_undone_one_revision() {
    let Some(kit) = Kit::new("rollout", vec![]).await else {
        return;
    };
    let first = kit
        .run(vec![deploy("first", vec![deployment("nginx:1.25")])])
        .await;
    succeeded(&first);
    let live = kit.get("apps/v1", "Deployment", "api").await.unwrap();
    assert_eq!(live["status"]["readyReplicas"], 3);

    let second = kit
        .run(vec![deploy("second", vec![deployment("nginx:1.26")])])
        .await;
    succeeded(&second);
    let live = kit.get("apps/v1", "Deployment", "api").await.unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(live["status"]["updatedReplicas"], 3);
    assert_eq!(live["status"]["replicas"], 3, "the surge is over");

    let undo = kit
        .run(vec![json!({"name": "undo", "type": "undoRolloutManifest",
                         "manifestName": "deployment api", "numRevisionsBack": 1})])
        .await;
    succeeded(&undo);
    let live = kit.get("apps/v1", "Deployment", "api").await.unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(
        gennaker_engine::testing::stage(&undo, "undo").outputs["revision"],
        1
    );
    assert_eq!(live["status"]["readyReplicas"], 3);
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pod_fails_the_deploy_at_once_with_its_reason() {
    let Some(kit) = Kit::new("crash", vec![]).await else {
        return;
    };
    kit.behave(Behaviour::CrashLoop);
    let run = kit
        .run(vec![deploy("crash", vec![deployment("broken:1")])])
        .await;
    assert_eq!(run.status, ExecutionStatus::Terminal);
    let why = error(&run, "crash");
    assert!(why.contains("deployment api"), "{why}");
    assert!(why.contains("CrashLoopBackOff"), "{why}");
    assert!(why.contains("last exit code 1"), "{why}");
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_rbac_rights_gets_a_403_naming_verb_resource_and_namespace() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    let (Some(url), Some(token), Some(ca)) = (
        cluster.env.get("K8S_API_URL"),
        cluster.env.get("K8S_USER_TOKEN"),
        cluster.env.get("K8S_CA_FILE"),
    ) else {
        eprintln!("skipped: the cluster's env file has no K8S_USER_TOKEN");
        return;
    };
    let user = AccountSettings {
        name: "limited".into(),
        url: Some(url.clone()),
        token: Some(token.clone()),
        ca_file: Some(ca.into()),
        ..AccountSettings::default()
    };
    let kit = Kit::new("forbidden", vec![user]).await.unwrap();
    let mut stage = deploy("denied", vec![config_map("x")]);
    stage["account"] = json!("limited");
    let run = kit.run(vec![stage]).await;
    assert_eq!(run.status, ExecutionStatus::Terminal);
    let why = error(&run, "denied");
    assert!(why.contains("account 'limited' may not"), "{why}");
    assert!(why.contains("403"), "{why}");
    assert!(why.contains("configmaps"), "{why}");
    assert!(
        why.contains(&format!("namespace '{}'", kit.namespace)),
        "{why}"
    );
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_label_selector_scale_and_patch() {
    let Some(kit) = Kit::new("ops", vec![]).await else {
        return;
    };
    let mut keep = config_map("a");
    keep["metadata"]["name"] = json!("keep");
    keep["metadata"]["labels"] = json!({"tier": "db"});
    keep["metadata"]["annotations"] = json!({"strategy.spinnaker.io/versioned": "false"});
    let mut drop = config_map("b");
    drop["metadata"]["name"] = json!("drop");
    drop["metadata"]["labels"] = json!({"tier": "web"});
    drop["metadata"]["annotations"] = json!({"strategy.spinnaker.io/versioned": "false"});
    let run = kit
        .run(vec![
            deploy("setup", vec![keep, drop, deployment("nginx:1.25")]),
            json!({"name": "scale", "type": "scaleManifest", "manifestName": "deployment api", "replicas": 1}),
            json!({"name": "patch", "type": "patchManifest", "manifestName": "deployment api",
                   "options": {"mergeStrategy": "strategic", "record": true},
                   "patchBody": [{"metadata": {"labels": {"patched": "yes"}}}]}),
            json!({"name": "delete", "type": "deleteManifest", "kinds": ["configMap"],
                   "labelSelectors": {"selectors": [{"kind": "EQUALS", "key": "tier", "values": ["web"]}]},
                   "options": {"cascading": true, "gracePeriodSeconds": 0}}),
        ])
        .await;
    succeeded(&run);
    assert_eq!(
        kit.names("v1", "ConfigMap").await,
        ["keep", "kube-root-ca.crt"]
    );
    let live = kit.get("apps/v1", "Deployment", "api").await.unwrap();
    assert_eq!(live["spec"]["replicas"], 1);
    assert_eq!(live["metadata"]["labels"]["patched"], "yes");
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_outside_the_allow_list_are_refused_before_anything_is_applied() {
    let Some(kit) = Kit::new("allow", vec![]).await else {
        return;
    };
    let mut stage = deploy("elsewhere", vec![config_map("x")]);
    stage["namespaceOverride"] = json!("kube-system");
    let run = kit.run(vec![stage]).await;
    assert_eq!(run.status, ExecutionStatus::Terminal);
    let why = error(&run, "elsewhere");
    assert!(why.contains("may act only in namespaces"), "{why}");
    assert!(why.contains("'kube-system'"), "{why}");
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_repeated_at_every_step_or_crashing_after_every_commit_makes_one_version() {
    use gennaker_engine::testing::{Fault, FaultRun, TestBackend};
    for fault in [Fault::RepeatEveryStep, Fault::CrashAfterEveryCommit] {
        let Some(kit) = Kit::new("faults", vec![]).await else {
            return;
        };
        let pipeline = kit.pipeline(vec![
            deploy(
                "deploy",
                vec![replica_set("nginx:1.25"), config_map("hello")],
            ),
            json!({"name": "grow", "type": "scaleManifest", "manifestName": "replicaSet web-v000", "replicas": 3}),
            json!({"name": "restamp", "type": "patchManifest", "manifestName": "replicaSet web-v000",
                   "options": {"mergeStrategy": "json"},
                   "patchBody": [{"op": "add", "path": "/metadata/labels/stamped", "value": "once"}]}),
        ]);
        let accounts = kit.accounts.clone();
        let outcome = FaultRun::new(TestBackend::Sqlite, fault, pipeline)
            .with_stages(move |registry| gennaker_kubernetes::register(registry, accounts.clone()))
            .clock_step(std::time::Duration::from_secs(1))
            .run()
            .await;
        outcome.assert_succeeded();
        outcome.assert_clean();
        assert_eq!(
            kit.names("apps/v1", "ReplicaSet").await,
            ["web-v000"],
            "{fault:?}"
        );
        assert_eq!(
            kit.names("v1", "ConfigMap").await,
            ["kube-root-ca.crt", "web-config-v000"],
            "{fault:?}"
        );
        kit.finish().await;
    }
}
