//! The routing table of one listener: which server groups take traffic and in which
//! proportion, their instances, and the per-instance state (requests in flight,
//! failures, ejection) that picking reads without taking a lock.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderValue;

use super::BackendGroup;
use super::metrics::GroupMetrics;
use super::pool::ConnectionPool;

/// The longest weighted schedule; larger weight sums are scaled down to it.
const MAX_SCHEDULE: u64 = 1000;

/// One instance and what the load balancer knows about it. It outlives routing tables
/// that keep the instance, so counts and ejections carry over a `set_backends`.
#[derive(Debug)]
pub(crate) struct BackendState {
    pub(crate) instance_id: String,
    pub(crate) address: SocketAddr,
    /// The `Host` header for a request that came without one.
    pub(crate) host: HeaderValue,
    in_flight: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Milliseconds on the listener's clock until which it is ejected; 0: not ejected.
    ejected_until_ms: AtomicU64,
    ejections_in_a_row: AtomicU32,
    /// Idle keep-alive connections to it.
    pub(crate) pool: ConnectionPool,
}

impl BackendState {
    fn new(instance_id: &str, address: SocketAddr) -> Option<Self> {
        let host = HeaderValue::try_from(address.to_string()).ok()?;
        Some(Self {
            instance_id: instance_id.to_owned(),
            address,
            host,
            in_flight: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections_in_a_row: AtomicU32::new(0),
            pool: ConnectionPool::default(),
        })
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn is_ejected(&self, now_ms: u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms < until
    }
}

/// How failures eject instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EjectionPolicy {
    /// Consecutive failures that eject; 0 never ejects.
    pub(crate) failures: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

/// One server group in the table.
#[derive(Debug)]
pub(crate) struct GroupRoute {
    pub(crate) metrics: Arc<GroupMetrics>,
    pub(crate) weight: u32,
    pub(crate) backends: Vec<Arc<BackendState>>,
    /// Where the next scan for the least loaded instance starts, so ties rotate.
    cursor: AtomicUsize,
}

impl GroupRoute {
    /// The instance with the fewest requests in flight among those not yet tried,
    /// skipping ejected ones unless only ejected ones are left.
    fn least_loaded(&self, now_ms: u64, tried: &[Arc<BackendState>]) -> Option<&Arc<BackendState>> {
        let n = self.backends.len();
        if n == 1 {
            return self.backends.first().filter(|b| !was_tried(tried, b));
        }
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(&Arc<BackendState>, u64)> = None;
        let mut best_ejected: Option<(&Arc<BackendState>, u64)> = None;
        for i in 0..n {
            let backend = &self.backends[(start + i) % n];
            if was_tried(tried, backend) {
                continue;
            }
            let load = backend.in_flight();
            let slot = if backend.is_ejected(now_ms) {
                &mut best_ejected
            } else {
                &mut best
            };
            if slot.is_none_or(|(_, least)| load < least) {
                *slot = Some((backend, load));
            }
        }
        best.or(best_ejected).map(|(backend, _)| backend)
    }
}

fn was_tried(tried: &[Arc<BackendState>], backend: &Arc<BackendState>) -> bool {
    tried.iter().any(|t| Arc::ptr_eq(t, backend))
}

/// An immutable routing table; replaced whole by `set_backends`.
#[derive(Debug, Default)]
pub(crate) struct Table {
    groups: Vec<GroupRoute>,
    /// Indexes into `groups`, laid out by smooth weighted round-robin: walking it in
    /// order gives each group its share, interleaved.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

impl Table {
    /// Builds a table from the provider's groups, reusing the instance state of
    /// `previous` for instances it keeps. Entries naming the same server group are
    /// merged (weights add up); an instance listed twice counts once.
    pub(crate) fn build(
        groups: &[BackendGroup],
        previous: &Table,
        mut metrics_for: impl FnMut(&str) -> Arc<GroupMetrics>,
    ) -> Self {
        let mut known: HashMap<(&str, &str, SocketAddr), &Arc<BackendState>> = HashMap::new();
        for group in &previous.groups {
            for backend in &group.backends {
                known.insert(
                    (
                        group.metrics.server_group.as_str(),
                        backend.instance_id.as_str(),
                        backend.address,
                    ),
                    backend,
                );
            }
        }
        let mut routes: Vec<GroupRoute> = Vec::with_capacity(groups.len());
        for group in groups {
            let index = match routes
                .iter()
                .position(|r| r.metrics.server_group == group.server_group)
            {
                Some(index) => {
                    routes[index].weight = routes[index].weight.saturating_add(group.weight);
                    index
                }
                None => {
                    routes.push(GroupRoute {
                        metrics: metrics_for(&group.server_group),
                        weight: group.weight,
                        backends: Vec::with_capacity(group.backends.len()),
                        cursor: AtomicUsize::new(0),
                    });
                    routes.len() - 1
                }
            };
            let route = &mut routes[index];
            for backend in &group.backends {
                let duplicate = route
                    .backends
                    .iter()
                    .any(|b| b.instance_id == backend.instance_id && b.address == backend.address);
                if duplicate {
                    continue;
                }
                let key = (
                    group.server_group.as_str(),
                    backend.instance_id.as_str(),
                    backend.address,
                );
                let state = match known.get(&key) {
                    Some(state) => Arc::clone(state),
                    None => match BackendState::new(&backend.instance_id, backend.address) {
                        Some(state) => Arc::new(state),
                        None => {
                            tracing::warn!(address = %backend.address, "instance address is not a valid host; skipped");
                            continue;
                        }
                    },
                };
                route.backends.push(state);
            }
        }
        let schedule = schedule(&routes);
        Self {
            groups: routes,
            schedule,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks a group by weight, then its least loaded instance. With `tried` non-empty
    /// (a retry), falls back to the least loaded untried instance of any group that
    /// takes traffic.
    pub(crate) fn pick(
        &self,
        now_ms: u64,
        tried: &[Arc<BackendState>],
    ) -> Option<(&GroupRoute, &Arc<BackendState>)> {
        if self.schedule.is_empty() {
            return None;
        }
        let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        let group = self.groups.get(self.schedule[slot])?;
        if let Some(backend) = group.least_loaded(now_ms, tried) {
            return Some((group, backend));
        }
        self.groups
            .iter()
            .filter(|g| g.weight > 0)
            .filter_map(|g| g.least_loaded(now_ms, tried).map(|b| (g, b)))
            .min_by_key(|(_, b)| b.in_flight())
    }

    /// Every instance in the table.
    pub(crate) fn backends(&self) -> impl Iterator<Item = &Arc<BackendState>> {
        self.groups.iter().flat_map(|g| g.backends.iter())
    }

    /// The weight of every server group in the table.
    pub(crate) fn weights(&self) -> BTreeMap<String, u32> {
        self.groups
            .iter()
            .map(|g| (g.metrics.server_group.clone(), g.weight))
            .collect()
    }

    pub(crate) fn contains_group(&self, server_group: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.metrics.server_group == server_group)
    }

    /// Counts a request's outcome on an instance; ejects it after too many failures in
    /// a row unless that would leave its group without an instance. Returns whether
    /// it was ejected.
    pub(crate) fn report(
        group: &GroupRoute,
        backend: &BackendState,
        failed: bool,
        policy: EjectionPolicy,
        now_ms: u64,
    ) -> bool {
        if !failed {
            if backend.consecutive_failures.load(Ordering::Relaxed) != 0 {
                backend.consecutive_failures.store(0, Ordering::Relaxed);
            }
            // Back after an ejection and healthy: the next ejection starts short again.
            if backend.ejections_in_a_row.load(Ordering::Relaxed) != 0
                && !backend.is_ejected(now_ms)
            {
                backend.ejections_in_a_row.store(0, Ordering::Relaxed);
                backend.ejected_until_ms.store(0, Ordering::Relaxed);
            }
            return false;
        }
        if policy.failures == 0 || backend.is_ejected(now_ms) {
            return false;
        }
        let failures = backend.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < policy.failures {
            return false;
        }
        let others_left = group
            .backends
            .iter()
            .any(|b| !std::ptr::eq(Arc::as_ptr(b), backend) && !b.is_ejected(now_ms));
        if !others_left {
            return false;
        }
        let in_a_row = backend.ejections_in_a_row.fetch_add(1, Ordering::Relaxed);
        let length = policy
            .base
            .saturating_mul(1u32 << in_a_row.min(16))
            .min(policy.max);
        let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        backend
            .ejected_until_ms
            .store(now_ms.saturating_add(length_ms).max(1), Ordering::Relaxed);
        backend.consecutive_failures.store(0, Ordering::Relaxed);
        group.metrics.ejected();
        tracing::warn!(
            server_group = %group.metrics.server_group,
            instance = %backend.instance_id,
            address = %backend.address,
            seconds = length.as_secs_f64(),
            "instance ejected after consecutive failures"
        );
        true
    }
}

/// Smooth weighted round-robin over the groups that take traffic (weight > 0 and at
/// least one instance), after dividing the weights by their greatest common divisor.
fn schedule(groups: &[GroupRoute]) -> Vec<usize> {
    let eligible: Vec<(usize, u64)> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.weight > 0 && !g.backends.is_empty())
        .map(|(i, g)| (i, u64::from(g.weight)))
        .collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    let divisor = eligible.iter().fold(0, |acc, &(_, w)| gcd(acc, w)).max(1);
    let mut weights: Vec<u64> = eligible.iter().map(|&(_, w)| w / divisor).collect();
    let mut total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            *w = (*w * MAX_SCHEDULE / total).max(1);
        }
        total = weights.iter().sum();
    }
    let total_signed = i64::try_from(total).unwrap_or(i64::MAX);
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::try_from(*w).unwrap_or(i64::MAX);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total_signed;
        out.push(eligible[best].0);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::Backend;
    use tokio::time::Instant;

