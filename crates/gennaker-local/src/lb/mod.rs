//! The built-in L7 load balancer: one listener per load balancer, weighted routing
//! between server groups, least-requests within a group, passive ejection, draining.
//!
//! hyper serves clients (HTTP/1.1 with keep-alive, or HTTP/2); instances are spoken to
//! over pooled keep-alive connections by a small HTTP/1.1 client of its own (`pool.rs`,
//! `body.rs`: heads parsed with `httparse`, bodies decoded by their framing), bodies
//! streamed both ways. The routing table is swapped atomically and read without a lock;
//! counters are atomics, exported as Prometheus text and sampled into a bounded time
//! series for canary analysis.

mod accept;
mod body;
mod config;
mod core;
mod export;
mod listener;
mod metrics;
mod persist;
mod pool;
mod proxy;
mod series;
mod table;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use gennaker_store::MetricSampleStore;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use config::LbConfig;
pub use metrics::LATENCY_BUCKETS_SECONDS;
pub use series::TrafficSample;

use self::core::Settings;
use export::{Exporter, ListenerMap};
use listener::Listener;

/// One instance the load balancer may send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The instance id (`shop-v001-0`), for metrics and logs.
    pub instance_id: String,
    /// Where it listens.
    pub address: SocketAddr,
}

/// The `Up` instances of one enabled server group, and its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendGroup {
    /// The server group (`shop-v001`).
    pub server_group: String,
    /// Relative weight (0: no new requests).
    pub weight: u32,
    /// Its instances that may take traffic.
    pub backends: Vec<Backend>,
}

/// What one listener should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The load balancer's name.
    pub name: String,
    /// Where to listen (port 0: pick a free one).
    pub listen: SocketAddr,
    /// Source networks allowed (CIDR strings; a bare address means just it); empty:
    /// everyone. Connections from elsewhere are closed at once and counted.
    pub allowed_cidrs: Vec<String>,
    /// Consecutive failures (connect errors, 5xx) that eject an instance for a while
    /// ([`LbConfig::ejection_base`], doubling on repeat); 0: never eject.
    pub ejection_failures: u32,
}

/// Why a load balancer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A CIDR does not parse.
    #[error("'{0}' is not a CIDR (write e.g. 10.0.0.0/8 or 127.0.0.1/32)")]
    BadCidr(String),
    /// No listener by that name.
    #[error("load balancer '{0}' does not exist")]
    Unknown(String),
}

/// Requests one server group served through one load balancer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupStats {
    /// The server group.
    pub server_group: String,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Completed requests by status class (`2xx`, `3xx`, `4xx`, `5xx`, `error`).
    pub by_class: BTreeMap<String, u64>,
}

/// Every listener of this process, shared cheaply (`Clone`).
#[derive(Clone)]
pub struct LoadBalancers {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<LbConfig>,
    shutdown: CancellationToken,
    listeners: ListenerMap,
    registry: Registry,
    /// Serializes upserts and removals, so each sees the listeners as the last left them.
    changes: tokio::sync::Mutex<()>,
    /// Where listeners hand their samples, once [`LoadBalancers::persist_samples`] is on.
    samples: Arc<OnceLock<persist::SampleSink>>,
    /// The sample writer, awaited at shutdown so the last samples are stored.
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ends the sample writer (after it stored what is queued).
    writer_stop: CancellationToken,
}

impl std::fmt::Debug for LoadBalancers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancers")
            .field("listeners", &self.names())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Default for LoadBalancers {
    /// Default timings, stopped only by [`LoadBalancers::shutdown`].
    fn default() -> Self {
        Self::new(LbConfig::default(), CancellationToken::new())
    }
}

