//! The `pipeline` stage runs a pipeline of another application only when the user who
//! started the execution holds EXECUTE there when the stage runs; its own
//! application's pipelines are not checked. On SQLite and PostgreSQL, and under faults.
//!
//! The kit runs pipelines of application `shop` as `alice`. Application `bank` grants
//! everything to role `bankers`; `archive` grants READ (and so EXECUTE, Fiat's
//! fallback) to `readers`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{self, FaultRun, error_of, requester, stage, succeeded, summary};
use gennaker_engine::{Execution, Requester, RunRequest, engine_test, fault_test};
use gennaker_store::{ExecutionQuery, PipelineSave, Store};
use serde_json::{Value, json};

fn bank() -> Value {
    let everything = json!(["bankers"]);
    json!({"name": "bank", "permissions": {"READ": everything, "WRITE": everything, "EXECUTE": everything}})
}

fn payout() -> Value {
    json!({"stages": [{"refId": "1", "name": "pay", "type": "test"}]})
}

/// Roles, users, and the other applications with a pipeline `payout` each.
async fn people(h: &testing::Harness) {
    for role in ["dev", "bankers", "readers"] {
        h.store.create_role(role, "").await.unwrap();
    }
    h.store
        .create_user("alice", false, &["dev".into()])
        .await
        .unwrap();
    h.store.create_user("root", true, &[]).await.unwrap();
    let archive =
        json!({"name": "archive", "permissions": {"READ": ["readers"], "WRITE": ["nobody"]}});
    for (name, document) in [("bank", bank()), ("archive", archive)] {
        h.store
            .create_application(name, &document, "test")
            .await
            .unwrap();
        let save = PipelineSave {
            id: None,
            name: "payout".into(),
            config: payout(),
        };
        h.store.save_pipeline(name, &save, "test").await.unwrap();
    }
}

async fn set_roles(h: &testing::Harness, roles: &[&str]) {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    h.store.set_user_roles("alice", &roles).await.unwrap();
}

/// A parent running `application`'s `payout` (after a 30 s wait when `wait`).
fn parent(application: &str, wait: bool) -> Value {
    let run = json!({"refId": "2", "name": "run payout", "type": "pipeline",
        "application": application, "pipeline": "payout"});
    if !wait {
        let mut run = run;
        run["refId"] = json!("1");
        return json!({"stages": [run]});
    }
    let mut run = run;
    run["requisiteStageRefIds"] = json!(["1"]);
    json!({"stages": [{"refId": "1", "name": "pause", "type": "wait", "waitTime": 30}, run]})
}

/// Executions of `application`.
async fn executions_of(h: &testing::Harness, application: &str) -> usize {
    use gennaker_store::ExecutionStore;
    h.store
        .list_executions(&ExecutionQuery {
            application: Some(application.into()),
            limit: 100,
            ..ExecutionQuery::default()
        })
        .await
        .unwrap()
        .len()
}

/// The refusal the parent's stage records, having started no child.
async fn assert_refused(h: &testing::Harness, done: &Execution, access: &str, app: &str) {
    assert_eq!(done.status, Terminal, "{}", summary(done));
    let error = error_of(stage(done, "run payout"));
    assert_eq!(
        error,
        format!(
            "stage 'run payout' (pipeline) may not act on pipeline 'payout' of application '{app}': user 'alice' who started this execution lacks {access} permission on '{app}'; an admin can grant a role with {access} on '{app}' (`gennaker user set-roles`), or the stage can run in a pipeline of '{app}'"
        )
    );
    assert!(
        !stage(done, "run payout")
            .context
            .contains_key("executionId")
    );
    assert_eq!(executions_of(h, app).await, 0, "no child was started");
}

engine_test!(cannot_run_another_apps_pipeline, |h| {
    people(&h).await;
    let run = h.run("parent", parent("bank", false)).await;
    let done = h.finish(&run.id).await;
    assert_refused(&h, &done, "EXECUTE", "bank").await;
    // The refusal comes before the lookup: a pipeline that does not exist there is
    // refused the same way, and bank's pipelines are never listed.
    let run = h
        .run("probe", json!({"stages": [{"refId": "1", "name": "run payout", "type": "pipeline", "application": "bank", "pipeline": "nothing"}]}))
        .await;
    let done = h.finish(&run.id).await;
    let error = error_of(stage(&done, "run payout"));
    assert!(
        error.contains("lacks EXECUTE permission on 'bank'"),
        "{error}"
    );
    assert!(!error.contains("its pipelines are"), "{error}");
    h.stop().await;
});

