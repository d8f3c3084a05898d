//! Forms Spinnaker's documents take that must save without a complaint and run: an
//! empty `stageEnabled`, a stage's singular `expectedArtifact`, and a body without
//! `application` (Front50 takes it from the URL and stamps who saved it when).

use crate::harness::*;

/// The save warnings about a stage.
fn warnings_at(saved: &Value, prefix: &str) -> Vec<Value> {
    saved["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["path"].as_str().unwrap().starts_with(prefix))
        .cloned()
        .collect()
}

/// A server with the application `shop` and `stages` saved as its pipeline `name`:
/// the save's answer.
async fn saved(backend: TestBackend, name: &str, stages: Value) -> (Server, Value) {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let document = json!({ "application": "shop", "name": name, "stages": stages });
    let saved = server
        .save("shop", &server.admin, document)
        .await
        .expect(201);
    (server, saved)
}

api_test!(an_empty_stage_enabled_means_enabled, |backend| {
    let stages = json!([{ "refId": "1", "type": "manualJudgment", "name": "Approve",
        "stageEnabled": {} }]);
    let (server, saved) = saved(backend, "approve", stages).await;
    assert_eq!(warnings_at(&saved, "$.stages[0]"), Vec::<Value>::new());

    let id = server.start_execution("shop", "approve", json!({})).await;
    server.judge_continue(&id, "1").await;
    let done = server.wait_status(&id, "SUCCEEDED").await;
    let approve = stage(&done, "1");
    assert_eq!(approve["status"], "SUCCEEDED");
    assert_eq!(approve["context"]["judgmentStatus"], "continue");
    assert!(approve["context"].get("stageEnabledError").is_none());
});

api_test!(a_stage_declares_an_artifact_for_later_ones, |backend| {
    let image = json!({ "type": "docker/image", "name": "registry.example.com/shop" });
    let declared = json!({ "id": "shop-image", "displayName": "image", "matchArtifact": image });
    let consumed = json!([{ "key": "consumed", "value": "${ 'shop-image' }" }]);
    let stages = json!([
        { "refId": "1", "type": "wait", "name": "Produce", "waitTime": 0,
          "expectedArtifact": declared },
        { "refId": "2", "requisiteStageRefIds": ["1"], "type": "evaluateVariables",
          "name": "Consume", "expectedArtifactId": "shop-image", "variables": consumed },
    ]);
    let (server, saved) = saved(backend, "produce", stages).await;
    assert_eq!(warnings_at(&saved, "$.stages"), Vec::<Value>::new());
    // An undeclared id is still reported, so the check above is not vacuous.
    let mut undeclared = saved["pipeline"]["config"].clone();
    undeclared["stages"][1]["expectedArtifactId"] = json!("shop-imag");
    let reply = server
        .post("/api/v1/pipelines/validate", &server.admin, undeclared)
        .await
        .expect(200);
    let problems = reply["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == "$.stages[1].expectedArtifactId"
                && p["message"].as_str().unwrap().contains("not declared")),
        "{reply}"
    );

    let id = server.start_execution("shop", "produce", json!({})).await;
    let done = server.wait_status(&id, "SUCCEEDED").await;
    assert_eq!(stage(&done, "1")["status"], "SUCCEEDED");
    let consume = stage(&done, "2");
    assert_eq!(consume["status"], "SUCCEEDED");
    assert_eq!(consume["outputs"]["consumed"], "shop-image");
});

api_test!(a_body_without_application_belongs_to_the_url, |backend| {
    let server = Server::start(backend).await;
    server
        .app(json!({ "name": "shop",
            "permissions": { "READ": ["crew"], "WRITE": ["crew"], "EXECUTE": ["crew"] } }))
        .await;
    let dana = server.user("dana", &["crew"]).await;
    let document = json!({
        "name": "bare",
        "stages": [{ "refId": "1", "type": "wait", "name": "Pause", "waitTime": 0 }],
    });
    let saved = server
        .save("shop", &dana, document.clone())
        .await
        .expect(201);
    assert_eq!(saved["pipeline"]["application"], "shop");
    assert_eq!(warnings_at(&saved, "$"), Vec::<Value>::new());

    let path = "/api/v1/applications/shop/pipelines/bare";
    let got = server.get(path, &server.admin).await.expect(200);
    let config = &got["config"];
    assert_eq!(config["application"], "shop");
    assert_eq!(config["lastModifiedBy"], "dana");
    let stamped: i64 = config["updateTs"].as_str().unwrap().parse().unwrap();
    assert!(stamped > 0, "{config}");
    assert_eq!(config["stages"], document["stages"]);

    // The same body again changes nothing: the stamps are not the pipeline.
    let mut again = document.clone();
    again["id"] = got["id"].clone();
    let unchanged = server.save("shop", &server.admin, again).await.expect(200);
    assert_eq!(unchanged["outcome"], "unchanged");
    assert_eq!(unchanged["pipeline"]["revision"], 1);
    let listed = server
        .get("/api/v1/applications/shop/pipelines", &dana)
        .await
        .expect(200);
    assert_eq!(listed[0]["config"]["lastModifiedBy"], "dana");

    let id = server.start_execution("shop", "bare", json!({})).await;
    let done = server.wait_status(&id, "SUCCEEDED").await;
    assert_eq!(done["application"], "shop");
});
