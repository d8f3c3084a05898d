//! What providers create and report, in Spinnaker's vocabulary and JSON field names.

use std::collections::BTreeMap;

use gennaker_core::naming::Moniker;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many instances a server group runs: `min ≤ desired ≤ max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Capacity {
    /// The fewest instances.
    pub min: u32,
    /// The most instances.
    pub max: u32,
    /// How many should run now.
    pub desired: u32,
}

impl Capacity {
    /// `desired` instances, with `min` and `max` equal to it (what red/black restores).
    pub fn fixed(desired: u32) -> Self {
        Self {
            min: desired,
            max: desired,
            desired,
        }
    }

    /// Checks `min ≤ desired ≤ max`, naming the numbers when they are not.
    pub fn validate(&self) -> Result<(), String> {
        if self.min <= self.desired && self.desired <= self.max {
            Ok(())
        } else {
            Err(format!(
                "capacity must satisfy min ≤ desired ≤ max, got min {}, desired {}, max {}",
                self.min, self.desired, self.max
            ))
        }
    }
}

/// An instance's health, as the provider's checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthState {
    /// Started; not yet passed a health check.
    Starting,
    /// Passing its health checks: may take traffic (when its server group is enabled).
    Up,
    /// Failing its health checks, or not running.
    Down,
    /// Healthy but taken out of service (its server group is disabled, or draining).
    OutOfService,
}

impl HealthState {
    /// Whether the instance may receive traffic.
    pub fn is_up(self) -> bool {
        self == Self::Up
    }
}

/// One running copy of a server group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Unique id (`app-v001-0`, a pod name…).
    pub id: String,
    /// Its health.
    pub health: HealthState,
    /// Where it listens (`127.0.0.1:40123`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How many times the provider restarted it after it crashed.
    #[serde(default)]
    pub restarts: u32,
    /// Why it is down, when it is (`exited with status 1`, `GET /health → 503`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Provider-specific facts (pid, node…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Value>,
}

/// The execution stage that created a server group: how a task repeated after a crash
/// finds its own effect instead of creating a second group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerGroupOrigin {
    /// The execution.
    pub execution_id: String,
    /// The stage within it.
    pub stage_id: String,
}

/// A request to create the next server group of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateServerGroup {
    /// The account (`local`, a Kubernetes context…).
    pub account: String,
    /// The cluster: application, stack, detail (no sequence: the provider picks the next).
    pub moniker: Moniker,
    /// How many instances.
    pub capacity: Capacity,
    /// Load balancers the group's instances join while it is enabled.
    #[serde(default)]
    pub load_balancers: Vec<String>,
    /// Whether it takes traffic as soon as instances are up (`false`: created disabled,
    /// as rolling red/black does).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What to run: provider-specific (the local provider's process spec and artifact).
    pub spec: Value,
    /// The stage creating it: the same origin always yields the same server group.
    pub origin: ServerGroupOrigin,
}

fn default_true() -> bool {
    true
}

/// An immutable, versioned set of identical instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerGroup {
    /// `app-stack-detail-v007`.
    pub name: String,
    /// Its parts.
    pub moniker: Moniker,
    /// The account it lives in.
    pub account: String,
    /// `local`, `kubernetes`.
    pub cloud_provider: String,
    /// Its capacity.
    pub capacity: Capacity,
    /// `true` when disabled: out of every load balancer, instances kept.
    pub disabled: bool,
    /// Load balancers it joins while enabled.
    pub load_balancers: Vec<String>,
    /// Its instances and their health.
    pub instances: Vec<Instance>,
    /// Milliseconds since the epoch.
    pub created_time: i64,
    /// What it runs (provider-specific), for rollbacks and `findArtifactFromExecution`.
    pub spec: Value,
    /// The stage that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ServerGroupOrigin>,
}

impl ServerGroup {
    /// The cluster it belongs to.
    pub fn cluster(&self) -> String {
        self.moniker.cluster()
    }

    /// How many instances are `Up`.
    pub fn up_instances(&self) -> usize {
        self.instances.iter().filter(|i| i.health.is_up()).count()
    }

    /// Whether every desired instance runs and is `Up` (a deploy's "stable" point).
    pub fn is_healthy(&self) -> bool {
        self.up_instances() >= self.capacity.desired as usize
    }
}

/// What a load balancer should be: created or changed by `upsertLoadBalancer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// Unique name within the account (`shop-frontend`).
    pub name: String,
    /// The account.
    pub account: String,
    /// The application that owns it.
    pub application: String,
    /// Where it listens: `127.0.0.1:8080` (port 0 picks a free one).
    pub listen: String,
    /// Source networks allowed to connect (CIDRs); empty: everyone.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Consecutive failures (5xx or connect errors) that eject an instance for a while.
    #[serde(default = "default_ejection_failures")]
    pub ejection_failures: u32,
}

fn default_ejection_failures() -> u32 {
    5
}

/// A load balancer as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// What was asked for.
    #[serde(flatten)]
    pub spec: LoadBalancerSpec,
    /// The address it actually listens on (the port chosen for `:0`).
    pub address: String,
    /// Traffic share per server group name, as routed now (sums to 100 when any
    /// group takes traffic).
    pub weights: BTreeMap<String, u32>,
    /// What it routes to in front of the server groups, where that is another load
    /// balancer (a Kubernetes Ingress's Services, `service web`); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    /// Provider-specific facts worth showing (a Kubernetes Ingress's `kind`,
    /// `namespace`, `hosts`, and for an ingress-nginx canary its `canaryWeight`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Value>,
}
