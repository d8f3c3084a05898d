//! Authorization inside the deployment stages: a stage acts on another application's
//! server groups, clusters and load balancers only when the user who started the
//! execution holds the permission there NOW; its own application is never checked;
//! a load balancer never changes application.
//!
//! The kit runs pipelines of application `shop` as `alice` (role `dev`). Application
//! `bank` grants READ, WRITE and EXECUTE to role `bankers` only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gennaker_deploy::TrafficRouter;
use gennaker_engine::fault_test;
use gennaker_engine::testing::{FaultRun, requester, succeeded, summary};
use gennaker_engine::{Execution, ExecutionStatus, Requester, RunRequest};
use gennaker_store::Store;
use serde_json::{Value, json};

use support::FakeCloud;

/// Every stage type that touches a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deploy,
    Resize,
    Enable,
    Disable,
    Destroy,
    DisableCluster,
    ScaleDownCluster,
    ShrinkCluster,
    RollbackServerGroup,
    RollbackCluster,
    ShiftTraffic,
    UpsertLoadBalancer,
    DeleteLoadBalancer,
    Firewall,
    FindImage,
    ClusterSize,
}

const ALL: [Kind; 16] = [
    Kind::Deploy,
    Kind::Resize,
    Kind::Enable,
    Kind::Disable,
    Kind::Destroy,
    Kind::DisableCluster,
    Kind::ScaleDownCluster,
    Kind::ShrinkCluster,
    Kind::RollbackServerGroup,
    Kind::RollbackCluster,
    Kind::ShiftTraffic,
    Kind::UpsertLoadBalancer,
    Kind::DeleteLoadBalancer,
    Kind::Firewall,
    Kind::FindImage,
    Kind::ClusterSize,
];

impl Kind {
    /// The stack of this kind's cluster, so every kind has its own.
    fn stack(self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }

    /// The permission it needs on the target application.
    fn access(self) -> &'static str {
        match self {
            Self::FindImage | Self::ClusterSize => "READ",
            _ => "WRITE",
        }
    }

    /// Whether it changes the cloud (the others only read it).
    fn changes(self) -> bool {
        self.access() == "WRITE"
    }

    /// Creates what the stage acts on in `app` and returns the stage.
    async fn prepare(self, cloud: &FakeCloud, app: &str) -> Value {
        let stack = self.stack();
        let cluster = format!("{app}-{stack}");
        let lb = format!("{app}-{stack}lb");
        let seed = |spec: Value| cloud.seed(&cluster, 1, spec, &[]);
        match self {
            Self::Deploy => json!({"type": "deploy", "clusters": [{
                "application": app, "stack": stack, "account": "local", "cloudProvider": "local",
                "capacity": {"min": 1, "max": 1, "desired": 1}, "command": "./serve", "artifact": {"reference": "v1"},
            }]}),
            Self::Resize => {
                seed(json!({})).await;
                json!({"type": "resizeServerGroup", "cluster": cluster, "target": "current_asg_dynamic", "action": "scale_exact", "capacity": {"min": 2, "max": 2, "desired": 2}})
            }
            Self::Enable => {
                let name = seed(json!({})).await;
                cloud.seed_disabled(&name).await;
                json!({"type": "enableServerGroup", "cluster": cluster, "target": "current_asg_dynamic"})
            }
            Self::Disable => {
                seed(json!({})).await;
                json!({"type": "disableServerGroup", "cluster": cluster, "target": "current_asg_dynamic"})
            }
            Self::Destroy => {
                seed(json!({})).await;
                json!({"type": "destroyServerGroup", "cluster": cluster, "target": "current_asg_dynamic"})
            }
            Self::DisableCluster => {
                seed(json!({})).await;
                seed(json!({})).await;
                json!({"type": "disableCluster", "cluster": cluster, "remainingEnabledServerGroups": 1})
            }
            Self::ScaleDownCluster => {
                seed(json!({})).await;
                seed(json!({})).await;
                json!({"type": "scaleDownCluster", "cluster": cluster, "remainingFullSizeServerGroups": 1, "allowScaleDownActive": true})
            }
            Self::ShrinkCluster => {
                seed(json!({})).await;
                seed(json!({})).await;
                json!({"type": "shrinkCluster", "cluster": cluster, "shrinkToSize": 1, "allowDeleteActive": true})
            }
            Self::RollbackServerGroup => {
                let restore = seed(json!({"artifact": "v1"})).await;
                let rollback = seed(json!({"artifact": "v2"})).await;
                json!({"type": "rollbackServerGroup", "rollbackType": "EXPLICIT", "rollbackContext": {
                    "rollbackServerGroupName": rollback, "restoreServerGroupName": restore}})
            }
            Self::RollbackCluster => {
                seed(json!({"artifact": "v1"})).await;
                seed(json!({"artifact": "v2"})).await;
                json!({"type": "rollbackCluster", "cluster": cluster})
            }
            Self::ShiftTraffic => {
                cloud.balancer_of(&lb, app).await;
                cloud.seed(&cluster, 1, json!({}), &[&lb]).await;
                let newest = cloud.seed(&cluster, 1, json!({}), &[&lb]).await;
                json!({"type": "shiftTraffic", "serverGroupName": newest, "percentage": 50})
            }
            Self::UpsertLoadBalancer => {
                json!({"type": "upsertLoadBalancer", "loadBalancers": [{"name": lb, "application": app, "listen": "127.0.0.1:0"}]})
            }
            Self::DeleteLoadBalancer => {
                cloud.balancer_of(&lb, app).await;
                json!({"type": "deleteLoadBalancer", "loadBalancerName": lb})
            }
            Self::Firewall => {
                cloud.balancer_of(&lb, app).await;
                json!({"type": "upsertSecurityGroup", "name": "office", "loadBalancerName": lb, "ipIngress": [{"cidr": "10.0.0.0/8"}]})
            }
            Self::FindImage => {
                seed(json!({"artifact": "v9"})).await;
                json!({"type": "findImageFromCluster", "cluster": cluster, "selectionStrategy": "NEWEST"})
            }
            Self::ClusterSize => {
                seed(json!({})).await;
                json!({"type": "checkPreconditions", "preconditions": [{"type": "clusterSize",
                    "context": {"cluster": cluster, "credentials": "local", "expected": 1}}]})
            }
        }
    }
}

