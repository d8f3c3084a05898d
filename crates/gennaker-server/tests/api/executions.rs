//! Executions over HTTP with the real engine: run, read, judge, cancel, pause/resume,
//! restart, skip, evaluate, list, and the live event streams.

use std::time::Duration;

use crate::harness::*;

fn wait_pipeline_of(app: &str, name: &str, seconds: u64) -> Value {
    wait_pipeline(app, name, seconds)
}

api_test!(run_judge_and_read, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, judged_pipeline("shop", "release"))
        .await
        .expect(201);

    // A required parameter without a value is refused, and nothing runs.
    let refused = server
        .run("shop", "release", &server.admin, json!({}))
        .await
        .expect(400);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("parameter 'env' is required"), "{message}");

    let started = server
        .run(
            "shop",
            "release",
            &server.admin,
            json!({ "parameters": { "env": "prod" } }),
        )
        .await
        .expect(202);
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["application"], "shop");
    assert_eq!(started["name"], "release");
    assert_eq!(started["type"], "PIPELINE");
    assert_eq!(started["trigger"]["user"], "admin");
    assert_eq!(started["trigger"]["type"], "manual");
    assert_eq!(
        started["trigger"]["parameters"],
        json!({ "env": "prod", "region": "eu" })
    );

    // The judgment stage waits; the evaluated variable is an output.
    let execution = server.wait_stage(&id, "2", "RUNNING").await;
    assert_eq!(execution["status"], "RUNNING");
    let evaluate = stage(&execution, "1");
    assert_eq!(evaluate["status"], "SUCCEEDED");
    assert_eq!(evaluate["type"], "evaluateVariables");
    assert_eq!(evaluate["name"], "Evaluate");
    assert_eq!(evaluate["outputs"]["greeting"], "hello prod");
    assert!(evaluate["id"].is_string(), "{evaluate}");
    assert!(evaluate["startTime"].is_i64() && evaluate["endTime"].is_i64());
    assert!(evaluate["parentStageId"].is_null());
    assert!(evaluate.get("syntheticStageOwner").is_some(), "{evaluate}");
    let task = &evaluate["tasks"][0];
    assert_eq!(task["name"], "evaluateVariablesTask");
    assert_eq!(task["status"], "SUCCEEDED");
    let approve = stage(&execution, "2");
    assert_eq!(approve["type"], "manualJudgment");
    assert_eq!(approve["tasks"][0]["status"], "RUNNING");
    assert!(approve["context"]["judgmentInputs"].is_array(), "{approve}");
    assert_eq!(stage(&execution, "3")["status"], "NOT_STARTED");

    // Judgments: only for a waiting manualJudgment, with a valid status and input.
    let judge = |stage: &str, body: Value| {
        let path = format!("/api/v1/executions/{id}/stages/{stage}/judgment");
        let server = &server;
        async move { server.post(&path, &server.admin, body).await }
    };
    judge("1", json!({ "judgmentStatus": "continue" }))
        .await
        .expect(409);
    judge("2", json!({ "judgmentStatus": "maybe" }))
        .await
        .expect(400);
    judge(
        "2",
        json!({ "judgmentStatus": "continue", "judgmentInput": "bogus" }),
    )
    .await
    .expect(400);
    judge("2", json!({})).await.expect(400);
    let accepted = judge(
        "2",
        json!({ "judgmentStatus": "continue", "judgmentInput": "ship" }),
    )
    .await
    .expect(202);
    assert_eq!(accepted["executionId"], id.as_str());
    assert_eq!(accepted["operation"], "judgment");

    let done = server.wait_status(&id, "SUCCEEDED").await;
    let approve = stage(&done, "2");
    assert_eq!(approve["status"], "SUCCEEDED");
    assert_eq!(approve["context"]["judgmentStatus"], "continue");
    assert_eq!(approve["context"]["judgmentInput"], "ship");
    assert_eq!(approve["context"]["judgedBy"], "admin");
    let settle = stage(&done, "3");
    assert_eq!(settle["status"], "SUCCEEDED");
    let waited = settle["endTime"].as_i64().unwrap() - settle["startTime"].as_i64().unwrap();
    assert!(waited >= 1000, "the wait stage waited {waited} ms");
    assert!(done["endTime"].is_i64());

    // Expressions evaluate against the execution, as a stage sees it.
    let evaluate = |body: Value| {
        let path = format!("/api/v1/executions/{id}/evaluate");
        let server = &server;
        async move { server.post(&path, &server.admin, body).await }
    };
    let result = evaluate(json!({ "expression": "${ parameters.env }" }))
        .await
        .expect(200);
    assert_eq!(result, json!({ "result": "prod" }));
    let result = evaluate(json!({ "expression": "deploy ${ trigger.user } to ${ parameters.region }", "stageId": "3" }))
        .await
        .expect(200);
    assert_eq!(result["result"], "deploy admin to eu");
    let missing = evaluate(json!({ "expression": "${ trigger.usr }" }))
        .await
        .expect(200);
    assert_eq!(missing["result"], Value::Null, "{missing}");
    let hint = missing["warnings"][0]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("user"), "{missing}");
    let failed = evaluate(json!({ "expression": "${ trigger.user.length( }" }))
        .await
        .expect(200);
    let error = &failed["error"];
    assert!(failed.get("result").is_none(), "{failed}");
    assert!(error["message"].is_string(), "{failed}");
    assert!(error["column"].as_u64().unwrap() > 1, "{failed}");
    assert!(error["expression"].is_string(), "{failed}");
    evaluate(json!({ "expression": "${ 1 }", "stageId": "nope" }))
        .await
        .expect(404);
    evaluate(json!({ "nothing": true })).await.expect(400);

    // Lists and filters.
    let list = server
        .get("/api/v1/executions?application=shop", &server.admin)
        .await
        .expect(200);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str()),
        "{list}"
    );
    server
        .run(
            "shop",
            "release",
            &server.admin,
            json!({ "parameters": { "env": "qa" } }),
        )
        .await
        .expect(202);
    let succeeded = server
        .get(
            "/api/v1/executions?pipeline=release&status=succeeded&limit=5",
            &server.admin,
        )
        .await
        .expect(200);
    let ids: Vec<&str> = succeeded
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let newest = server
        .get("/api/v1/executions?application=shop&limit=1", &server.admin)
        .await
        .expect(200);
    assert_eq!(newest.as_array().unwrap().len(), 1);
    assert_ne!(newest[0]["id"], id.as_str(), "newest first");
    server
        .get("/api/v1/executions?status=DONE", &server.admin)
        .await
        .expect(400);
    server
        .get("/api/v1/executions?limit=0", &server.admin)
        .await
        .expect(400);
    server
        .get("/api/v1/executions?application=nope", &server.admin)
        .await
        .expect(404);

    // Runs and judgments are audited; an evaluation only reads.
    let audit = server.get("/api/v1/audit", &server.admin).await.expect(200);
    let entries = audit.as_array().unwrap();
    let run = entries
        .iter()
        .find(|e| {
            e["action"] == "POST /api/v1/applications/shop/pipelines/release/executions"
                && e["status"] == 202
                && e["detail"]["executionId"] == id.as_str()
        })
        .unwrap_or_else(|| panic!("no audit entry for the run in {audit:#}"));
    assert_eq!(run["outcome"], "success");
    assert!(entries.iter().any(|e| e["action"]
        == format!("POST /api/v1/executions/{id}/stages/2/judgment").as_str()
        && e["status"] == 202
        && e["detail"]["judgmentStatus"] == "continue"));
    assert!(entries.iter().any(|e| e["action"]
        == "POST /api/v1/applications/shop/pipelines/release/executions"
        && e["status"] == 400));
    assert!(
        !entries
            .iter()
            .any(|e| e["action"].as_str().unwrap().ends_with("/evaluate")),
        "{audit:#}"
    );
});

