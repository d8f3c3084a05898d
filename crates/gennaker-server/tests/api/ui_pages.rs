//! The web UI's pipeline history, load balancers and canary report pages over plain
//! HTTP: what READ shows (secrets redacted in the diff too), that restoring takes the
//! CSRF token and WRITE, and the errors of a wrong revision or a stage without a
//! canary report.

use crate::harness::*;
use crate::ui::Browser;

/// A pipeline whose first stage waits `wait` seconds and carries a secret.
fn release(wait: u64) -> Value {
    json!({
        "application": "shop", "name": "release",
        "stages": [
            {"refId": "1", "type": "wait", "name": "Soak", "waitTime": wait,
             "notes": {"DB_PASSWORD": "s3cret-value"}},
            {"refId": "2", "requisiteStageRefIds": ["1"], "type": "wait", "name": "Ship", "waitTime": 0}
        ]
    })
}

async fn current_revision(server: &Server) -> Value {
    server
        .get("/api/v1/applications/shop/pipelines/release", &server.admin)
        .await
        .expect(200)["revision"]
        .clone()
}

api_test!(
    history_shows_diffs_to_readers_and_restores_for_writers,
    |backend| {
        let server = Server::start(backend).await;
        server
            .app(json!({ "name": "shop", "permissions": {
            "READ": ["readers", "editors"], "WRITE": ["editors"], "EXECUTE": ["editors"] } }))
            .await;
        server
            .save("shop", &server.admin, release(5))
            .await
            .expect(201);
        server
            .save("shop", &server.admin, release(9))
            .await
            .expect(200);
        let reader = server.user("rita", &["readers"]).await;
        let editor = server.user("eddie", &["editors"]).await;
        let path = "/applications/shop/pipelines/release/history";

        // A reader sees the revisions and the last change, with secrets redacted, and is
        // offered no restore.
        let mut rita = Browser::new(&server);
        rita.sign_in(&reader).await;
        let page = rita.get(path).await;
        assert_eq!(page.status, 200, "{}", page.html);
        assert!(
            page.html.contains("Revision 1 → revision 2"),
            "{}",
            page.html
        );
        assert!(page.html.contains("waitTime&#34;: 5,"), "{}", page.html);
        assert!(page.html.contains("waitTime&#34;: 9,"));
        assert!(!page.html.contains("s3cret-value"), "redacted for READ");
        assert!(!page.html.contains("/restore"), "no restore offered");
        // Restoring anyway is refused by the API, and nothing changes.
        let refused = rita
            .post(&format!("{path}/1/restore"), &[("csrf", &page.csrf())])
            .await;
        assert_eq!(refused.status, 403, "{}", refused.html);
        assert!(refused.html.contains("Revision 1 was not restored"));
        assert_eq!(current_revision(&server).await, 2);

        // A writer: a POST without the CSRF token is refused; with it, revision 1 is
        // restored as revision 3.
        let mut eddie = Browser::new(&server);
        eddie.sign_in(&editor).await;
        let page = eddie.get(&format!("{path}?from=1&to=2")).await;
        assert!(
            page.html.contains("s3cret-value"),
            "editors see what they edit"
        );
        assert!(page.html.contains(&format!(r#"action="{path}/1/restore""#)));
        let forged = eddie.post(&format!("{path}/1/restore"), &[]).await;
        assert_eq!(forged.status, 403);
        assert_eq!(current_revision(&server).await, 2);
        let restored = eddie
            .post(&format!("{path}/1/restore"), &[("csrf", &page.csrf())])
            .await;
        assert_eq!(restored.status, 303, "{}", restored.html);
        assert_eq!(restored.location, path);
        let page = eddie.get(path).await;
        assert!(
            page.html
                .contains("Restored revision 1 of release: it is revision 3 now."),
            "{}",
            page.html
        );
        assert!(page.html.contains("restored from 1"));
        let current = server
            .get("/api/v1/applications/shop/pipelines/release", &server.admin)
            .await
            .expect(200);
        assert_eq!(current["revision"], 3);
        assert_eq!(current["config"]["stages"][0]["waitTime"], 5);

        // A revision that does not exist is named.
        let missing = eddie.get(&format!("{path}?from=99&to=3")).await;
        assert_eq!(missing.status, 404);
        assert!(
            missing.html.contains("there is no revision 99"),
            "{}",
            missing.html
        );
    }
);

api_test!(
    load_balancers_and_canary_pages_need_read_and_a_canary_stage,
    |backend| {
        let server = Server::start(backend).await;
        server
            .app(json!({ "name": "shop", "permissions": {
            "READ": ["readers"], "WRITE": ["admins"], "EXECUTE": ["admins"] } }))
            .await;
        server
            .save("shop", &server.admin, release(0))
            .await
            .expect(201);
        let id = server.start_execution("shop", "release", json!({})).await;
        let execution = server.wait_status(&id, "SUCCEEDED").await;
        let soak = stage(&execution, "1")["id"].as_str().unwrap().to_owned();
        let reader = server.user("rita", &["readers"]).await;
        let outsider = server.user("olga", &["others"]).await;

        let mut rita = Browser::new(&server);
        rita.sign_in(&reader).await;
        let balancers = rita.get("/applications/shop/loadBalancers").await;
        assert_eq!(balancers.status, 200, "{}", balancers.html);
        assert!(balancers.html.contains("Load balancers"));
        // A stage that is not a canary analysis has no report.
        let report = rita
            .get(&format!("/executions/{id}/stages/{soak}/canary"))
            .await;
        assert_eq!(report.status, 404, "{}", report.html);
        let execution_page = rita.get(&format!("/executions/{id}")).await;
        assert!(
            !execution_page.html.contains("Canary report"),
            "no link for a wait stage"
        );

        // For someone who may not READ the application, it does not exist.
        let mut olga = Browser::new(&server);
        olga.sign_in(&outsider).await;
        let balancers = olga.get("/applications/shop/loadBalancers").await;
        assert_eq!(balancers.status, 404, "{}", balancers.html);
        let history = olga
            .get("/applications/shop/pipelines/release/history")
            .await;
        assert_eq!(history.status, 404, "{}", history.html);
        let report = olga
            .get(&format!("/executions/{id}/stages/{soak}/canary"))
            .await;
        assert_eq!(report.status, 404, "{}", report.html);
    }
);

api_test!(a_large_diff_is_cut_and_the_page_stays_small, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let many = |wait: u64| {
        let stages: Vec<Value> = (1..=120)
            .map(|i| json!({"refId": i.to_string(), "type": "wait", "name": format!("Wait {i}"), "waitTime": wait}))
            .collect();
        json!({"application": "shop", "name": "release", "stages": stages})
    };
    server
        .save("shop", &server.admin, many(1))
        .await
        .expect(201);
    server
        .save("shop", &server.admin, many(2))
        .await
        .expect(200);
    let mut browser = Browser::new(&server);
    browser.sign_in(&server.admin).await;
    let page = browser
        .get("/applications/shop/pipelines/release/history")
        .await;
    assert_eq!(page.status, 200);
    let count = |marker: &str| -> usize {
        let rest = page.html.split(marker).nth(1).unwrap();
        rest[..rest.find('<').unwrap()].parse().unwrap()
    };
    // Every changed line is counted (a line diff may pair a brace differently, but
    // never finds fewer changes than there are).
    let (added, removed) = (count("diff-add-count\">+"), count("diff-del-count\">−"));
    assert!(added >= 120 && added == removed, "+{added} −{removed}");
    assert!(page.html.contains("The diff is cut here"), "{}", page.html);
    assert_eq!(page.html.matches("<tr class=\"d-").count(), 500);
    assert!(page.html.len() < 150 * 1024, "{} bytes", page.html.len());
});
