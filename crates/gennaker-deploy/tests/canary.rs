//! Canary releases (`"strategy": "canary"`) end to end on the engine: the deploy
//! stages act on the fake cloud, the real `kayentaCanary` stage judges with a metric
//! source that reads the cloud (a group whose spec says `"bad": true` answers with
//! values three times the others'). A good canary passes every step and is promoted; a
//! bad one fails its analysis and is rolled back, traffic first; cancellation mid
//! analysis cleans up; and both outcomes survive every step repeated and a crash after
//! every commit with exactly one baseline and one canary created and nothing left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::testing::{self, Fault, FaultOutcome, FaultRun, TestBackend, stage};
use gennaker_engine::{Execution, ExecutionStatus, fault_test};
use serde_json::{Value, json};
use support::FakeCloud;
use support::canary::{ACCOUNT, Seen, canary_stages};

/// The engine kit with both, and the cloud holding production `shop-prod-v000` (v1,
/// two instances behind `shop-lb`).
struct Harness {
    kit: testing::Harness,
    cloud: Arc<FakeCloud>,
}

impl Harness {
    async fn new(backend: TestBackend) -> Self {
        let cloud = seeded_cloud().await;
        let kit =
            testing::Harness::with_stages(backend, canary_stages(&cloud, &Seen::default())).await;
        Harness { kit, cloud }
    }
}

impl Deref for Harness {
    type Target = testing::Harness;

    fn deref(&self) -> &testing::Harness {
        &self.kit
    }
}

async fn seeded_cloud() -> Arc<FakeCloud> {
    let cloud = Arc::new(FakeCloud::default());
    cloud.balancer("shop-lb").await;
    let old = cloud
        .seed("shop-prod", 2, json!({"artifact": "v1"}), &["shop-lb"])
        .await;
    assert_eq!(old, "shop-prod-v000");
    cloud
}

/// The release of `v2` (bad or not) with the README's steps.
fn release(bad: bool, extra: Value) -> Value {
    let mut cluster = json!({
        "strategy": "canary",
        "artifact": {"reference": "v2"}, "bad": bad,
        "canary": {
            "analysis": {"canaryConfigName": "shop-canary", "metricsAccountName": ACCOUNT,
                         "scoreThresholds": {"pass": "80", "marginal": "50"},
                         "canaryAnalysisIntervalMins": "0.25",
                         "scopes": [{"scopeName": "default", "step": "5"}]},
            "steps": [{"setWeight": 10}, {"analysis": {"lifetimeDuration": "PT30S"}},
                      {"setWeight": 50}, {"pause": {"duration": "10s"}},
                      {"analysis": {"lifetimeDuration": "PT30S"}}]
        }
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut cluster, extra) {
        c.extend(e);
    }
    let mut deploy = support::deploy_stage("v2", cluster);
    deploy["clusters"][0]
        .as_object_mut()
        .unwrap()
        .remove("command");
    json!({"stages": [deploy]})
}

/// What a promoted release changes, in order.
const PROMOTED: &[&str] = &[
    r#"weights shop-lb {"shop-prod-v000":200}"#,
    "create shop-prod-baseline-v000 1",
    "create shop-prod-canary-v000 1",
    r#"weights shop-lb {"shop-prod-baseline-v000":10,"shop-prod-canary-v000":10,"shop-prod-v000":180}"#,
    r#"weights shop-lb {"shop-prod-baseline-v000":50,"shop-prod-canary-v000":50,"shop-prod-v000":100}"#,
    "create shop-prod-v001 2",
    r#"weights shop-lb {"shop-prod-v001":100}"#,
    "disable shop-prod-v000",
    "disable shop-prod-baseline-v000",
    "destroy shop-prod-baseline-v000",
    "disable shop-prod-canary-v000",
    "destroy shop-prod-canary-v000",
    "weights shop-lb {}",
];

/// What a release whose first analysis fails changes, in order: traffic back to
/// production before anything is destroyed.
const ROLLED_BACK: &[&str] = &[
    r#"weights shop-lb {"shop-prod-v000":200}"#,
    "create shop-prod-baseline-v000 1",
    "create shop-prod-canary-v000 1",
    r#"weights shop-lb {"shop-prod-baseline-v000":10,"shop-prod-canary-v000":10,"shop-prod-v000":180}"#,
    r#"weights shop-lb {"shop-prod-v000":100}"#,
    "disable shop-prod-baseline-v000",
    "destroy shop-prod-baseline-v000",
    "disable shop-prod-canary-v000",
    "destroy shop-prod-canary-v000",
    "weights shop-lb {}",
];

fn lines(log: &[&str]) -> Vec<String> {
    log.iter().map(|l| (*l).to_owned()).collect()
}

gennaker_engine::engine_test!(
    a_good_canary_passes_every_step_and_is_promoted,
    |h: Harness| {
        let run = h.run("release", release(false, json!({}))).await;
        let done = h.finish(&run.id).await;
        testing::succeeded(&done);
        assert_eq!(
            h.cloud.log(),
            lines(PROMOTED),
            "{}",
            testing::summary(&done)
        );
        assert_eq!(h.cloud.names(), ["shop-prod-v000", "shop-prod-v001"]);
        let new = h.cloud.peek("shop-prod-v001").unwrap();
        assert!(!new.disabled);
        assert_eq!(new.spec["artifact"]["reference"], "v2");
        assert!(h.cloud.peek("shop-prod-v000").unwrap().disabled);
        assert!(
            h.cloud.weights("shop-lb").is_empty(),
            "default routing: v001 alone"
        );
        // Every step is a stage, in order, and both analyses passed.
        let create = stage(&done, "Deploy shop-prod");
        let children: Vec<&str> = done
            .stages
            .iter()
            .filter(|s| s.parent_stage_id.as_deref() == Some(create.id.as_str()))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            children,
            [
                "Hold traffic on production",
                "Deploy baseline shop-prod-baseline",
                "Deploy canary shop-prod-canary",
                "Set canary weight 10%",
                "Canary analysis #1",
                "Set canary weight 50%",
                "Pause #1",
                "Canary analysis #2",
                "Promote the canary's version",
                "disableCluster",
                "Remove baseline and canary",
            ]
        );
        let analysis = stage(&done, "Canary analysis #1");
        assert_eq!(analysis.status, ExecutionStatus::Succeeded);
        assert_eq!(
            analysis.context["canaryConfig"]["scopes"][0]["controlScope"],
            "shop-prod-baseline-v000"
        );
        assert_eq!(
            analysis.context["canaryConfig"]["scopes"][0]["experimentScope"],
            "shop-prod-canary-v000"
        );
        let scores = &stage(&done, "Remove baseline and canary").outputs["canaryScores"];
        assert_eq!(scores.as_array().unwrap().len(), 2, "{scores}");
        let pause = stage(&done, "Pause #1");
        assert!(pause.end_time.unwrap() >= pause.start_time.unwrap() + 10_000);
        assert!(h.queue_is_empty().await);
    }
);