/// A pipeline of the stage `act` (after a 30 s wait when `wait`).
fn pipeline(mut act: Value, wait: bool) -> Value {
    act["name"] = json!("act");
    act["refId"] = json!("2");
    if act["type"] != "deploy" {
        act["credentials"] = json!("local");
        act["cloudProvider"] = json!("local");
    }
    if !wait {
        act["refId"] = json!("1");
        return json!({"stages": [act]});
    }
    act["requisiteStageRefIds"] = json!(["1"]);
    json!({"stages": [{"refId": "1", "type": "wait", "name": "pause", "waitTime": 30}, act]})
}

/// Roles, users and the other application.
async fn people(h: &support::Harness) {
    for role in ["dev", "bankers", "readers", "writers"] {
        h.store.create_role(role, "").await.unwrap();
    }
    h.store
        .create_user("alice", false, &["dev".into()])
        .await
        .unwrap();
    h.store.create_user("root", true, &[]).await.unwrap();
    let everything = json!(["bankers"]);
    h.store
        .create_application(
            "bank",
            &json!({"name": "bank", "permissions": {"READ": everything, "WRITE": everything, "EXECUTE": everything}}),
            "test",
        )
        .await
        .unwrap();
    h.store
        .create_application(
            "ledger",
            &json!({"name": "ledger", "permissions": {"READ": ["readers"], "WRITE": ["writers"]}}),
            "test",
        )
        .await
        .unwrap();
}

async fn set_roles(h: &support::Harness, user: &str, roles: &[&str]) {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    h.store.set_user_roles(user, &roles).await.unwrap();
}

fn root() -> Requester {
    Requester {
        user: "root".into(),
        roles: vec![],
        origin: "test".into(),
    }
}

