//! Applications: CRUD, conflicts, names, and who may create them.

use crate::harness::*;

api_test!(crud_and_conflicts, |backend| {
    let server = Server::start(backend).await;
    let admin = server.admin.clone();
    let created = server
        .post(
            "/api/v1/applications",
            &admin,
            json!({ "name": "shop", "email": "team@example.com", "cloudProviders": "kubernetes" }),
        )
        .await
        .expect(201);
    assert_eq!(created["name"], "shop");
    assert_eq!(created["updatedBy"], "admin");

    let got = server
        .get("/api/v1/applications/shop", &admin)
        .await
        .expect(200);
    assert_eq!(got["config"]["email"], "team@example.com");
    assert_eq!(got["config"]["cloudProviders"], "kubernetes");

    let updated = server
        .put(
            "/api/v1/applications/shop",
            &admin,
            json!({ "name": "shop", "email": "new@example.com", "description": "the shop" }),
        )
        .await
        .expect(200);
    assert_eq!(updated["config"]["email"], "new@example.com");
    let got = server
        .get("/api/v1/applications/shop", &admin)
        .await
        .expect(200);
    assert_eq!(got["config"]["description"], "the shop");
    assert!(
        got["config"].get("cloudProviders").is_none(),
        "PUT replaces: {got}"
    );

    // PUT without a name takes the URL's; a different name is refused.
    server
        .put(
            "/api/v1/applications/shop",
            &admin,
            json!({ "email": "x@example.com" }),
        )
        .await
        .expect(200);
    let paths = server
        .put(
            "/api/v1/applications/shop",
            &admin,
            json!({ "name": "other" }),
        )
        .await
        .problem_paths();
    assert_eq!(paths, ["$.name"]);
    // PUT of a new application creates it.
    server
        .put(
            "/api/v1/applications/cart",
            &admin,
            json!({ "name": "cart" }),
        )
        .await
        .expect(201);

    // Duplicates, names differing only in case included.
    for name in ["shop", "SHOP"] {
        let body = server
            .post("/api/v1/applications", &admin, json!({ "name": name }))
            .await
            .expect(409);
        assert_eq!(body["error"]["code"], "conflict");
    }

    let names: Vec<_> = server
        .get("/api/v1/applications", &admin)
        .await
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"shop".to_owned()) && names.contains(&"cart".to_owned()));

    // An application with pipelines cannot be deleted.
    server
        .save("shop", &admin, wait_pipeline("shop", "deploy", 1))
        .await
        .expect(201);
    server
        .delete("/api/v1/applications/shop", &admin)
        .await
        .expect(409);
    server
        .get("/api/v1/applications/shop", &admin)
        .await
        .expect(200);
    server
        .delete("/api/v1/applications/shop/pipelines/deploy", &admin)
        .await
        .expect(204);
    server
        .delete("/api/v1/applications/shop", &admin)
        .await
        .expect(204);
    server
        .get("/api/v1/applications/shop", &admin)
        .await
        .expect(404);
    server
        .delete("/api/v1/applications/shop", &admin)
        .await
        .expect(404);
});

api_test!(invalid_documents, |backend| {
    let server = Server::start(backend).await;
    let admin = server.admin.clone();
    for name in ["bad name", "shop!", "", "ünïcode"] {
        let paths = server
            .post("/api/v1/applications", &admin, json!({ "name": name }))
            .await
            .problem_paths();
        assert_eq!(paths, ["$.name"], "{name:?}");
    }
    let long = "a".repeat(251);
    server
        .post("/api/v1/applications", &admin, json!({ "name": long }))
        .await
        .expect(400);
    let paths = server
        .post("/api/v1/applications", &admin, json!({ "email": "a@b.c" }))
        .await
        .problem_paths();
    assert_eq!(paths, ["$.name"]);
    server
        .post("/api/v1/applications", &admin, json!(["shop"]))
        .await
        .expect(400);
    let reply = server
        .call(
            Method::POST,
            "/api/v1/applications",
            Some(&admin),
            Body::Raw("application/json", b"{\"name\": ".to_vec()),
        )
        .await;
    assert_eq!(reply.problem_paths(), ["$"]);
    assert_eq!(
        server.get("/api/v1/applications", &admin).await.expect(200),
        json!([])
    );
});