gennaker_engine::engine_test!(
    a_bad_canary_fails_its_analysis_and_is_rolled_back,
    |h: Harness| {
        let run = h.run("release", release(true, json!({}))).await;
        let done = h.finish(&run.id).await;
        assert_eq!(
            done.status,
            ExecutionStatus::Terminal,
            "{}",
            testing::summary(&done)
        );
        let deploy = stage(&done, "Deploy");
        assert_eq!(deploy.status, ExecutionStatus::Terminal);
        let analysis = stage(&done, "Canary analysis #1");
        assert_eq!(analysis.status, ExecutionStatus::Terminal);
        assert!(
            done.stages
                .iter()
                .all(|s| s.name != "Set canary weight 50%"
                    || s.status == ExecutionStatus::NotStarted),
            "no step after the failed analysis runs"
        );
        // The rollback: production back to all traffic first, then the groups destroyed.
        let done = h
            .until(&run.id, "the rollback", |e| {
                stage(e, "Deploy shop-prod")
                    .context
                    .contains_key("rollbackResult")
            })
            .await;
        assert_eq!(
            h.cloud.log(),
            lines(ROLLED_BACK),
            "{}",
            testing::summary(&done)
        );
        assert_eq!(h.cloud.names(), ["shop-prod-v000"], "nothing left behind");
        let production = h.cloud.peek("shop-prod-v000").unwrap();
        assert!(!production.disabled);
        assert_eq!(production.spec["artifact"], "v1");
        let result = &stage(&done, "Deploy shop-prod").context["rollbackResult"];
        assert_eq!(
            result["destroyedServerGroups"],
            json!(["shop-prod-baseline-v000", "shop-prod-canary-v000"])
        );
        assert_eq!(result["trafficRestoredTo"], json!(["shop-prod-v000"]));
        let score = result["canaryScores"][0][0].as_f64().unwrap();
        assert!(score <= 50.0, "{result}");
    }
);

gennaker_engine::engine_test!(a_release_canceled_mid_analysis_cleans_up, |h: Harness| {
    let run = h.run("release", release(false, json!({}))).await;
    h.drive_until(&run.id, Duration::from_secs(2), "the first analysis", |e| {
        e.stages
            .iter()
            .any(|s| s.name == "Run Canary #1" && s.status == ExecutionStatus::Succeeded)
    })
    .await;
    h.engine
        .cancel(&run.id, "bob", Some("enough".into()))
        .await
        .unwrap();
    let done = h
        .until(&run.id, "the rollback", |e| {
            e.status.is_complete()
                && stage(e, "Deploy shop-prod")
                    .context
                    .contains_key("rollbackResult")
        })
        .await;
    assert_eq!(done.status, ExecutionStatus::Canceled);
    assert_eq!(
        h.cloud.log(),
        lines(ROLLED_BACK),
        "{}",
        testing::summary(&done)
    );
    assert_eq!(h.cloud.names(), ["shop-prod-v000"]);
    assert!(h.cloud.weights("shop-lb").is_empty());
});

