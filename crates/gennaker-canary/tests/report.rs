//! The canary report assembled from a real execution: the `kayentaCanary` stage run
//! by the engine (SQLite, driven clock) with the kit's deterministic source, its
//! execution taken as JSON, then the report and its HTML. Writes one rendered page
//! to `target/canary-report-example.html` for people to look at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stage_kit;

use std::time::Duration;

use gennaker_canary::report::{ReportError, Verdict, assemble, render_html, render_html_body};
use gennaker_canary::{CanaryReport, Classification};
use gennaker_engine::testing::{TestBackend, stage, summary};
use gennaker_engine::{Execution, ExecutionStatus};
use serde_json::json;
use stage_kit::{ACCOUNT, CONFIG_ID, CONFIG_NAME, canary_stage};

/// A canary that passes its first interval and goes bad from its second: 3× the
/// baseline once a window has 25 points (interval 2 of 5 s steps), so the analysis
/// stops there. Returns the execution as it reads back from JSON.
async fn failed_at_second_interval() -> Execution {
    let h = stage_kit::Harness::new(TestBackend::Sqlite).await;
    h.metrics.set_ratio("shop-canary", 3.0);
    h.metrics.ratio_from_points(25);
    let pipeline = json!({"stages": [
        {"refId": "0", "type": "wait", "name": "Before", "waitTime": 0},
        canary_stage("PT3M", "1", "0", json!({"requisiteStageRefIds": ["0"]}))
    ]});
    let run = h.run("canary", pipeline).await;
    let done = h
        .drive_until(&run.id, Duration::from_secs(2), "the end", |e| {
            e.status.is_complete()
        })
        .await;
    assert_eq!(done.status, ExecutionStatus::Terminal, "{}", summary(&done));
    h.stop().await;
    let text = serde_json::to_string(&done).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn example_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/canary-report-example.html")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_real_run_has_scores_verdicts_numbers_series_and_queries() {
    let execution = failed_at_second_interval().await;
    let report = assemble(&execution, Some("Canary Analysis")).unwrap();
    let canary = stage(&execution, "Canary Analysis");
    assert_eq!(report.stage_id, canary.id);
    assert_eq!(report.status, ExecutionStatus::Terminal);
    assert_eq!(report.canary_config_id.as_deref(), Some(CONFIG_ID));
    assert_eq!(report.canary_config_name.as_deref(), Some(CONFIG_NAME));
    assert_eq!(report.metrics_account_name.as_deref(), Some(ACCOUNT));
    assert_eq!(
        (report.thresholds.pass, report.thresholds.marginal),
        (Some(90.0), Some(75.0))
    );
    // Three planned judgements: a pass, the failure that stopped the analysis, one
    // never run.
    let numbers: Vec<u64> = report.intervals.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let [first, second, third] = &report.intervals[..] else {
        unreachable!()
    };
    assert_eq!(
        (first.score, first.verdict),
        (Some(100.0), Some(Verdict::Pass))
    );
    assert_eq!(
        (second.score, second.verdict),
        (Some(0.0), Some(Verdict::Fail))
    );
    assert_eq!(second.status, ExecutionStatus::Terminal);
    assert_eq!(third.status, ExecutionStatus::NotStarted);
    assert!(third.score.is_none() && third.metrics.is_empty());
    assert_eq!(report.overall.scores, [100.0, 0.0]);
    assert_eq!(report.overall.score, Some(0.0));
    assert_eq!(report.overall.verdict, Some(Verdict::Fail));
    assert!(
        report
            .overall
            .message
            .as_deref()
            .is_some_and(|m| !m.is_empty()),
        "{:?}",
        report.overall.message
    );
    // The windows are the ones the judgement asked for.
    let run2 = stage(&execution, "Run Canary #2");
    let scope = &run2.context["scopes"]["default"];
    let window = second.window.unwrap();
    assert_eq!(
        json!(window.experiment_end.to_string()),
        scope["experimentScope"]["end"]
    );
    assert_eq!(
        json!(window.control_start.to_string()),
        scope["controlScope"]["start"]
    );
    assert_eq!(window.step_seconds, 5);
    assert_eq!(
        second.warnings,
        [
            "One of the metrics returned fewer than 50 data points, which can reduce confidence in the final canary score."
        ]
    );
    assert_eq!(second.group_scores.len(), 2);
    // Per metric: the classification with the numbers behind it, both series, queries.
    let names: Vec<&str> = second.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["errors", "latency"]);
    for m in &second.metrics {
        assert_eq!(m.classification, Classification::High, "{}", m.name);
        assert_eq!(m.deviation_percent, Some(200.0));
        let interval = m.interval.unwrap();
        let tolerance = m.tolerance.unwrap();
        assert!((tolerance - 0.25 * interval.estimate.abs()).abs() < 1e-12);
        assert!(
            interval.lower > tolerance,
            "High: the interval clears the tolerance"
        );
        assert!(
            m.why.contains("lies entirely above the tolerance"),
            "{}",
            m.why
        );
        assert!(m.why.contains("+200.0%"), "{}", m.why);
        assert_eq!(m.control.stats.count, 25);
        assert_eq!(m.control.values.len(), 25);
        assert_eq!(m.experiment.values.len(), 25);
        assert!((m.experiment.values[0] / m.control.values[0] - 3.0).abs() < 1e-12);
        assert_eq!(
            m.control.query.as_deref(),
            Some(format!("{}{{scope=\"shop-baseline\"}}", m.name).as_str())
        );
        assert_eq!(
            m.experiment.query.as_deref(),
            Some(format!("{}{{scope=\"shop-canary\"}}", m.name).as_str())
        );
        assert_eq!(m.control.step_seconds, 5);
    }
    let passing = &first.metrics[0];
    assert_eq!(passing.classification, Classification::Pass);
    assert_eq!(passing.deviation_percent, Some(0.0));
    assert!(passing.why.contains("identical"), "{}", passing.why);
    // The document reads back as it was written (NaN-safe numbers included).
    let text = serde_json::to_string(&report).unwrap();
    let back: CanaryReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);

    // A judgement's own stage narrows the report to it; the overall result stays.
    let only = assemble(&execution, Some(&run2.id)).unwrap();
    assert_eq!(only.intervals.len(), 1);
    assert_eq!(only.intervals[0].number, 2);
    assert_eq!(only.overall.scores, [100.0, 0.0]);
    // Without a stage: the first kayentaCanary stage.
    assert_eq!(assemble(&execution, None).unwrap(), report);
    // Anything else is refused with a message that says what to name.
    let wait = assemble(&execution, Some("Before")).unwrap_err();
    assert!(matches!(wait, ReportError::NotCanary { ref stage_type, .. } if stage_type == "wait"));
    assert!(wait.to_string().contains("name a kayentaCanary stage"));
    let missing = assemble(&execution, Some("nope")).unwrap_err();
    assert!(
        matches!(missing, ReportError::NoSuchStage { .. }),
        "{missing}"
    );

    // The page: one time series and one distribution per metric, no script.
    let html = render_html(&report);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("prefers-color-scheme:dark"));
    assert!(html.contains("default-src 'none'"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("http://") || !html.contains("src=\"http"));
    assert!(!html.contains(" src="), "no external resources");
    let charts = html.matches("<svg").count();
    assert_eq!(
        charts,
        2 * (2 + 2),
        "two charts per metric of the two judged intervals"
    );
    for title in [
        "errors: baseline and canary over time",
        "errors: distribution of baseline and canary samples",
        "latency: baseline and canary over time",
    ] {
        assert!(html.contains(title), "{title}");
    }
    assert!(html.contains("+200.0%"));
    assert!(html.contains("errors{scope=&quot;shop-canary&quot;}"));
    // The fragment is the page's body, for a web UI.
    assert!(html.contains(&render_html_body(&report)));
    std::fs::write(example_path(), &html).unwrap();
}

