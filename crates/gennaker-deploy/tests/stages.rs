//! Server group, cluster, rollback, image and load balancer stages on the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use gennaker_deploy::{Capacity, Provider};
use gennaker_engine::ExecutionStatus;
use gennaker_engine::testing::{stage, succeeded};
use serde_json::{Value, json};

/// Stages run one after another, each with the cluster's fields.
fn chain(stages: Vec<Value>) -> Value {
    let stages: Vec<Value> = stages
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s["refId"] = json!((i + 1).to_string());
            if i > 0 {
                s["requisiteStageRefIds"] = json!([i.to_string()]);
            }
            if s.get("cluster").is_none() && s.get("moniker").is_none() {
                s["cluster"] = json!("shop-prod");
            }
            s["credentials"] = json!("local");
            s["cloudProvider"] = json!("local");
            s
        })
        .collect();
    json!({ "stages": stages })
}

deploy_test!(server_group_stages_resolve_their_targets_once, |h| {
    for _ in 0..3 {
        h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    }
    let run = h
        .run(
            "ops",
            chain(vec![
                json!({"name": "grow ancestor", "type": "resizeServerGroup", "target": "ancestor_asg_dynamic", "action": "scale_up", "resizeType": "incr", "scaleNum": 2, "scalePct": 90}),
                json!({"name": "disable current", "type": "disableServerGroup", "target": "current_asg_dynamic"}),
                json!({"name": "enable current", "type": "enableServerGroup", "target": "current_asg"}),
                json!({"name": "destroy oldest", "type": "destroyServerGroup", "target": "oldest_asg_dynamic"}),
                json!({"name": "halve", "type": "resizeServerGroup", "serverGroupName": "shop-prod-v001", "action": "scale_down", "scalePct": 50}),
                json!({"name": "exact", "type": "resizeServerGroup", "moniker": {"app": "shop", "stack": "prod"}, "target": "oldest_asg", "action": "scale_exact", "capacity": {"min": 0, "max": 5, "desired": 3}}),
            ]),
        )
        .await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    assert_eq!(
        h.cloud.log(),
        [
            "resize shop-prod-v001 3",
            "disable shop-prod-v002",
            "enable shop-prod-v002",
            "destroy shop-prod-v000",
            "resize shop-prod-v001 1",
            "resize shop-prod-v001 3",
        ]
    );
    for (name, group) in [
        ("grow ancestor", "shop-prod-v001"),
        ("disable current", "shop-prod-v002"),
        ("enable current", "shop-prod-v002"),
        ("destroy oldest", "shop-prod-v000"),
        ("exact", "shop-prod-v001"),
    ] {
        assert_eq!(
            stage(&done, name).context["serverGroupName"],
            group,
            "{name}"
        );
    }
    assert_eq!(
        stage(&done, "grow ancestor").context["targetCapacity"],
        json!({"min": 1, "max": 3, "desired": 3})
    );
    assert_eq!(
        h.cloud.peek("shop-prod-v001").unwrap().capacity,
        Capacity {
            min: 0,
            max: 5,
            desired: 3
        }
    );
    h.stop().await;
});

deploy_test!(
    a_missing_target_fails_the_stage_with_the_clusters_groups,
    |h| {
        h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
        let run = h
        .run("ops", chain(vec![json!({"name": "ancestor", "type": "disableServerGroup", "target": "ancestor_asg_dynamic"})]))
        .await;
        let done = h.finish(&run.id).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let error = stage(&done, "ancestor").context["exception"]["details"]["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            error.contains("shop-prod-v000") && error.contains("ancestor_asg_dynamic"),
            "{error}"
        );
        assert!(h.cloud.log().is_empty());
        h.stop().await;
    }
);

deploy_test!(rollback_server_group_moves_traffic_before_disabling, |h| {
    let old = h
        .cloud
        .seed("shop-prod", 1, json!({"artifact": "v1"}), &[])
        .await;
    let new = h
        .cloud
        .seed("shop-prod", 3, json!({"artifact": "v2"}), &[])
        .await;
    h.cloud.seed_disabled(&old).await;
    let run = h
        .run(
            "rollback",
            chain(vec![json!({
                "name": "rollback", "type": "rollbackServerGroup", "rollbackType": "EXPLICIT",
                "rollbackContext": {"rollbackServerGroupName": new, "restoreServerGroupName": old}
            })]),
        )
        .await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    assert_eq!(
        h.cloud.log(),
        [
            format!("resize {old} 3"),
            format!("enable {old}"),
            format!("disable {new}")
        ],
        "the restore group takes traffic before the rolled-back one leaves"
    );
    let rollback = stage(&done, "rollback");
    let waited = rollback
        .tasks
        .iter()
        .find(|t| t.name == "waitForUpInstances")
        .unwrap();
    assert_eq!(waited.status, ExecutionStatus::Succeeded);
    assert_eq!(
        rollback.context["health"]["up"], 3,
        "disabled only once all three were up"
    );
    h.stop().await;
});