gennaker_engine::engine_test!(canary_blocks_are_checked_when_saved, |h: Harness| {
    let mut pipeline = release(false, json!({}));
    pipeline["application"] = json!("shop");
    pipeline["name"] = json!("release");
    let cluster = &mut pipeline["stages"][0]["clusters"][0];
    cluster["canary"]["steps"] = json!([
        {"setWeight": 40}, {"setWeight": 20}, {"shift": 5}, {"setWeight": 101},
        {"pause": {"duration": "soon"}}, {"analysis": {}, "pause": {}}
    ]);
    cluster["canary"]["analysis"] = json!({});
    let report = gennaker_core::validate_pipeline_value(&pipeline, h.engine.registry().catalog());
    let errors: Vec<(String, String)> = report
        .errors()
        .map(|p| (p.path.to_string(), p.message.clone()))
        .collect();
    let at = |path: &str| errors.iter().any(|(p, _)| p == path);
    assert!(
        at("$.stages[0].clusters[0].canary.steps[1].setWeight"),
        "{errors:?}"
    );
    assert!(
        at("$.stages[0].clusters[0].canary.steps[2].shift"),
        "{errors:?}"
    );
    assert!(
        at("$.stages[0].clusters[0].canary.steps[3].setWeight"),
        "{errors:?}"
    );
    assert!(
        at("$.stages[0].clusters[0].canary.steps[4].pause.duration"),
        "{errors:?}"
    );
    assert!(at("$.stages[0].clusters[0].canary.steps[5]"), "{errors:?}");
    assert!(
        at("$.stages[0].clusters[0].canary.steps"),
        "no analysis: {errors:?}"
    );
    let cluster = &mut pipeline["stages"][0]["clusters"][0];
    cluster["canary"]["steps"] = json!([{"analysis": {"lifetimeDuration": "PT1M"}}]);
    let report = gennaker_core::validate_pipeline_value(&pipeline, h.engine.registry().catalog());
    let errors: Vec<String> = report
        .errors()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("steps[0].analysis.canaryConfigName")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("receive no traffic")),
        "{errors:?}"
    );
    let mut good = release(false, json!({}));
    good["application"] = json!("shop");
    good["name"] = json!("release");
    let report = gennaker_core::validate_pipeline_value(&good, h.engine.registry().catalog());
    assert!(
        report.is_valid(),
        "{:?}",
        report.errors().collect::<Vec<_>>()
    );
});

/// Runs the release under `fault` against a freshly seeded cloud.
async fn run_under(
    backend: TestBackend,
    bad: bool,
    fault: Fault,
) -> (FaultOutcome, Arc<FakeCloud>) {
    let cloud = seeded_cloud().await;
    let outcome = FaultRun::new(backend, fault, release(bad, json!({})))
        .with_stages(canary_stages(&cloud, &Seen::default()))
        .clock_step(Duration::from_secs(3))
        .run()
        .await;
    (outcome, cloud)
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
    reference.assert_clean();
    let expected = if bad { ROLLED_BACK } else { PROMOTED };
    assert_eq!(reference_cloud.log(), lines(expected));
    let (disturbed, cloud) = run_under(backend, bad, fault).await;
    // Outputs carry judgement times, which differ when the clock moves differently:
    // statuses and scores must not.
    disturbed.assert_clean();
    assert_eq!(
        verdicts(&disturbed.execution),
        verdicts(&reference.execution),
        "{fault:?}"
    );
    assert_eq!(
        cloud.log(),
        lines(expected),
        "{fault:?}: every change made exactly once"
    );
    let created = |prefix: &str| cloud.count(&format!("create {prefix}"));
    assert_eq!(created("shop-prod-baseline"), 1, "{fault:?}: one baseline");
    assert_eq!(created("shop-prod-canary"), 1, "{fault:?}: one canary");
    let left: &[&str] = if bad {
        &["shop-prod-v000"]
    } else {
        &["shop-prod-v000", "shop-prod-v001"]
    };
    assert_eq!(cloud.names(), left, "{fault:?}: nothing left behind");
}

fault_test!(promoted_canary, |backend, fault| {
    same_as_undisturbed(backend, false, fault).await;
});

fault_test!(rolled_back_canary, |backend, fault| {
    same_as_undisturbed(backend, true, fault).await;
});
