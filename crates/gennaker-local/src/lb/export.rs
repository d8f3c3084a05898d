//! The Prometheus exposition of every listener, encoded at scrape time from the
//! listeners' atomic counters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::core::ListenerCore;
use super::listener::Listener;
use super::metrics::{CLASS_NAMES, GroupMetrics};
use super::series::Snapshot;

/// Every listener by name.
pub(crate) type ListenerMap = Arc<RwLock<BTreeMap<String, Arc<Listener>>>>;

/// The collector registered in the load balancers' registry.
#[derive(Debug)]
pub(crate) struct Exporter {
    pub(crate) listeners: ListenerMap,
}

/// One group's values, read once per scrape.
struct GroupRow {
    core: Arc<ListenerCore>,
    group: Arc<GroupMetrics>,
    snapshot: Snapshot,
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let cores: Vec<Arc<ListenerCore>> = self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|l| Arc::clone(&l.core))
            .collect();
        if cores.is_empty() {
            return Ok(());
        }
        let rows: Vec<GroupRow> = cores
            .iter()
            .flat_map(|core| {
                core.groups().into_iter().map(|group| GroupRow {
                    core: Arc::clone(core),
                    snapshot: group.snapshot(),
                    group,
                })
            })
            .collect();

        let mut requests = encoder.encode_descriptor(
            "gennaker_lb_requests",
            "Requests completed through a load balancer, by server group and status class (error: no response).",
            None,
            MetricType::Counter,
        )?;
        for row in &rows {
            for (class, count) in CLASS_NAMES.iter().zip(row.snapshot.by_class) {
                let labels = [
                    ("load_balancer", row.core.name.as_str()),
                    ("server_group", row.group.server_group.as_str()),
                    ("class", class),
                ];
                requests
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }

        let mut duration = encoder.encode_descriptor(
            "gennaker_lb_request_duration",
            "Time from a request's arrival to the end of its response, for requests answered by a backend.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for row in &rows {
            let buckets = GroupMetrics::histogram_buckets(&row.snapshot);
            let count = row.snapshot.buckets.iter().sum();
            duration
                .encode_family(&group_labels(row))?
                .encode_histogram::<NoLabelSet>(
                    row.group.latency_sum_seconds(),
                    count,
                    &buckets,
                    None,
                )?;
        }

        let mut in_flight = encoder.encode_descriptor(
            "gennaker_lb_in_flight",
            "Requests in flight through a load balancer to a server group.",
            None,
            MetricType::Gauge,
        )?;
        for row in &rows {
            in_flight
                .encode_family(&group_labels(row))?
                .encode_gauge(&row.group.in_flight())?;
        }

        let mut ejections = encoder.encode_descriptor(
            "gennaker_lb_ejections",
            "Instances ejected after consecutive failures.",
            None,
            MetricType::Counter,
        )?;
        for row in &rows {
            ejections
                .encode_family(&group_labels(row))?
                .encode_counter::<NoLabelSet, _, u64>(&row.group.ejections(), None)?;
        }

        let mut refused = encoder.encode_descriptor(
            "gennaker_lb_refused_connections",
            "Connections closed because their source is not in the allow-list.",
            None,
            MetricType::Counter,
        )?;
        for core in &cores {
            refused
                .encode_family(&[("load_balancer", core.name.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&core.refused(), None)?;
        }

        let mut unrouted = encoder.encode_descriptor(
            "gennaker_lb_unrouted_requests",
            "Requests answered 503 because no server group had an instance to take them.",
            None,
            MetricType::Counter,
        )?;
        for core in &cores {
            unrouted
                .encode_family(&[("load_balancer", core.name.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&core.unrouted(), None)?;
        }
        Ok(())
    }
}

fn group_labels(row: &GroupRow) -> [(&'static str, &str); 2] {
    [
        ("load_balancer", row.core.name.as_str()),
        ("server_group", row.group.server_group.as_str()),
    ]
}
