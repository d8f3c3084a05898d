//! The `kayentaCanary` stage run by the engine on both backends, with a deterministic
//! metric source and the engine's driven clock: passing and failing canaries, early
//! stops, `continuePipeline`, retrospective windows, cancellation, configs by name,
//! and what a run must be allowed to read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stage_kit;

use std::time::Duration;

use gennaker_engine::testing::{error_of, stage, status_of, summary, synthetic_children};
use gennaker_engine::{Execution, ExecutionStatus, engine_test};
use gennaker_store::Store;
use serde_json::{Value, json};
use stage_kit::{ACCOUNT, CONFIG_NAME, canary_stage};

const TICK: Duration = Duration::from_secs(2);

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// When `runCanaryIntervals` started: the anchor of real-time windows.
fn anchor(execution: &Execution) -> jiff::Timestamp {
    let ms = stage(execution, "runCanaryIntervals").start_time.unwrap();
    jiff::Timestamp::from_millisecond(ms).unwrap()
}

fn plus(t: jiff::Timestamp, secs: i64) -> jiff::Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap()
}

fn names(execution: &Execution, parent: &str) -> Vec<String> {
    synthetic_children(execution, parent)
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

/// Starts `pipeline` as `name` and drives the clock until the run ends.
async fn run_to_end(h: &stage_kit::Harness, name: &str, pipeline: Value) -> Execution {
    let run = h.run(name, pipeline).await;
    h.finish(&run.id).await
}

#[track_caller]
fn assert_succeeded(done: &Execution) {
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{}", summary(done));
}

engine_test!(
    a_passing_canary_judges_every_interval_and_passes,
    |h: stage_kit::Harness| {
        let pipeline = json!({"stages": [canary_stage("PT3M", "1", "1", json!({}))]});
        let done = run_to_end(&h, "canary", pipeline).await;
        assert_succeeded(&done);
        assert_eq!(names(&done, "Canary Analysis"), ["runCanaryIntervals"]);
        assert_eq!(
            names(&done, "runCanaryIntervals"),
            [
                "Warmup Wait",
                "Interval Wait #1",
                "Run Canary #1",
                "Interval Wait #2",
                "Run Canary #2",
                "Interval Wait #3",
                "Run Canary #3"
            ]
        );
        assert_eq!(stage(&done, "Warmup Wait").context["waitTime"], json!(60));
        assert_eq!(
            stage(&done, "Interval Wait #2").context["waitTime"],
            json!(60)
        );
        let canary = stage(&done, "Canary Analysis");
        assert_eq!(canary.context["canaryScores"], json!([100.0, 100.0, 100.0]));
        assert_eq!(
            canary.context["canaryScoreMessage"],
            json!("Final canary score 100.0 met or exceeded the pass score threshold.")
        );
        assert_eq!(canary.outputs["canaryScores"], json!([100.0, 100.0, 100.0]));
        // Growing windows after the one-minute warm-up, judged once each.
        let start = anchor(&done);
        assert_eq!(
            h.metrics.windows("shop-canary"),
            [
                (plus(start, 60), plus(start, 120)),
                (plus(start, 60), plus(start, 180)),
                (plus(start, 60), plus(start, 240))
            ]
        );
        assert_eq!(
            h.metrics.queries().len(),
            3 * 2 * 2,
            "3 judgements × 2 metrics × 2 sides"
        );
        for i in 1..=3_i64 {
            let judged = stage(&done, &format!("Run Canary #{i}"));
            assert_eq!(judged.context["canaryScore"], json!(100));
            let updated = judged.context["lastUpdated"].as_i64().unwrap();
            assert!(
                updated >= plus(start, 60 + 60 * i).as_millisecond(),
                "judged after its window"
            );
            assert_eq!(
                judged.context["lastUpdatedIso"],
                json!(
                    jiff::Timestamp::from_millisecond(updated)
                        .unwrap()
                        .to_string()
                )
            );
            assert_eq!(
                judged.context["warnings"],
                json!([
                    "One of the metrics returned fewer than 50 data points, which can reduce confidence in the final canary score."
                ])
            );
            let report = &judged.outputs["canaryReport"];
            assert_eq!(report["judgeResult"]["score"]["score"], json!(100.0));
            assert_eq!(report["metricsAccountName"], json!(ACCOUNT));
            let series = report["series"].as_array().unwrap();
            assert_eq!(series.len(), 2);
            assert_eq!(
                series[0]["control"]["query"],
                json!("errors{scope=\"shop-baseline\"}")
            );
            assert_eq!(
                series[0]["experiment"]["values"].as_array().unwrap().len(),
                12 * i as usize + 1
            );
            let scope = &judged.context["scopes"]["default"];
            assert_eq!(
                scope["experimentScope"]["end"],
                json!(plus(start, 60 + 60 * i).to_string())
            );
        }
        h.stop().await;
    }
);

engine_test!(
    fractional_minutes_give_fifteen_second_intervals,
    |h: stage_kit::Harness| {
        let pipeline = json!({"stages": [canary_stage("PT1M", "0.25", "0", json!({}))]});
        let done = run_to_end(&h, "canary", pipeline).await;
        assert_succeeded(&done);
        assert_eq!(
            stage(&done, "Interval Wait #1").context["waitTime"],
            json!(15)
        );
        assert!(!names(&done, "runCanaryIntervals").contains(&"Warmup Wait".to_owned()));
        let start = anchor(&done);
        let ends: Vec<_> = h
            .metrics
            .windows("shop-canary")
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            ends,
            [
                plus(start, 15),
                plus(start, 30),
                plus(start, 45),
                plus(start, 60)
            ]
        );
        h.stop().await;
    }
);

