//! Fault injection for red/black and rolling red/black deploys through the engine's
//! fault driver: every step done twice (the first attempt "crashes" before its
//! commit), and separately the engine killed after every commit and restarted from the
//! store. The cloud must end exactly as after an undisturbed run: one new server group,
//! the old one disabled (and scaled down), every change made once and in the same
//! order, nothing left in the queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::fault_test;
use gennaker_engine::testing::{Fault, FaultOutcome, FaultRun, TestBackend};
use serde_json::{Value, json};
use support::FakeCloud;

/// The deploy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    RedBlack,
    RollingRedBlack,
}

fn pipeline(scenario: Scenario) -> Value {
    let cluster = match scenario {
        Scenario::RedBlack => json!({
            "strategy": "redblack", "scaleDown": true, "delayBeforeDisableSec": 3,
            "maxRemainingAsgs": 2, "loadBalancers": []
        }),
        Scenario::RollingRedBlack => json!({
            "strategy": "rollingredblack", "targetPercentages": [50], "delayBeforeCleanup": 2
        }),
    };
    json!({"stages": [support::deploy_stage("v2", cluster)]})
}

/// What an undisturbed run changes in the cloud, in order.
fn expected_log(scenario: Scenario) -> Vec<String> {
    let log: &[&str] = match scenario {
        Scenario::RedBlack => &[
            "create shop-prod-v001 2",
            "disable shop-prod-v000",
            "resize shop-prod-v000 0",
        ],
        Scenario::RollingRedBlack => &[
            "create shop-prod-v001 0",
            "resize shop-prod-v001 1",
            r#"weights shop-lb {"shop-prod-v000":50,"shop-prod-v001":50}"#,
            "enable shop-prod-v001",
            "resize shop-prod-v001 2",
            r#"weights shop-lb {"shop-prod-v001":100}"#,
            "disable shop-prod-v000",
            "weights shop-lb {}",
        ],
    };
    log.iter().map(|l| (*l).to_owned()).collect()
}

/// Runs the scenario's deploy under `fault` against a fresh cloud holding the old group.
async fn run_under(
    backend: TestBackend,
    scenario: Scenario,
    fault: Fault,
) -> (FaultOutcome, Arc<FakeCloud>) {
    let cloud = Arc::new(FakeCloud::default());
    let balancers: &[&str] = match scenario {
        Scenario::RedBlack => &[],
        Scenario::RollingRedBlack => {
            cloud.balancer("shop-lb").await;
            &["shop-lb"]
        }
    };
    let old = cloud
        .seed("shop-prod", 2, json!({"artifact": "v1"}), balancers)
        .await;
    assert_eq!(old, "shop-prod-v000");
    let outcome = FaultRun::new(backend, fault, pipeline(scenario))
        .with_stages(support::deploy_stages(&cloud))
        .clock_step(Duration::from_secs(1))
        .run()
        .await;
    (outcome, cloud)
}

async fn same_as_undisturbed(backend: TestBackend, scenario: Scenario, fault: Fault) {
    let (reference, reference_cloud) = run_under(backend, scenario, Fault::None).await;
    reference.assert_succeeded();
    assert_eq!(reference_cloud.log(), expected_log(scenario));
    let (disturbed, cloud) = run_under(backend, scenario, fault).await;
    disturbed.assert_same_as(&reference);
    assert_eq!(
        cloud.log(),
        reference_cloud.log(),
        "{fault:?}: every change made exactly once"
    );
    assert_eq!(
        cloud.names(),
        ["shop-prod-v000", "shop-prod-v001"],
        "{fault:?}: nothing left behind"
    );
}

fault_test!(red_black, |backend, fault| {
    same_as_undisturbed(backend, Scenario::RedBlack, fault).await;
});

fault_test!(rolling_red_black, |backend, fault| {
    same_as_undisturbed(backend, Scenario::RollingRedBlack, fault).await;
});
