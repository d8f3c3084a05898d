//! `gennaker demo`: a real release on the embedded defaults, in one command.
//!
//! It starts a server on a temporary data directory, creates an application, a load
//! balancer, a canary config and two pipelines, and deploys the demo app (this very
//! binary, run as `gennaker demo-app`) six times while steady traffic flows through the
//! load balancer: v1 plainly, v2 red/black, v3 rolling red/black, v4 — which never
//! passes its health checks — red/black with `rollback.onFailure`, so v3 keeps serving;
//! then two canary releases judged by the built-in load balancer's metrics: v5, which
//! answers 20% of its requests with 500, fails its analysis and is rolled back while v3
//! keeps serving, and v6 passes and is promoted. Then it prints what happened, with the
//! request counts and each analysis interval's score.

mod api;
mod load;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::api::DemoApi;
use self::load::{CanaryShare, Load, LoadReport};

/// The demo's application.
const APP: &str = "demo";
/// The demo's load balancer.
const LOAD_BALANCER: &str = "demo-frontend";
/// The release pipeline.
const PIPELINE: &str = "release";
/// The canary release pipeline.
const CANARY_PIPELINE: &str = "canary-release";
/// The canary config the canary releases are judged with.
const CANARY_CONFIG: &str = "demo-canary";
/// The cluster of the canary releases' canary groups (the strategy's `-canary` suffix).
const CANARY_CLUSTER: &str = "demo-web-canary";
/// The score the canary analysis' last interval must reach for the canary to pass.
const PASS_SCORE: f64 = 70.0;
/// At or below this score an analysis interval fails the canary at once.
const MARGINAL_SCORE: f64 = 50.0;
/// The most requests the traffic sends, whatever the rate.
const MAX_REQUESTS: u64 = 200_000;
/// The file in the data directory where the server writes a generated admin token.
const TOKEN_FILE: &str = "admin-token";
/// The longest one release may take before the demo gives up on it.
const RELEASE_LIMIT: Duration = Duration::from_secs(180);

/// `gennaker demo` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Leave the server, the load balancer and the instances running (until Ctrl-C).
    #[arg(long)]
    keep: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
    /// Requests per second sent through the load balancer during the releases (at
    /// least 50, so the canary analysis sees enough of the canary's requests).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(50..=2000))]
    rate: u32,
}

/// One release of the demo.
#[derive(Debug, Clone, Serialize)]
struct Release {
    version: String,
    strategy: String,
    /// The execution's final status (`SUCCEEDED`, or `TERMINAL` for v4 and v5).
    status: String,
    duration_ms: u64,
    /// What this release is meant to show.
    expected: String,
    execution_id: String,
    /// A canary release's analysis scores, one per interval judged, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    canary_scores: Option<Vec<f64>>,
    /// A failed release's `rollbackResult`, as its deploy stage recorded it (the
    /// server groups destroyed, and the one(s) serving again).
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<Value>,
}

/// What `--summary-json` writes.
#[derive(Debug, Serialize)]
struct Summary {
    api_url: String,
    load_balancer_url: String,
    data_dir: String,
    requests_total: u64,
    /// Failed requests, except those the bad canary's own instances answered.
    requests_failed: u64,
    /// Failed requests the bad canary's instances answered (its share of the traffic).
    canary_requests_failed: u64,
    served_by_version: std::collections::BTreeMap<String, u64>,
    failure_samples: Vec<String>,
    releases: Vec<Release>,
    serving_version_at_end: String,
    total_duration_ms: u64,
}

/// How a release is made.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The release pipeline with this strategy (`""`: none); an unhealthy version
    /// never passes its health checks.
    Deploy {
        strategy: &'static str,
        healthy: bool,
    },
    /// The canary release pipeline; the new version answers this fraction of its
    /// requests with 500.
    Canary { error_rate: &'static str },
}

/// One release the demo makes.
#[derive(Debug, Clone, Copy)]
struct Planned {
    version: &'static str,
    kind: Kind,
    /// Whether the execution is meant to succeed (else: end TERMINAL, rolled back).
    succeeds: bool,
    /// What it shows.
    expected: &'static str,
}

impl Planned {
    fn strategy(&self) -> &'static str {
        match self.kind {
            Kind::Deploy { strategy: "", .. } => "none",
            Kind::Deploy { strategy, .. } => strategy,
            Kind::Canary { .. } => "canary",
        }
    }
}