engine_test!(
    a_failing_canary_stops_at_the_first_score_at_or_below_marginal,
    |h: stage_kit::Harness| {
        h.metrics.set_ratio("shop-canary", 3.0);
        let pipeline = json!({"stages": [canary_stage("PT3M", "1", "0", json!({}))]});
        let done = run_to_end(&h, "canary", pipeline).await;
        assert_eq!(done.status, ExecutionStatus::Terminal, "{}", summary(&done));
        let first = stage(&done, "Run Canary #1");
        assert_eq!(first.status, ExecutionStatus::Terminal);
        assert_eq!(first.context["canaryScore"], json!(0));
        assert_eq!(
            first.context["canaryScoreMessage"],
            json!("Canary score is not above the marginal score threshold.")
        );
        let high = &first.outputs["canaryReport"]["judgeResult"]["results"][0];
        assert_eq!(high["classification"], json!("High"));
        assert_eq!(
            status_of(&done, "Interval Wait #2"),
            ExecutionStatus::NotStarted
        );
        assert_eq!(
            status_of(&done, "Run Canary #2"),
            ExecutionStatus::NotStarted
        );
        assert_eq!(
            status_of(&done, "Canary Analysis"),
            ExecutionStatus::Terminal
        );
        assert!(
            error_of(stage(&done, "Canary Analysis"))
                .contains("not above the marginal score threshold")
        );
        assert_eq!(
            h.metrics.windows("shop-canary").len(),
            1,
            "no interval after the failing one"
        );
        h.stop().await;
    }
);

engine_test!(
    continue_pipeline_fails_the_canary_and_goes_on,
    |h: stage_kit::Harness| {
        h.metrics.set_ratio("shop-canary", 3.0);
        let canary = canary_stage(
            "PT3M",
            "1",
            "0",
            json!({"continuePipeline": true, "failPipeline": false}),
        );
        let after = json!({"refId": "2", "name": "After", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]});
        let done = run_to_end(&h, "canary", json!({"stages": [canary, after]})).await;
        assert_succeeded(&done);
        let canary = stage(&done, "Canary Analysis");
        assert_eq!(canary.status, ExecutionStatus::FailedContinue);
        assert_eq!(canary.context["canaryScores"], json!([0.0]));
        assert_eq!(
            canary.context["canaryScoreMessage"],
            json!("Final canary score 0.0 is not above the marginal score threshold.")
        );
        assert_eq!(
            status_of(&done, "runCanaryIntervals"),
            ExecutionStatus::FailedContinue
        );
        assert_eq!(
            status_of(&done, "Run Canary #2"),
            ExecutionStatus::NotStarted
        );
        assert_eq!(status_of(&done, "After"), ExecutionStatus::Succeeded);
        assert_eq!(
            h.metrics.windows("shop-canary").len(),
            1,
            "the analysis stopped early"
        );
        h.stop().await;
    }
);