/// A report with a hostile metric name, tags, query and message.
fn hostile(mut report: CanaryReport) -> CanaryReport {
    report.stage_name = "</title><script>alert('stage')</script>".into();
    report.overall.message = Some("</style><script>alert(1)</script>".into());
    let metric = &mut report.intervals[1].metrics[0];
    metric.name = "<script>alert(\"metric\")</script>".into();
    metric
        .tags
        .insert("zone\"><img src=x onerror=alert(2)>".into(), "<b>".into());
    metric.control.query = Some("rate(x{a=\"<script>\"}[1m]) & 'y'".into());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_data_is_escaped_and_huge_series_are_drawn_within_bounds() {
    let execution = failed_at_second_interval().await;
    let report = assemble(&execution, None).unwrap();

    let html = render_html(&hostile(report.clone()));
    assert!(!html.contains("<script"), "no script element from data");
    assert!(!html.contains("<img"), "no element from a tag name");
    assert!(html.contains("&lt;script&gt;alert(&quot;metric&quot;)&lt;/script&gt;"));
    assert!(html.contains("zone&quot;&gt;&lt;img src=x onerror=alert(2)&gt;=&lt;b&gt;"));
    assert!(html.contains("&lt;/style&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("rate(x{a=&quot;&lt;script&gt;&quot;}[1m]) &amp; &#39;y&#39;"));
    assert!(html.contains("<title>Canary report: canary / &lt;/title&gt;"));

    // 100,000 points a side: the drawing is bounded, the numbers are untouched.
    let mut huge = report.clone();
    let metric = &mut huge.intervals[1].metrics[0];
    metric.control.values = (0..100_000).map(|i| 10.0 + (i % 13) as f64).collect();
    metric.experiment.values = (0..100_000).map(|i| 30.0 + (i % 17) as f64).collect();
    metric.experiment.values[4242] = f64::NAN;
    let stats = (metric.control.stats, metric.experiment.stats);
    let small = render_html(&report).len();
    let html = render_html(&huge);
    assert!(
        html.len() < small + 40_000,
        "{} bytes for 200,000 points (the small report: {small})",
        html.len()
    );
    let metric = &huge.intervals[1].metrics[0];
    assert_eq!((metric.control.stats, metric.experiment.stats), stats);
    assert!(
        html.contains("100000 values from"),
        "the counts are the real ones"
    );

    // Hundreds of metrics: tables for all, charts for a bounded number.
    let mut many = report;
    let template = many.intervals[1].metrics[0].clone();
    many.intervals[1].metrics = (0..500)
        .map(|i| {
            let mut m = template.clone();
            m.name = format!("metric-{i}");
            m
        })
        .collect();
    let html = render_html(&many);
    assert!(html.matches("<svg").count() <= 120, "charts are capped");
    assert!(html.contains("metric-499"), "every metric is in the table");
    assert!(html.contains("Charts of further metrics are left out"));
}