api_test!(cancel_pause_and_resume, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, wait_pipeline_of("shop", "hold", 30))
        .await
        .expect(201);
    let id = server.start_execution("shop", "hold", json!({})).await;
    server.wait_stage(&id, "1", "RUNNING").await;
    let op = |operation: &str, body: Value| {
        let path = format!("/api/v1/executions/{id}/{operation}");
        let server = &server;
        async move { server.post(&path, &server.admin, body).await }
    };

    server
        .post(
            &format!("/api/v1/executions/{id}/resume"),
            &server.admin,
            json!(null),
        )
        .await
        .expect(409);
    let paused = op("pause", json!(null)).await.expect(202);
    assert_eq!(paused["operation"], "pause");
    let execution = server.wait_status(&id, "PAUSED").await;
    assert_eq!(execution["paused"]["pausedBy"], "admin");
    op("pause", json!(null)).await.expect(409);
    op("resume", json!(null)).await.expect(202);
    server.wait_status(&id, "RUNNING").await;

    op("cancel", json!({ "reason": "not today" }))
        .await
        .expect(202);
    let canceled = server.wait_status(&id, "CANCELED").await;
    assert_eq!(canceled["canceled"], true);
    assert_eq!(canceled["canceledBy"], "admin");
    assert_eq!(canceled["cancellationReason"], "not today");
    assert_eq!(stage(&canceled, "1")["status"], "CANCELED");
    let again = op("cancel", json!(null)).await.expect(409);
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already ended"),
        "{again}"
    );
});