engine_test!(another_apps_pipeline_runs_with_execute_there, |h| {
    people(&h).await;
    set_roles(&h, &["dev", "bankers"]).await;
    let run = h.run("parent", parent("bank", false)).await;
    let done = h.finish(&run.id).await;
    succeeded(&done);
    let id = stage(&done, "run payout").context["executionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = h.engine.execution(&id).await.unwrap().unwrap();
    assert_eq!(child.application, "bank");
    assert_eq!(child.authentication.user, "alice", "the child runs as her");
    h.stop().await;
});

engine_test!(execute_falls_back_to_read, |h| {
    people(&h).await;
    set_roles(&h, &["readers"]).await;
    let run = h.run("parent", parent("archive", false)).await;
    succeeded(&h.finish(&run.id).await);
    h.stop().await;
});

engine_test!(an_admin_runs_any_apps_pipeline, |h| {
    people(&h).await;
    let root = Requester {
        user: "root".into(),
        roles: vec![],
        origin: "test".into(),
    };
    let run = h.run_as("parent", parent("bank", false), &root).await;
    succeeded(&h.finish(&run.id).await);
    h.stop().await;
});

engine_test!(its_own_apps_pipelines_are_not_checked, |h| {
    // alice is not a user of the store at all.
    h.save("payout", payout()).await;
    let run = h.run("parent", parent("shop", false)).await;
    succeeded(&h.finish(&run.id).await);
    h.stop().await;
});

engine_test!(a_role_removed_after_the_start_is_refused, |h| {
    people(&h).await;
    set_roles(&h, &["dev", "bankers"]).await;
    let started_with = Requester {
        roles: vec!["dev".into(), "bankers".into()],
        ..requester()
    };
    let run = h
        .run_as("parent", parent("bank", true), &started_with)
        .await;
    set_roles(&h, &["dev"]).await;
    let done = h.finish(&run.id).await;
    assert_refused(&h, &done, "EXECUTE", "bank").await;
    h.stop().await;
});

engine_test!(a_system_parent_lends_its_run_as_user_to_the_child, |h| {
    people(&h).await;
    let config = h.save("parent", parent("bank", false)).await;
    let config = gennaker_core::Pipeline::from_value(config).unwrap();
    let system = Requester {
        user: String::new(),
        roles: vec![],
        origin: "trigger".into(),
    };
    let request = RunRequest {
        trigger: json!({"type": "cron", "runAsUser": "root"})
            .as_object()
            .cloned()
            .unwrap(),
        ..RunRequest::default()
    };
    let run = h
        .engine
        .run_pipeline("shop", &config, &request, &system)
        .await
        .unwrap();
    let done = h.finish(&run.id).await;
    succeeded(&done);
    let id = stage(&done, "run payout").context["executionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = h.engine.execution(&id).await.unwrap().unwrap();
    assert_eq!(child.trigger["runAsUser"], "root");
    h.stop().await;
});

fault_test!(
    /// A refused child pipeline stays refused whatever crashes or repeats, and an
    /// allowed one starts exactly once.
    cross_application_child_pipelines_survive_faults,
    |backend, fault| {
        for allowed in [false, true] {
            let roles: &[&str] = if allowed { &["bankers"] } else { &["dev"] };
            // Some polling first, so the faults strike many times.
            let mut pipeline = parent("bank", true);
            pipeline["stages"][0] =
                json!({"refId": "1", "name": "pause", "type": "test", "outcome": "poll:4"});
            let outcome = FaultRun::new(backend, fault, pipeline)
                .with_user("alice", false, roles)
                .with_application("bank", bank(), &[("payout", payout())])
                .run()
                .await;
            outcome.assert_clean();
            let done = &outcome.execution;
            if allowed {
                succeeded(done);
                assert_eq!(outcome.executions.len(), 2, "the parent and ONE child");
            } else {
                assert_eq!(done.status, Terminal, "{fault:?}: {}", summary(done));
                let error = error_of(stage(done, "run payout"));
                assert!(error.contains("lacks EXECUTE permission on 'bank'"), "{error}");
                assert_eq!(outcome.executions.len(), 1, "no child was started");
            }
        }
    }
);
