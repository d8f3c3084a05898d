//! Deploy strategies end to end on the engine: red/black, highlander, rolling
//! red/black, and a failed deploy rolled back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use gennaker_engine::ExecutionStatus;
use gennaker_engine::testing::{self, stage, succeeded};
use serde_json::{Value, json};
use support::deploy_stage;

deploy_test!(
    red_black_replaces_the_old_group_once_the_new_one_is_healthy,
    |h| {
        h.cloud.balancer("shop-lb").await;
        let old = h
            .cloud
            .seed("shop-prod", 2, json!({"artifact": "v1"}), &["shop-lb"])
            .await;
        let run = h
            .run(
                "rb",
                json!({"stages": [deploy_stage("v2", json!({
                    "strategy": "redblack", "scaleDown": true, "delayBeforeDisableSec": 10,
                    "delayBeforeScaleDownSec": 5, "maxRemainingAsgs": 2
                }))]}),
            )
            .await;
        let done = h.finish(&run.id).await;
        succeeded(&done);
        assert_eq!(old, "shop-prod-v000");
        assert_eq!(
            h.cloud.log(),
            [
                "create shop-prod-v001 2",
                "disable shop-prod-v000",
                "resize shop-prod-v000 0"
            ],
            "one new group; the old one disabled, then scaled down"
        );
        let create = stage(&done, "Deploy shop-prod");
        assert_eq!(
            create.outputs["deploy.server.groups"],
            json!({"local": ["shop-prod-v001"]})
        );
        assert_eq!(create.outputs["deploy.account.name"], "local");
        assert_eq!(create.outputs["serverGroup"], "shop-prod-v001");
        assert_eq!(
            stage(&done, "Deploy").outputs["deploy.server.groups"],
            json!({"local": ["shop-prod-v001"]})
        );
        assert_eq!(
            create.context["source"]["serverGroupName"],
            "shop-prod-v000"
        );
        // The old group was disabled only after the new one was healthy, and after the delay.
        let healthy_at = create
            .tasks
            .iter()
            .find(|t| t.name == "waitForUpInstances")
            .unwrap()
            .end_time
            .unwrap();
        let disable = stage(&done, "disableCluster");
        assert!(
            disable.start_time.unwrap() >= healthy_at + 10_000,
            "{}",
            testing::summary(&done)
        );
        let new = h.cloud.peek("shop-prod-v001").unwrap();
        assert!(!new.disabled && new.is_healthy());
        assert_eq!(
            new.spec,
            json!({"command": "./serve", "artifact": {"reference": "v2"}})
        );
        assert_eq!(h.cloud.peek(&old).unwrap().capacity.desired, 0);
        h.stop().await;
    }
);

deploy_test!(
    red_black_max_remaining_asgs_destroys_the_oldest_disabled_groups,
    |h| {
        for _ in 0..3 {
            h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
        }
        h.cloud.seed_disabled("shop-prod-v000").await;
        h.cloud.seed_disabled("shop-prod-v001").await;
        let run = h
        .run("rb", json!({"stages": [deploy_stage("v4", json!({"strategy": "redblack", "maxRemainingAsgs": 2, "loadBalancers": []}))]}))
        .await;
        succeeded(&h.finish(&run.id).await);
        assert_eq!(
            h.cloud.log(),
            [
                "create shop-prod-v003 2",
                "destroy shop-prod-v001",
                "destroy shop-prod-v000",
                "disable shop-prod-v002"
            ]
        );
        assert_eq!(h.cloud.names(), ["shop-prod-v002", "shop-prod-v003"]);
        h.stop().await;
    }
);

deploy_test!(highlander_destroys_every_older_group, |h| {
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    h.cloud.seed_disabled("shop-prod-v000").await;
    h.cloud.seed("shop-other", 1, json!({}), &[]).await;
    let run = h
        .run("hl", json!({"stages": [deploy_stage("v3", json!({"strategy": "highlander", "loadBalancers": []}))]}))
        .await;
    succeeded(&h.finish(&run.id).await);
    assert_eq!(
        h.cloud.log(),
        [
            "create shop-prod-v002 2",
            "destroy shop-prod-v001",
            "destroy shop-prod-v000"
        ]
    );
    assert_eq!(
        h.cloud.names(),
        ["shop-other-v000", "shop-prod-v002"],
        "other clusters are untouched"
    );
    h.stop().await;
});

