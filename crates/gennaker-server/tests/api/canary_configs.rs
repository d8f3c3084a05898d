//! Canary configs over HTTP: saving, revisions, renames, validation with paths,
//! conflicts, limits, audit, and the permissions of the applications they list.

use crate::harness::*;

fn config(name: &str, apps: &[&str]) -> Value {
    json!({
        "name": name,
        "applications": apps,
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [
            {"name": "errors", "groups": ["errors"], "query": {"type": "builtin", "metricName": "error_rate"},
             "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}},
            {"name": "p99", "groups": ["latency"],
             "query": {"type": "prometheus", "metricName": "http_seconds", "customFilterTemplate": "by-pod"}}
        ],
        "templates": {"by-pod": "pod=~\"${scope}-.*\""},
        "classifier": {"groupWeights": {"errors": 70, "latency": 30}},
        "configVersion": "1"
    })
}

api_test!(save_read_rename_history_and_delete, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let admin = server.admin.clone();

    let created = server
        .post(
            "/api/v1/canaryConfigs",
            &admin,
            config("Latency", &["shop"]),
        )
        .await
        .expect(201);
    assert_eq!(created["outcome"], "created");
    assert_eq!(created["warnings"], json!([]));
    let id = created["canaryConfig"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(created["canaryConfig"]["revision"], 1);

    // By id and by name; the stored document says what it is, when and by whom.
    let by_id = server
        .get(&format!("/api/v1/canaryConfigs/{id}"), &admin)
        .await
        .expect(200);
    assert_eq!(by_id["config"]["id"], id.as_str());
    assert_eq!(by_id["config"]["configVersion"], "1");
    assert_eq!(by_id["config"]["lastModifiedBy"], "admin");
    assert!(
        by_id["config"]["updatedTimestampIso"].is_string(),
        "{by_id}"
    );
    assert_eq!(by_id["applications"], json!(["shop"]));
    let by_name = server
        .get("/api/v1/canaryConfigs/latency", &admin)
        .await
        .expect(200);
    assert_eq!(by_name["id"], id.as_str());

    // A rename by id keeps the id; saving the same again is no new revision.
    let mut renamed = config("Latency v2", &["shop"]);
    renamed["id"] = json!(id);
    let updated = server
        .put(
            &format!("/api/v1/canaryConfigs/{id}"),
            &admin,
            renamed.clone(),
        )
        .await
        .expect(200);
    assert_eq!(updated["outcome"], "updated");
    assert_eq!(updated["canaryConfig"]["revision"], 2);
    assert_eq!(updated["canaryConfig"]["name"], "Latency v2");
    let again = server
        .put(&format!("/api/v1/canaryConfigs/{id}"), &admin, renamed)
        .await
        .expect(200);
    assert_eq!(again["outcome"], "unchanged");
    server
        .get("/api/v1/canaryConfigs/Latency", &admin)
        .await
        .expect(404);

    let history = server
        .get(&format!("/api/v1/canaryConfigs/{id}/history"), &admin)
        .await
        .expect(200);
    let revisions: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].clone())
        .collect();
    assert_eq!(revisions, [json!(2), json!(1)]);
    assert_eq!(history[1]["name"], "Latency");

    // YAML works too, and lists filter by application.
    server.app(json!({ "name": "cart" })).await;
    let yaml = "name: cart-errors\napplications: [cart]\nmetrics:\n  - name: errors\n    groups: [errors]\n    query: {type: builtin, metricName: error_rate}\nclassifier:\n  groupWeights: {errors: 100}\n";
    server
        .call(
            Method::POST,
            "/api/v1/canaryConfigs",
            Some(&admin),
            Body::Raw("application/yaml", yaml.as_bytes().to_vec()),
        )
        .await
        .expect(201);
    let all = server
        .get("/api/v1/canaryConfigs", &admin)
        .await
        .expect(200);
    let names: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cart-errors", "Latency v2"]);
    let shop = server
        .get("/api/v1/canaryConfigs?application=shop", &admin)
        .await
        .expect(200);
    assert_eq!(shop.as_array().unwrap().len(), 1);
    assert_eq!(shop[0]["id"], id.as_str());

    server
        .delete(&format!("/api/v1/canaryConfigs/{id}"), &admin)
        .await
        .expect(204);
    server
        .get(&format!("/api/v1/canaryConfigs/{id}"), &admin)
        .await
        .expect(404);
    server
        .get(&format!("/api/v1/canaryConfigs/{id}/history"), &admin)
        .await
        .expect(404);

    // Every change is audited, the deleted document included.
    let audit = server
        .get("/api/v1/audit?target=canaryConfigs", &admin)
        .await
        .expect(200);
    let actions: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions.len(), 5, "{actions:?}");
    assert!(
        actions[0].starts_with("DELETE /api/v1/canaryConfigs/"),
        "{actions:?}"
    );
    assert_eq!(audit[0]["detail"]["deleted"]["name"], "Latency v2");
    assert_eq!(audit[0]["detail"]["canaryConfigId"], id.as_str());
});

