//! Kayenta's "Real Time (Automatic)" end to end on the engine: a `kayentaCanary` stage
//! with `deployments` deploys a control (production's spec, found in the baseline
//! cluster) and an experiment (the new version) with highlander, analyses them with
//! the real canary stage on a metric source that reads the fake cloud (a group whose
//! spec says `"bad": true` answers three times the others' values), and removes both
//! clusters after the delay, whether the canary passed or failed. Both outcomes
//! survive every step repeated and a crash after every commit with each group created
//! once and nothing left; a cluster of another application is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::testing::{self, Fault, FaultRun, TestBackend, stage};
use gennaker_engine::{Execution, ExecutionStatus, fault_test};
use gennaker_store::Store;
use serde_json::{Value, json};
use support::FakeCloud;
use support::canary::{ACCOUNT, Seen, canary_stages};

/// Production `shop-prod-v000` (v1, two instances behind `shop-lb`).
async fn seeded_cloud() -> Arc<FakeCloud> {
    let cloud = Arc::new(FakeCloud::default());
    cloud.balancer("shop-lb").await;
    cloud
        .seed("shop-prod", 2, json!({"artifact": "v1"}), &["shop-lb"])
        .await;
    cloud
}

/// One side as Deck writes it: the same server-group command cloned into both, with
/// `-baseline` / `-canary` details, numbers as strings.
fn side(detail: &str, bad: bool) -> Value {
    json!({
        "application": "shop", "stack": "prod", "freeFormDetails": detail,
        "account": "local", "cloudProvider": "local", "strategy": "",
        "capacity": {"min": "1", "max": "1", "desired": "1"},
        "loadBalancers": ["shop-lb"], "command": "./serve",
        "artifact": {"reference": "v2"}, "bad": bad,
    })
}

/// A `kayentaCanary` stage deploying its own groups; `edit` changes it.
fn pipeline(bad: bool, edit: impl FnOnce(&mut Value)) -> Value {
    let mut stage = json!({
        "refId": "1", "type": "kayentaCanary", "name": "Canary Analysis",
        "analysisType": "realTimeAutomatic",
        "canaryConfig": {
            "canaryConfigName": "shop-canary", "metricsAccountName": ACCOUNT,
            "lifetimeDuration": "PT30S", "canaryAnalysisIntervalMins": "0.25",
            "scoreThresholds": {"marginal": "50", "pass": "80"},
            "scopes": [{"scopeName": "default", "step": "5"}]
        },
        "deployments": {
            "baseline": {"cloudProvider": "local", "application": "shop", "account": "local", "cluster": "shop-prod"},
            "serverGroupPairs": [{"control": side("baseline", bad), "experiment": side("canary", bad)}],
            "delayBeforeCleanup": "PT1M"
        }
    });
    edit(&mut stage);
    json!({"stages": [stage]})
}

/// What every run changes: each side created, disabled, destroyed; nothing else.
const CHANGES: &[&str] = &[
    "create shop-prod-baseline-v000 1",
    "create shop-prod-canary-v000 1",
    "disable shop-prod-baseline-v000",
    "disable shop-prod-canary-v000",
    "destroy shop-prod-baseline-v000",
    "destroy shop-prod-canary-v000",
];

/// The log's entries sorted (the two sides run side by side), after checking its
/// phases: every create before any disable, every disable before any destroy.
fn changes(cloud: &FakeCloud) -> Vec<String> {
    let log = cloud.log();
    let last = |verb: &str| log.iter().rposition(|l| l.starts_with(verb));
    let first = |verb: &str| log.iter().position(|l| l.starts_with(verb));
    assert!(last("create") < first("disable"), "{log:?}");
    assert!(last("disable") < first("destroy"), "{log:?}");
    let mut sorted = log;
    sorted.sort();
    sorted
}

/// [`CHANGES`] sorted, as [`changes`] gives them.
fn expected() -> Vec<String> {
    let mut sorted: Vec<String> = CHANGES.iter().map(|l| (*l).to_owned()).collect();
    sorted.sort();
    sorted
}

struct Harness {
    kit: testing::Harness,
    cloud: Arc<FakeCloud>,
    seen: Seen,
}

impl Harness {
    async fn new(backend: TestBackend) -> Self {
        let cloud = seeded_cloud().await;
        let seen = Seen::default();
        let kit = testing::Harness::with_stages(backend, canary_stages(&cloud, &seen)).await;
        Harness { kit, cloud, seen }
    }
}

impl Deref for Harness {
    type Target = testing::Harness;