deploy_test!(
    rolling_red_black_grows_step_by_step_and_shifts_traffic,
    |h| {
        h.cloud.balancer("shop-lb").await;
        h.cloud.seed("shop-prod", 4, json!({}), &["shop-lb"]).await;
        let validation = h
            .save(
                "validate",
                json!({"stages": [{"refId": "1", "name": "check", "type": "wait", "waitTime": 1}]}),
            )
            .await;
        let run = h
            .run(
                "rolling",
                json!({"stages": [deploy_stage("v2", json!({
                    "strategy": "rollingredblack", "targetPercentages": [25, 50],
                    "capacity": {"min": 4, "max": 4, "desired": 4},
                    "pipelineBeforeCleanup": {"application": "shop", "pipelineId": validation["id"]},
                    "delayBeforeCleanup": 3
                }))]}),
            )
            .await;
        let done = h.finish(&run.id).await;
        succeeded(&done);
        let (new, old) = ("shop-prod-v001", "shop-prod-v000");
        let weights = |pairs: &[(&str, u32)]| {
            format!(
                "weights shop-lb {}",
                json!(
                    pairs
                        .iter()
                        .map(|(n, w)| (n.to_string(), *w))
                        .collect::<std::collections::BTreeMap<_, _>>()
                )
            )
        };
        assert_eq!(
            h.cloud.log(),
            [
                format!("create {new} 0"),
                format!("resize {new} 1"),
                weights(&[(new, 25), (old, 75)]),
                format!("enable {new}"),
                format!("resize {new} 2"),
                weights(&[(new, 50), (old, 50)]),
                format!("resize {new} 4"),
                weights(&[(new, 100)]),
                format!("disable {old}"),
                "weights shop-lb {}".to_owned(),
            ]
        );
        for pct in [25, 50, 100] {
            assert_eq!(
                stage(&done, &format!("Validate at {pct}%")).status,
                ExecutionStatus::Succeeded
            );
            assert_eq!(
                stage(&done, &format!("Wait at {pct}%")).status,
                ExecutionStatus::Succeeded
            );
        }
        assert_eq!(stage(&done, "Grow to 25%").context["serverGroupName"], new);
        let group = h.cloud.peek(new).unwrap();
        assert_eq!(group.capacity.desired, 4);
        assert!(!group.disabled);
        h.stop().await;
    }
);

deploy_test!(
    an_unhealthy_version_fails_after_its_timeout_and_rolls_back,
    |h| {
        h.cloud.balancer("shop-lb").await;
        let old = h.cloud.seed("shop-prod", 2, json!({}), &["shop-lb"]).await;
        // The old group was scaled down by an earlier red/black and must come back in full.
        let run = h
            .run(
                "bad",
                json!({"stages": [deploy_stage("v2", json!({
                    "strategy": "redblack", "unhealthy": true, "rollback": {"onFailure": true}
                }))]}),
            )
            .await;
        let done = h
            .drive_until(
                &run.id,
                Duration::from_secs(60),
                "the deploy to fail",
                |e| e.status.is_complete(),
            )
            .await;
        assert_eq!(
            done.status,
            ExecutionStatus::Terminal,
            "{}",
            testing::summary(&done)
        );
        let create = stage(&done, "Deploy shop-prod");
        let error = create.context["exception"]["details"]["error"]
            .as_str()
            .unwrap();
        assert!(error.contains("timed out"), "{error}");
        assert!(
            done.stages.iter().all(
                |s| s.stage_type != "disableCluster" || s.status == ExecutionStatus::NotStarted
            ),
            "the old group was never disabled"
        );
        // The engine runs the failed stage's cancellation routine: the rollback.
        let rolled = h
            .drive_until(
                &run.id,
                Duration::from_secs(10),
                "the rollback to be recorded",
                |e| {
                    e.stages.iter().any(|s| {
                        s.name == "Deploy shop-prod" && s.context.contains_key("rollbackResult")
                    })
                },
            )
            .await;
        let create = stage(&rolled, "Deploy shop-prod");
        assert_eq!(
            create.context["rollbackResult"]["restoredServerGroup"],
            json!(old),
            "{:?}",
            create.context
        );
        // The routine is idempotent: run again, it finds nothing left to undo.
        let definition = h.registry.definition("createServerGroup").unwrap();
        let again = definition
            .cancel(&rolled, create, &h.services())
            .await
            .unwrap();
        assert_eq!(
            again.context["rollbackResult"]["destroyedServerGroups"],
            json!([]),
            "nothing left to undo"
        );
        assert_eq!(
            h.cloud.names(),
            std::slice::from_ref(&old),
            "the new group is gone"
        );
        let restored = h.cloud.peek(&old).unwrap();
        assert!(!restored.disabled);
        assert_eq!(restored.capacity.desired, 2);
        assert_eq!(h.cloud.count("create"), 1);
        assert_eq!(h.cloud.count("destroy shop-prod-v001"), 1);
        h.stop().await;
    }
);