/// Every error the execution's stages recorded.
fn errors(execution: &Execution) -> String {
    execution
        .stages
        .iter()
        .filter_map(|s| s.context.get("exception"))
        .filter_map(|e| e["details"]["error"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the run was refused with `expected` in its error, having changed nothing.
fn refused(done: &Execution, expected: &str, before: &[String], after: &[String], what: &str) {
    assert_eq!(
        done.status,
        ExecutionStatus::Terminal,
        "{what}: {}",
        summary(done)
    );
    let errors = errors(done);
    assert!(errors.contains(expected), "{what}: {errors}");
    assert_eq!(before, after, "{what}: a refused stage changed the cloud");
}

/// Runs `kind` against `app` as `requester`, changing roles of `alice` to
/// `roles_after_start` once it started (when given); returns the finished execution
/// and the cloud's log before and after.
async fn attempt(
    h: &support::Harness,
    kind: Kind,
    app: &str,
    as_user: &Requester,
    roles_after_start: Option<&[&str]>,
) -> (Execution, Vec<String>, Vec<String>) {
    let stage = kind.prepare(&h.cloud, app).await;
    let before = h.cloud.log();
    let name = format!("{app}-{}-{}", kind.stack(), as_user.user);
    let run = h
        .run_as(&name, pipeline(stage, roles_after_start.is_some()), as_user)
        .await;
    if let Some(roles) = roles_after_start {
        set_roles(h, "alice", roles).await;
    }
    let done = h.finish(&run.id).await;
    (done, before, h.cloud.log())
}

deploy_test!(
    every_stage_is_refused_on_another_application_without_rights,
    |h| {
        people(&h).await;
        for kind in ALL {
            let (done, before, after) = attempt(&h, kind, "bank", &requester(), None).await;
            let expected = format!(
                "of application 'bank': user 'alice' who started this execution lacks {} permission on 'bank'",
                kind.access()
            );
            refused(&done, &expected, &before, &after, &format!("{kind:?}"));
            assert!(
                errors(&done).contains("may not act on"),
                "{}",
                errors(&done)
            );
        }
        h.stop().await;
    }
);

deploy_test!(
    every_stage_acts_on_another_application_with_rights_there,
    |h| {
        people(&h).await;
        set_roles(&h, "alice", &["dev", "bankers"]).await;
        for kind in ALL {
            let (done, before, after) = attempt(&h, kind, "bank", &requester(), None).await;
            succeeded(&done);
            assert_eq!(kind.changes(), before != after, "{kind:?}");
        }
        let created = h
            .cloud
            .load_balancer("local", "bank-upsertloadbalancerlb")
            .await;
        assert_eq!(created.unwrap().unwrap().spec.application, "bank");
        h.stop().await;
    }
);

deploy_test!(
    every_stage_acts_on_its_own_application_without_any_lookup,
    |h| {
        // alice is not even a user of the store: her own application is not checked.
        for kind in ALL {
            let (done, before, after) = attempt(&h, kind, "shop", &requester(), None).await;
            succeeded(&done);
            assert_eq!(kind.changes(), before != after, "{kind:?}");
        }
        h.stop().await;
    }
);

deploy_test!(an_admin_acts_on_any_application, |h| {
    people(&h).await;
    for kind in ALL {
        let (done, before, after) = attempt(&h, kind, "bank", &root(), None).await;
        succeeded(&done);
        assert_eq!(kind.changes(), before != after, "{kind:?}");
    }
    h.stop().await;
});

deploy_test!(
    a_role_removed_after_the_start_is_refused_when_the_stage_acts,
    |h| {
        people(&h).await;
        set_roles(&h, "alice", &["dev", "bankers"]).await;
        let started_with = Requester {
            roles: vec!["dev".into(), "bankers".into()],
            ..requester()
        };
        for kind in ALL {
            set_roles(&h, "alice", &["dev", "bankers"]).await;
            let (done, before, after) =
                attempt(&h, kind, "bank", &started_with, Some(&["dev"])).await;
            let expected = format!(
                "user 'alice' who started this execution lacks {} permission on 'bank'",
                kind.access()
            );
            refused(&done, &expected, &before, &after, &format!("{kind:?}"));
        }
        h.stop().await;
    }
);

deploy_test!(a_user_deleted_after_the_start_is_refused, |h| {
    people(&h).await;
    set_roles(&h, "alice", &["dev", "bankers"]).await;
    let stage = Kind::Disable.prepare(&h.cloud, "bank").await;
    let run = h.run("disable", pipeline(stage, true)).await;
    h.store.delete_user("alice").await.unwrap();
    let done = h.finish(&run.id).await;
    refused(
        &done,
        "stage 'act' (disableServerGroup) may not act on cluster 'bank-disable' of application 'bank': user 'alice' who started this execution no longer exists",
        &[],
        &h.cloud.log(),
        "deleted user",
    );
    h.stop().await;
});

deploy_test!(write_does_not_imply_read_nor_read_write, |h| {
    people(&h).await;
    set_roles(&h, "alice", &["writers"]).await;
    let (done, before, after) = attempt(&h, Kind::FindImage, "ledger", &requester(), None).await;
    refused(
        &done,
        "lacks READ permission on 'ledger'",
        &before,
        &after,
        "writer reads",
    );
    let (done, ..) = attempt(&h, Kind::Disable, "ledger", &requester(), None).await;
    succeeded(&done);
    set_roles(&h, "alice", &["readers"]).await;
    let (done, ..) = attempt(&h, Kind::ClusterSize, "ledger", &requester(), None).await;
    succeeded(&done);
    let (done, before, after) = attempt(&h, Kind::Destroy, "ledger", &requester(), None).await;
    refused(
        &done,
        "lacks WRITE permission on 'ledger'",
        &before,
        &after,
        "reader writes",
    );
    h.stop().await;
});

deploy_test!(
    a_deploy_into_an_application_that_does_not_exist_is_refused_even_for_an_admin,
    |h| {
        people(&h).await;
        let (done, before, after) = attempt(&h, Kind::Deploy, "ghost", &root(), None).await;
        refused(
            &done,
            "may not act on cluster 'ghost-deploy' of application 'ghost': application 'ghost' does not exist; create it first",
            &before,
            &after,
            "missing application",
        );
        assert!(h.cloud.names().is_empty());
        h.stop().await;
    }
);

deploy_test!(
    an_execution_without_a_user_acts_only_on_its_own_application_unless_run_as,
    |h| {
        people(&h).await;
        let system = Requester {
            user: String::new(),
            roles: vec![],
            origin: "trigger".into(),
        };
        let run_with = |trigger: Value, requester: Requester, name: &'static str| {
            let h = &h;
            async move {
                let stage = Kind::Disable.prepare(&h.cloud, "bank").await;
                let config = h.save(name, pipeline(stage, false)).await;
                let config = gennaker_core::Pipeline::from_value(config).unwrap();
                let request = RunRequest {
                    trigger: trigger.as_object().cloned().unwrap_or_default(),
                    ..RunRequest::default()
                };
                let run = h
                    .engine
                    .run_pipeline("shop", &config, &request, &requester)
                    .await
                    .unwrap();
                h.finish(&run.id).await
            }
        };
        let done = run_with(json!({"type": "cron"}), system.clone(), "system").await;
        assert!(
            errors(&done).contains("this execution was started by the system with no user and its trigger names no runAsUser, so it may act only on its own application 'shop'"),
            "{}",
            errors(&done)
        );
        let done = run_with(
            json!({"type": "cron", "runAsUser": "root"}),
            system,
            "run as",
        )
        .await;
        succeeded(&done);
        // A person's own trigger cannot borrow another user's rights.
        let done = run_with(
            json!({"type": "manual", "runAsUser": "root"}),
            requester(),
            "borrowed",
        )
        .await;
        assert!(
            errors(&done).contains(
                "user 'alice' who started this execution lacks WRITE permission on 'bank'"
            ),
            "{}",
            errors(&done)
        );
        h.stop().await;
    }
);

// ----- the attacks of issue 17 -----

deploy_test!(cannot_move_another_apps_load_balancer_traffic, |h| {
    people(&h).await;
    h.cloud.balancer_of("bank-lb", "bank").await;
    h.cloud.seed("bank-prod", 1, json!({}), &["bank-lb"]).await;
    let weights = || async {
        h.cloud
            .load_balancer("local", "bank-lb")
            .await
            .unwrap()
            .unwrap()
            .weights
    };
    // Joining the balancer with a new server group of her own.
    let deploy = support::deploy_stage(
        "v1",
        json!({"loadBalancers": ["bank-lb"], "capacity": {"desired": 1}}),
    );
    let run = h.run("join", json!({"stages": [deploy]})).await;
    let done = h.finish(&run.id).await;
    assert_eq!(done.status, ExecutionStatus::Terminal, "{}", summary(&done));
    assert!(
        errors(&done).contains("may not act on load balancer 'bank-lb' of application 'bank': user 'alice' who started this execution lacks WRITE permission on 'bank'"),
        "{}",
        errors(&done)
    );
    assert_eq!(h.cloud.names(), ["bank-prod-v000"], "no group was created");
    // A group of hers already in the balancer (from before her rights were taken) is
    // neither grown, enabled into it, nor given its traffic.
    let hers = h.cloud.seed("shop-prod", 1, json!({}), &["bank-lb"]).await;
    let grow = json!({"type": "resizeServerGroup", "serverGroupName": hers, "action": "scale_exact", "capacity": {"desired": 5}});
    h.cloud.seed_disabled(&hers).await;
    let routed = weights().await;
    let mut attempts = vec![(grow, true)];
    for stage in [
        json!({"type": "enableServerGroup", "serverGroupName": hers}),
        json!({"type": "shiftTraffic", "serverGroupName": hers, "percentage": 100}),
    ] {
        attempts.push((stage, false));
    }
    for (stage, enabled) in attempts {
        h.cloud.switch_quietly(&hers, !enabled);
        let run = h.run("steal", pipeline(stage, false)).await;
        let done = h.finish(&run.id).await;
        assert!(
            errors(&done).contains("may not act on load balancer 'bank-lb' of application 'bank'"),
            "{}",
            errors(&done)
        );
        assert!(h.cloud.log().is_empty(), "{:?}", h.cloud.log());
    }
    assert_eq!(h.cloud.peek(&hers).unwrap().capacity.desired, 1);
    assert_eq!(weights().await, routed);
    // Naming a balancer of another application before it exists is refused too: her
    // group would take its traffic the moment it is created.
    let deploy = support::deploy_stage("v1", json!({"loadBalancers": ["bank-next"]}));
    let run = h.run("preposition", json!({"stages": [deploy]})).await;
    let done = h.finish(&run.id).await;
    assert!(
        errors(&done).contains("may not put the new server group of cluster 'shop-prod' into load balancer 'bank-next': it does not exist in account 'local', and only a load balancer named after application 'shop'"),
        "{}",
        errors(&done)
    );
    h.stop().await;
});

deploy_test!(
    cannot_move_another_apps_load_balancer_into_her_application,
    |h| {
        people(&h).await;
        h.cloud.balancer_of("bank-lb", "bank").await;
        let upsert = json!({"type": "upsertLoadBalancer", "loadBalancers": [{"name": "bank-lb", "application": "shop", "listen": "127.0.0.1:9999"}]});
        let owner = || async {
            h.cloud
                .load_balancer("local", "bank-lb")
                .await
                .unwrap()
                .unwrap()
                .spec
                .application
        };
        // Refused without rights, with rights, and to an admin: only a pipeline of
        // the balancer's own application changes it.
        set_roles(&h, "alice", &["dev", "bankers"]).await;
        for as_user in [requester(), root()] {
            let run = h
                .run_as("adopt", pipeline(upsert.clone(), false), &as_user)
                .await;
            let done = h.finish(&run.id).await;
            assert!(
                errors(&done).contains("stage 'act' (upsertLoadBalancer) may not change load balancer 'bank-lb' of application 'bank': a load balancer is changed only by pipelines of its own application"),
                "{}",
                summary(&done)
            );
            assert_eq!(owner().await, "bank");
        }
        // Nor does a pipeline of the owner move it elsewhere.
        h.cloud.balancer_of("shop-lb", "shop").await;
        let moving = json!({"type": "upsertLoadBalancer", "loadBalancers": [{"name": "shop-lb", "application": "bank"}]});
        let run = h.run("give away", pipeline(moving, false)).await;
        let done = h.finish(&run.id).await;
        assert!(
            errors(&done).contains("may not move load balancer 'shop-lb' from application 'shop' to 'bank': a load balancer never changes application"),
            "{}",
            errors(&done)
        );
        assert!(h.cloud.log().is_empty(), "{:?}", h.cloud.log());
        h.stop().await;
    }
);

deploy_test!(cannot_disable_another_apps_server_group, |h| {
    people(&h).await;
    let theirs = h.cloud.seed("bank-prod", 1, json!({}), &[]).await;
    // Named outright, and hidden behind a cluster of her own: the group's recorded
    // application decides.
    for stage in [
        json!({"type": "disableServerGroup", "serverGroupName": theirs}),
        json!({"type": "disableServerGroup", "serverGroupName": theirs, "cluster": "shop-prod", "moniker": {"app": "shop", "cluster": "shop-prod"}}),
    ] {
        let run = h.run("disable", pipeline(stage, false)).await;
        let done = h.finish(&run.id).await;
        assert!(
            errors(&done).contains("stage 'act' (disableServerGroup) may not act on server group 'bank-prod-v000' of application 'bank': user 'alice' who started this execution lacks WRITE permission on 'bank'"),
            "{}",
            errors(&done)
        );
    }
    assert!(!h.cloud.peek(&theirs).unwrap().disabled);
    assert!(h.cloud.log().is_empty());
    // A group that does not exist is refused alike: the refusal tells nothing of
    // what another application has.
    let stage = json!({"type": "disableServerGroup", "serverGroupName": "bank-prod-v042"});
    let run = h.run("probe", pipeline(stage, false)).await;
    let done = h.finish(&run.id).await;
    assert!(
        errors(&done).contains("may not act on server group 'bank-prod-v042' of application 'bank': user 'alice' who started this execution lacks WRITE permission on 'bank'"),
        "{}",
        errors(&done)
    );
    h.stop().await;
});

fault_test!(
    /// A refused deploy into another application changes nothing whatever crashes or
    /// repeats; an allowed one changes the cloud exactly as an undisturbed run does.
    cross_application_deploys_survive_faults,
    |backend, fault| {
        for allowed in [false, true] {
            let cloud = Arc::new(FakeCloud::default());
            cloud.balancer_of("bank-lb", "bank").await;
            cloud
                .seed("bank-prod", 2, json!({"artifact": "v1"}), &["bank-lb"])
                .await;
            let deploy = support::deploy_stage(
                "v2",
                json!({"application": "bank", "strategy": "redblack", "scaleDown": true, "loadBalancers": ["bank-lb"]}),
            );
            let mut deploy = deploy;
            deploy["refId"] = json!("2");
            deploy["requisiteStageRefIds"] = json!(["1"]);
            // Some waiting first, so the faults strike many times.
            let pipeline = json!({"stages": [
                {"refId": "1", "name": "pause", "type": "test", "outcome": "poll:8"}, deploy]});
            let roles: &[&str] = if allowed { &["dev", "bankers"] } else { &["dev"] };
            let everything = json!(["bankers"]);
            let outcome = FaultRun::new(backend, fault, pipeline)
                .with_stages(support::deploy_stages(&cloud))
                .with_user("alice", false, roles)
                .with_application(
                    "bank",
                    json!({"name": "bank", "permissions": {"READ": everything, "WRITE": everything}}),
                    &[],
                )
                .clock_step(Duration::from_secs(1))
                .run()
                .await;
            outcome.assert_clean();
            let done = &outcome.execution;
            if allowed {
                succeeded(done);
                assert_eq!(
                    cloud.log(),
                    [
                        "create bank-prod-v001 2",
                        "disable bank-prod-v000",
                        "resize bank-prod-v000 0"
                    ],
                    "{fault:?}: every change made exactly once"
                );
            } else {
                assert_eq!(done.status, ExecutionStatus::Terminal, "{}", summary(done));
                assert!(
                    errors(done).contains("may not act on cluster 'bank-prod' of application 'bank': user 'alice' who started this execution lacks WRITE permission on 'bank'"),
                    "{}",
                    errors(done)
                );
                assert!(cloud.log().is_empty(), "{fault:?}: {:?}", cloud.log());
            }
        }
    }
);