api_test!(invalid_configs_conflicts_and_limits, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let admin = server.admin.clone();

    // Every problem with its path; nothing stored.
    let mut bad = config("Broken", &[]);
    bad["metrics"][0]["query"]["type"] = json!("graphiteish");
    bad["metrics"][1]["query"]["customFilterTemplate"] = json!("by-node");
    bad["metrics"][1]["analysisConfigurations"] = json!({"canary": {"critical": "maybe"}});
    let reply = server.post("/api/v1/canaryConfigs", &admin, bad).await;
    let body = reply.body.clone();
    let paths = reply.problem_paths();
    for path in [
        "$.applications",
        "$.metrics[0].query.type",
        "$.metrics[1].query.customFilterTemplate",
        "$.metrics[1].analysisConfigurations.canary.critical",
    ] {
        assert!(paths.contains(&path.to_owned()), "{path} missing in {body}");
    }
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was saved"),
        "{body}"
    );
    assert_eq!(
        server
            .get("/api/v1/canaryConfigs", &admin)
            .await
            .expect(200),
        json!([])
    );

    // Warnings pass, and are returned.
    let mut loose = config("Loose", &["shop"]);
    loose["classifier"]["groupWeights"] = json!({"errors": 50, "latency": 30});
    let saved = server
        .post("/api/v1/canaryConfigs", &admin, loose)
        .await
        .expect(201);
    assert_eq!(
        saved["warnings"][0]["path"], "$.classifier.groupWeights",
        "{saved}"
    );
    let id = saved["canaryConfig"]["id"].as_str().unwrap().to_owned();

    // Names are unique; ids are too.
    let taken = server
        .post("/api/v1/canaryConfigs", &admin, config("LOOSE", &["shop"]))
        .await
        .expect(409);
    let message = taken["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("already exists") && message.contains(&id),
        "{message}"
    );
    let mut same_id = config("Other", &["shop"]);
    same_id["id"] = json!(id);
    let taken = server
        .post("/api/v1/canaryConfigs", &admin, same_id)
        .await
        .expect(409);
    assert!(
        taken["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PUT /api/v1/canaryConfigs/"),
        "{taken}"
    );
    let mut wrong_id = config("Loose", &["shop"]);
    wrong_id["id"] = json!("another");
    let paths = server
        .put(&format!("/api/v1/canaryConfigs/{id}"), &admin, wrong_id)
        .await
        .problem_paths();
    assert_eq!(paths, ["$.id"]);
    // A PUT of an id nobody has creates it (imports keep Kayenta's ids).
    let created = server
        .put(
            "/api/v1/canaryConfigs/kayenta-1",
            &admin,
            config("Imported", &["shop"]),
        )
        .await
        .expect(201);
    assert_eq!(created["canaryConfig"]["id"], "kayenta-1");
    // Ids stay usable in URLs and terminals.
    let odd = server
        .put(
            "/api/v1/canaryConfigs/a%23b",
            &admin,
            config("Odd", &["shop"]),
        )
        .await
        .expect(400);
    assert!(
        odd["error"]["message"]
            .as_str()
            .unwrap()
            .contains("leave 'id' out"),
        "{odd}"
    );
    // Applications must exist.
    let missing = server
        .post(
            "/api/v1/canaryConfigs",
            &admin,
            config("Ghost", &["nowhere"]),
        )
        .await
        .expect(404);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application 'nowhere'"),
        "{missing}"
    );

    // Documents are bounded.
    let mut huge = config("Huge", &["shop"]);
    huge["description"] = json!("x".repeat(gennaker_store::MAX_CANARY_CONFIG_BYTES));
    let reply = server
        .post("/api/v1/canaryConfigs", &admin, huge)
        .await
        .expect(413);
    assert_eq!(reply["error"]["code"], "too_large");
    server
        .get("/api/v1/canaryConfigs/Huge", &admin)
        .await
        .expect(404);
});