impl LoadBalancers {
    /// Load balancers with these timings; cancelling `shutdown` stops every listener
    /// gracefully (await [`LoadBalancers::shutdown`] to wait for it).
    pub fn new(config: LbConfig, shutdown: CancellationToken) -> Self {
        let listeners = ListenerMap::default();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exporter {
            listeners: Arc::clone(&listeners),
        }));
        Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                shutdown,
                listeners,
                registry,
                changes: tokio::sync::Mutex::new(()),
                samples: Arc::new(OnceLock::new()),
                writer: Mutex::new(None),
                writer_stop: CancellationToken::new(),
            }),
        }
    }

    fn listener(&self, name: &str) -> Option<Arc<Listener>> {
        self.inner
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn names(&self) -> Vec<String> {
        self.inner
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Starts a listener, or changes a live one without dropping its connections;
    /// returns the address it listens on.
    ///
    /// With the same address, the allow-list and ejection threshold change in place.
    /// With another, the new socket accepts at once and the old one keeps accepting
    /// for [`LbConfig::address_handover`], then stops while its connections finish.
    pub async fn upsert(&self, spec: ListenerSpec) -> Result<SocketAddr, LbError> {
        let settings = Settings::from_spec(&spec)?;
        let _changing = self.inner.changes.lock().await;
        if self.inner.shutdown.is_cancelled() {
            return Err(LbError::Bind {
                address: spec.listen,
                reason: "the load balancers are shutting down".to_owned(),
            });
        }
        if let Some(existing) = self.listener(&spec.name) {
            let address = if existing.listens_on(spec.listen) {
                existing.address()
            } else {
                existing.move_to(spec.listen).await?
            };
            existing.core.set_settings(settings);
            return Ok(address);
        }
        let listener = Listener::start(
            &spec.name,
            spec.listen,
            settings,
            Arc::clone(&self.inner.config),
            Arc::clone(&self.inner.samples),
            &self.inner.shutdown,
        )
        .await?;
        let address = listener.address();
        self.inner
            .listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name, Arc::new(listener));
        Ok(address)
    }

    /// Stops a listener after its requests in flight finish (at most
    /// [`LbConfig::drain_timeout`]); `false` if unknown.
    pub async fn remove(&self, name: &str) -> bool {
        let removed = {
            let _changing = self.inner.changes.lock().await;
            self.inner
                .listeners
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name)
        };
        match removed {
            Some(listener) => {
                listener.stop().await;
                tracing::info!(load_balancer = name, "load balancer removed");
                true
            }
            None => false,
        }
    }

    /// Replaces the routing table of a listener atomically; server groups left out
    /// take no new requests (requests in flight finish). Instances kept from the
    /// previous table keep their counts and ejections.
    pub fn set_backends(&self, name: &str, groups: Vec<BackendGroup>) -> Result<(), LbError> {
        let listener = self
            .listener(name)
            .ok_or_else(|| LbError::Unknown(name.to_owned()))?;
        listener.core.set_backends(&groups);
        Ok(())
    }

    /// Waits until no request to `server_group` through `name` is in flight, at most
    /// `max_wait`; `true` when drained.
    pub async fn drain(&self, name: &str, server_group: &str, max_wait: Duration) -> bool {
        const POLL: Duration = Duration::from_millis(10);
        let Some(group) = self
            .listener(name)
            .and_then(|listener| listener.core.group(server_group))
        else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if group.in_flight() == 0 {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }

    /// Per server group counters of a listener.
    pub fn stats(&self, name: &str) -> Option<Vec<GroupStats>> {
        self.listener(name).map(|listener| listener.core.stats())
    }

    /// Appends the Prometheus text exposition of every listener's metrics.
    pub fn encode_metrics(&self, out: &mut String) {
        if let Err(error) =
            prometheus_client::encoding::text::encode_registry(out, &self.inner.registry)
        {
            tracing::warn!(%error, "cannot encode the load balancer metrics");
        }
    }

    /// The address a listener accepts on.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.listener(name).map(|listener| listener.address())
    }

    /// The weight of each server group in a listener's routing table.
    pub fn weights(&self, name: &str) -> Option<BTreeMap<String, u32>> {
        self.listener(name)
            .map(|listener| listener.core.table.load().weights())
    }

    /// The recent traffic of one server group through one listener, oldest first:
    /// one sample per [`LbConfig::sample_interval`], [`LbConfig::retention`] long.
    pub fn traffic_series(&self, name: &str, server_group: &str) -> Option<Vec<TrafficSample>> {
        self.listener(name)?.core.series(server_group)
    }

    /// Stores every sample from now on in `store` (batched by a writer task, so the
    /// listeners never wait for the database) and deletes samples older than
    /// `retention`; the canary analysis reads them back. `false` if already on.
    pub fn persist_samples(&self, store: Arc<dyn MetricSampleStore>, retention: Duration) -> bool {
        let mut writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if writer.is_some() {
            return false;
        }
        // Its own stop, given after the listeners have handed in their last samples.
        let (sink, task) = persist::start(store, retention, self.inner.writer_stop.clone());
        if self.inner.samples.set(sink).is_err() {
            task.abort();
            return false;
        }
        *writer = Some(task);
        true
    }

    /// Stops every listener gracefully and waits for them (each bounded by
    /// [`LbConfig::drain_timeout`]), then for the sample writer to store what is left.
    pub async fn shutdown(&self) {
        let _changing = self.inner.changes.lock().await;
        self.inner.shutdown.cancel();
        let listeners: Vec<Arc<Listener>> = std::mem::take(
            &mut *self
                .inner
                .listeners
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        )
        .into_values()
        .collect();
        for listener in listeners {
            listener.stop().await;
        }
        self.inner.writer_stop.cancel();
        let writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && let Err(error) = writer.await
        {
            tracing::warn!(%error, "the traffic sample writer failed");
        }
    }
}
