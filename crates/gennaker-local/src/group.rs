//! A server group at run time: its persisted record, its instances' live health and the
//! supervisor task of each instance, behind one short-held lock.
//!
//! The record is the truth that survives restarts; health is only ever in memory (it is
//! re-learnt by probing). Writers of the record take `persist` (async) so the store always
//! ends up with the newest snapshot even when two tasks save at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use gennaker_deploy::{HealthState, Instance, ServerGroup};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lb::Backend;
use crate::records::GroupRecord;
use crate::routing::GroupRoutes;
use crate::spec::ProcessSpec;

/// An instance's health as the supervisor last saw it.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) health: HealthState,
    pub(crate) reason: Option<String>,
    /// Consecutive failed probes.
    pub(crate) failures: u32,
}

impl Live {
    pub(crate) fn starting() -> Self {
        Self {
            health: HealthState::Starting,
            reason: None,
            failures: 0,
        }
    }
}

/// The handle of an instance's supervisor task.
#[derive(Debug)]
pub(crate) struct Supervisor {
    /// Cancelled: stop the process, then end.
    pub(crate) stop: CancellationToken,
    pub(crate) join: JoinHandle<()>,
}

/// Everything about a group that changes.
#[derive(Debug)]
pub(crate) struct GroupState {
    pub(crate) record: GroupRecord,
    pub(crate) live: BTreeMap<u32, Live>,
    pub(crate) supervisors: BTreeMap<u32, Supervisor>,
}

/// One server group at run time.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) key: String,
    pub(crate) spec: ProcessSpec,
    state: Mutex<GroupState>,
    /// Serialises snapshot-and-save, so saves land in order.
    pub(crate) persist: tokio::sync::Mutex<()>,
    /// Serialises operations on the group (resize, enable, disable, destroy).
    pub(crate) ops: tokio::sync::Mutex<()>,
}

impl Group {
    pub(crate) fn new(record: GroupRecord, spec: ProcessSpec) -> Self {
        Self {
            key: record.key(),
            spec,
            state: Mutex::new(GroupState {
                record,
                live: BTreeMap::new(),
                supervisors: BTreeMap::new(),
            }),
            persist: tokio::sync::Mutex::new(()),
            ops: tokio::sync::Mutex::new(()),
        }
    }

    /// The state; never held across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, GroupState> {
        crate::lock(&self.state)
    }

    pub(crate) fn record(&self) -> GroupRecord {
        self.state().record.clone()
    }

    /// What routing needs of this group.
    pub(crate) fn routes(&self) -> GroupRoutes {
        let state = self.state();
        let up = state
            .live
            .iter()
            .filter(|(_, live)| live.health == HealthState::Up)
            .filter_map(|(index, _)| {
                let instance = state.record.instances.get(index)?;
                Some(Backend {
                    instance_id: instance.id.clone(),
                    address: SocketAddr::from(([127, 0, 0, 1], instance.port)),
                })
            })
            .collect();
        GroupRoutes {
            name: state.record.name.clone(),
            account: state.record.account.clone(),
            enabled: !state.record.disabled,
            load_balancers: state.record.load_balancers.clone(),
            up,
        }
    }

    /// The group as the deploy layer sees it.
    pub(crate) fn view(&self) -> ServerGroup {
        let state = self.state();
        let record = &state.record;
        let instances = record
            .instances
            .iter()
            .map(|(index, instance)| {
                let live = state
                    .live
                    .get(index)
                    .cloned()
                    .unwrap_or_else(Live::starting);
                let health = if record.disabled && live.health == HealthState::Up {
                    HealthState::OutOfService
                } else {
                    live.health
                };
                let mut details: BTreeMap<String, Value> = BTreeMap::new();
                details.insert("port".to_owned(), json!(instance.port));
                if let Some(pid) = instance.pid {
                    details.insert("pid".to_owned(), json!(pid));
                }
                if let Some(artifact) = &record.artifact {
                    details.insert("artifactSha256".to_owned(), json!(artifact.sha256));
                }
                Instance {
                    id: instance.id.clone(),
                    health,
                    address: Some(format!("127.0.0.1:{}", instance.port)),
                    restarts: instance.restarts,
                    reason: live.reason,
                    details,
                }
            })
            .collect();
        ServerGroup {
            name: record.name.clone(),
            moniker: record.moniker.clone(),
            account: record.account.clone(),
            cloud_provider: "local".to_owned(),
            capacity: record.capacity,
            disabled: record.disabled,
            load_balancers: record.load_balancers.clone(),
            instances,
            created_time: record.created_time,
            spec: record.spec.clone(),
            origin: record.origin.clone(),
        }
    }
}
