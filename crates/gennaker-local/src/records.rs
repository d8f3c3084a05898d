//! What the local provider persists (through [`ResourceStore`](gennaker_store::ResourceStore)),
//! so a restarted server knows its server groups, their processes and its load balancers.
//!
//! One document per server group (its instances inside, with pid, process start time and
//! port) and one per load balancer, keyed `<account>/<name>`.

use std::collections::BTreeMap;

use gennaker_core::naming::Moniker;
use gennaker_deploy::{Capacity, LoadBalancerSpec, ServerGroupOrigin};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifacts::PinnedArtifact;

/// The store's provider name for these records.
pub(crate) const PROVIDER: &str = "local";
/// The kind of server group records.
pub(crate) const SERVER_GROUP: &str = "serverGroup";
/// The kind of load balancer records.
pub(crate) const LOAD_BALANCER: &str = "loadBalancer";

/// The key of a record: `<account>/<name>`.
pub(crate) fn record_key(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

/// One instance as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceRecord {
    /// `shop-v001-0`.
    pub(crate) id: String,
    /// The port it was given (`PORT`).
    pub(crate) port: u16,
    /// Its pid, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<i32>,
    /// Its process start time, which tells it apart from a later process with its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_time: Option<u64>,
    /// Restarts after crashes.
    #[serde(default)]
    pub(crate) restarts: u32,
}

/// One server group as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupRecord {
    /// `shop-v001`.
    pub(crate) name: String,
    /// Its parts.
    pub(crate) moniker: Moniker,
    /// The account.
    pub(crate) account: String,
    /// Its capacity.
    pub(crate) capacity: Capacity,
    /// Out of its load balancers.
    pub(crate) disabled: bool,
    /// The load balancers it joins while enabled.
    pub(crate) load_balancers: Vec<String>,
    /// Epoch ms.
    pub(crate) created_time: i64,
    /// The process spec as given.
    pub(crate) spec: Value,
    /// The stage that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<ServerGroupOrigin>,
    /// The pinned artifact, when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) artifact: Option<PinnedArtifact>,
    /// Its instances by index.
    #[serde(default)]
    pub(crate) instances: BTreeMap<u32, InstanceRecord>,
}

impl GroupRecord {
    /// The record's key.
    pub(crate) fn key(&self) -> String {
        record_key(&self.account, &self.name)
    }
}

/// One load balancer as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BalancerRecord {
    /// What was asked for.
    pub(crate) spec: LoadBalancerSpec,
    /// Where it listened last (kept across restarts when the spec says port 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<String>,
    /// Weights fixed by `set_weights`; empty: proportional to `Up` instances.
    #[serde(default)]
    pub(crate) weights: BTreeMap<String, u32>,
}