api_test!(restart_a_failed_stage_and_skip_a_wait, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, judged_pipeline("shop", "release"))
        .await
        .expect(201);
    let id = server
        .start_execution(
            "shop",
            "release",
            json!({ "parameters": { "env": "prod" } }),
        )
        .await;
    server.wait_stage(&id, "2", "RUNNING").await;
    let stage_op = |stage: &str, operation: &str, body: Value| {
        let path = format!("/api/v1/executions/{id}/stages/{stage}/{operation}");
        let server = &server;
        async move { server.post(&path, &server.admin, body).await }
    };
    // A running stage cannot be restarted.
    stage_op("2", "restart", json!(null)).await.expect(409);
    stage_op("2", "judgment", json!({ "judgmentStatus": "stop" }))
        .await
        .expect(202);
    let failed = server.wait_status(&id, "TERMINAL").await;
    assert_eq!(stage(&failed, "2")["status"], "TERMINAL");
    assert_eq!(stage(&failed, "3")["status"], "NOT_STARTED");
    let errors = &stage(&failed, "2")["context"]["exception"]["details"]["errors"];
    assert!(
        errors[0].as_str().unwrap().contains("stop"),
        "the failure says why: {failed:#}"
    );

    // Restarting the failed judgment runs it (and what follows) again.
    stage_op("2", "restart", json!(null)).await.expect(202);
    server
        .wait_for(&id, "the judgment waits again", |e| {
            e["status"] == "RUNNING"
                && stage(e, "2")["status"] == "RUNNING"
                && stage(e, "2")["context"].get("judgmentStatus").is_none()
        })
        .await;
    stage_op("2", "judgment", json!({ "judgmentStatus": "continue" }))
        .await
        .expect(202);
    let done = server.wait_status(&id, "SUCCEEDED").await;
    assert_eq!(stage(&done, "2")["context"]["judgmentStatus"], "continue");

    // A long wait ends at once when skipped; a finished stage cannot be skipped.
    server
        .save("shop", &server.admin, wait_pipeline_of("shop", "hold", 60))
        .await
        .expect(201);
    let hold = server.start_execution("shop", "hold", json!({})).await;
    server.wait_stage(&hold, "1", "RUNNING").await;
    let path = format!("/api/v1/executions/{hold}/stages/1/skip");
    server
        .post(&path, &server.admin, json!(null))
        .await
        .expect(202);
    let skipped = server.wait_status(&hold, "SUCCEEDED").await;
    let wait = stage(&skipped, "1");
    let took = wait["endTime"].as_i64().unwrap() - wait["startTime"].as_i64().unwrap();
    assert!(took < 30_000, "the skipped wait took {took} ms");
    server
        .post(&path, &server.admin, json!(null))
        .await
        .expect(409);
    server
        .post(
            &format!("/api/v1/executions/{hold}/stages/9/skip"),
            &server.admin,
            json!(null),
        )
        .await
        .expect(404);
});