/// The canary release that fails its analysis; its instances' failed answers are the
/// only failures the demo expects.
const BAD_CANARY: &str = "v5";
/// The version serving once every release is done.
const LAST_GOOD: &str = "v6";

/// The six releases.
const RELEASES: [Planned; 6] = [
    Planned {
        version: "v1",
        kind: Kind::Deploy {
            strategy: "",
            healthy: true,
        },
        succeeds: true,
        expected: "first deploy: 3 instances behind the load balancer",
    },
    Planned {
        version: "v2",
        kind: Kind::Deploy {
            strategy: "redblack",
            healthy: true,
        },
        succeeds: true,
        expected: "red/black: v2 takes the traffic once healthy, v1 is disabled",
    },
    Planned {
        version: "v3",
        kind: Kind::Deploy {
            strategy: "rollingredblack",
            healthy: true,
        },
        succeeds: true,
        expected: "rolling red/black: traffic moves to v3 in steps",
    },
    Planned {
        version: "v4",
        kind: Kind::Deploy {
            strategy: "redblack",
            healthy: false,
        },
        succeeds: false,
        expected: "fails its health checks: rolled back, v3 keeps serving",
    },
    Planned {
        version: BAD_CANARY,
        kind: Kind::Canary { error_rate: "0.2" },
        succeeds: false,
        expected: "canary with 20% errors: fails its analysis, rolled back, v3 keeps serving",
    },
    Planned {
        version: LAST_GOOD,
        kind: Kind::Canary { error_rate: "0" },
        succeeds: true,
        expected: "healthy canary: passes its analysis, promoted red/black",
    },
];

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = tempfile::Builder::new()
        .prefix("gennaker-demo-")
        .tempdir()
        .context("cannot create a temporary data directory")?;
    // No fixed token: the server generates one and writes it to `<data-dir>/admin-token`
    // (mode 0600), as on any first start, so `--keep` can point a user at that file.
    let config = gennaker_server::ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        data_dir.path().to_path_buf(),
        format!("sqlite://{}/gennaker.db", data_dir.path().display()),
    );
    // The demo deploys this very binary: its directory is the one artifact root.
    let exe = std::env::current_exe().context("cannot find this binary to run as the demo app")?;
    let local = gennaker_local::HostSettings {
        artifact_roots: exe
            .parent()
            .map(std::path::Path::to_path_buf)
            .into_iter()
            .collect(),
        ..gennaker_local::HostSettings::default()
    };
    let server = gennaker::wiring::start_server(
        config,
        &gennaker::wiring::WiringSettings {
            local,
            ..Default::default()
        },
    )
    .await
    .context("cannot start the embedded server")?;
    let token_file = data_dir.path().join(TOKEN_FILE);
    let token = match std::fs::read_to_string(&token_file) {
        Ok(token) => token.trim().to_owned(),
        Err(err) => {
            stop_server(server).await?;
            return Err(err).with_context(|| {
                format!("cannot read the admin token from {}", token_file.display())
            });
        }
    };
    let api = DemoApi::new(format!("http://{}", server.address()), token);
    println!(
        "Gennaker demo: server on {} (data in {})",
        api.base(),
        data_dir.path().display()
    );
    println!(
        "Web UI: {}/ (sign in with the admin token in {})",
        api.base(),
        token_file.display()
    );

    // One listener for the whole run, so a Ctrl-C is never missed between the releases
    // and the `--keep` wait.
    let interrupted = CancellationToken::new();
    let listener = tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.cancel();
            }
        }
    });
    // Ctrl-C ends the releases early, but never skips the clean-up below.
    let outcome = tokio::select! {
        outcome = release_under_load(&api, &args) => outcome,
        () = interrupted.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    let outcome = match outcome {
        Ok(mut summary) => {
            summary.data_dir = data_dir.path().display().to_string();
            summary.total_duration_ms = millis(started.elapsed());
            print_summary(&summary);
            // A summary that cannot be written fails the demo, but after the clean-up.
            write_summary(&summary, args.summary_json.as_deref())
                .and_then(|()| check(&summary))
                .map(|()| summary.releases)
        }
        Err(err) => Err(err),
    };
    if args.keep
        && let Ok(releases) = &outcome
    {
        print_kept(api.base(), &token_file, releases);
        interrupted.cancelled().await;
    }
    listener.abort();
    println!("Cleaning up: destroying the demo's server groups and stopping the server…");
    let cleaned = api.destroy_everything(APP).await;
    stop_server(server).await?;
    cleaned?;
    outcome.map(|_| ())
}

