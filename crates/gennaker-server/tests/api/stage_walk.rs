//! A walk over `GET /api/v1/stageTypes` with the real engine and the real local
//! provider: every runnable type runs in a one-stage pipeline and never fails as
//! unknown; every other type saves with a warning and stops its run TERMINAL, and so
//! does a type nobody knows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;

use crate::harness::*;

/// The statuses an execution ends in.
const ENDED: &[&str] = &["SUCCEEDED", "TERMINAL", "CANCELED", "STOPPED"];

/// Words of the errors a stage (or a task) gets when the engine cannot run its type.
const UNKNOWN_TYPE_ERRORS: &[&str] = &[
    "not known to this gennaker",
    "not a stage type",
    "cannot run yet",
    "not registered",
    "unknown stage type",
    "unknown task",
    "unsupported",
];

/// How a walked stage must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It runs to SUCCEEDED.
    Succeeds,
    /// It waits for a judgment; judged "continue" through the API, it succeeds.
    SucceedsWhenJudged,
    /// It acts on a cluster that does not exist: it may fail, for a real reason.
    Ends,
    /// Another stage plans it: a pipeline naming it on its own is not saved.
    PlannedOnly,
}

/// What the walk's stages point at.
struct Walk {
    app: String,
    /// The id of a pipeline for `pipeline` stages to run.
    child: String,
    /// A local endpoint for `webhook` stages.
    hook: String,
}

/// The fields and expected outcome of the walk's stage for each runnable type. A
/// runnable type missing here fails the walk: cover every type you add.
fn runnable_case(stage_type: &str, walk: &Walk) -> Option<(Value, Outcome)> {
    let local = json!({ "account": "local", "cloudProvider": "local" });
    let with = |fields: Value| {
        let mut all = local.clone();
        all.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        all
    };
    let cluster = with(json!({ "cluster": format!("{}-ghost", walk.app) }));
    let group = with(json!({ "serverGroupName": format!("{}-ghost-v000", walk.app) }));
    let target =
        with(json!({ "cluster": format!("{}-ghost", walk.app), "target": "current_asg_dynamic" }));
    // Nothing to run (no artifact, no command): the local provider refuses at once.
    let ghost_cluster = with(json!({
        "application": walk.app, "stack": "ghost",
        "capacity": { "min": 1, "max": 1, "desired": 1 },
    }));
    let case = match stage_type {
        "wait" => (json!({ "waitTime": 0 }), Outcome::Succeeds),
        "evaluateVariables" => (
            json!({ "variables": [{ "key": "answer", "value": "${ 6 * 7 }" }] }),
            Outcome::Succeeds,
        ),
        "checkPreconditions" => (
            json!({ "preconditions": [{ "type": "expression",
                "context": { "expression": "${ 1 < 2 }" } }] }),
            Outcome::Succeeds,
        ),
        "webhook" => (
            json!({ "url": walk.hook, "method": "POST", "payload": { "walk": true } }),
            Outcome::Succeeds,
        ),
        "pipeline" => (
            json!({ "application": walk.app, "pipeline": walk.child }),
            Outcome::Succeeds,
        ),
        "manualJudgment" => (json!({}), Outcome::SucceedsWhenJudged),
        "deploy" => (json!({ "clusters": [ghost_cluster] }), Outcome::Ends),
        "createServerGroup" => (ghost_cluster, Outcome::Ends),
        "resizeServerGroup" => (
            with(json!({
                "cluster": format!("{}-ghost", walk.app), "target": "current_asg_dynamic",
                "action": "scale_exact", "capacity": { "min": 2, "max": 2, "desired": 2 },
            })),
            Outcome::Ends,
        ),
        "enableServerGroup" | "disableServerGroup" => (target, Outcome::Ends),
        "destroyServerGroup" => (group, Outcome::Ends),
        "shiftTraffic" => (
            with(
                json!({ "serverGroupName": format!("{}-ghost-v000", walk.app), "percentage": 50 }),
            ),
            Outcome::Ends,
        ),
        // A canary release's own stages, on a cluster with no groups: nothing to weigh
        // (TERMINAL) or to remove.
        "canaryTraffic" | "removeCanaryServerGroups" => (cluster, Outcome::Ends),
        // A kayentaCanary's deploy and cleanup stages are planned by it: a pipeline that
        // names one on its own is refused, at the stage's type.
        "deployCanaryServerGroups" | "cleanupCanaryClusters" => (cluster, Outcome::PlannedOnly),
        "disableCluster"
        | "scaleDownCluster"
        | "shrinkCluster"
        | "findImageFromCluster"
        | "rollbackCluster" => (cluster, Outcome::Ends),
        "rollbackServerGroup" => (
            with(json!({
                "rollbackType": "EXPLICIT",
                "rollbackContext": {
                    "rollbackServerGroupName": format!("{}-ghost-v001", walk.app),
                    "restoreServerGroupName": format!("{}-ghost-v000", walk.app),
                },
            })),
            Outcome::Ends,
        ),
        "upsertLoadBalancer" => (
            with(json!({ "name": format!("{}-walk", walk.app), "listen": "127.0.0.1:0" })),
            Outcome::Ends,
        ),
        "deleteLoadBalancer" => (
            with(json!({ "loadBalancerName": format!("{}-ghost", walk.app) })),
            Outcome::Ends,
        ),
        "upsertSecurityGroup" => (
            with(json!({
                "name": format!("{}-ghost", walk.app),
                "loadBalancerName": format!("{}-ghost", walk.app),
                "ipIngress": [{ "cidr": "127.0.0.1/32" }],
            })),
            Outcome::Ends,
        ),
        _ => return None,
    };
    Some(case)
}