    fn group(name: &str, weight: u32, ports: &[u16]) -> BackendGroup {
        BackendGroup {
            server_group: name.to_owned(),
            weight,
            backends: ports
                .iter()
                .map(|p| Backend {
                    instance_id: format!("{name}-{p}"),
                    address: SocketAddr::from(([127, 0, 0, 1], *p)),
                })
                .collect(),
        }
    }

    fn build(groups: &[BackendGroup], previous: &Table) -> Table {
        Table::build(groups, previous, |name| {
            Arc::new(GroupMetrics::new(name, Instant::now(), 1))
        })
    }

    #[tokio::test]
    async fn the_schedule_interleaves_groups_by_reduced_weight() {
        let table = build(
            &[
                group("a", 80, &[1]),
                group("b", 20, &[2]),
                group("c", 0, &[3]),
            ],
            &Table::default(),
        );
        assert_eq!(table.schedule, vec![0, 0, 1, 0, 0]);
        let mut counts = BTreeMap::new();
        for _ in 0..1000 {
            let (g, _) = table.pick(0, &[]).unwrap();
            *counts.entry(g.metrics.server_group.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.get("a"), Some(&800));
        assert_eq!(counts.get("b"), Some(&200));
        assert_eq!(counts.get("c"), None, "weight 0 takes no new request");
    }

    #[tokio::test]
    async fn huge_weights_are_scaled_and_empty_groups_skipped() {
        let table = build(
            &[
                group("a", u32::MAX, &[1]),
                group("b", 1, &[2]),
                group("c", 5, &[]),
            ],
            &Table::default(),
        );
        assert!(table.schedule.len() <= 1001);
        assert!(
            table.schedule.contains(&1),
            "a tiny weight still gets a slot"
        );
        assert!(!table.schedule.contains(&2));
        let empty = build(&[group("c", 5, &[])], &Table::default());
        assert!(empty.pick(0, &[]).is_none());
    }

    #[tokio::test]
    async fn ties_rotate_and_the_least_loaded_wins() {
        let table = build(&[group("a", 1, &[1, 2, 3])], &Table::default());
        let picked: Vec<u16> = (0..3)
            .map(|_| table.pick(0, &[]).unwrap().1.address.port())
            .collect();
        let mut sorted = picked.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 3], "ties go round: {picked:?}");
        let (_, busy) = table.pick(0, &[]).unwrap();
        busy.started();
        busy.started();
        for _ in 0..10 {
            let (_, b) = table.pick(0, &[]).unwrap();
            assert!(!Arc::ptr_eq(b, busy));
        }
    }

    #[tokio::test]
    async fn instance_state_survives_a_rebuild() {
        let first = build(&[group("a", 1, &[1, 2])], &Table::default());
        let (_, b) = first.pick(0, &[]).unwrap();
        b.started();
        let port = b.address.port();
        let second = build(&[group("a", 3, &[1, 2]), group("b", 1, &[4])], &first);
        let kept = second.groups[0]
            .backends
            .iter()
            .find(|s| s.address.port() == port)
            .unwrap();
        assert_eq!(kept.in_flight(), 1);
        assert_eq!(second.weights()["a"], 3);
        assert!(second.contains_group("b"));
    }

    #[tokio::test]
    async fn consecutive_failures_eject_unless_it_would_empty_the_group() {
        let policy = EjectionPolicy {
            failures: 2,
            base: Duration::from_secs(10),
            max: Duration::from_secs(15),
        };
        let table = build(&[group("a", 1, &[1, 2])], &Table::default());
        let g = &table.groups[0];
        let (bad, good) = (&g.backends[0], &g.backends[1]);
        assert!(!Table::report(g, bad, true, policy, 100));
        assert!(Table::report(g, bad, true, policy, 100));
        assert!(bad.is_ejected(100) && bad.is_ejected(10_099) && !bad.is_ejected(10_100));
        for _ in 0..10 {
            assert!(Arc::ptr_eq(table.pick(5_000, &[]).unwrap().1, good));
        }
        // The other one fails too: ejecting it would leave nothing, so it stays.
        assert!(!Table::report(g, good, true, policy, 200));
        assert!(!Table::report(g, good, true, policy, 200));
        assert!(!good.is_ejected(300));
        // Back, failing again: ejected twice as long, capped.
        assert!(!Table::report(g, bad, true, policy, 10_200));
        assert!(Table::report(g, bad, true, policy, 10_200));
        assert!(bad.is_ejected(25_199) && !bad.is_ejected(25_200));
        assert_eq!(g.metrics.ejections(), 2);
        // A success after it is back resets the doubling.
        assert!(!Table::report(g, bad, false, policy, 30_000));
        assert_eq!(bad.ejections_in_a_row.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_retry_skips_tried_instances_across_groups() {
        let table = build(
            &[group("a", 1, &[1]), group("b", 1, &[2])],
            &Table::default(),
        );
        let (_, first) = table.pick(0, &[]).unwrap();
        let tried = vec![Arc::clone(first)];
        for _ in 0..4 {
            let (_, next) = table.pick(0, &tried).unwrap();
            assert!(!Arc::ptr_eq(next, first));
        }
        let all: Vec<_> = table
            .groups
            .iter()
            .flat_map(|g| g.backends.clone())
            .collect();
        assert!(table.pick(0, &all).is_none());
    }
}