async fn stop_server(server: gennaker_server::RunningServer) -> anyhow::Result<()> {
    server
        .stop()
        .await
        .context("the embedded server did not stop cleanly")
}

fn write_summary(summary: &Summary, path: Option<&Path>) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(summary)?;
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the summary to {}", path.display()))
}

/// What a user pastes into another shell to use the kept server.
fn print_kept(base: &str, token_file: &Path, releases: &[Release]) {
    println!(
        "\nLeft running (--keep) until Ctrl-C, which stops it all and removes the data directory. In another shell:"
    );
    println!(
        "  export GENNAKER_URL={base} GENNAKER_TOKEN=$(cat {})",
        token_file.display()
    );
    println!("  gennaker cluster list {APP}");
    for release in releases.iter().filter(|r| r.canary_scores.is_some()) {
        println!(
            "  gennaker canary report {}   # {}'s analysis, metric by metric",
            release.execution_id, release.version
        );
    }
    println!(
        "Or open the web UI at {base}/applications/{APP}/executions and sign in with the token printed by: cat {}",
        token_file.display()
    );
}

/// The demo's checks: every release ended as it should and no request failed outside
/// the bad canary's own share.
fn check(summary: &Summary) -> anyhow::Result<()> {
    if summary.requests_failed > 0 {
        bail!(
            "{} of {} requests failed during the releases (besides the {} the bad canary answered)",
            summary.requests_failed,
            summary.requests_total,
            summary.canary_requests_failed
        );
    }
    if summary.serving_version_at_end != LAST_GOOD {
        bail!(
            "after the promoted canary, '{}' serves instead of {LAST_GOOD}",
            summary.serving_version_at_end
        );
    }
    Ok(())
}

async fn release_under_load(api: &DemoApi, args: &DemoArgs) -> anyhow::Result<Summary> {
    api.create_application(APP).await?;
    println!("Created application '{APP}'.");
    let balancer = api.create_load_balancer(APP, LOAD_BALANCER).await?;
    let lb_url = format!("http://{balancer}/");
    println!("Load balancer '{LOAD_BALANCER}' listens on {lb_url}");
    let exe = std::env::current_exe().context("cannot find this binary to run as the demo app")?;
    api.save_pipeline(&release_pipeline(&exe)).await?;
    println!("Saved pipeline '{PIPELINE}' (deploy with the strategy given as a parameter).");
    api.create_canary_config(&canary_config()).await?;
    println!(
        "Saved canary config '{CANARY_CONFIG}' (error ratio and p90 latency from the load balancer)."
    );
    api.save_pipeline(&canary_pipeline(&exe)).await?;
    println!("Saved pipeline '{CANARY_PIPELINE}' (canary release judged by the canary config).\n");

    let mut load: Option<Load> = None;
    let mut releases = Vec::new();
    for planned in RELEASES {
        let (version, strategy) = (planned.version, planned.strategy());
        println!(
            "▶ Releasing {version} (strategy {strategy}): {}",
            planned.expected
        );
        let began = Instant::now();
        let (pipeline, parameters) = match planned.kind {
            Kind::Deploy { strategy, healthy } => (
                PIPELINE,
                json!({
                    "version": version,
                    "strategy": strategy,
                    "healthy": if healthy { "true" } else { "false" },
                }),
            ),
            Kind::Canary { error_rate } => (
                CANARY_PIPELINE,
                json!({"version": version, "errorRate": error_rate}),
            ),
        };
        let id = api.run_pipeline(APP, pipeline, parameters).await?;
        let status = api
            .follow(
                &id,
                RELEASE_LIMIT,
                |line| println!("    {line}"),
                || load.as_ref().map(Load::counts),
            )
            .await?;
        let duration_ms = millis(began.elapsed());
        println!(
            "  {version}: {status} in {:.1}s",
            duration_ms as f64 / 1000.0
        );
        let wanted = if planned.succeeds {
            "SUCCEEDED"
        } else {
            "TERMINAL"
        };
        if status != wanted {
            if let Some(load) = load.take() {
                load.stop().await;
            }
            bail!("release {version} ended {status}, expected {wanted}");
        }
        // The failed release's rollback runs right after it fails: the next release
        // starts once it is done and the server groups it destroys are gone (two are
        // left: the serving one and the one red/black disabled before it).
        let rollback = if planned.succeeds {
            None
        } else {
            let result = api.rollback_result(&id, RELEASE_LIMIT).await?;
            api.wait_for_server_groups(APP, 2, RELEASE_LIMIT).await?;
            println!("  {}", describe_rollback(&result));
            Some(result)
        };
        println!();
        let canary_scores = match planned.kind {
            Kind::Canary { .. } => Some(interval_scores(&api.execution(&id).await?)),
            Kind::Deploy { .. } => None,
        };
        releases.push(Release {
            version: version.to_owned(),
            strategy: strategy.to_owned(),
            status: status.clone(),
            duration_ms,
            expected: planned.expected.to_owned(),
            execution_id: id,
            canary_scores,
            rollback,
        });
        if load.is_none() {
            println!(
                "Traffic: {} requests/s through the load balancer from now on.\n",
                args.rate
            );
            let share = CanaryShare {
                version: BAD_CANARY.to_owned(),
                instance_prefix: format!("{CANARY_CLUSTER}-v"),
            };
            load = Some(Load::start(lb_url.clone(), args.rate, MAX_REQUESTS, share));
        }
    }
    // Two groups stay (the promoted one and the one red/black disabled); let the
    // traffic see the result of the last release for a moment.
    api.wait_for_server_groups(APP, 2, RELEASE_LIMIT).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let serving = api.serving_version(&lb_url).await?;
    let report = match load {
        Some(load) => load.stop().await,
        None => LoadReport::default(),
    };
    Ok(Summary {
        api_url: api.base().to_owned(),
        load_balancer_url: lb_url,
        data_dir: String::new(),
        requests_total: report.requests_total,
        requests_failed: report.requests_failed,
        canary_requests_failed: report.canary_requests_failed,
        served_by_version: report.served_by_version,
        failure_samples: report.failure_samples,
        releases,
        serving_version_at_end: serving,
        total_duration_ms: 0,
    })
}

