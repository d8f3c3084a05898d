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
    let server = Server::start(backend).await;
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
    // Nor by changing the permissions later.
    let paths = server
        .put(
            "/api/v1/applications/mine",
            &dev,
            json!({ "name": "mine", "permissions": { "READ": ["devs"], "WRITE": ["others"] } }),
        )
        .await
        .problem_paths();
    assert_eq!(paths, ["$.permissions.WRITE"]);
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
    // The dev can no longer see it, in the list or directly.
    server
        .get("/api/v1/applications/mine", &dev)
        .await
        .expect(403);
    assert_eq!(
        server.get("/api/v1/applications", &dev).await.expect(200),
        json!([])
    );
});

api_test!(application_creators_restrict_creation, |backend| {
    let server = Server::start_with(
        backend,
        Options {
            application_creators: vec!["creators".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let dev = server.user("dev", &["devs"]).await;
    let creator = server.user("maker", &["creators"]).await;
    let body = server
        .post("/api/v1/applications", &dev, json!({ "name": "devapp" }))
        .await
        .expect(403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("creators"),
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