api_test!(non_admins_cannot_lock_themselves_out, |backend| {
    let server = Server::start_with(
        backend,
        Options {
            application_creators: vec!["*".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let dev = server.user("dev", &["devs"]).await;
    server.ensure_role("others").await;

    let paths = server
        .post(
            "/api/v1/applications",
            &dev,
            json!({ "name": "locked", "permissions": { "READ": ["devs"], "WRITE": ["others"] } }),
        )
        .await
        .problem_paths();
    assert_eq!(paths, ["$.permissions.WRITE"]);
    server
        .get("/api/v1/applications/locked", &server.admin)
        .await
        .expect(404);

    server
        .post(
            "/api/v1/applications",
            &dev,
            json!({ "name": "mine", "permissions": { "READ": ["devs"], "WRITE": ["devs"] } }),
        )
        .await
        .expect(201);
    // Nor by changing the permissions later: only admins change permissions.
    let refused = server
        .put(
            "/api/v1/applications/mine",
            &dev,
            json!({ "name": "mine", "permissions": { "READ": ["devs"], "WRITE": ["others"] } }),
        )
        .await
        .expect(403);
    assert_eq!(
        refused["error"]["message"],
        "only admins may change the permissions of application 'mine'; send the document with its current 'permissions' (as GET returns them), or ask an admin"
    );
    let got = server
        .get("/api/v1/applications/mine", &dev)
        .await
        .expect(200);
    assert_eq!(got["config"]["permissions"]["WRITE"], json!(["devs"]));
    // An admin may set any permissions.
    server
        .put(
            "/api/v1/applications/mine",
            &server.admin,
            json!({ "name": "mine", "permissions": { "READ": ["others"], "WRITE": ["others"] } }),
        )
        .await
        .expect(200);
    // The dev can no longer see it, in the list or directly: it is as if it did not
    // exist.
    let hidden = server
        .get("/api/v1/applications/mine", &dev)
        .await
        .expect(404);
    assert_eq!(
        hidden["error"]["message"],
        "application 'mine' not found; create it with `gennaker app save`"
    );
    assert_eq!(
        server.get("/api/v1/applications", &dev).await.expect(200),
        json!([])
    );
});

api_test!(application_creators_restrict_creation, |backend| {
    let server = Server::start_with(
        backend,
        Options {
            // Role names ignore case: the setting's spelling need not match the role's.
            application_creators: vec!["Creators".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let dev = server.user("dev", &["devs"]).await;
    let creator = server.user("maker", &["CREATORS"]).await;
    let body = server
        .post("/api/v1/applications", &dev, json!({ "name": "devapp" }))
        .await
        .expect(403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Creators"),
        "{body}"
    );
    // PUT of a missing application is a creation too.
    server
        .put(
            "/api/v1/applications/devapp",
            &dev,
            json!({ "name": "devapp" }),
        )
        .await
        .expect(403);
    server
        .post(
            "/api/v1/applications",
            &creator,
            json!({ "name": "madeapp" }),
        )
        .await
        .expect(201);
    server
        .post(
            "/api/v1/applications",
            &server.admin,
            json!({ "name": "adminapp" }),
        )
        .await
        .expect(201);
    // Changing an existing open application is not creating one.
    server
        .put(
            "/api/v1/applications/madeapp",
            &dev,
            json!({ "name": "madeapp", "email": "d@example.com" }),
        )
        .await
        .expect(200);
    server
        .get("/api/v1/applications/devapp", &server.admin)
        .await
        .expect(404);
});

/// PUTs a document with an optional If-Match; returns the status, ETag and body.
async fn put_if_match(
    server: &Server,
    app: &str,
    if_match: Option<&str>,
    document: Value,
) -> (u16, Option<String>, Value) {
    let mut request = server
        .client
        .put(format!("{}/api/v1/applications/{app}", server.base))
        .bearer_auth(&server.admin)
        .json(&document);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, etag, response.json().await.unwrap())
}

api_test!(if_match_prevents_lost_updates, |backend| {
    let server = Server::start(backend).await;
    server
        .app(json!({ "name": "shop", "email": "a@example.com" }))
        .await;
    let response = server
        .client
        .get(format!("{}/api/v1/applications/shop", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["version"], 1);

    // Alice and Bob both read version 1; Alice saves first.
    let (status, etag, alice) = put_if_match(
        &server,
        "shop",
        Some("\"1\""),
        json!({ "name": "shop", "email": "alice@example.com" }),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{alice}");
    assert_eq!(alice["version"], 2);
    let (status, _, bob) = put_if_match(
        &server,
        "shop",
        Some("\"1\""),
        json!({ "name": "shop", "email": "bob@example.com" }),
    )
    .await;
    assert_eq!(status, 409, "{bob}");
    assert_eq!(bob["error"]["code"], "conflict");
    let message = bob["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("changed") && message.contains("version 2"),
        "{message}"
    );
    let stored = server
        .get("/api/v1/applications/shop", &server.admin)
        .await
        .expect(200);
    assert_eq!(stored["config"]["email"], "alice@example.com");

    // `*` needs the application to exist; no If-Match replaces as before.
    let (status, etag, _) = put_if_match(
        &server,
        "shop",
        Some("*"),
        json!({ "name": "shop", "email": "any@example.com" }),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));
    let (status, etag, _) = put_if_match(
        &server,
        "shop",
        None,
        json!({ "name": "shop", "email": "blind@example.com" }),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"4\"")));

    // If-Match never creates.
    for tag in ["\"1\"", "*"] {
        let (status, _, body) =
            put_if_match(&server, "cart", Some(tag), json!({ "name": "cart" })).await;
        assert_eq!(status, 409, "{body}");
    }
    server
        .get("/api/v1/applications/cart", &server.admin)
        .await
        .expect(404);

    // A malformed tag is a 400 that shows the expected form.
    for tag in ["1", "W/\"4\"", "\"4\", \"5\"", "\"four\""] {
        let (status, _, body) =
            put_if_match(&server, "shop", Some(tag), json!({ "name": "shop" })).await;
        assert_eq!(status, 400, "{tag}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("ETag"),
            "{body}"
        );
    }
    assert_eq!(
        server
            .get("/api/v1/applications/shop", &server.admin)
            .await
            .expect(200)["version"],
        4
    );
});
