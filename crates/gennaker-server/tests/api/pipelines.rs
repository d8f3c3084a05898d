//! Saving, reading, revising and refusing pipelines.

use gennaker_core::to_yaml_string;
use gennaker_store::Store;

use crate::harness::*;

fn pipeline_path(app: &str, name: &str) -> String {
    format!("/api/v1/applications/{app}/pipelines/{name}")
}

fn revisions(history: &Value) -> Vec<i64> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect()
}

api_test!(every_fixture_round_trips, |backend| {
    let server = Server::start(backend).await;
    // Several fixtures may be pipelines of one application.
    let mut applications = std::collections::BTreeSet::new();
    for (file, text) in pipeline_fixtures() {
        let document: Value = serde_json::from_str(&text).unwrap();
        let app = document["application"].as_str().unwrap();
        let name = document["name"].as_str().unwrap();
        assert!(document.get("id").is_some(), "{file} has no id");
        if applications.insert(app.to_owned()) {
            server.app(json!({ "name": app })).await;
        }

        let saved = server
            .save_raw(app, "application/json", text.clone().into_bytes())
            .await
            .expect(201);
        assert_eq!(saved["outcome"], "created", "{file}");
        assert_eq!(saved["pipeline"]["revision"], 1, "{file}");
        // The server stamps who saved it and when, as Front50 does; the rest comes back as sent.
        let mut stored = saved["pipeline"]["config"].clone();
        assert_eq!(stored["lastModifiedBy"], "admin", "{file}");
        assert!(
            stored["updateTs"].as_str().unwrap().parse::<i64>().unwrap() > 0,
            "{file}"
        );
        let mut sent = document.clone();
        for key in ["lastModifiedBy", "updateTs"] {
            stored.as_object_mut().unwrap().remove(key);
            sent.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(stored, sent, "{file}");

        // Every stage Gennaker cannot run yet is named in a warning; nothing else is an error.
        let warnings = saved["warnings"].as_array().unwrap();
        assert!(
            warnings.iter().all(|w| w["severity"] != "error"),
            "{file}: {warnings:?}"
        );
        for (index, stage) in document["stages"].as_array().unwrap().iter().enumerate() {
            let kind = stage["type"].as_str().unwrap();
            let runnable = catalog().get(kind).is_some_and(|e| e.descriptor.runnable);
            if !runnable {
                let prefix = format!("$.stages[{index}]");
                assert!(
                    warnings
                        .iter()
                        .any(|w| w["path"].as_str().unwrap().starts_with(&prefix)),
                    "{file}: no warning for stage type '{kind}' at {prefix}: {warnings:?}"
                );
            }
        }

        let got = server
            .get(&pipeline_path(app, name), &server.admin)
            .await
            .expect(200);
        assert_eq!(got["config"], saved["pipeline"]["config"], "{file}");
        assert_eq!(got["id"], document["id"], "{file}");
    }
    // At least one fixture uses a stage type Gennaker does not run, so warnings are tested.
    let warned = pipeline_fixtures().iter().any(|(_, text)| {
        let document: Value = serde_json::from_str(text).unwrap();
        document["stages"].as_array().unwrap().iter().any(|s| {
            catalog()
                .get(s["type"].as_str().unwrap())
                .is_none_or(|e| !e.descriptor.runnable)
        })
    });
    assert!(warned);
});

api_test!(yaml_save_and_id_assignment, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "yamlapp" })).await;
    let (_, text) = pipeline_fixtures().into_iter().next().unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["application"] = json!("yamlapp");
    document["name"] = json!("From YAML");
    document.as_object_mut().unwrap().remove("id");
    let yaml = to_yaml_string(&document).unwrap();
    let saved = server
        .save_raw("yamlapp", "application/yaml", yaml.into_bytes())
        .await
        .expect(201);
    let id = saved["pipeline"]["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    let got = server
        .get(&pipeline_path("yamlapp", "From YAML"), &server.admin)
        .await
        .expect(200);
    // The server adds the id and its save stamps; everything else is as submitted.
    let mut config = got["config"].clone();
    assert_eq!(config["id"], json!(id));
    assert_eq!(config["lastModifiedBy"], "admin");
    let mut sent = document.clone();
    for key in ["id", "updateTs", "lastModifiedBy"] {
        config.as_object_mut().unwrap().remove(key);
        sent.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(config, sent);

    // YAML syntax errors are 400 with the position.
    let paths = server
        .save_raw(
            "yamlapp",
            "application/yaml",
            b"name: [unclosed\nstages: {".to_vec(),
        )
        .await
        .problem_paths();
    assert_eq!(paths, ["$"]);
});

