//! Authorization inside stages, over HTTP: a user with rights on her own application
//! only cannot reach another application through the stages she runs there (issue 17).

use serde_json::{Value, json};

use crate::harness::*;

/// Runs a task (an orchestration of `job`) in `app` as `token`; returns the execution
/// once it ended.
async fn task(server: &Server, app: &str, token: &str, job: Value) -> Value {
    let accepted = server
        .post(
            &format!("/api/v1/applications/{app}/tasks"),
            token,
            json!({"description": "attempt", "job": [job]}),
        )
        .await
        .expect(202);
    let id = accepted["executionId"].as_str().unwrap().to_owned();
    server
        .wait_for(&id, "the end", |e| {
            e["status"] == "SUCCEEDED" || e["status"] == "TERMINAL"
        })
        .await
}

api_test!(stages_cannot_reach_another_application, |backend| {
    let server = Server::start(backend).await;
    let everything = json!(["bankers"]);
    server
        .app(json!({"name": "bank", "email": "bank@example.com",
            "permissions": {"READ": everything, "WRITE": everything, "EXECUTE": everything}}))
        .await;
    server
        .app(json!({"name": "shop", "email": "shop@example.com",
            "permissions": {"READ": ["dev"], "WRITE": ["dev"], "EXECUTE": ["dev"]}}))
        .await;
    let alice = server.user("alice", &["dev"]).await;
    server.ensure_role("bankers").await;
    let admin = server.admin.clone();
    let created = task(
        &server,
        "bank",
        &admin,
        json!({"type": "upsertLoadBalancer", "name": "bank-web", "listen": "127.0.0.1:0"}),
    )
    .await;
    assert_eq!(created["status"], "SUCCEEDED", "{created:#}");
    server
        .save(
            "bank",
            &admin,
            json!({"name": "payout", "stages": [{"refId": "1", "type": "wait", "waitTime": 1}]}),
        )
        .await
        .expect(201);

    let attempts = [
        (
            json!({"type": "upsertLoadBalancer", "loadBalancers": [{"name": "bank-web", "application": "shop", "listen": "127.0.0.1:0"}]}),
            "may not change load balancer 'bank-web' of application 'bank': a load balancer is changed only by pipelines of its own application",
        ),
        (
            json!({"type": "deleteLoadBalancer", "loadBalancerName": "bank-web"}),
            "may not act on load balancer 'bank-web' of application 'bank': user 'alice' who started this execution lacks WRITE permission on 'bank'",
        ),
        (
            json!({"type": "disableServerGroup", "serverGroupName": "bank-prod-v000"}),
            "may not act on server group 'bank-prod-v000' of application 'bank': user 'alice' who started this execution lacks WRITE permission on 'bank'",
        ),
        (
            json!({"type": "pipeline", "application": "bank", "pipeline": "payout"}),
            "may not act on pipeline 'payout' of application 'bank': user 'alice' who started this execution lacks EXECUTE permission on 'bank'",
        ),
    ];
    for (job, message) in &attempts {
        let done = task(&server, "shop", &alice, job.clone()).await;
        assert_eq!(done["status"], "TERMINAL", "{done:#}");
        assert!(done.to_string().contains(message), "{message}\n{done:#}");
    }
    let balancers = server
        .get("/api/v1/applications/bank/loadBalancers", &admin)
        .await
        .expect(200);
    assert_eq!(balancers[0]["name"], "bank-web", "still there: {balancers}");
    assert_eq!(balancers[0]["application"], "bank", "still bank's");

    // With a role holding the rights there, the same stages act (but the balancer
    // still never moves to her application).
    server
        .put(
            "/api/v1/users/alice/roles",
            &admin,
            json!({"roles": ["dev", "bankers"]}),
        )
        .await
        .expect(200);
    let run = task(&server, "shop", &alice, attempts[3].0.clone()).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run:#}");
    let deleted = task(&server, "shop", &alice, attempts[1].0.clone()).await;
    assert_eq!(deleted["status"], "SUCCEEDED", "{deleted:#}");
});