deploy_test!(canceling_a_deploy_rolls_back_through_the_engine, |h| {
    h.cloud.balancer("shop-lb").await;
    let old = h.cloud.seed("shop-prod", 2, json!({}), &["shop-lb"]).await;
    let run = h
        .run(
            "rolling",
            json!({"stages": [deploy_stage("v2", json!({
                "strategy": "rollingredblack", "targetPercentages": [50], "delayBeforeCleanup": 600,
                "rollback": {"onFailure": true}
            }))]}),
        )
        .await;
    // Half the traffic on the new group, then a user cancels during the pause.
    h.drive_until(&run.id, Duration::from_secs(2), "the pause at 50%", |e| {
        e.stages
            .iter()
            .any(|s| s.name == "Wait at 50%" && s.status == ExecutionStatus::Running)
    })
    .await;
    assert_eq!(h.cloud.peek("shop-prod-v001").unwrap().capacity.desired, 1);
    assert_eq!(h.cloud.peek(&old).unwrap().capacity.desired, 2);
    h.engine
        .cancel(&run.id, "alice", Some("looks wrong".into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + testing::PATIENCE;
    while h.cloud.names() != std::slice::from_ref(&old) || !h.cloud.weights("shop-lb").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollback did not happen: {:?}",
            h.cloud.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The cloud shows the rollback before the routine's step commits its record.
    let done = h
        .drive_until(
            &run.id,
            Duration::from_secs(2),
            "the rollback's record",
            |e| {
                e.status.is_complete()
                    && e.stages.iter().any(|s| {
                        s.name == "Deploy shop-prod" && s.context.contains_key("rollbackResult")
                    })
            },
        )
        .await;
    assert_eq!(done.status, ExecutionStatus::Canceled);
    let restored = h.cloud.peek(&old).unwrap();
    assert!(!restored.disabled && restored.capacity.desired == 2);
    let log = h.cloud.log();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("destroy")).count(),
        1,
        "{log:?}"
    );
    let result: Value = stage(&done, "Deploy shop-prod").context["rollbackResult"].clone();
    assert_eq!(result["restoredServerGroup"], json!(old));
    h.stop().await;
});

deploy_test!(clusters_deploy_side_by_side, |h| {
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    let mut stage = deploy_stage("v2", json!({"strategy": "redblack", "loadBalancers": []}));
    let mut staging = stage["clusters"][0].clone();
    staging["stack"] = json!("staging");
    staging["strategy"] = json!("highlander");
    staging["capacity"] = json!({"desired": "1"});
    stage["clusters"].as_array_mut().unwrap().push(staging);
    let run = h.run("two", json!({"stages": [stage]})).await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    assert_eq!(
        testing::stage(&done, "Deploy").outputs["deploy.server.groups"],
        json!({"local": ["shop-prod-v001", "shop-staging-v000"]})
    );
    let mut log = h.cloud.log();
    log.sort();
    assert_eq!(
        log,
        [
            "create shop-prod-v001 2",
            "create shop-staging-v000 1",
            "disable shop-prod-v000"
        ]
    );
    let prod = testing::stage(&done, "Deploy shop-prod");
    let staging = testing::stage(&done, "Deploy shop-staging");
    assert!(prod.requisite_stage_ref_ids.is_empty() && staging.requisite_stage_ref_ids.is_empty());
    h.stop().await;
});

deploy_test!(
    a_deploy_without_clusters_or_with_an_unknown_strategy_fails,
    |h| {
        let run = h.run("none", json!({"stages": [{"refId": "1", "name": "Deploy", "type": "deploy", "clusters": []}]})).await;
        let done = h.finish(&run.id).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let run = h
            .run(
                "push",
                json!({"stages": [deploy_stage("v2", json!({"strategy": "rollingpush"}))]}),
            )
            .await;
        let done = h.finish(&run.id).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let error = stage(&done, "Deploy shop-prod").context["exception"]["details"]["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains("rollingpush"), "{error}");
        assert!(h.cloud.log().is_empty(), "nothing was created");
        h.stop().await;
    }
);