api_test!(revisions_history_and_restore, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let first = wait_pipeline("shop", "deploy", 5);
    let created = server
        .save("shop", &server.admin, first.clone())
        .await
        .expect(201);
    assert_eq!(created["outcome"], "created");
    let id = created["pipeline"]["id"].as_str().unwrap().to_owned();

    let mut first_with_id = first.clone();
    first_with_id["id"] = json!(id);
    let again = server
        .save("shop", &server.admin, first_with_id.clone())
        .await
        .expect(200);
    assert_eq!(again["outcome"], "unchanged");
    assert_eq!(again["pipeline"]["revision"], 1);

    let mut second = first_with_id.clone();
    second["stages"][0]["waitTime"] = json!(30);
    second["description"] = json!("longer wait");
    let updated = server
        .save("shop", &server.admin, second.clone())
        .await
        .expect(200);
    assert_eq!(updated["outcome"], "updated");
    assert_eq!(updated["pipeline"]["revision"], 2);
    assert_eq!(updated["pipeline"]["id"], json!(id));

    let history = server
        .get(
            &format!("{}/history", pipeline_path("shop", "deploy")),
            &server.admin,
        )
        .await
        .expect(200);
    assert_eq!(revisions(&history), [2, 1]);
    let mut stored = history[0]["config"].clone();
    assert_eq!(stored["lastModifiedBy"], "admin");
    for key in ["updateTs", "lastModifiedBy"] {
        stored.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(stored, second);

    let one = server
        .get(
            &format!("{}/history/1", pipeline_path("shop", "deploy")),
            &server.admin,
        )
        .await
        .expect(200);
    assert_eq!(one["revision"], 1);
    assert_eq!(one["config"]["stages"][0]["waitTime"], 5);
    server
        .get(
            &format!("{}/history/9", pipeline_path("shop", "deploy")),
            &server.admin,
        )
        .await
        .expect(404);

    let restored = server
        .call(
            Method::POST,
            &format!("{}/history/1/restore", pipeline_path("shop", "deploy")),
            Some(&server.admin),
            Body::None,
        )
        .await
        .expect(200);
    assert_eq!(restored["revision"], 3);
    assert_eq!(restored["config"]["stages"][0]["waitTime"], 5);
    let current = server
        .get(&pipeline_path("shop", "deploy"), &server.admin)
        .await
        .expect(200);
    assert_eq!(current["revision"], 3);
    assert_eq!(current["config"], one["config"]);
    let history = server
        .get(
            &format!("{}/history", pipeline_path("shop", "deploy")),
            &server.admin,
        )
        .await
        .expect(200);
    assert_eq!(revisions(&history), [3, 2, 1]);
    assert_eq!(history[0]["restoredFrom"], 1);

    // Delete removes the pipeline; it is gone afterwards.
    server
        .delete(&pipeline_path("shop", "deploy"), &server.admin)
        .await
        .expect(204);
    server
        .get(&pipeline_path("shop", "deploy"), &server.admin)
        .await
        .expect(404);
    // Saving into a missing application is a 404.
    server
        .save("nowhere", &server.admin, wait_pipeline("nowhere", "x", 1))
        .await
        .expect(404);
});

