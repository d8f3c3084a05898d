//! The canary report over HTTP: a retrospective `kayentaCanary` stage run by the real
//! engine with a deterministic metric source, then its report as JSON and HTML, as
//! a reader, an outsider and for stages that are not canaries.

use gennaker_canary::testing::canary_fixture;
use gennaker_canary::{InMemoryCanaryConfigs, MetricSources};

use crate::harness::*;

fn canary() -> (MetricSources, InMemoryCanaryConfigs) {
    canary_fixture("cfg-1", "shop-canary", "shop").unwrap()
}

/// Two retrospective one-minute windows; the first scores 50 (errors High) and stops.
fn pipeline() -> Value {
    json!({"application": "shop", "name": "release", "stages": [
        {"refId": "1", "type": "wait", "name": "Before", "waitTime": 0},
        {"refId": "2", "requisiteStageRefIds": ["1"], "type": "kayentaCanary", "name": "Canary Analysis",
         "analysisType": "retrospective",
         "canaryConfig": {"canaryConfigId": "cfg-1", "metricsAccountName": "fake",
            "canaryAnalysisIntervalMins": "1", "scoreThresholds": {"marginal": "75", "pass": "90"},
            "scopes": [{"scopeName": "default", "controlScope": "shop-baseline", "experimentScope": "shop-canary",
                        "startTimeIso": "2024-05-01T12:00:00Z", "endTimeIso": "2024-05-01T12:02:00Z", "step": 5}]}}
    ]})
}

api_test!(reports_as_json_and_html_to_readers_only, |backend| {
    let server = Server::start_with(
        backend,
        Options {
            canary: Some(canary()),
            ..Options::default()
        },
    )
    .await;
    server
        .app(json!({"name": "shop", "permissions": {"READ": ["viewers"], "WRITE": ["admins"], "EXECUTE": ["admins"]}}))
        .await;
    let viewer = server.user("vic", &["viewers"]).await;
    let outsider = server.user("otto", &["others"]).await;
    let saved = server
        .save("shop", &server.admin, pipeline())
        .await
        .expect(201);
    assert!(
        saved["warnings"].as_array().is_none_or(Vec::is_empty),
        "{saved}"
    );
    let id = server.start_execution("shop", "release", json!({})).await;
    let done = server
        .wait_for(&id, "the analysis ends", |e| {
            e["status"] != "RUNNING" && e["status"] != "NOT_STARTED"
        })
        .await;
    assert_eq!(done["status"], "TERMINAL", "{done}");
    let stage_id = done["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "kayentaCanary")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/executions/{id}/stages/{stage_id}/canary");

    // A reader gets the report.
    let report = server.get(&path, &viewer).await.expect(200);
    assert_eq!(report["executionId"], json!(id));
    assert_eq!(report["stageId"], json!(stage_id));
    assert_eq!(report["overall"]["scores"], json!([50.0]));
    assert_eq!(report["overall"]["verdict"], "Fail");
    assert_eq!(report["canaryConfigName"], "shop-canary");
    let intervals = report["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 2, "both planned judgements: {report}");
    assert_eq!(intervals[0]["score"], json!(50.0));
    assert_eq!(intervals[1]["status"], "NOT_STARTED");
    let errors = &intervals[0]["metrics"][0];
    assert_eq!(errors["name"], "errors");
    assert_eq!(errors["classification"], "High");
    assert_eq!(errors["deviationPercent"], json!(200.0));
    assert_eq!(
        errors["control"]["query"],
        "errors{scope=\"shop-baseline\"}"
    );
    assert_eq!(errors["experiment"]["values"].as_array().unwrap().len(), 13);
    assert_eq!(intervals[0]["metrics"][1]["classification"], "Pass");
    // By the stage's name too.
    let by_name = server
        .get(
            &format!("/api/v1/executions/{id}/stages/Canary%20Analysis/canary"),
            &viewer,
        )
        .await
        .expect(200);
    assert_eq!(by_name, report);

    // The page, under both addresses, with a policy that runs no script.
    for url in [format!("{path}.html"), format!("{path}?format=html")] {
        let response = server
            .client
            .get(format!("{}{url}", server.base))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let page = response.text().await.unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"), "{url}");
        assert_eq!(page.matches("<svg").count(), 4, "two charts per metric");
        assert!(page.contains("errors{scope=&quot;shop-canary&quot;}"));
    }
    let bad = server.get(&format!("{path}?format=xml"), &viewer).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    // Someone who may not read the application sees nothing, not even that it exists.
    for url in [path.clone(), format!("{path}.html")] {
        let reply = server.get(&url, &outsider).await.expect(404);
        assert!(!reply.to_string().contains("Canary Analysis"), "{reply}");
    }
    // Stages that are not canaries, and unknown ones, are 404 with what to name.
    let before = done["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Before")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let not_canary = server
        .get(
            &format!("/api/v1/executions/{id}/stages/{before}/canary"),
            &viewer,
        )
        .await
        .expect(404);
    assert!(
        not_canary["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a canary analysis"),
        "{not_canary}"
    );
    server
        .get(
            &format!("/api/v1/executions/{id}/stages/nope/canary"),
            &viewer,
        )
        .await
        .expect(404);
    server
        .get("/api/v1/executions/nope/stages/x/canary", &viewer)
        .await
        .expect(404);
});