    fn deref(&self) -> &testing::Harness {
        &self.kit
    }
}

/// The children of the stage named `parent`, by name.
fn children<'a>(execution: &'a Execution, parent: &str) -> Vec<&'a str> {
    let parent = stage(execution, parent);
    execution
        .stages
        .iter()
        .filter(|s| s.parent_stage_id.as_deref() == Some(parent.id.as_str()))
        .map(|s| s.name.as_str())
        .collect()
}

gennaker_engine::engine_test!(
    a_good_canary_deploys_both_sides_scopes_them_and_cleans_up_after_the_delay,
    |h: Harness| {
        let run = h.run("canary", pipeline(false, |_| {})).await;
        let done = h.finish(&run.id).await;
        testing::succeeded(&done);
        assert_eq!(changes(&h.cloud), expected(), "{}", testing::summary(&done));
        assert_eq!(h.cloud.names(), ["shop-prod-v000"], "nothing left behind");
        assert!(
            !h.cloud.peek("shop-prod-v000").unwrap().disabled,
            "production untouched"
        );
        assert_eq!(
            children(&done, "Canary Analysis"),
            [
                "Deploy Canary Server Groups",
                "runCanaryIntervals",
                "Cleanup Canary Clusters"
            ]
        );
        assert_eq!(
            children(&done, "Deploy Canary Server Groups"),
            [
                "Find baseline image",
                "Deploy control server groups",
                "Deploy experiment server groups"
            ]
        );
        // The control ran production's spec although Deck cloned the new one into it.
        let seen = h.seen.lock().unwrap().clone();
        assert_eq!(seen["shop-prod-baseline-v000"], "v1", "{seen:?}");
        assert_eq!(seen["shop-prod-canary-v000"]["reference"], "v2", "{seen:?}");
        let deployed = &stage(&done, "Deploy Canary Server Groups").outputs["deployedServerGroups"];
        assert_eq!(
            deployed,
            &json!([{"controlScope": "shop-prod-baseline-v000", "controlLocation": "local", "controlAccountId": "local",
                     "experimentScope": "shop-prod-canary-v000", "experimentLocation": "local", "experimentAccountId": "local"}])
        );
        // Every judgement's scopes are the deployed groups, marked as Orca marks them.
        let first = stage(&done, "Run Canary #1");
        let scope = &first.context["scopes"]["default"];
        assert_eq!(scope["controlScope"]["scope"], "shop-prod-baseline-v000");
        assert_eq!(scope["experimentScope"]["scope"], "shop-prod-canary-v000");
        assert_eq!(scope["controlScope"]["location"], "local");
        assert_eq!(
            scope["experimentScope"]["extendedScopeParams"]["type"],
            "asg"
        );
        assert_eq!(
            scope["experimentScope"]["extendedScopeParams"]["dataset"],
            "regional"
        );
        assert_eq!(
            stage(&done, "Canary Analysis").context["canaryScores"],
            json!([100.0, 100.0])
        );
        // Disabled, kept for the delay, then destroyed.
        let wait = stage(&done, "Wait before cleanup");
        assert_eq!(wait.context["waitTime"], 60);
        assert!(wait.end_time.unwrap() >= wait.start_time.unwrap() + 60_000);
        let shrink = stage(&done, "Cleanup control cluster shop-prod-baseline");
        assert_eq!(
            shrink.context["destroyedServerGroups"],
            json!(["shop-prod-baseline-v000"])
        );
        assert!(h.queue_is_empty().await);
    }
);

gennaker_engine::engine_test!(a_failed_canary_is_cleaned_up_all_the_same, |h: Harness| {
    let run = h.run("canary", pipeline(true, |_| {})).await;
    let done = h.finish(&run.id).await;
    assert_eq!(
        done.status,
        ExecutionStatus::Terminal,
        "{}",
        testing::summary(&done)
    );
    let canary = stage(&done, "Canary Analysis");
    assert_eq!(canary.status, ExecutionStatus::Terminal);
    assert_eq!(
        stage(&done, "Run Canary #1").status,
        ExecutionStatus::Terminal,
        "the first judgement fails"
    );
    let cleanup = stage(&done, "Cleanup Canary Clusters");
    assert_eq!(cleanup.status, ExecutionStatus::Succeeded);
    assert_eq!(
        done.stages
            .iter()
            .filter(|s| s.name == "Cleanup Canary Clusters")
            .count(),
        1,
        "the after stage planned for success gave way to the on-failure one"
    );
    assert_eq!(changes(&h.cloud), expected(), "{}", testing::summary(&done));
    assert_eq!(h.cloud.names(), ["shop-prod-v000"], "nothing left behind");
    let seen = h.seen.lock().unwrap().clone();
    assert_eq!(seen["shop-prod-baseline-v000"], "v1", "{seen:?}");
    let wait = stage(&done, "Wait before cleanup");
    assert!(wait.end_time.unwrap() >= wait.start_time.unwrap() + 60_000);
});