api_test!(invalid_documents_store_nothing, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, wait_pipeline("shop", "deploy", 5))
        .await
        .expect(201);
    let before = server.pipeline_state("shop").await;

    let stage = |ref_id: &str, requires: &[&str]| json!({ "refId": ref_id, "type": "wait", "name": ref_id, "waitTime": 1, "requisiteStageRefIds": requires });
    let with_stages = |name: &str, stages: Value| json!({ "application": "shop", "name": name, "stages": stages });
    // The same name as the stored pipeline (an accepted save would be a new revision) and
    // a new name (an accepted save would be a new pipeline).
    for name in ["deploy", "fresh"] {
        let cycle = with_stages(
            name,
            json!([stage("a", &["c"]), stage("b", &["a"]), stage("c", &["b"])]),
        );
        let paths = server
            .save("shop", &server.admin, cycle)
            .await
            .problem_paths();
        assert!(
            paths.iter().any(|p| p.starts_with("$.stages[")),
            "{paths:?}"
        );

        let duplicate = with_stages(name, json!([stage("1", &[]), stage("1", &[])]));
        let paths = server
            .save("shop", &server.admin, duplicate)
            .await
            .problem_paths();
        assert!(
            paths.iter().any(|p| p.starts_with("$.stages[1]")),
            "{paths:?}"
        );

        // All problems at once.
        let several = with_stages(
            name,
            json!([stage("1", &["2"]), stage("2", &["1"]), { "refId": "3", "type": "nope" }, stage("1", &[])]),
        );
        let paths = server
            .save("shop", &server.admin, several)
            .await
            .problem_paths();
        assert!(paths.len() >= 3, "{paths:?}");

        let mismatch = wait_pipeline("other", name, 1);
        let paths = server
            .save("shop", &server.admin, mismatch)
            .await
            .problem_paths();
        assert_eq!(paths, ["$.application"]);

        let syntax =
            format!("{{\"application\": \"shop\",\n  \"name\": \"{name}\",\n  \"stages\": [}}");
        let reply = server
            .save_raw("shop", "application/json", syntax.into_bytes())
            .await;
        let body = reply.body.clone();
        assert_eq!(reply.problem_paths(), ["$"]);
        let message = body["error"]["problems"][0]["message"].as_str().unwrap();
        assert!(message.contains("line 3, column"), "{message}");

        let no_name = json!({ "application": "shop", "stages": [] });
        server
            .save("shop", &server.admin, no_name)
            .await
            .expect(400);
    }
    assert_eq!(server.pipeline_state("shop").await, before);
    server
        .get(&pipeline_path("shop", "fresh"), &server.admin)
        .await
        .expect(404);
    // An unknown type is a warning with a suggestion, never a refusal (imports never fail).
    let name = "imported";
    let unknown = with_stages(
        name,
        json!([{ "refId": "1", "type": "deploi", "name": "x" }]),
    );
    let reply = server.save("shop", &server.admin, unknown).await;
    let warning = &reply.body["warnings"][0];
    assert_eq!(warning["path"], "$.stages[0].type", "{}", reply.body);
    assert!(
        warning["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("deploy"),
        "no suggestion in {}",
        reply.body
    );
});