api_test!(permissions_roles_and_correlation, |backend| {
    let server = Server::start(backend).await;
    server
        .app(json!({ "name": "shop", "permissions": {
            "READ": ["viewers", "deployers", "approvers"],
            "WRITE": ["deployers"],
            "EXECUTE": ["deployers", "approvers"],
        } }))
        .await;
    server
        .app(json!({ "name": "vault", "permissions": { "READ": ["keepers"], "WRITE": ["keepers"] } }))
        .await;
    let viewer = server.user("vic", &["viewers"]).await;
    let deployer = server.user("dee", &["deployers"]).await;
    let approver = server.user("abe", &["approvers"]).await;
    let mut pipeline = judged_pipeline("shop", "release");
    pipeline["stages"][1]["selectedStageRoles"] = json!(["approvers"]);
    server
        .save("shop", &server.admin, pipeline)
        .await
        .expect(201);
    server
        .save(
            "vault",
            &server.admin,
            wait_pipeline_of("vault", "hold", 30),
        )
        .await
        .expect(201);
    let secret = server.start_execution("vault", "hold", json!({})).await;

    let body = json!({ "parameters": { "env": "prod" }, "correlationId": "build-42" });
    server
        .run("shop", "release", &viewer, body.clone())
        .await
        .expect(403);
    let started = server
        .run("shop", "release", &deployer, body.clone())
        .await
        .expect(202);
    assert_eq!(started["trigger"]["user"], "dee");
    assert_eq!(started["trigger"]["correlationId"], "build-42");
    // The same correlation id starts nothing new.
    let duplicate = server
        .run("shop", "release", &deployer, body)
        .await
        .expect(409);
    assert!(
        duplicate["error"]["message"]
            .as_str()
            .unwrap()
            .contains("correlation"),
        "{duplicate}"
    );
    let id = started["id"].as_str().unwrap().to_owned();
    server.wait_stage(&id, "2", "RUNNING").await;

    // Readers read; only EXECUTE acts; the stage's roles decide who judges.
    server
        .get(&format!("/api/v1/executions/{id}"), &viewer)
        .await
        .expect(200);
    server
        .post(
            &format!("/api/v1/executions/{id}/cancel"),
            &viewer,
            json!(null),
        )
        .await
        .expect(403);
    let judgment = format!("/api/v1/executions/{id}/stages/2/judgment");
    let refused = server
        .post(
            &judgment,
            &deployer,
            json!({ "judgmentStatus": "continue" }),
        )
        .await
        .expect(403);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approvers"),
        "{refused}"
    );
    server
        .post(
            &judgment,
            &approver,
            json!({ "judgmentStatus": "continue" }),
        )
        .await
        .expect(202);
    let done = server.wait_status(&id, "SUCCEEDED").await;
    assert_eq!(stage(&done, "2")["context"]["judgedBy"], "abe");

    // Lists only show what the caller may read.
    let seen = server.get("/api/v1/executions", &viewer).await.expect(200);
    let seen: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, [id.as_str()]);
    let all = server
        .get("/api/v1/executions", &server.admin)
        .await
        .expect(200);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    // Without any permission on 'vault', its executions do not exist for the viewer.
    server
        .get("/api/v1/executions?application=vault", &viewer)
        .await
        .expect(404);
    let hidden = server
        .get(&format!("/api/v1/executions/{secret}"), &viewer)
        .await
        .expect(404);
    assert!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("execution '{secret}' not found")),
        "{hidden}"
    );
});

