//! Steady, bounded traffic through the demo's load balancer, counting every failure and
//! telling apart the failures the bad canary answered itself (its share of the traffic
//! may fail: that is what the canary analysis is there to catch).

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
    /// Requests that did not get a 2xx answer (errors included), except the bad
    /// canary's own share.
    pub(crate) requests_failed: u64,
    /// Failed requests the bad canary's instances answered.
    pub(crate) canary_requests_failed: u64,
    /// Successful answers by the version that served them.
    pub(crate) served_by_version: BTreeMap<String, u64>,
    /// The first few failures, for the summary.
    pub(crate) failure_samples: Vec<String>,
}

/// Whose failed answers are the bad canary's own share: the demo app's answers (500s
/// too) name the version and the instance (`<server group>-<index>`) that served them.
#[derive(Debug, Clone)]
pub(crate) struct CanaryShare {
    /// The bad canary's version.
    pub(crate) version: String,
    /// What the names of the canary cluster's instances start with.
    pub(crate) instance_prefix: String,
}

impl CanaryShare {
    /// Whether an answer whose body is `body` came from the bad canary.
    fn answered(&self, body: Option<&serde_json::Value>) -> bool {
        body.is_some_and(|body| {
            body["version"].as_str() == Some(self.version.as_str())
                && body["instance"]
                    .as_str()
                    .is_some_and(|i| i.starts_with(&self.instance_prefix))
        })
    }
}

/// Requests so far: sent, failed outside the bad canary's share, failed within it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) failed: u64,
    pub(crate) canary_failed: u64,
}

/// What one request came to.
enum Outcome {
    Served(String),
    Failed(String),
    CanaryFailed,
}

/// A running load generator; [`stop`](Load::stop) ends it and returns what it saw.
#[derive(Debug)]
pub(crate) struct Load {
    stop: CancellationToken,
    clients: JoinSet<()>,
    total: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    canary_failed: Arc<AtomicU64>,
    report: Arc<Mutex<LoadReport>>,
}

impl Load {
    /// Sends about `rate` requests per second to `url`, at most `max_requests` in all;
    /// failures answered by `share` are counted apart.
    pub(crate) fn start(url: String, rate: u32, max_requests: u64, share: CanaryShare) -> Self {
        let stop = CancellationToken::new();
        let total = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let canary_failed = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(CLIENTS as usize)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let per_client = Duration::from_secs_f64(f64::from(CLIENTS) / f64::from(rate.max(1)));
        let mut clients = JoinSet::new();
        for _ in 0..CLIENTS {
            let (stop, total, failed, canary_failed, report, http, url, share) = (
                stop.clone(),
                total.clone(),
                failed.clone(),
                canary_failed.clone(),
                report.clone(),
                http.clone(),
                url.clone(),
                share.clone(),
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
                    let outcome = match http.get(&url).send().await {
                        Ok(response) => {
                            let status = response.status();
                            let body = response.json::<serde_json::Value>().await.ok();
                            if status.is_success() {
                                let version = body
                                    .as_ref()
                                    .and_then(|b| b["version"].as_str())
                                    .unwrap_or("unknown");
                                Outcome::Served(version.to_owned())
                            } else if share.answered(body.as_ref()) {
                                Outcome::CanaryFailed
                            } else {
                                let from = body
                                    .as_ref()
                                    .and_then(|b| b["instance"].as_str())
                                    .map_or_else(String::new, |i| format!(" from {i}"));
                                Outcome::Failed(format!("HTTP {status}{from}"))
                            }
                        }
                        Err(err) => Outcome::Failed(err.to_string()),
                    };
                    let mut report = report.lock().await;
                    match outcome {
                        Outcome::Served(version) => {
                            *report.served_by_version.entry(version).or_default() += 1;
                        }
                        Outcome::CanaryFailed => {
                            canary_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Failed(why) => {
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
            canary_failed,
            report,
        }
    }

    /// Requests sent so far, and how many failed.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            canary_failed: self.canary_failed.load(Ordering::Relaxed),
        }
    }

    /// Stops the clients after their request in flight; returns the totals.
    pub(crate) async fn stop(mut self) -> LoadReport {
        self.stop.cancel();
        while self.clients.join_next().await.is_some() {}
        let mut report = self.report.lock().await.clone();
        report.requests_total = self.total.load(Ordering::Relaxed);
        report.requests_failed = self.failed.load(Ordering::Relaxed);
        report.canary_requests_failed = self.canary_failed.load(Ordering::Relaxed);
        report
    }
}