api_test!(validate_without_saving, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let before = server.pipeline_state("shop").await;
    for (_, text) in pipeline_fixtures() {
        let reply = server
            .call(
                Method::POST,
                "/api/v1/pipelines/validate",
                Some(&server.admin),
                Body::Raw("application/json", text.into_bytes()),
            )
            .await
            .expect(200);
        assert_eq!(reply["valid"], true, "{reply}");
    }
    let good = wait_pipeline("shop", "checked", 1);
    let reply = server
        .post("/api/v1/pipelines/validate", &server.admin, good)
        .await
        .expect(200);
    assert_eq!(reply["valid"], true);
    assert_eq!(reply["problems"], json!([]));

    let bad = json!({ "application": "shop", "name": "checked", "stages": [
        { "refId": "1", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"] },
        { "refId": "2", "type": "frobnicate" },
    ]});
    let reply = server
        .post("/api/v1/pipelines/validate", &server.admin, bad)
        .await
        .expect(200);
    assert_eq!(reply["valid"], false);
    let paths: Vec<&str> = reply["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"$.stages[1].type"), "{paths:?}");
    assert!(paths.len() >= 2, "{paths:?}");

    let reply = server
        .call(
            Method::POST,
            "/api/v1/pipelines/validate",
            Some(&server.admin),
            Body::Raw("application/json", b"{\n  \"name\": ".to_vec()),
        )
        .await
        .expect(200);
    assert_eq!(reply["valid"], false);
    assert!(
        reply["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{reply}"
    );

    assert_eq!(server.pipeline_state("shop").await, before);
    server
        .get(&pipeline_path("shop", "checked"), &server.admin)
        .await
        .expect(404);
});

api_test!(write_without_read_sees_no_documents, |backend| {
    let server = Server::start(backend).await;
    // Fiat: WRITE does not imply READ.
    server
        .app(json!({ "name": "vault", "permissions": { "READ": ["readers"], "WRITE": ["writers"] } }))
        .await;
    let writer = server.user("wendy", &["writers"]).await;
    let secret = json!({ "application": "vault", "name": "deploy", "description": "secret v1",
        "stages": [{ "refId": "1", "type": "wait", "name": "Wait", "waitTime": 1 }] });
    server
        .save("vault", &server.admin, secret)
        .await
        .expect(201);

    let mut mine = wait_pipeline("vault", "deploy", 2);
    mine["description"] = json!("mine");
    let saved = server.save("vault", &writer, mine).await.expect(200);
    assert_eq!(saved["outcome"], "updated");
    assert_eq!(saved["pipeline"]["revision"], 2);
    assert_eq!(saved["pipeline"]["name"], "deploy");
    assert!(saved["pipeline"].get("config").is_none(), "{saved}");

    // Restoring revision 1 must not hand out its document.
    let restored = server
        .call(
            Method::POST,
            &format!("{}/history/1/restore", pipeline_path("vault", "deploy")),
            Some(&writer),
            Body::None,
        )
        .await
        .expect(200);
    assert_eq!(restored["revision"], 3);
    assert!(restored.get("config").is_none(), "{restored}");
    assert!(!restored.to_string().contains("secret v1"), "{restored}");

    // Readers (here the admin) still get the document.
    let restored = server
        .call(
            Method::POST,
            &format!("{}/history/2/restore", pipeline_path("vault", "deploy")),
            Some(&server.admin),
            Body::None,
        )
        .await
        .expect(200);
    assert_eq!(restored["config"]["description"], "mine");

    // Reusing the id elsewhere is refused without naming the application that has it.
    let id = restored["id"].as_str().unwrap().to_owned();
    server.app(json!({ "name": "open" })).await;
    let mut copy = wait_pipeline("open", "copy", 1);
    copy["id"] = json!(id);
    let refused = server.save("open", &writer, copy).await.expect(409);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(!message.contains("vault"), "{message}");
    assert!(message.contains("remove the id"), "{message}");
});

api_test!(restore_validates_like_save, |backend| {
    let server = Server::start(backend).await;
    server
        .app(json!({ "name": "shop", "permissions": { "READ": ["readers"], "WRITE": ["writers", "readers"] } }))
        .await;
    let writer = server.user("wendy", &["writers"]).await;
    // Revision 1 predates today's rules: stored directly, as an older server might have.
    let cycle = json!({ "application": "shop", "name": "deploy", "stages": [
        { "refId": "1", "type": "wait", "name": "a", "waitTime": 1, "requisiteStageRefIds": ["2"] },
        { "refId": "2", "type": "wait", "name": "b", "waitTime": 1, "requisiteStageRefIds": ["1"] },
    ]});
    server
        .store
        .save_pipeline(
            "shop",
            &gennaker_store::PipelineSave {
                id: None,
                name: "deploy".to_owned(),
                config: cycle,
            },
            "old-server",
        )
        .await
        .unwrap();
    server
        .save("shop", &server.admin, wait_pipeline("shop", "deploy", 5))
        .await
        .expect(200);
    let before = server.pipeline_state("shop").await;
    let restore = format!("{}/history/1/restore", pipeline_path("shop", "deploy"));

    let reply = server
        .call(Method::POST, &restore, Some(&server.admin), Body::None)
        .await;
    let body = reply.body.clone();
    let paths = reply.problem_paths();
    assert!(
        paths.iter().any(|p| p.starts_with("$.stages[")),
        "{paths:?}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the revision has 1 error(s)"),
        "{body}"
    );
    // A caller without READ learns that it failed, not what the document holds.
    let reply = server
        .call(Method::POST, &restore, Some(&writer), Body::None)
        .await
        .expect(400);
    assert!(reply["error"].get("problems").is_none(), "{reply}");
    assert_eq!(server.pipeline_state("shop").await, before);
});

#[tokio::test]
async fn the_configured_stage_limit_refuses_bigger_pipelines() {
    let server = Server::start_with(
        TestBackend::Sqlite,
        Options {
            engine: EngineSettings {
                max_pipeline_stages: 3,
                ..Options::default().engine
            },
            ..Options::default()
        },
    )
    .await;
    let pipeline = |count: usize| {
        let stages: Vec<Value> = (1..=count)
            .map(|i| json!({ "refId": i.to_string(), "type": "wait", "waitTime": 1 }))
            .collect();
        json!({ "application": "shop", "name": "big", "stages": stages })
    };
    let reply = server
        .post("/api/v1/pipelines/validate", &server.admin, pipeline(3))
        .await
        .expect(200);
    assert_eq!(reply["valid"], true, "{reply}");
    let reply = server
        .post("/api/v1/pipelines/validate", &server.admin, pipeline(4))
        .await
        .expect(200);
    assert_eq!(reply["valid"], false, "{reply}");
    let messages: Vec<&str> = reply["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("the pipeline has 4 stages; a pipeline may have at most 3")),
        "{messages:?}"
    );
}
