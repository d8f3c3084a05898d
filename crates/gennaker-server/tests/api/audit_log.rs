//! The audit log records every mutating call, refused ones included, and no reads.

use std::time::Duration;

use gennaker_store::{AuditEntry, AuditQuery, Store};

use crate::faulty::AuditFaults;
use crate::harness::*;

fn find<'a>(entries: &'a [Value], action: &str, status: i64) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action && e["status"] == status)
        .unwrap_or_else(|| panic!("no audit entry for {action} → {status} in {entries:#?}"))
}

api_test!(mutations_are_audited, |backend| {
    let server = Server::start(backend).await;
    let admin = server.admin.clone();
    server
        .app(
            json!({ "name": "shop", "permissions": { "READ": ["readers"], "WRITE": ["writers"] } }),
        )
        .await;
    let reader = server.user("reader", &["readers"]).await;
    // Reads are not audited.
    server
        .get("/api/v1/applications", &reader)
        .await
        .expect(200);
    server
        .get("/api/v1/applications/shop", &reader)
        .await
        .expect(200);
    server
        .post(
            "/api/v1/pipelines/validate",
            &reader,
            wait_pipeline("shop", "x", 1),
        )
        .await
        .expect(200);
    let before = server.get("/api/v1/audit", &admin).await.expect(200);
    let count_before = before.as_array().unwrap().len();

    // success
    server
        .save("shop", &admin, wait_pipeline("shop", "deploy", 1))
        .await
        .expect(201);
    // denied: 403
    server
        .save("shop", &reader, wait_pipeline("shop", "deploy", 2))
        .await
        .expect(403);
    // denied: 401
    server
        .call(
            Method::DELETE,
            "/api/v1/applications/shop/pipelines/deploy",
            None,
            Body::None,
        )
        .await
        .expect(401);
    // failed: 409 and 400
    server
        .post("/api/v1/applications", &admin, json!({ "name": "shop" }))
        .await
        .expect(409);
    server
        .save(
            "shop",
            &admin,
            json!({ "application": "shop", "name": "broken", "stages": "no" }),
        )
        .await
        .expect(400);
    // success: delete
    server
        .delete("/api/v1/applications/shop/pipelines/deploy", &admin)
        .await
        .expect(204);
    // Reads in between add nothing.
    server.get("/api/v1/me", &reader).await.expect(200);

    let entries = server.get("/api/v1/audit", &admin).await.expect(200);
    let entries = entries.as_array().unwrap();
    assert!(
        entries
            .iter()
            .all(|e| !e["action"].as_str().unwrap().starts_with("GET ")
                && !e["action"].as_str().unwrap().contains("/validate")),
        "reads were audited: {entries:#?}"
    );
    assert_eq!(entries.len(), count_before + 6, "{entries:#?}");
    // Newest first.
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    let saved = find(entries, "POST /api/v1/applications/shop/pipelines", 201);
    assert_eq!(saved["actor"], "admin");
    assert_eq!(saved["target"], "applications/shop/pipelines");
    assert_eq!(saved["outcome"], "success");
    assert_eq!(saved["detail"]["revision"], 1);
    assert!(saved["at"].as_i64().unwrap() > 0);

    let refused = find(entries, "POST /api/v1/applications/shop/pipelines", 403);
    assert_eq!(refused["actor"], "reader");
    assert_eq!(refused["outcome"], "denied");
    assert!(
        refused["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("WRITE"),
        "{refused}"
    );

    let anonymous = find(
        entries,
        "DELETE /api/v1/applications/shop/pipelines/deploy",
        401,
    );
    assert_eq!(anonymous["actor"], "anonymous");
    assert_eq!(anonymous["outcome"], "denied");
    assert_eq!(anonymous["target"], "applications/shop/pipelines/deploy");

    let conflict = find(entries, "POST /api/v1/applications", 409);
    assert_eq!(conflict["outcome"], "failed");
    assert_eq!(conflict["actor"], "admin");
    let invalid = find(entries, "POST /api/v1/applications/shop/pipelines", 400);
    assert_eq!(invalid["outcome"], "failed");

    let deleted = find(
        entries,
        "DELETE /api/v1/applications/shop/pipelines/deploy",
        204,
    );
    assert_eq!(deleted["outcome"], "success");
    // The deleted document is kept, so a deletion can be undone by hand.
    assert_eq!(deleted["detail"]["deleted"]["name"], "deploy");

    // Filters.
    let by_reader = server
        .get("/api/v1/audit?actor=reader", &admin)
        .await
        .expect(200);
    assert!(!by_reader.as_array().unwrap().is_empty());
    assert!(
        by_reader
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "reader")
    );
    let limited = server
        .get("/api/v1/audit?limit=2", &admin)
        .await
        .expect(200);
    assert_eq!(limited.as_array().unwrap().len(), 2);
    let targeted = server
        .get(
            "/api/v1/audit?target=applications/shop/pipelines/deploy",
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(targeted.as_array().unwrap().len(), 2, "{targeted:#?}");
});

/// Polls the store's audit log until an entry for `action` with `status` appears.
async fn wait_for_entry(server: &Server, action: &str, status: i64) -> Option<AuditEntry> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let entries = server
            .store
            .list_audit(&AuditQuery {
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        if let Some(entry) = entries
            .into_iter()
            .find(|e| e.action == action && e.status == status)
        {
            return Some(entry);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

api_test!(
    a_client_that_hangs_up_does_not_lose_the_audit_entry,
    |backend| {
        let faults = AuditFaults::closed();
        let server = Server::start_with(
            backend,
            Options {
                audit_faults: Some(faults.clone()),
                ..Options::default()
            },
        )
        .await;
        // Created in the store directly: an API call would wait at the closed gate.
        server
            .store
            .create_application("shop", &json!({ "name": "shop" }), "admin")
            .await
            .unwrap();

        // The save commits, then its audit write waits; the client gives up meanwhile.
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let sent = impatient
            .post(format!(
                "{}/api/v1/applications/shop/pipelines",
                server.base
            ))
            .bearer_auth(&server.admin)
            .json(&wait_pipeline("shop", "deploy", 1))
            .send()
            .await;
        assert!(
            sent.is_err_and(|e| e.is_timeout()),
            "the client should time out"
        );
        // Give the server time to notice the closed connection before the write may go on.
        tokio::time::sleep(Duration::from_millis(200)).await;
        faults.open();

        let entry = wait_for_entry(&server, "POST /api/v1/applications/shop/pipelines", 201)
            .await
            .expect("the committed save has its audit entry although the client hung up");
        assert_eq!(entry.actor, "admin");
        assert_eq!(entry.detail["revision"], 1);
        assert!(
            server
                .store
                .get_pipeline("shop", "deploy")
                .await
                .unwrap()
                .is_some()
        );
    }
);

api_test!(failed_audit_writes_are_counted, |backend| {
    let faults = AuditFaults::failing();
    let server = Server::start_with(
        backend,
        Options {
            audit_faults: Some(faults),
            ..Options::default()
        },
    )
    .await;
    let metrics = server.get("/metrics", &server.admin).await.expect(200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("gennaker_audit_write_failures_total 0"),
        "{metrics}"
    );
    // The change itself succeeds: the audit log failing is the operator's alarm, not the caller's.
    server.app(json!({ "name": "shop" })).await;
    server
        .post("/api/v1/roles", &server.admin, json!({ "name": "ops" }))
        .await
        .expect(201);
    let metrics = server.get("/metrics", &server.admin).await.expect(200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("gennaker_audit_write_failures_total 2"),
        "{metrics}"
    );
});