fn retrospective(extra: Value) -> Value {
    let mut stage = canary_stage("", "10", "", json!({"analysisType": "retrospective"}));
    let config = stage["canaryConfig"].as_object_mut().unwrap();
    config.remove("lifetimeDuration");
    config.remove("beginCanaryAnalysisAfterMins");
    if let Value::Object(extra) = extra {
        config.extend(extra);
    }
    let scope = &mut stage["canaryConfig"]["scopes"][0];
    scope["startTimeIso"] = json!("2024-05-01T12:00:00Z");
    scope["endTimeIso"] = json!("2024-05-01T12:30:00Z");
    scope["step"] = json!(60);
    stage
}

engine_test!(
    a_retrospective_analysis_judges_past_windows_without_waiting,
    |h: stage_kit::Harness| {
        let pipeline =
            json!({"stages": [retrospective(json!({"baselineAnalysisOffsetInMins": "60"}))]});
        let run = h.run("growing", pipeline).await;
        let done = h.finished(&run.id).await;
        assert_succeeded(&done);
        assert_eq!(
            names(&done, "runCanaryIntervals"),
            ["Run Canary #1", "Run Canary #2", "Run Canary #3"]
        );
        let t = |hm: &str| ts(&format!("2024-05-01T{hm}:00Z"));
        assert_eq!(
            h.metrics.windows("shop-canary"),
            [
                (t("12:00"), t("12:10")),
                (t("12:00"), t("12:20")),
                (t("12:00"), t("12:30"))
            ]
        );
        assert_eq!(
            h.metrics.windows("shop-baseline"),
            [
                (t("11:00"), t("11:10")),
                (t("11:00"), t("11:20")),
                (t("11:00"), t("11:30"))
            ],
            "the control window is shifted back by the baseline offset"
        );
        let sliding = json!({"stages": [retrospective(json!({"lookbackMins": "10"}))]});
        let run = h.run("sliding", sliding).await;
        let done = h.finished(&run.id).await;
        assert_succeeded(&done);
        let windows = h.metrics.windows("shop-canary");
        for window in [(t("12:10"), t("12:20")), (t("12:20"), t("12:30"))] {
            assert!(
                windows.contains(&window),
                "sliding window {window:?} in {windows:?}"
            );
        }
        h.stop().await;
    }
);