/// Fields a Spinnaker-only type needs to save: only those whose mistakes are still
/// reported (their rules live in gennaker-core).
fn spinnaker_only_fields(stage_type: &str) -> Value {
    match stage_type {
        "kayentaCanary" => json!({ "canaryConfig": {
            "canaryConfigId": "walk",
            "scoreThresholds": { "marginal": 50, "pass": 75 },
            "scopes": [{ "controlScope": "baseline", "experimentScope": "canary" }],
        } }),
        _ => json!({}),
    }
}

/// A one-stage pipeline named after the stage type.
fn one_stage(app: &str, stage_type: &str, fields: &Value) -> Value {
    let mut stage =
        json!({ "refId": "1", "type": stage_type, "name": format!("Walk {stage_type}") });
    stage
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({ "application": app, "name": format!("walk-{stage_type}"), "stages": [stage] })
}

/// A local endpoint webhook stages call; it counts the calls.
async fn hook_server() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let routes = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({ "accepted": true }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });
    (format!("http://{address}/hook"), calls)
}

/// Every stage type the server lists.
async fn stage_types(server: &Server) -> Vec<Value> {
    let listed = server
        .get("/api/v1/stageTypes", &server.admin)
        .await
        .expect(200);
    listed.as_array().unwrap().clone()
}

/// The error text of every stage of an execution that failed.
fn errors(execution: &Value) -> Vec<String> {
    execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["context"]["exception"].is_null())
        .map(|s| s["context"]["exception"]["details"]["error"].to_string())
        .collect()
}

/// No stage of the execution failed because the engine could not run its type or a task.
#[track_caller]
fn assert_ran(stage_type: &str, execution: &Value) {
    for stage in execution["stages"].as_array().unwrap() {
        let exception = &stage["context"]["exception"];
        assert_ne!(
            exception["details"]["unsupported"], true,
            "{stage_type}: stage '{}' failed as unsupported: {exception}",
            stage["name"]
        );
        let text = exception.to_string().to_lowercase();
        for words in UNKNOWN_TYPE_ERRORS {
            assert!(
                !text.contains(words),
                "{stage_type}: stage '{}' failed as if its type or a task were unknown: {}",
                stage["name"],
                exception
            );
        }
    }
}

