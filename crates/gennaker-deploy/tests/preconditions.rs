//! The `clusterSize` precondition of `checkPreconditions`, and what this server cannot
//! do (an unregistered precondition type, an unconfigured cloud provider or region)
//! ending the execution TERMINAL whatever `failPipeline` says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use gennaker_engine::ExecutionStatus::{NotStarted, Stopped, Succeeded, Terminal};
use gennaker_engine::testing::{error_of, stage, status_of, summary, synthetic_children};
use serde_json::{Value, json};
use support::deploy_stage;

/// A `checkPreconditions` stage named `name` with one `clusterSize` precondition on
/// `shop-prod` in account `local`, its context extended by `context`.
fn cluster_size(ref_id: usize, name: &str, context: Value, fail_pipeline: bool) -> Value {
    let mut precondition = json!({"cluster": "shop-prod", "credentials": "local"});
    if let (Value::Object(p), Value::Object(extra)) = (&mut precondition, context) {
        p.extend(extra);
    }
    json!({
        "refId": ref_id.to_string(), "name": name, "type": "checkPreconditions",
        "preconditions": [{"type": "clusterSize", "context": precondition, "failPipeline": fail_pipeline}]
    })
}

deploy_test!(cluster_size_compares_the_clusters_server_groups, |h| {
    // shop-prod has two server groups, one of them disabled; shop-dev has one.
    let old = h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    h.cloud.seed_disabled(&old).await;
    h.cloud.seed("shop-dev", 1, json!({}), &[]).await;
    // (name, context, holds): each a branch of its own, failing softly.
    let cases = [
        ("== 2", json!({"comparison": "==", "expected": 2}), true),
        ("== 1", json!({"comparison": "==", "expected": 1}), false),
        ("< 3", json!({"comparison": "<", "expected": 3}), true),
        ("< 2", json!({"comparison": "<", "expected": "2"}), false),
        ("<= 2", json!({"comparison": "<=", "expected": 2}), true),
        ("<= 1", json!({"comparison": "<=", "expected": 1}), false),
        ("> 1", json!({"comparison": ">", "expected": 1}), true),
        ("> 2", json!({"comparison": ">", "expected": 2}), false),
        (">= 2", json!({"comparison": ">=", "expected": 2}), true),
        (">= 3", json!({"comparison": ">=", "expected": 3}), false),
        ("default == 1", json!({}), false),
        (
            "enabled == 1",
            json!({"onlyEnabledServerGroups": true}),
            true,
        ),
        (
            "enabled >= 2",
            json!({"onlyEnabledServerGroups": "true", "comparison": ">=", "expected": 2}),
            false,
        ),
        (
            "in region local",
            json!({"regions": ["local"], "cloudProvider": "local", "expected": 2}),
            true,
        ),
        (
            "by expression",
            json!({"expected": "${parameters.size}"}),
            true,
        ),
        (
            "other account",
            json!({"credentials": "staging", "expected": 0}),
            true,
        ),
        (
            "by moniker",
            json!({"cluster": null, "moniker": {"app": "shop", "stack": "dev"}}),
            true,
        ),
    ];
    let mut stages: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (name, context, _))| cluster_size(i + 1, name, context.clone(), false))
        .collect();
    stages.push(
        json!({"refId": "after", "name": "after == 1", "type": "wait", "waitTime": 0,
        "requisiteStageRefIds": ["2"]}),
    );
    let run = h
        .run(
            "sizes",
            json!({"parameterConfig": [{"name": "size", "default": "2"}], "stages": stages}),
        )
        .await;
    let done = h.finish(&run.id).await;
    assert_eq!(
        done.status,
        Succeeded,
        "a failed precondition with failPipeline false stops its branch only: {}",
        summary(&done)
    );
    for (name, _, holds) in &cases {
        let wanted = if *holds { Succeeded } else { Stopped };
        assert_eq!(status_of(&done, name), wanted, "{name}: {}", summary(&done));
        let child = synthetic_children(&done, name)[0];
        assert_eq!(child.status, wanted, "{name}");
        assert!(!child.failed_unsupported(), "{name}");
    }
    assert_eq!(
        status_of(&done, "after == 1"),
        NotStarted,
        "the stopped branch goes no further"
    );
    assert_eq!(
        error_of(stage(&done, "== 1")),
        "precondition 1 (clusterSize) failed: expected 1 server groups in cluster shop-prod (comparison ==) in region local of account local but found 2: shop-prod-v000, shop-prod-v001"
    );
    assert_eq!(
        error_of(stage(&done, "enabled >= 2")),
        "precondition 1 (clusterSize) failed: expected 2 enabled server groups in cluster shop-prod (comparison >=) in region local of account local but found 1: shop-prod-v001"
    );
    assert!(h.cloud.log().is_empty(), "a precondition changes nothing");
    h.stop().await;
});