deploy_test!(
    previous_image_and_cluster_rollbacks_pick_the_older_version,
    |h| {
        let v1 = h
            .cloud
            .seed("shop-prod", 1, json!({"artifact": "v1"}), &[])
            .await;
        let v1b = h
            .cloud
            .seed("shop-prod", 1, json!({"artifact": "v1"}), &[])
            .await;
        let v2 = h
            .cloud
            .seed("shop-prod", 1, json!({"artifact": "v2"}), &[])
            .await;
        h.cloud.seed_disabled(&v1).await;
        h.cloud.seed_disabled(&v1b).await;
        let run = h
        .run(
            "rollback",
            chain(vec![
                json!({"name": "previous", "type": "rollbackServerGroup", "rollbackType": "PREVIOUS_IMAGE",
                       "rollbackContext": {"rollbackServerGroupName": v2}}),
                json!({"name": "again", "type": "rollbackCluster"}),
            ]),
        )
        .await;
        let done = h.finish(&run.id).await;
        succeeded(&done);
        assert_eq!(
            stage(&done, "previous").context["restoreServerGroupName"],
            json!(v1b)
        );
        // The cluster's newest group (v2, now disabled) goes back to v1b again: a no-op
        // apart from re-checking, since v1b already serves.
        assert_eq!(
            stage(&done, "again").context["rollbackServerGroupName"],
            json!(v2)
        );
        assert_eq!(
            h.cloud.log(),
            [format!("enable {v1b}"), format!("disable {v2}")]
        );
        h.stop().await;
    }
);

deploy_test!(cluster_stages_keep_what_they_are_told_to, |h| {
    for size in [3, 1, 2, 1] {
        h.cloud.seed("shop-prod", size, json!({}), &[]).await;
    }
    let run = h
        .run(
            "cluster",
            chain(vec![
                json!({"name": "disable", "type": "disableCluster", "remainingEnabledServerGroups": 2, "preferLargerOverNewer": true}),
                json!({"name": "scale", "type": "scaleDownCluster", "remainingFullSizeServerGroups": 3}),
                json!({"name": "shrink", "type": "shrinkCluster", "shrinkToSize": 2, "allowDeleteActive": false}),
            ]),
        )
        .await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    // Largest first: v000 (3) and v002 (2) stay enabled; v003 and v001 are disabled.
    // Scale down keeps the three newest (v003, v002, v001); v000 is enabled, so kept.
    // Shrink keeps the two newest; of the rest only disabled v001 is destroyed.
    assert_eq!(
        h.cloud.log(),
        [
            "disable shop-prod-v003",
            "disable shop-prod-v001",
            "destroy shop-prod-v001"
        ]
    );
    assert_eq!(
        stage(&done, "disable").context["disabledServerGroups"],
        json!(["shop-prod-v003", "shop-prod-v001"])
    );
    h.stop().await;
});

deploy_test!(find_image_from_cluster_feeds_a_later_deploy, |h| {
    let spec =
        json!({"command": "./serve", "artifact": {"reference": "v7"}, "env": {"MODE": "prod"}});
    let source = h.cloud.seed("shop-prod", 1, spec.clone(), &[]).await;
    h.cloud
        .seed("shop-prod", 1, json!({"artifact": "broken"}), &[])
        .await;
    h.cloud.seed_disabled("shop-prod-v001").await;
    let run = h
        .run(
            "promote",
            json!({"stages": [
                {"refId": "1", "name": "Find", "type": "findImageFromCluster", "cluster": "shop-prod",
                 "credentials": "local", "cloudProvider": "local", "selectionStrategy": "NEWEST", "onlyEnabled": true},
                {"refId": "2", "name": "Deploy", "type": "deploy", "requisiteStageRefIds": ["1"],
                 "clusters": [{"stack": "staging", "account": "local",
                               "capacity": {"desired": 1}, "strategy": ""}]},
                {"refId": "3", "name": "Deploy again", "type": "deploy", "requisiteStageRefIds": ["2"],
                 "clusters": [{"application": "shop", "stack": "canary", "account": "local",
                               "capacity": {"desired": 1}, "spec": "${#stage('Find')['context']['spec']}",
                               "env": {"MODE": "canary"}}]}
            ]}),
        )
        .await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    let find = stage(&done, "Find");
    assert_eq!(find.outputs["serverGroupName"], json!(source));
    assert_eq!(find.context["spec"], spec);
    assert_eq!(find.outputs["deploymentDetails"][0]["spec"], spec);
    assert_eq!(h.cloud.peek("shop-staging-v000").unwrap().spec, spec);
    let mut canary = spec.clone();
    canary["env"]["MODE"] = json!("canary");
    assert_eq!(h.cloud.peek("shop-canary-v000").unwrap().spec, canary);
    h.stop().await;
});