api_test!(permissions_follow_every_listed_application, |backend| {
    let server = Server::start(backend).await;
    server
        .app(json!({ "name": "shop", "permissions": {"READ": ["shop-readers", "shop-writers"], "WRITE": ["shop-writers"]} }))
        .await;
    server
        .app(json!({ "name": "cart", "permissions": {"READ": ["cart-writers"], "WRITE": ["cart-writers"]} }))
        .await;
    let outsider = server.user("outsider", &["nobody"]).await;
    let reader = server.user("reader", &["shop-readers"]).await;
    let shop_writer = server.user("shopwriter", &["shop-writers"]).await;
    let both = server.user("both", &["shop-writers", "cart-writers"]).await;

    // Writing needs WRITE on every application listed.
    let reply = server
        .post(
            "/api/v1/canaryConfigs",
            &shop_writer,
            config("Shared", &["shop", "cart"]),
        )
        .await;
    // cart is hidden from them: it is "not found", like a missing application.
    let body = reply.expect(404);
    assert!(
        !body["error"]["message"].as_str().unwrap().contains("role"),
        "{body}"
    );
    server
        .post("/api/v1/canaryConfigs", &reader, config("Shop", &["shop"]))
        .await
        .expect(403);
    let shared = server
        .post(
            "/api/v1/canaryConfigs",
            &both,
            config("Shared", &["shop", "cart"]),
        )
        .await
        .expect(201);
    let id = shared["canaryConfig"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/canaryConfigs/{id}");

    // Reading needs READ on one of them.
    let read = server.get(&path, &reader).await.expect(200);
    assert_eq!(read["name"], "Shared");
    server
        .get(&format!("{path}/history"), &reader)
        .await
        .expect(200);
    let listed = server
        .get("/api/v1/canaryConfigs", &reader)
        .await
        .expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    server.get(&path, &outsider).await.expect(404);
    server
        .get("/api/v1/canaryConfigs/Shared", &outsider)
        .await
        .expect(404);
    assert_eq!(
        server
            .get("/api/v1/canaryConfigs", &outsider)
            .await
            .expect(200),
        json!([])
    );
    assert_eq!(
        server
            .get("/api/v1/canaryConfigs?application=cart", &outsider)
            .await
            .expect(200),
        json!([])
    );
    server.delete(&path, &outsider).await.expect(404);

    // A writer of one of its applications may not change or delete it, nor move it
    // into their own application only.
    let refused = server
        .put(&path, &shop_writer, config("Shared", &["shop"]))
        .await
        .expect(403);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("WRITE permission on application 'cart'"),
        "{message}"
    );
    server.delete(&path, &shop_writer).await.expect(403);
    server.delete(&path, &reader).await.expect(403);
    let unchanged = server.get(&path, &server.admin).await.expect(200);
    assert_eq!(
        (
            unchanged["revision"].clone(),
            unchanged["applications"].clone()
        ),
        (json!(1), json!(["shop", "cart"]))
    );

    // Someone with WRITE on both moves it to shop, after which shop's writers own it.
    let moved = server
        .put(&path, &both, config("Shared", &["shop"]))
        .await
        .expect(200);
    assert_eq!(moved["canaryConfig"]["applications"], json!(["shop"]));
    server
        .put(&path, &shop_writer, config("Shared", &["shop"]))
        .await
        .expect(200);
    // The outsider's and the reader's refusals left audit entries too.
    let audit = server
        .get("/api/v1/audit?target=canaryConfigs", &server.admin)
        .await
        .expect(200);
    let outcomes: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert!(outcomes.contains(&"denied".to_owned()), "{outcomes:?}");
    server.delete(&path, &shop_writer).await.expect(204);
});