gennaker_engine::engine_test!(
    a_failed_deploy_is_cleaned_up_and_continue_pipeline_is_honoured,
    |h: Harness| {
        let run = h
            .run(
                "canary",
                pipeline(false, |stage| {
                    stage["continuePipeline"] = json!(true);
                    stage["failPipeline"] = json!(false);
                    let experiment = &mut stage["deployments"]["serverGroupPairs"][0]["experiment"];
                    experiment["unhealthy"] = json!(true);
                    experiment["waitForUpInstancesTimeoutMs"] = json!(20_000);
                }),
            )
            .await;
        let done = h.finish(&run.id).await;
        let canary = stage(&done, "Canary Analysis");
        assert_eq!(
            canary.status,
            ExecutionStatus::FailedContinue,
            "{}",
            testing::summary(&done)
        );
        assert_eq!(
            stage(&done, "runCanaryIntervals").status,
            ExecutionStatus::NotStarted
        );
        assert_eq!(
            stage(&done, "Cleanup Canary Clusters").status,
            ExecutionStatus::Succeeded
        );
        assert_eq!(h.cloud.names(), ["shop-prod-v000"], "nothing left behind");
        assert_eq!(h.cloud.count("destroy"), 2, "{:?}", h.cloud.log());
    }
);

gennaker_engine::engine_test!(
    another_applications_clusters_are_refused_and_left_alone,
    |h: Harness| {
        for role in ["dev", "bankers"] {
            h.store.create_role(role, "").await.unwrap();
        }
        h.store
            .create_user("alice", false, &["dev".into()])
            .await
            .unwrap();
        let bankers = json!(["bankers"]);
        h.store
            .create_application(
                "bank",
                &json!({"name": "bank", "permissions": {"READ": bankers, "WRITE": bankers, "EXECUTE": bankers}}),
                "test",
            )
            .await
            .unwrap();
        h.cloud
            .seed("bank-prod", 1, json!({"artifact": "b1"}), &[])
            .await;
        let bank_canary = h
            .cloud
            .seed("bank-prod-canary", 1, json!({"artifact": "b2"}), &[])
            .await;
        let alice = gennaker_engine::Requester {
            user: "alice".into(),
            roles: vec!["dev".into()],
            origin: "test".into(),
        };
        // The production cluster is the bank's: alice may not read it.
        let run = h
            .run_as(
                "canary",
                pipeline(false, |stage| {
                    stage["deployments"]["baseline"] = json!({"cloudProvider": "local", "application": "bank", "account": "local", "cluster": "bank-prod"});
                }),
                &alice,
            )
            .await;
        let done = h.finish(&run.id).await;
        assert_eq!(
            done.status,
            ExecutionStatus::Terminal,
            "{}",
            testing::summary(&done)
        );
        let find = stage(&done, "Find baseline image");
        let error = find.context["exception"]["details"]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains("bank"), "{error}");
        assert_eq!(
            h.cloud.names(),
            ["shop-prod-v000", "bank-prod-v000", "bank-prod-canary-v000"],
            "the experiment deployed meanwhile was cleaned up; the bank's groups untouched"
        );
        // The experiment cluster is the bank's: neither deployed nor cleaned up.
        let run = h
            .run_as(
                "canary2",
                pipeline(false, |stage| {
                    let experiment = &mut stage["deployments"]["serverGroupPairs"][0]["experiment"];
                    experiment["application"] = json!("bank");
                }),
                &alice,
            )
            .await;
        let done = h.finish(&run.id).await;
        assert_eq!(
            done.status,
            ExecutionStatus::Terminal,
            "{}",
            testing::summary(&done)
        );
        let names = h.cloud.names();
        assert!(names.contains(&bank_canary), "{names:?}");
        assert!(
            !h.cloud.peek(&bank_canary).unwrap().disabled,
            "its cleanup was refused too"
        );
        assert_eq!(names.len(), 3, "{names:?}");
        let disable = stage(&done, "Disable experiment cluster bank-prod-canary");
        assert_eq!(disable.status, ExecutionStatus::FailedContinue);
    }
);