/// Saves a one-stage pipeline of `stage_type` and starts it: its save warnings and the
/// execution's id.
async fn save_and_start(
    server: &Server,
    app: &str,
    stage_type: &str,
    fields: &Value,
) -> (Vec<Value>, String) {
    let document = one_stage(app, stage_type, fields);
    let saved = server.save(app, &server.admin, document).await;
    assert_eq!(saved.status, 201, "{stage_type}: {saved:?}");
    let warnings = saved.body["warnings"].as_array().unwrap().clone();
    let id = server
        .start_execution(app, &format!("walk-{stage_type}"), json!({}))
        .await;
    (warnings, id)
}

/// The execution once it ended.
async fn ended(server: &Server, id: &str) -> Value {
    server
        .wait_for(id, "its end", |e| {
            ENDED.contains(&e["status"].as_str().unwrap())
        })
        .await
}

/// Saves and runs a one-stage pipeline of `stage_type`: its save warnings and the
/// ended execution.
async fn save_and_run(
    server: &Server,
    app: &str,
    stage_type: &str,
    fields: &Value,
) -> (Vec<Value>, Value) {
    let (warnings, id) = save_and_start(server, app, stage_type, fields).await;
    (warnings, ended(server, &id).await)
}

api_test!(every_runnable_stage_type_runs, |backend| {
    let server = Server::start(backend).await;
    let app = "walk";
    server.app(json!({ "name": app })).await;
    let child = server
        .save(app, &server.admin, wait_pipeline(app, "walk-child", 0))
        .await
        .expect(201);
    let (hook, calls) = hook_server().await;
    let walk = Walk {
        app: app.to_owned(),
        child: child["pipeline"]["id"].as_str().unwrap().to_owned(),
        hook,
    };

    let types = stage_types(&server).await;
    let runnable: Vec<&str> = types
        .iter()
        .filter(|t| t["runnable"] == true)
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    let uncovered: Vec<&&str> = runnable
        .iter()
        .filter(|t| runnable_case(t, &walk).is_none())
        .collect();
    assert!(
        uncovered.is_empty(),
        "runnable stage types the walk does not cover (add them to runnable_case): {uncovered:?}"
    );
    for expected in ["wait", "deploy", "shiftTraffic", "findImageFromCluster"] {
        assert!(runnable.contains(&expected), "{expected} in {runnable:?}");
    }
    let fields = [
        "type",
        "label",
        "description",
        "runnable",
        "providers",
        "aliases",
        "origin",
    ];
    for listed in &types {
        let mut keys: Vec<&str> = listed
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = fields.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{listed}");
    }
    let listed = |stage_type: &str| types.iter().find(|t| t["type"] == stage_type).unwrap();
    assert_eq!(listed("deploy")["providers"], json!(["local"]));
    assert_eq!(listed("wait")["providers"], json!([]));

    for stage_type in runnable {
        let (fields, outcome) = runnable_case(stage_type, &walk).unwrap();
        if outcome == Outcome::PlannedOnly {
            let refused = server
                .save(app, &server.admin, one_stage(app, stage_type, &fields))
                .await;
            assert_eq!(refused.status, 400, "{stage_type}: {refused:?}");
            assert_eq!(
                refused.body["error"]["problems"][0]["path"], "$.stages[0].type",
                "{stage_type}: {refused:?}"
            );
            continue;
        }
        let (warnings, id) = save_and_start(&server, app, stage_type, &fields).await;
        assert!(
            warnings.iter().all(|w| w["path"] != "$.stages[0].type"),
            "{stage_type} is runnable, yet its type is warned about: {warnings:?}"
        );
        if outcome == Outcome::SucceedsWhenJudged {
            server.judge_continue(&id, "1").await;
        }
        let ended = ended(&server, &id).await;
        assert_ran(stage_type, &ended);
        let status = ended["status"].as_str().unwrap();
        match outcome {
            Outcome::Succeeds | Outcome::SucceedsWhenJudged => {
                assert_eq!(status, "SUCCEEDED", "{stage_type}: {:?}", errors(&ended))
            }
            Outcome::Ends if status != "SUCCEEDED" => {
                let errors = errors(&ended);
                assert!(
                    errors.iter().any(|e| e.len() > 4),
                    "{stage_type} ended {status} without saying why: {ended:#}"
                );
            }
            Outcome::Ends | Outcome::PlannedOnly => {}
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the webhook stage called");
});

api_test!(
    every_spinnaker_only_stage_type_warns_and_stops_its_run,
    |backend| {
        let server = Server::start(backend).await;
        let app = "walk";
        server.app(json!({ "name": app })).await;
        let types = stage_types(&server).await;
        let spinnaker_only: Vec<String> = types
            .iter()
            .filter(|t| t["runnable"] == false)
            .map(|t| t["type"].as_str().unwrap().to_owned())
            .collect();
        for expected in ["bake", "kayentaCanary", "findArtifactFromExecution"] {
            assert!(
                spinnaker_only.iter().any(|t| t == expected),
                "{expected} in {spinnaker_only:?}"
            );
        }

        let walked: Vec<(String, Vec<Value>, Value)> = futures::stream::iter(spinnaker_only)
            .map(|stage_type| {
                let server = &server;
                async move {
                    let fields = spinnaker_only_fields(&stage_type);
                    let (warnings, ended) = save_and_run(server, app, &stage_type, &fields).await;
                    (stage_type, warnings, ended)
                }
            })
            .buffer_unordered(6)
            .collect()
            .await;
        assert!(
            walked.len() > 50,
            "Spinnaker's stage types: {}",
            walked.len()
        );
        for (stage_type, warnings, ended) in walked {
            assert!(
                warnings.iter().any(|w| w["path"] == "$.stages[0].type"
                    && w["severity"] == "warning"
                    && w["message"].as_str().unwrap().contains("cannot run yet")),
                "{stage_type}: no warning at $.stages[0].type: {warnings:?}"
            );
            assert_eq!(ended["status"], "TERMINAL", "{stage_type}: {ended:#}");
            let walked = stage(&ended, "1");
            assert_eq!(walked["status"], "TERMINAL", "{stage_type}");
            let error = walked["context"]["exception"]["details"]["error"]
                .as_str()
                .unwrap();
            assert!(
                error.contains(&format!("stage 'Walk {stage_type}'"))
                    && error.contains(&format!("'{stage_type}'")),
                "{stage_type}: the error names neither the stage nor its type: {error}"
            );
        }
    }
);

api_test!(an_unknown_stage_type_warns_and_stops_its_run, |backend| {
    let server = Server::start(backend).await;
    let app = "walk";
    server.app(json!({ "name": app })).await;
    // Not even failPipeline: false lets a run go past a stage nobody can run.
    let fields = json!({ "failPipeline": false, "continuePipeline": true });
    let (warnings, ended) = save_and_run(&server, app, "frobnicate", &fields).await;
    let warning = warnings
        .iter()
        .find(|w| w["path"] == "$.stages[0].type")
        .unwrap_or_else(|| panic!("no warning at $.stages[0].type: {warnings:?}"));
    assert_eq!(warning["severity"], "warning");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("unknown stage type 'frobnicate'"),
        "{warning}"
    );
    assert_eq!(ended["status"], "TERMINAL", "{ended:#}");
    let walked = stage(&ended, "1");
    assert_eq!(walked["status"], "TERMINAL");
    assert_eq!(
        walked["context"]["exception"]["details"]["unsupported"],
        true
    );
    let error = walked["context"]["exception"]["details"]["error"]
        .as_str()
        .unwrap();
    assert!(
        error.contains("stage 'Walk frobnicate'") && error.contains("stageTypes"),
        "{error}"
    );

    // A near miss is saved too, with the type it probably means.
    let (warnings, ended) = save_and_run(&server, app, "deploi", &json!({})).await;
    let warning = warnings
        .iter()
        .find(|w| w["path"] == "$.stages[0].type")
        .unwrap_or_else(|| panic!("no warning at $.stages[0].type: {warnings:?}"));
    assert_eq!(warning["hint"], "set \"type\": \"deploy\"", "{warning}");
    assert_eq!(ended["status"], "TERMINAL", "{ended:#}");
});