/// The scores of a canary release's analysis intervals, in order: each `kayentaCanary`
/// stage's `canaryScores`, or, for one stopped early (a score at or below marginal
/// ends the analysis before it aggregates), the `canaryScore` of each `runCanary`
/// stage it planned.
fn interval_scores(execution: &Value) -> Vec<f64> {
    let stages: Vec<&Value> = execution["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let parent = |stage: &Value| stage["parentStageId"].as_str().map(str::to_owned);
    let below = |stage: &Value, ancestor: &str| {
        let mut current = parent(stage);
        // Bounded by the number of stages: a parent cycle cannot loop forever.
        for _ in 0..stages.len() {
            let Some(id) = current else {
                return false;
            };
            if id == ancestor {
                return true;
            }
            current = stages
                .iter()
                .find(|s| s["id"].as_str() == Some(id.as_str()))
                .and_then(|s| parent(s));
        }
        false
    };
    let mut scores = Vec::new();
    for analysis in stages.iter().filter(|s| s["type"] == "kayentaCanary") {
        let aggregated = ["outputs", "context"]
            .iter()
            .find_map(|key| analysis[*key]["canaryScores"].as_array());
        match aggregated {
            Some(list) => scores.extend(list.iter().filter_map(Value::as_f64)),
            None => {
                let id = analysis["id"].as_str().unwrap_or_default();
                scores.extend(
                    stages
                        .iter()
                        .filter(|s| s["type"] == "runCanary" && below(s, id))
                        .filter_map(|s| s["context"]["canaryScore"].as_f64()),
                );
            }
        }
    }
    scores
}

/// The release pipeline: one deploy stage whose version, strategy and health come from
/// parameters, so the same pipeline releases every version.
fn release_pipeline(exe: &std::path::Path) -> Value {
    json!({
        "application": APP,
        "name": PIPELINE,
        "parameterConfig": [
            {"name": "version", "required": true, "description": "The version string the app reports"},
            {"name": "strategy", "default": "redblack", "description": "\"\", highlander, redblack or rollingredblack"},
            {"name": "healthy", "default": "true", "options": [{"value": "true"}, {"value": "false"}]}
        ],
        "stages": [{
            "refId": "1",
            "type": "deploy",
            "name": "Deploy",
            "clusters": [{
                "application": APP,
                "stack": "web",
                "account": "local",
                "cloudProvider": "local",
                "capacity": {"min": 3, "max": 3, "desired": 3},
                "loadBalancers": [LOAD_BALANCER],
                "strategy": "${parameters.strategy}",
                "targetPercentages": [34, 67, 100],
                "maxRemainingAsgs": 2,
                "scaleDown": true,
                "rollback": {"onFailure": true},
                "waitForUpInstancesTimeoutMs": 15000,
                "artifact": {"path": exe.display().to_string()},
                "args": ["demo-app", "--version", "${parameters.version}"],
                "env": {"DEMO_UNHEALTHY": "${parameters.healthy == 'false' ? 'true' : 'false'}"},
                "healthCheck": {"path": "/health"},
                "gracePeriodSeconds": 5
            }]
        }]
    })
}

/// The canary config: the error ratio (critical: more errors fail the canary at once)
/// and the p90 latency (flagged only when at least 1.5 times the baseline's) of each
/// side, as the built-in load balancer measures them.
fn canary_config() -> Value {
    json!({
        "name": CANARY_CONFIG,
        "applications": [APP],
        "description": "The demo's canary analysis: errors and latency from the built-in load balancer",
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [
            {"name": "error ratio", "query": {"type": "builtin", "metricName": "error_ratio"},
             "groups": ["errors"], "scopeName": "default",
             "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}},
            {"name": "p90 latency", "query": {"type": "builtin", "metricName": "latency_p90"},
             "groups": ["latency"], "scopeName": "default",
             "analysisConfigurations": {"canary": {"direction": "increase",
                                                   "effectSize": {"allowedIncrease": 1.5}}}}
        ],
        "classifier": {"groupWeights": {"errors": 75, "latency": 25}}
    })
}

/// The canary release pipeline: one deploy stage with the `canary` strategy. One
/// baseline (what production runs) and one canary instance get 20% of the traffic
/// (10% each), then two 15-second intervals are judged on 2-second points (enough
/// requests in each for a 20% error rate to show at 50 requests/s); a score at or below
/// marginal rolls the release back, passing both promotes it red/black.
fn canary_pipeline(exe: &std::path::Path) -> Value {
    json!({
        "application": APP,
        "name": CANARY_PIPELINE,
        "parameterConfig": [
            {"name": "version", "required": true, "description": "The version string the app reports"},
            {"name": "errorRate", "default": "0", "description": "Fraction of requests the new version answers with 500"}
        ],
        "stages": [{
            "refId": "1",
            "type": "deploy",
            "name": "Canary release",
            "clusters": [{
                "application": APP,
                "stack": "web",
                "account": "local",
                "cloudProvider": "local",
                "capacity": {"min": 3, "max": 3, "desired": 3},
                "loadBalancers": [LOAD_BALANCER],
                "strategy": "canary",
                "canary": {
                    "analysis": {
                        "canaryConfigName": CANARY_CONFIG,
                        "metricsAccountName": gennaker_canary::settings::BUILTIN_ACCOUNT,
                        "scoreThresholds": {"pass": PASS_SCORE.to_string(), "marginal": MARGINAL_SCORE.to_string()},
                        "lifetimeDuration": "PT30S",
                        "canaryAnalysisIntervalMins": "0.25",
                        "scopes": [{"scopeName": "default", "step": 2}]
                    },
                    "capacity": {"min": 1, "max": 1, "desired": 1},
                    "steps": [{"setWeight": 20}, {"analysis": {}}]
                },
                "maxRemainingAsgs": 2,
                "scaleDown": true,
                "waitForUpInstancesTimeoutMs": 15000,
                "artifact": {"path": exe.display().to_string()},
                "args": ["demo-app", "--version", "${parameters.version}",
                         "--error-rate", "${parameters.errorRate}"],
                "healthCheck": {"path": "/health"},
                "gracePeriodSeconds": 5
            }]
        }]
    })
}

fn print_summary(summary: &Summary) {
    println!("──────────────── Summary ────────────────");
    println!("API:            {}", summary.api_url);
    println!("Load balancer:  {}", summary.load_balancer_url);
    for release in &summary.releases {
        println!(
            "  {:<3} {:<16} {:<10} {:>6.1}s  {}",
            release.version,
            release.strategy,
            release.status,
            release.duration_ms as f64 / 1000.0,
            release.expected
        );
        if let Some(scores) = &release.canary_scores {
            println!("        {}", describe_scores(scores));
        }
    }
    println!(
        "Requests:       {} sent, {} failed ({} more failed at the bad canary {BAD_CANARY}, its own share)",
        summary.requests_total, summary.requests_failed, summary.canary_requests_failed
    );
    let served: Vec<String> = summary
        .served_by_version
        .iter()
        .map(|(version, count)| format!("{version}: {count}"))
        .collect();
    println!("Served by:      {}", served.join(", "));
    for sample in &summary.failure_samples {
        println!("  failure: {sample}");
    }
    println!("Serving now:    {}", summary.serving_version_at_end);
    println!(
        "Total time:     {:.1}s",
        summary.total_duration_ms as f64 / 1000.0
    );
}

/// What a rollback did: `rolled back: destroyed X, Y; serving again: Z`.
fn describe_rollback(result: &Value) -> String {
    let names = |value: &Value| -> Vec<String> {
        match value {
            Value::String(name) => vec![name.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let destroyed = names(&result["destroyedServerGroups"]);
    let mut serving = names(&result["trafficRestoredTo"]);
    serving.extend(names(&result["restoredServerGroup"]));
    let or_none = |list: Vec<String>| {
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    format!(
        "rolled back: destroyed {}; serving again: {}",
        or_none(destroyed),
        or_none(serving)
    )
}

/// Each interval's score against the thresholds, e.g. `interval 1: 0 (≤ marginal 50)`.
fn describe_scores(scores: &[f64]) -> String {
    if scores.is_empty() {
        return "no analysis interval was judged".to_owned();
    }
    let intervals: Vec<String> = scores
        .iter()
        .enumerate()
        .map(|(i, score)| {
            let verdict = if *score <= MARGINAL_SCORE {
                format!("≤ marginal {MARGINAL_SCORE}")
            } else if *score >= PASS_SCORE {
                format!("≥ pass {PASS_SCORE}")
            } else {
                "marginal".to_owned()
            };
            format!("interval {}: {score:.0} ({verdict})", i + 1)
        })
        .collect();
    format!("canary scores: {}", intervals.join(", "))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_scores_come_from_the_aggregate_or_else_from_each_judgement() {
        let promoted = json!({"stages": [
            {"id": "a", "type": "kayentaCanary", "outputs": {"canaryScores": [100.0, 75.0]},
             "context": {"canaryScores": [100.0, 75.0]}},
            {"id": "b", "type": "runCanaryIntervals", "parentStageId": "a", "context": {}},
            {"id": "c", "type": "runCanary", "parentStageId": "b", "context": {"canaryScore": 100.0}},
            {"id": "d", "type": "runCanary", "parentStageId": "b", "context": {"canaryScore": 75.0}}
        ]});
        assert_eq!(interval_scores(&promoted), [100.0, 75.0]);
        // Stopped at the first interval: no aggregate, the judgements under it count
        // (and not those of another analysis).
        let stopped = json!({"stages": [
            {"id": "a", "type": "kayentaCanary", "context": {}},
            {"id": "b", "type": "runCanaryIntervals", "parentStageId": "a", "context": {}},
            {"id": "c", "type": "runCanary", "parentStageId": "b", "context": {"canaryScore": 0.0}},
            {"id": "d", "type": "runCanary", "parentStageId": "b", "context": {}},
            {"id": "e", "type": "runCanary", "parentStageId": "x", "context": {"canaryScore": 90.0}}
        ]});
        assert_eq!(interval_scores(&stopped), [0.0]);
        assert!(interval_scores(&json!({"stages": []})).is_empty());
    }

    #[test]
    fn rollbacks_are_described_in_both_shapes() {
        let canary = json!({"destroyedServerGroups": ["demo-web-baseline-v000", "demo-web-canary-v000"],
                            "trafficRestoredTo": ["demo-web-v002"], "canaryScores": [[0.0]]});
        assert_eq!(
            describe_rollback(&canary),
            "rolled back: destroyed demo-web-baseline-v000, demo-web-canary-v000; serving again: demo-web-v002"
        );
        let red_black = json!({"destroyedServerGroups": ["demo-web-v003"], "restoredServerGroup": "demo-web-v002"});
        assert_eq!(
            describe_rollback(&red_black),
            "rolled back: destroyed demo-web-v003; serving again: demo-web-v002"
        );
        assert_eq!(
            describe_rollback(&json!({})),
            "rolled back: destroyed none; serving again: none"
        );
    }

    #[test]
    fn scores_are_described_against_the_thresholds() {
        assert_eq!(
            describe_scores(&[0.0]),
            "canary scores: interval 1: 0 (≤ marginal 50)"
        );
        assert_eq!(
            describe_scores(&[100.0, 60.0]),
            "canary scores: interval 1: 100 (≥ pass 70), interval 2: 60 (marginal)"
        );
        assert_eq!(describe_scores(&[]), "no analysis interval was judged");
    }
}
