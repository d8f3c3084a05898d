//! `gennaker demo`: a real release on the embedded defaults, in one command.
//!
//! It starts a server on a temporary data directory, creates an application, a load
//! balancer and a release pipeline, and deploys the demo app (this very binary, run as
//! `gennaker demo-app`) four times while steady traffic flows through the load balancer:
//! v1 plainly, v2 red/black, v3 rolling red/black, and v4 — which never passes its
//! health checks — red/black with `rollback.onFailure`, so v3 keeps serving. Then it
//! prints what happened, with the request counts.

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
use self::load::{Load, LoadReport};

/// The demo's application.
const APP: &str = "demo";
/// The demo's load balancer.
const LOAD_BALANCER: &str = "demo-frontend";
/// The release pipeline.
const PIPELINE: &str = "release";
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
    /// Requests per second sent through the load balancer during the releases.
    #[arg(long, default_value_t = 200)]
    rate: u32,
}

/// One release of the demo.
#[derive(Debug, Clone, Serialize)]
struct Release {
    version: String,
    strategy: String,
    /// The execution's final status (`SUCCEEDED`, or `TERMINAL` for v4).
    status: String,
    duration_ms: u64,
    /// What this release is meant to show.
    expected: String,
    execution_id: String,
}

/// What `--summary-json` writes.
#[derive(Debug, Serialize)]
struct Summary {
    api_url: String,
    load_balancer_url: String,
    data_dir: String,
    requests_total: u64,
    requests_failed: u64,
    served_by_version: std::collections::BTreeMap<String, u64>,
    failure_samples: Vec<String>,
    releases: Vec<Release>,
    serving_version_at_end: String,
    total_duration_ms: u64,
}

/// The four releases: version, strategy, healthy, what it shows.
const RELEASES: [(&str, &str, bool, &str); 4] = [
    (
        "v1",
        "",
        true,
        "first deploy: 3 instances behind the load balancer",
    ),
    (
        "v2",
        "redblack",
        true,
        "red/black: v2 takes the traffic once healthy, v1 is disabled",
    ),
    (
        "v3",
        "rollingredblack",
        true,
        "rolling red/black: traffic moves to v3 in steps",
    ),
    (
        "v4",
        "redblack",
        false,
        "fails its health checks: rolled back, v3 keeps serving",
    ),
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
            write_summary(&summary, args.summary_json.as_deref()).and_then(|()| check(&summary))
        }
        Err(err) => Err(err),
    };
    if args.keep && outcome.is_ok() {
        print_kept(api.base(), &token_file);
        interrupted.cancelled().await;
    }
    listener.abort();
    println!("Cleaning up: destroying the demo's server groups and stopping the server…");
    let cleaned = api.destroy_everything(APP).await;
    stop_server(server).await?;
    cleaned?;
    outcome
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
fn print_kept(base: &str, token_file: &Path) {
    println!(
        "\nLeft running (--keep) until Ctrl-C, which stops it all and removes the data directory. In another shell:"
    );
    println!(
        "  export GENNAKER_URL={base} GENNAKER_TOKEN=$(cat {})",
        token_file.display()
    );
    println!("  gennaker cluster list {APP}");
    println!(
        "Or open the web UI at {base}/applications/{APP}/executions and sign in with the token printed by: cat {}",
        token_file.display()
    );
}

/// The demo's checks: every release ended as it should and no request failed.
fn check(summary: &Summary) -> anyhow::Result<()> {
    if summary.requests_failed > 0 {
        bail!(
            "{} of {} requests failed during the releases",
            summary.requests_failed,
            summary.requests_total
        );
    }
    if summary.serving_version_at_end != "v3" {
        bail!(
            "after the failed v4, '{}' serves instead of v3",
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
    println!("Saved pipeline '{PIPELINE}' (deploy with the strategy given as a parameter).\n");

    let mut load: Option<Load> = None;
    let mut releases = Vec::new();
    for (version, strategy, healthy, expected) in RELEASES {
        let label = if strategy.is_empty() {
            "none"
        } else {
            strategy
        };
        println!("▶ Releasing {version} (strategy {label}): {expected}");
        let began = Instant::now();
        let id = api
            .run_pipeline(
                APP,
                PIPELINE,
                json!({
                    "version": version,
                    "strategy": strategy,
                    "healthy": if healthy { "true" } else { "false" },
                }),
            )
            .await?;
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
            "  {version}: {status} in {:.1}s\n",
            duration_ms as f64 / 1000.0
        );
        releases.push(Release {
            version: version.to_owned(),
            strategy: label.to_owned(),
            status: status.clone(),
            duration_ms,
            expected: expected.to_owned(),
            execution_id: id,
        });
        let wanted = if healthy { "SUCCEEDED" } else { "TERMINAL" };
        if status != wanted {
            if let Some(load) = load.take() {
                load.stop().await;
            }
            bail!("release {version} ended {status}, expected {wanted}");
        }
        if load.is_none() {
            println!(
                "Traffic: {} requests/s through the load balancer from now on.\n",
                args.rate
            );
            load = Some(Load::start(lb_url.clone(), args.rate, MAX_REQUESTS));
        }
    }
    // The failed deploy's rollback runs right after it fails: wait for the broken
    // server group to be gone, then let the traffic see the result for a moment.
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
        served_by_version: report.served_by_version,
        failure_samples: report.failure_samples,
        releases,
        serving_version_at_end: serving,
        total_duration_ms: 0,
    })
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
    }
    println!(
        "Requests:       {} sent, {} failed",
        summary.requests_total, summary.requests_failed
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
