//! The state one listener shares between its accept loops, its connections and the
//! control plane: routing table, settings, per-group counters.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ipnet::IpNet;
use tokio::time::Instant;

use super::config::LbConfig;
use super::metrics::{CLASS_NAMES, GroupMetrics};
use super::persist::SampleSink;
use super::pool::ConnectSettings;
use super::series::TrafficSample;
use super::table::{EjectionPolicy, Table};
use super::{BackendGroup, GroupStats, LbError, ListenerSpec};

/// The settings of a listener that change in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    allowed: Vec<IpNet>,
    ejection_failures: u32,
}

impl Settings {
    /// Validates a spec's settings (CIDRs; a bare address means just that address).
    pub(crate) fn from_spec(spec: &ListenerSpec) -> Result<Self, LbError> {
        let allowed = spec
            .allowed_cidrs
            .iter()
            .map(|cidr| {
                let text = cidr.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| LbError::BadCidr(cidr.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            allowed,
            ejection_failures: spec.ejection_failures,
        })
    }
}

/// Everything about one listener except its sockets.
#[derive(Debug)]
pub(crate) struct ListenerCore {
    pub(crate) name: String,
    pub(crate) table: ArcSwap<Table>,
    settings: ArcSwap<Settings>,
    pub(crate) connect: ConnectSettings,
    pub(crate) config: Arc<LbConfig>,
    /// The origin of the millisecond clock ejections are kept on.
    epoch: Instant,
    /// Every server group routed to recently, in or out of the table, so counters and
    /// requests in flight outlive a `set_backends` that drops the group.
    groups: Mutex<BTreeMap<String, Arc<GroupMetrics>>>,
    /// Serializes table rebuilds (each starts from the previous table).
    table_writer: Mutex<()>,
    refused: AtomicU64,
    unrouted: AtomicU64,
    pub(crate) no_backend_body: Bytes,
    pub(crate) unreachable_body: Bytes,
    /// Where closed samples go when they are persisted.
    samples: Arc<OnceLock<SampleSink>>,
}

impl ListenerCore {
    pub(crate) fn new(
        name: &str,
        settings: Settings,
        config: Arc<LbConfig>,
        samples: Arc<OnceLock<SampleSink>>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            table: ArcSwap::from_pointee(Table::default()),
            settings: ArcSwap::from_pointee(settings),
            connect: ConnectSettings {
                connect_timeout: config.connect_timeout,
                idle_timeout: config.pool_idle_timeout,
            },
            config,
            epoch: Instant::now(),
            groups: Mutex::new(BTreeMap::new()),
            table_writer: Mutex::new(()),
            refused: AtomicU64::new(0),
            unrouted: AtomicU64::new(0),
            no_backend_body: Bytes::from(format!(
                "load balancer '{name}' has no backend to send this request to\n"
            )),
            unreachable_body: Bytes::from(format!(
                "load balancer '{name}' could not reach a backend for this request\n"
            )),
            samples,
        }
    }

    /// Milliseconds since the listener started, on tokio's clock; never 0.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// [`ListenerCore::now_ms`] at `at` (a time already read, saving a clock read).
    pub(crate) fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    pub(crate) fn set_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// Whether a client at `ip` may connect.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let settings = self.settings.load();
        settings.allowed.is_empty() || settings.allowed.iter().any(|net| net.contains(&ip))
    }

    pub(crate) fn ejection_policy(&self) -> EjectionPolicy {
        EjectionPolicy {
            failures: self.settings.load().ejection_failures,
            base: self.config.ejection_base,
            max: self.config.ejection_max,
        }
    }

    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn count_unrouted(&self) {
        self.unrouted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// Swaps in a routing table built from `groups`.
    pub(crate) fn set_backends(&self, groups: &[BackendGroup]) {
        let _writer = self
            .table_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.table.load_full();
        let table = Table::build(groups, &previous, |name| self.group_metrics(name));
        self.table.store(Arc::new(table));
    }

    fn group_metrics(&self, server_group: &str) -> Arc<GroupMetrics> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = groups.get(server_group) {
            return Arc::clone(existing);
        }
        let created = Arc::new(GroupMetrics::new(
            server_group,
            Instant::now(),
            self.config.series_capacity(),
        ));
        groups.insert(server_group.to_owned(), Arc::clone(&created));
        created
    }

    /// The counters of a group routed to recently.
    pub(crate) fn group(&self, server_group: &str) -> Option<Arc<GroupMetrics>> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(server_group)
            .cloned()
    }

    /// Every group routed to recently, by name.
    pub(crate) fn groups(&self) -> Vec<Arc<GroupMetrics>> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn stats(&self) -> Vec<GroupStats> {
        self.groups()
            .iter()
            .map(|group| {
                let snapshot = group.snapshot();
                GroupStats {
                    server_group: group.server_group.clone(),
                    in_flight: group.in_flight(),
                    by_class: CLASS_NAMES
                        .iter()
                        .zip(snapshot.by_class)
                        .map(|(name, count)| ((*name).to_owned(), count))
                        .collect(),
                }
            })
            .collect()
    }

    pub(crate) fn series(&self, server_group: &str) -> Option<Vec<TrafficSample>> {
        let group = self.group(server_group)?;
        let history = group.history.lock().unwrap_or_else(PoisonError::into_inner);
        Some(history.series.samples())
    }

    /// Closes the current interval of every group's time series, forgets groups
    /// that left the table longer than the retention ago and have nothing in flight,
    /// and closes upstream connections idle too long.
    pub(crate) fn sample(&self, now: Instant) {
        let table = self.table.load_full();
        for backend in table.backends() {
            backend.pool.evict_idle(now, self.connect.idle_timeout);
        }
        let mut forget = Vec::new();
        for group in self.groups() {
            let mut history = group.history.lock().unwrap_or_else(PoisonError::into_inner);
            let in_table = table.contains_group(&group.server_group);
            let sample = history.series.sample(now, group.snapshot());
            // Idle groups out of the table are not stored: nothing to compare there.
            if let Some(sink) = self.samples.get()
                && (in_table || sample.by_class.values().any(|count| *count > 0))
            {
                sink.offer(&self.name, &group.server_group, sample);
            }
            if in_table {
                history.out_of_table_since = None;
                continue;
            }
            let since = *history.out_of_table_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.config.retention
                && group.in_flight() == 0
            {
                forget.push(group.server_group.clone());
            }
        }
        if forget.is_empty() {
            return;
        }
        let _writer = self
            .table_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Re-checked under the writer lock: a concurrent set_backends may have brought
        // the group back.
        let table = self.table.load_full();
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        for name in forget {
            if !table.contains_group(&name) {
                groups.remove(&name);
            }
        }
    }
}
