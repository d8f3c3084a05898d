//! Durable traffic samples: every sample interval, each listener hands the samples it
//! closed to a bounded channel (never waiting: a full channel drops the sample and
//! counts it), and one writer task stores them in batches and prunes old ones, so the
//! canary analysis can read windows that began before a server restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gennaker_store::{LatencyBucket, MetricSample, MetricSampleStore, RequestCounts};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::LATENCY_BUCKETS_SECONDS;
use super::series::TrafficSample;

/// Samples waiting for the writer at most; beyond, new ones are dropped.
const QUEUE: usize = 50_000;
/// How often the writer stores what has queued up.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often old samples are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Where listeners hand their samples.
#[derive(Debug)]
pub(crate) struct SampleSink {
    queue: mpsc::Sender<MetricSample>,
    dropped: AtomicU64,
}

impl SampleSink {
    /// Queues one closed sample of `server_group` behind `load_balancer`, stamped
    /// with the wall clock now (its interval's end).
    pub(crate) fn offer(&self, load_balancer: &str, server_group: &str, sample: &TrafficSample) {
        let class = |name: &str| sample.by_class.get(name).copied().unwrap_or(0);
        let stored = MetricSample {
            load_balancer: load_balancer.to_owned(),
            server_group: server_group.to_owned(),
            at_ms: gennaker_store::now_millis(),
            window_ms: i64::try_from(sample.window.as_millis()).unwrap_or(i64::MAX),
            requests: RequestCounts {
                ok: class("2xx"),
                redirect: class("3xx"),
                client_error: class("4xx"),
                server_error: class("5xx"),
                error: class("error"),
            },
            latency: sample
                .latency_buckets
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(i, count)| LatencyBucket {
                    le: LATENCY_BUCKETS_SECONDS.get(i).copied(),
                    count: *count,
                })
                .collect(),
        };
        if self.queue.try_send(stored).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            // Once per thousand, not once per sample: the store is behind or gone.
            if dropped.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = dropped + 1,
                    "traffic samples dropped: the store does not keep up"
                );
            }
        }
    }
}

/// Starts the writer; it stores until `shutdown`, then writes what is queued and ends.
pub(crate) fn start(
    store: Arc<dyn MetricSampleStore>,
    retention: Duration,
    shutdown: CancellationToken,
) -> (SampleSink, tokio::task::JoinHandle<()>) {
    let (queue, receiver) = mpsc::channel(QUEUE);
    let task = tokio::spawn(write(store, retention, receiver, shutdown));
    (
        SampleSink {
            queue,
            dropped: AtomicU64::new(0),
        },
        task,
    )
}

async fn write(
    store: Arc<dyn MetricSampleStore>,
    retention: Duration,
    mut receiver: mpsc::Receiver<MetricSample>,
    shutdown: CancellationToken,
) {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut batch = Vec::new();
    loop {
        let last = tokio::select! {
            _ = flush.tick() => false,
            _ = prune.tick() => {
                let before = gennaker_store::now_millis().saturating_sub(retention_ms);
                if let Err(error) = store.prune_metric_samples(before).await {
                    tracing::warn!(%error, "cannot prune old traffic samples");
                }
                continue;
            }
            () = shutdown.cancelled() => true,
        };
        while let Ok(sample) = receiver.try_recv() {
            batch.push(sample);
        }
        if !batch.is_empty() {
            // A failed batch is kept for the next flush (inserts are idempotent), up
            // to the queue's size, so an outage of the database loses only the oldest.
            match store.insert_metric_samples(&batch).await {
                Ok(_) => batch.clear(),
                Err(error) => {
                    tracing::warn!(%error, samples = batch.len(), "cannot store traffic samples; retrying");
                    if batch.len() > QUEUE {
                        batch.drain(..batch.len() - QUEUE);
                    }
                }
            }
        }
        if last {
            break;
        }
    }
}