gennaker_engine::engine_test!(deployments_are_checked_when_saved, |h: Harness| {
    let catalog = h.engine.registry().catalog();
    let mut good = pipeline(false, |_| {});
    good["application"] = json!("shop");
    good["name"] = json!("canary");
    let report = gennaker_core::validate_pipeline_value(&good, catalog);
    let problems: Vec<_> = report.errors().chain(report.warnings()).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let bad = pipeline(false, |stage| {
        let deployments = &mut stage["deployments"];
        deployments["baseline"] = json!({"application": "shop", "cluster": "bank-prod"});
        deployments["serverGroupPairs"][0]["control"]["freeFormDetails"] = json!("");
        deployments["serverGroupPairs"][0]["experiment"]
            .as_object_mut()
            .unwrap()
            .remove("capacity");
        deployments["delayBeforeCleanup"] = json!("an hour");
    });
    let mut bad = bad;
    bad["application"] = json!("shop");
    bad["name"] = json!("canary");
    let report = gennaker_core::validate_pipeline_value(&bad, catalog);
    let errors: Vec<(String, String)> = report
        .errors()
        .map(|p| (p.path.to_string(), p.message.clone()))
        .collect();
    let at = |path: &str| errors.iter().any(|(p, _)| p == path);
    let d = "$.stages[0].deployments";
    assert!(at(&format!("{d}.baseline.account")), "{errors:?}");
    assert!(
        at(&format!("{d}.baseline.cluster")),
        "not shop's: {errors:?}"
    );
    assert!(
        at(&format!("{d}.serverGroupPairs[0].experiment.capacity")),
        "{errors:?}"
    );
    assert!(at(&format!("{d}.delayBeforeCleanup")), "{errors:?}");
    // A side in the production cluster would be destroyed with it.
    let mut prod = pipeline(false, |stage| {
        stage["deployments"]["serverGroupPairs"][0]["control"]["freeFormDetails"] = json!("");
    });
    prod["application"] = json!("shop");
    prod["name"] = json!("canary");
    let report = gennaker_core::validate_pipeline_value(&prod, catalog);
    let errors: Vec<String> = report
        .errors()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("serverGroupPairs[0].control") && e.contains("destroy production")),
        "{errors:?}"
    );
    for planned in ["deployCanaryServerGroups", "cleanupCanaryClusters"] {
        let alone = json!({"application": "shop", "name": "alone",
                           "stages": [{"refId": "1", "type": planned, "name": "x"}]});
        let report = gennaker_core::validate_pipeline_value(&alone, catalog);
        assert!(
            report
                .errors()
                .any(|p| p.message.contains("planned by a kayentaCanary stage")),
            "{planned}"
        );
    }
});

/// Runs the canary under `fault` against a freshly seeded cloud.
async fn run_under(backend: TestBackend, bad: bool, fault: Fault) -> (Execution, Arc<FakeCloud>) {
    let cloud = seeded_cloud().await;
    let outcome = FaultRun::new(backend, fault, pipeline(bad, |_| {}))
        .with_stages(canary_stages(&cloud, &Seen::default()))
        .clock_step(Duration::from_secs(3))
        .run()
        .await;
    outcome.assert_clean();
    (outcome.execution, cloud)
}

/// Each stage's status and score(s), by name.
fn verdicts(execution: &Execution) -> BTreeMap<String, (ExecutionStatus, Value)> {
    execution
        .stages
        .iter()
        .map(|s| {
            let score = s
                .context
                .get("canaryScores")
                .or_else(|| s.context.get("canaryScore"))
                .cloned()
                .unwrap_or(Value::Null);
            (s.name.clone(), (s.status, score))
        })
        .collect()
}

async fn same_as_undisturbed(backend: TestBackend, bad: bool, fault: Fault) {
    let (reference, reference_cloud) = run_under(backend, bad, Fault::None).await;
    assert_eq!(changes(&reference_cloud), expected());
    let (disturbed, cloud) = run_under(backend, bad, fault).await;
    assert_eq!(verdicts(&disturbed), verdicts(&reference), "{fault:?}");
    assert_eq!(
        changes(&cloud),
        expected(),
        "{fault:?}: every change made exactly once"
    );
    assert_eq!(
        cloud.names(),
        ["shop-prod-v000"],
        "{fault:?}: nothing left behind"
    );
}

fault_test!(passed_automatic_canary, |backend, fault| {
    same_as_undisturbed(backend, false, fault).await;
});

fault_test!(failed_automatic_canary, |backend, fault| {
    same_as_undisturbed(backend, true, fault).await;
});
