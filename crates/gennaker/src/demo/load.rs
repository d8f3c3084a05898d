//! Steady, bounded traffic through the demo's load balancer, counting every failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many clients send requests concurrently.
const CLIENTS: u32 = 8;

/// What the traffic saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct LoadReport {
    /// Requests sent.
    pub(crate) requests_total: u64,
    /// Requests that did not get a 2xx answer (errors included).
    pub(crate) requests_failed: u64,
    /// Successful answers by the version that served them.
    pub(crate) served_by_version: BTreeMap<String, u64>,
    /// The first few failures, for the summary.
    pub(crate) failure_samples: Vec<String>,
}

/// A running load generator; [`stop`](Load::stop) ends it and returns what it saw.
#[derive(Debug)]
pub(crate) struct Load {
    stop: CancellationToken,
    clients: JoinSet<()>,
    total: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    report: Arc<Mutex<LoadReport>>,
}

impl Load {
    /// Sends about `rate` requests per second to `url`, at most `max_requests` in all.
    pub(crate) fn start(url: String, rate: u32, max_requests: u64) -> Self {
        let stop = CancellationToken::new();
        let total = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(CLIENTS as usize)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let per_client = Duration::from_secs_f64(f64::from(CLIENTS) / f64::from(rate.max(1)));
        let mut clients = JoinSet::new();
        for _ in 0..CLIENTS {
            let (stop, total, failed, report, http, url) = (
                stop.clone(),
                total.clone(),
                failed.clone(),
                report.clone(),
                http.clone(),
                url.clone(),
            );
            clients.spawn(async move {
                let mut tick = tokio::time::interval(per_client);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if total.fetch_add(1, Ordering::Relaxed) >= max_requests {
                        total.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    let outcome =
                        match http.get(&url).send().await {
                            Ok(response) if response.status().is_success() => {
                                let version =
                                    response.json::<serde_json::Value>().await.ok().and_then(
                                        |body| {
                                            body.get("version")
                                                .and_then(|v| v.as_str())
                                                .map(str::to_owned)
                                        },
                                    );
                                Ok(version.unwrap_or_else(|| "unknown".to_owned()))
                            }
                            Ok(response) => Err(format!("HTTP {}", response.status())),
                            Err(err) => Err(err.to_string()),
                        };
                    let mut report = report.lock().await;
                    match outcome {
                        Ok(version) => *report.served_by_version.entry(version).or_default() += 1,
                        Err(why) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if report.failure_samples.len() < 5 {
                                report.failure_samples.push(why);
                            }
                        }
                    }
                }
            });
        }
        Self {
            stop,
            clients,
            total,
            failed,
            report,
        }
    }

    /// Requests sent so far, and how many failed.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops the clients after their request in flight; returns the totals.
    pub(crate) async fn stop(mut self) -> LoadReport {
        self.stop.cancel();
        while self.clients.join_next().await.is_some() {}
        let mut report = self.report.lock().await.clone();
        report.requests_total = self.total.load(Ordering::Relaxed);
        report.requests_failed = self.failed.load(Ordering::Relaxed);
        report
    }
}