engine_test!(
    cancelling_stops_the_analysis_between_intervals,
    |h: stage_kit::Harness| {
        let pipeline = json!({"stages": [canary_stage("PT3M", "1", "0", json!({}))]});
        let run = h.run("canary", pipeline).await;
        h.drive_until(&run.id, TICK, "the first judgement", |e| {
            e.stages
                .iter()
                .any(|s| s.name == "Run Canary #1" && s.status == ExecutionStatus::Succeeded)
        })
        .await;
        h.engine
            .cancel(&run.id, "bob", Some("enough".into()))
            .await
            .unwrap();
        let done = h.finished(&run.id).await;
        assert_eq!(done.status, ExecutionStatus::Canceled, "{}", summary(&done));
        // Time goes on well past every interval: nothing else is judged.
        for _ in 0..30 {
            h.clock.advance(Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = h.engine.execution(&run.id).await.unwrap().unwrap();
        for name in ["Run Canary #2", "Run Canary #3"] {
            assert!(
                !stage(&after, name).context.contains_key("canaryScore"),
                "{name} was not judged"
            );
        }
        assert_eq!(h.metrics.windows("shop-canary").len(), 1);
        assert!(h.queue_is_empty().await);
        h.stop().await;
    }
);

engine_test!(
    a_config_named_by_name_is_resolved_to_its_id,
    |h: stage_kit::Harness| {
        let mut canary = canary_stage("PT1M", "", "0", json!({}));
        let config = canary["canaryConfig"].as_object_mut().unwrap();
        config.remove("canaryConfigId");
        config.remove("metricsAccountName");
        config.insert("canaryConfigName".into(), json!(CONFIG_NAME));
        let done = run_to_end(&h, "by-name", json!({"stages": [canary]})).await;
        assert_succeeded(&done);
        let judged = stage(&done, "Run Canary #1");
        assert_eq!(
            judged.context["canaryConfigId"],
            json!(stage_kit::CONFIG_ID)
        );
        assert_eq!(
            judged.outputs["canaryReport"]["metricsAccountName"],
            json!(ACCOUNT),
            "the default account"
        );
        h.stop().await;
    }
);

engine_test!(
    a_config_that_does_not_exist_fails_the_stage_naming_it,
    |h: stage_kit::Harness| {
        let mut canary = canary_stage("PT1M", "", "0", json!({}));
        canary["canaryConfig"]["canaryConfigId"] = json!("nope");
        let done = run_to_end(&h, "missing", json!({"stages": [canary]})).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        assert!(
            error_of(stage(&done, "Run Canary #1")).contains("no canary config with id 'nope'")
        );
        assert!(
            error_of(stage(&done, "Canary Analysis")).contains("no canary config with id 'nope'"),
            "the cause shows at the top"
        );
        h.stop().await;
    }
);

engine_test!(
    deployments_need_the_deployment_stages_and_unknown_accounts_are_refused_at_run,
    |h: stage_kit::Harness| {
        // Without the deployment layer's stage types (a server with no cloud provider)
        // the groups cannot be deployed: the stage fails at once, analysing nothing.
        let canary = canary_stage(
            "PT1M",
            "",
            "0",
            json!({"deployments": {"baseline": {"cluster": "shop-prod"}}}),
        );
        let run = h.run("deployments", json!({"stages": [canary]})).await;
        let done = h.finished(&run.id).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let error = error_of(stage(&done, "Canary Analysis"));
        assert!(
            error.contains("deployCanaryServerGroups") && error.contains("cannot run"),
            "{error}"
        );
        assert_eq!(
            stage(&done, "runCanaryIntervals").status,
            ExecutionStatus::NotStarted
        );
        assert!(h.metrics.queries().is_empty());

        let mut canary = canary_stage("PT1M", "", "0", json!({}));
        canary["canaryConfig"]["metricsAccountName"] = json!("datadog");
        let done = run_to_end(&h, "unknown-account", json!({"stages": [canary]})).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let error = error_of(stage(&done, "Run Canary #1"));
        assert!(
            error.contains("\"datadog\" is not configured") && error.contains(ACCOUNT),
            "{error}"
        );
        h.stop().await;
    }
);

engine_test!(
    configs_and_scopes_of_other_applications_need_read_there,
    |h: stage_kit::Harness| {
        for role in ["dev", "ops"] {
            h.store.create_role(role, "").await.unwrap();
        }
        h.store
            .create_user("alice", false, &["dev".into()])
            .await
            .unwrap();
        let app = |name: &str, readers: &str| {
            json!({"name": name, "email": "t@example.com",
               "permissions": {"READ": [readers], "WRITE": [readers], "EXECUTE": [readers]}})
        };
        h.store
            .create_application("pricing", &app("pricing", "dev"), "test")
            .await
            .unwrap();
        h.store
            .create_application("vault", &app("vault", "ops"), "test")
            .await
            .unwrap();
        let config = stage_kit::canary_config();
        h.configs.insert(
            "cfg-pricing",
            "pricing-canary",
            &["pricing"],
            config.clone(),
        );
        h.configs
            .insert("cfg-vault", "vault-canary", &["vault"], config);

        let using = |id: &str| {
            let mut canary = canary_stage("PT1M", "", "0", json!({}));
            canary["canaryConfig"]["canaryConfigId"] = json!(id);
            json!({"stages": [canary]})
        };
        // READ on the config's application is enough.
        let done = run_to_end(&h, "readable", using("cfg-pricing")).await;
        assert_succeeded(&done);
        // Without it, refused before any metric is read.
        let before = h.metrics.queries().len();
        let done = run_to_end(&h, "unreadable", using("cfg-vault")).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let error = error_of(stage(&done, "Run Canary #1"));
        assert!(
            error.contains("canary config 'vault-canary'") && error.contains("READ"),
            "{error}"
        );
        assert_eq!(h.metrics.queries().len(), before);
        // A scope that is a server group of an application alice may not read.
        let mut canary = canary_stage("PT1M", "", "0", json!({}));
        canary["canaryConfig"]["scopes"][0]["experimentScope"] = json!("vault-prod-v003");
        let done = run_to_end(&h, "foreign-scope", json!({"stages": [canary]})).await;
        assert_eq!(done.status, ExecutionStatus::Terminal);
        let error = error_of(stage(&done, "Run Canary #1"));
        assert!(
            error.contains("server group 'vault-prod-v003'") && error.contains("READ"),
            "{error}"
        );
        assert_eq!(h.metrics.queries().len(), before);
        h.stop().await;
    }
);
