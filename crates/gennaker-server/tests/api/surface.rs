//! Health, metrics and the OpenAPI document.

use crate::harness::*;

api_test!(metrics_count_by_route_template, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .get("/api/v1/applications/shop", &server.admin)
        .await
        .expect(200);
    server
        .get("/api/v1/applications/nope", &server.admin)
        .await
        .expect(404);
    server
        .call(
            Method::GET,
            "/no/such/route",
            Some(&server.admin),
            Body::None,
        )
        .await
        .expect(404);
    let metrics = server.get("/metrics", &server.admin).await.expect(200);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("gennaker_http_requests_total{"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("gennaker_http_requests_total{")
                && l.contains(r#"route="/api/v1/applications/{app}""#)
                && l.contains(r#"status="404""#)),
        "{text}"
    );
    assert!(
        text.contains("gennaker_http_request_duration_seconds"),
        "{text}"
    );
    assert!(text.contains("gennaker_build_info"), "{text}");
    // Raw paths never become label values.
    assert!(
        !text.contains("route=\"/api/v1/applications/shop\""),
        "{text}"
    );
    assert!(!text.contains("/no/such/route"), "{text}");
});

api_test!(openapi_document, |backend| {
    let server = Server::start(backend).await;
    let document = server
        .get("/api/openapi.json", &server.admin)
        .await
        .expect(200);
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3."),
        "{document}"
    );
    assert_eq!(document["info"]["title"], "Gennaker API");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/applications/{app}/pipelines"));
    // Optimistic concurrency is documented: If-Match in, ETag and 409 out.
    let put = &paths["/api/v1/applications/{app}"]["put"];
    assert!(
        put["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header"),
        "{put}"
    );
    assert!(
        put["responses"]["200"]["headers"]["ETag"].is_object(),
        "{put}"
    );
    assert!(put["responses"]["409"].is_object(), "{put}");
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(document["security"], json!([{ "bearer": [] }]));
});

api_test!(health, |backend| {
    let server = Server::start(backend).await;
    let health = server
        .call(Method::GET, "/healthz", None, Body::None)
        .await
        .expect(200);
    assert_eq!(health["status"], "ok");
    let ready = server
        .call(Method::GET, "/readyz", None, Body::None)
        .await
        .expect(200);
    assert_eq!(ready["status"], "ready");
    assert!(ready["database"].is_string());
    // Which server answered, as its task records name it (several may share a database).
    let server_id = ready["server"].as_str().unwrap();
    assert!(server_id.starts_with("gennaker-"), "{ready}");

    // Without a database: 503, and the driver's error stays in the log.
    server.store.close().await;
    let ready = server
        .call(Method::GET, "/readyz", None, Body::None)
        .await
        .expect(503);
    assert_eq!(ready["status"], "unavailable");
    let text = ready.to_string().to_lowercase();
    assert!(
        !text.contains("pool") && !text.contains("closed"),
        "{ready}"
    );
    let reply = server.get("/api/v1/me", &server.admin).await.expect(503);
    assert_eq!(reply["error"]["code"], "unavailable");
    let text = reply.to_string().to_lowercase();
    assert!(
        !text.contains("pool") && !text.contains("closed"),
        "{reply}"
    );
});