api_test!(bad_requests_and_missing_things, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, wait_pipeline_of("shop", "quick", 0))
        .await
        .expect(201);
    server
        .get("/api/v1/executions/nope", &server.admin)
        .await
        .expect(404);
    server
        .post("/api/v1/executions/nope/cancel", &server.admin, json!(null))
        .await
        .expect(404);
    server
        .status_of(
            Method::GET,
            "/api/v1/executions/nope/events",
            Some(&server.admin),
        )
        .await
        .expect(404);
    server
        .run("shop", "missing", &server.admin, json!({}))
        .await
        .expect(404);
    server
        .run("nope", "quick", &server.admin, json!({}))
        .await
        .expect(404);
    let garbage = server
        .call(
            Method::POST,
            "/api/v1/applications/shop/pipelines/quick/executions",
            Some(&server.admin),
            Body::Raw("application/json", b"{\"parameters\": ".to_vec()),
        )
        .await
        .expect(400);
    assert!(
        garbage["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parameters"),
        "{garbage}"
    );
    // An empty body runs with the defaults.
    let id = server
        .call(
            Method::POST,
            "/api/v1/applications/shop/pipelines/quick/executions",
            Some(&server.admin),
            Body::None,
        )
        .await
        .expect(202)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_status(&id, "SUCCEEDED").await;
    server
        .post(
            &format!("/api/v1/executions/{id}/stages/1/judgment"),
            &server.admin,
            json!("continue"),
        )
        .await
        .expect(400);
    server
        .post(
            &format!("/api/v1/executions/{id}/stages/7/restart"),
            &server.admin,
            json!(null),
        )
        .await
        .expect(404);
    // Disabled pipelines do not run.
    let mut disabled = wait_pipeline_of("shop", "off", 0);
    disabled["disabled"] = json!(true);
    server
        .save("shop", &server.admin, disabled)
        .await
        .expect(201);
    let refused = server
        .run("shop", "off", &server.admin, json!({}))
        .await
        .expect(400);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{refused}"
    );
});

api_test!(event_streams, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save(
            "shop",
            &server.admin,
            json!({
                "application": "shop", "name": "short",
                "stages": [
                    { "refId": "1", "type": "evaluateVariables", "name": "Evaluate",
                      "variables": [{ "key": "v", "value": "${ trigger.user }" }] },
                    { "refId": "2", "requisiteStageRefIds": ["1"], "type": "wait", "name": "Wait", "waitTime": 1 },
                ],
            }),
        )
        .await
        .expect(201);

    // The application stream sees the changes of runs that start after it opened.
    let (app_events, id) = tokio::join!(
        server.sse(
            "/api/v1/applications/shop/events",
            &server.admin,
            Duration::from_secs(20),
            |events| events
                .iter()
                .any(|e| e.event == "execution" && e.data["status"] == "SUCCEEDED"),
        ),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.start_execution("shop", "short", json!({})).await
        }
    );
    assert!(!app_events.ended, "the application stream stays open");
    let kinds: Vec<&str> = app_events.events.iter().map(|e| e.event.as_str()).collect();
    assert!(
        kinds.contains(&"stage") && kinds.contains(&"task"),
        "{kinds:?}"
    );
    for event in &app_events.events {
        assert_eq!(event.data["application"], "shop", "{event:?}");
        assert_eq!(event.data["executionId"], id.as_str(), "{event:?}");
    }

    // The execution stream: a snapshot, the changes, a final snapshot, then the end.
    let id = server.start_execution("shop", "short", json!({})).await;
    let read = server
        .sse(
            &format!("/api/v1/executions/{id}/events"),
            &server.admin,
            Duration::from_secs(20),
            |_| false,
        )
        .await;
    assert!(read.ended, "the stream ends with the execution: {read:?}");
    let first = &read.events[0];
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["id"], id.as_str());
    assert!(first.data["stages"].is_array());
    let last = read.events.last().unwrap();
    assert_eq!(last.event, "snapshot");
    assert_eq!(last.data["status"], "SUCCEEDED");
    assert!(
        read.events.iter().any(|e| e.event == "stage"
            && e.data["refId"] == "2"
            && e.data["stageName"] == "Wait"
            && e.data["status"] == "SUCCEEDED"),
        "{:?}",
        read.events
    );
    assert!(
        read.events
            .iter()
            .any(|e| e.event == "task" && e.data["task"] == "waitTask"),
        "{:?}",
        read.events
    );
    assert!(read.events.iter().any(|e| e.event == "execution"
        && e.data["status"] == "SUCCEEDED"
        && e.data["stageId"].is_null()));

    // A finished execution's stream is its snapshot alone.
    let read = server
        .sse(
            &format!("/api/v1/executions/{id}/events"),
            &server.admin,
            Duration::from_secs(5),
            |_| false,
        )
        .await;
    assert!(read.ended);
    assert_eq!(read.events.len(), 1, "{:?}", read.events);
    assert_eq!(read.events[0].data["status"], "SUCCEEDED");
});
