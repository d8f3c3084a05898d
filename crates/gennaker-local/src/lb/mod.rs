//! The built-in L7 load balancer: one listener per load balancer, weighted routing
//! between server groups, least-requests within a group, passive ejection, draining.
//!
//! INTERFACE SKELETON: the types and signatures below are the contract the provider
//! codes against; the implementation replaces the bodies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// Source networks allowed (CIDR strings); empty: everyone.
    pub allowed_cidrs: Vec<String>,
    /// Consecutive failures that eject an instance for a while.
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
#[derive(Debug, Clone, Default)]
pub struct LoadBalancers {}

impl LoadBalancers {
    /// Starts a listener, or changes a live one without dropping its connections;
    /// returns the address it listens on.
    pub async fn upsert(&self, spec: ListenerSpec) -> Result<SocketAddr, LbError> {
        Err(LbError::Unknown(spec.name))
    }

    /// Stops a listener after its requests in flight finish; `false` if unknown.
    pub async fn remove(&self, _name: &str) -> bool {
        false
    }

    /// Replaces the routing table of a listener atomically; server groups left out
    /// take no new requests (requests in flight finish).
    pub fn set_backends(&self, name: &str, _groups: Vec<BackendGroup>) -> Result<(), LbError> {
        Err(LbError::Unknown(name.to_owned()))
    }

    /// Waits until no request to `server_group` through `name` is in flight, at most
    /// `max_wait`; `true` when drained.
    pub async fn drain(&self, _name: &str, _server_group: &str, _max_wait: Duration) -> bool {
        true
    }

    /// Per server group counters of a listener.
    pub fn stats(&self, _name: &str) -> Option<Vec<GroupStats>> {
        None
    }

    /// Appends the Prometheus text exposition of every listener's metrics.
    pub fn encode_metrics(&self, _out: &mut String) {}
}