deploy_test!(find_image_fail_strategy_refuses_two_candidates, |h| {
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    h.cloud.seed("shop-prod", 1, json!({}), &[]).await;
    let run = h
        .run("find", chain(vec![json!({"name": "Find", "type": "findImageFromCluster", "selectionStrategy": "FAIL"})]))
        .await;
    let done = h.finish(&run.id).await;
    assert_eq!(done.status, ExecutionStatus::Terminal);
    h.stop().await;
});

deploy_test!(load_balancers_and_their_firewall, |h| {
    let run = h
        .run(
            "lb",
            json!({"stages": [
                {"refId": "1", "name": "create", "type": "upsertLoadBalancer", "credentials": "local", "cloudProvider": "local",
                 "loadBalancers": [{"name": "shop-lb", "listen": "127.0.0.1:0"}, {"name": "shop-admin", "port": 0}]},
                {"refId": "2", "name": "firewall", "type": "upsertSecurityGroup", "requisiteStageRefIds": ["1"],
                 "name": "shop-lb", "credentials": "local",
                 "ipIngress": [{"cidr": "10.0.0.0/8", "type": "tcp", "startPort": 80, "endPort": 80}],
                 "securityGroupIngress": [{"cidr": "127.0.0.1/32"}]},
                {"refId": "3", "name": "again", "type": "upsertLoadBalancer", "requisiteStageRefIds": ["2"],
                 "name": "shop-lb", "credentials": "local", "ejectionFailures": 3},
                {"refId": "4", "name": "delete", "type": "deleteLoadBalancer", "requisiteStageRefIds": ["3"],
                 "loadBalancerName": "shop-admin", "credentials": "local"}
            ]}),
        )
        .await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    let created = &stage(&done, "create").outputs["upsertedLoadBalancers"];
    let address = created[0]["address"].as_str().unwrap().to_owned();
    assert!(
        address.starts_with("127.0.0.1:") && !address.ends_with(":0"),
        "{address}"
    );
    let lb = gennaker_deploy::TrafficRouter::load_balancer(h.cloud.as_ref(), "local", "shop-lb")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lb.spec.allowed_cidrs,
        ["10.0.0.0/8", "127.0.0.1/32"],
        "the firewall survives a later upsert"
    );
    assert_eq!(lb.spec.ejection_failures, 3);
    assert_eq!(lb.address, address, "the port stays");
    assert_eq!(lb.spec.application, "shop");
    assert!(
        gennaker_deploy::TrafficRouter::load_balancer(h.cloud.as_ref(), "local", "shop-admin")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(h.cloud.count("delete-lb"), 1);
    let groups = Provider::server_groups(h.cloud.as_ref(), "shop")
        .await
        .unwrap();
    assert!(groups.is_empty());
    h.stop().await;
});

deploy_test!(health_waits_poll_soon_after_they_start, |h| {
    // New instances turn Up after a few health reads: with polls starting at 20 ms and
    // doubling, the wait sees them well within one steady 500 ms interval.
    let group = h
        .cloud
        .seed("shop-prod", 1, json!({"healthyAfterPolls": 4}), &[])
        .await;
    let run = h
        .run(
            "grow",
            chain(vec![json!({
                "name": "grow", "type": "resizeServerGroup", "serverGroupName": group,
                "action": "scale_exact", "capacity": {"min": 3, "max": 3, "desired": 3}
            })]),
        )
        .await;
    let done = h
        .drive_until(
            &run.id,
            std::time::Duration::from_millis(10),
            "the resize to end",
            |e| e.status.is_complete(),
        )
        .await;
    succeeded(&done);
    let grow = stage(&done, "grow");
    let wait = grow
        .tasks
        .iter()
        .find(|t| t.name == "waitForCapacityMatch")
        .unwrap();
    let waited = wait.end_time.unwrap() - wait.start_time.unwrap();
    assert!(
        waited < 500,
        "the wait took {waited} ms of engine time; its first polls should come every few tens of ms"
    );
    assert_eq!(grow.context["health"]["up"], 3);
    h.stop().await;
});