deploy_test!(a_failing_cluster_size_fails_the_pipeline_by_default, |h| {
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    let run = h
        .run(
            "too-few",
            json!({"stages": [cluster_size(1, "two groups", json!({"expected": 2}), true)]}),
        )
        .await;
    let done = h.finish(&run.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    let check = stage(&done, "two groups");
    assert_eq!(check.status, Terminal);
    assert!(!check.failed_unsupported(), "it failed; it is supported");
    assert!(
        error_of(check).ends_with("expected 2 server groups in cluster shop-prod (comparison ==) in region local of account local but found 1: shop-prod-v000"),
        "{}",
        error_of(check)
    );
    h.stop().await;
});

deploy_test!(what_this_server_cannot_check_ends_terminal_anyway, |h| {
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    let soft = |kind: &str, context: Value| {
        let mut c = json!({"cluster": "shop-prod", "credentials": "local"});
        if let (Value::Object(c), Value::Object(extra)) = (&mut c, context) {
            c.extend(extra);
        }
        json!({"type": kind, "context": c, "failPipeline": false})
    };
    let run = h
        .run(
            "unsupported",
            json!({"stages": [
                {"refId": "1", "name": "check", "type": "checkPreconditions", "failPipeline": false,
                 "preconditions": [
                    soft("clusterSize", json!({"expected": 1})),
                    soft("clusterSize", json!({"cloudProvider": "aws", "credentials": "prod"})),
                    soft("clusterSize", json!({"regions": ["local", "us-east-1"]})),
                    soft("instanceCount", json!({})),
                 ]},
                {"refId": "2", "name": "after", "type": "wait", "waitTime": 0, "requisiteStageRefIds": ["1"]},
            ]}),
        )
        .await;
    let done = h.finish(&run.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    assert_eq!(status_of(&done, "check"), Terminal);
    assert_eq!(status_of(&done, "after"), NotStarted);
    let children = synthetic_children(&done, "check");
    assert_eq!(children[0].status, Succeeded, "the supported one holds");
    let expect = [
        "stage 'Check precondition (clusterSize)': precondition 2 (clusterSize) of stage 'check': cloudProvider 'aws' is not configured on this server (it deploys through: local); fix preconditions[1].context.cloudProvider",
        "stage 'Check precondition (clusterSize)': precondition 3 (clusterSize) of stage 'check': region 'us-east-1' is not a region of cloudProvider 'local' (its one region is 'local'); fix preconditions[2].context.regions",
        "stage 'Check precondition (instanceCount)': precondition 4 of stage 'check' has type 'instanceCount', which this server does not check: set preconditions[3].type to one of clusterSize, expression, stageStatus",
    ];
    for (child, wanted) in children[1..].iter().zip(expect) {
        assert_eq!(child.status, Terminal, "{}", summary(&done));
        assert!(child.failed_unsupported(), "{:?}", child.context);
        assert_eq!(error_of(child), wanted);
    }
    assert!(stage(&done, "check").failed_unsupported());
    h.stop().await;
});

deploy_test!(
    a_deploy_to_an_unconfigured_cloud_provider_ends_terminal,
    |h| {
        let mut deploy = deploy_stage(
            "v1",
            json!({"cloudProvider": "aws", "account": "prod", "loadBalancers": []}),
        );
        deploy["failPipeline"] = json!(false);
        let run = h.run("aws", json!({"stages": [deploy]})).await;
        let done = h.finish(&run.id).await;
        assert_eq!(
            done.status,
            Terminal,
            "failPipeline false does not turn 'cannot' into success: {}",
            summary(&done)
        );
        let top = stage(&done, "Deploy");
        assert_eq!(top.status, Terminal);
        assert!(top.failed_unsupported(), "{:?}", top.context);
        let error = error_of(top);
        assert!(
        error.starts_with("stage 'Deploy shop-prod': ")
            && error.contains("cloudProvider 'aws' is not configured on this server (it deploys through: local)"),
        "{error}"
    );
        assert!(h.cloud.log().is_empty(), "nothing was deployed");
        h.stop().await;
    }
);
