//! The load balancers as the provider keeps them: their specs persisted in the store,
//! their listeners run by [`LoadBalancers`], and a fresh [`routing_table`] handed to
//! each whenever the groups, their health, their enablement or the weights change.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gennaker_deploy::{DeployError, LoadBalancer, LoadBalancerSpec};
use gennaker_store::ExpectedVersion;

use super::{routing_table, shares};
use crate::error::LocalError;
use crate::group::Group;
use crate::lb::{BackendGroup, LbError, ListenerSpec, LoadBalancers};
use crate::lock;
use crate::policy::HostPolicy;
use crate::records::{BalancerRecord, LOAD_BALANCER, PROVIDER, record_key};
use crate::registry::Registry;

/// The load balancers and the routing tables last handed to them.
#[derive(Debug)]
pub(crate) struct Traffic {
    registry: Arc<Registry>,
    lbs: LoadBalancers,
    /// How long disabling waits for requests in flight to finish.
    drain_timeout: Duration,
    /// Which addresses a listener may use.
    policy: HostPolicy,
    /// By record key.
    balancers: Mutex<BTreeMap<String, BalancerRecord>>,
    /// The routing table last handed to each load balancer, by record key.
    routes: Mutex<BTreeMap<String, Vec<BackendGroup>>>,
}

impl Traffic {
    pub(crate) fn new(
        registry: Arc<Registry>,
        lbs: LoadBalancers,
        drain_timeout: Duration,
        policy: HostPolicy,
    ) -> Self {
        Self {
            registry,
            lbs,
            drain_timeout,
            policy,
            balancers: Mutex::new(BTreeMap::new()),
            routes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Re-creates the listeners of every stored load balancer (after a restart), each
    /// with its routing table of the server groups restored before. One that cannot
    /// listen any more is logged and kept, so it can be fixed by an upsert.
    pub(crate) async fn restore(&self) -> Result<(), LocalError> {
        for resource in self
            .registry
            .store()
            .list_resources(PROVIDER, LOAD_BALANCER, "")
            .await?
        {
            let record: BalancerRecord =
                serde_json::from_value(resource.document).map_err(|e| LocalError::Corrupt {
                    kind: "load balancer",
                    key: resource.key.clone(),
                    reason: e.to_string(),
                })?;
            let listening = self.listen(&record).await;
            if let Err(e) = &listening {
                tracing::error!(load_balancer = %record.spec.name, error = %e, "load balancer not restored");
            }
            lock(&self.balancers).insert(resource.key.clone(), record);
            if listening.is_ok() {
                // Its routing table at once: the groups are restored already.
                self.sync(&resource.key);
            }
        }
        Ok(())
    }

    /// Hands fresh routing tables to the load balancers `group` joins.
    pub(crate) fn sync_group(&self, group: &Group) {
        let (account, names) = {
            let state = group.state();
            (
                state.record.account.clone(),
                state.record.load_balancers.clone(),
            )
        };
        for name in names {
            self.sync(&record_key(&account, &name));
        }
    }

    /// Recomputes one load balancer's routing table and hands it over.
    fn sync(&self, key: &str) {
        let Some(balancer) = lock(&self.balancers).get(key).cloned() else {
            return;
        };
        let table = routing_table(
            &balancer.spec.account,
            &balancer.spec.name,
            &self.registry.routes(),
            &balancer.weights,
        );
        if let Err(e) = self.lbs.set_backends(&balancer.spec.name, table.clone()) {
            tracing::warn!(load_balancer = %balancer.spec.name, error = %e, "routing table not applied");
        }
        lock(&self.routes).insert(key.to_owned(), table);
    }

    /// The routing table last handed to load balancer `key`.
    pub(crate) fn routes_of(&self, key: &str) -> Option<Vec<BackendGroup>> {
        lock(&self.routes).get(key).cloned()
    }

    /// Enables or disables a group under its operation lock; disabling drains it too.
    pub(crate) async fn switch(&self, group: &Group, disabled: bool) {
        let _ops = group.ops.lock().await;
        self.set_disabled(group, disabled).await;
        if disabled {
            self.drain(group).await;
        }
    }

    /// Takes a group out of its load balancers or puts it back (caller holds its
    /// operation lock).
    pub(crate) async fn set_disabled(&self, group: &Group, disabled: bool) {
        let changed = {
            let mut state = group.state();
            let changed = state.record.disabled != disabled;
            state.record.disabled = disabled;
            changed
        };
        if changed {
            self.registry.persist(group).await;
        }
        // Always re-sync: a repeated call after a crash re-applies the routing.
        self.sync_group(group);
    }

    /// Waits (bounded) for requests in flight to the group through its load balancers.
    pub(crate) async fn drain(&self, group: &Group) {
        let (name, balancers) = {
            let state = group.state();
            (
                state.record.name.clone(),
                state.record.load_balancers.clone(),
            )
        };
        for balancer in balancers {
            if !self.lbs.drain(&balancer, &name, self.drain_timeout).await {
                tracing::warn!(load_balancer = %balancer, group = %name, "requests still in flight after the drain timeout");
            }
        }
    }

    /// Creates or changes a load balancer: listening first, so a spec that cannot
    /// listen (bad address or CIDR) is refused without being stored.
    pub(crate) async fn upsert(&self, spec: LoadBalancerSpec) -> Result<LoadBalancer, DeployError> {
        let key = record_key(&spec.account, &spec.name);
        let previous = lock(&self.balancers).get(&key).cloned();
        let mut record = BalancerRecord {
            address: previous.as_ref().and_then(|p| p.address.clone()),
            weights: previous.map(|p| p.weights).unwrap_or_default(),
            spec,
        };
        let address = self.listen(&record).await?;
        record.address = Some(address.to_string());
        self.save(&key, &record).await?;
        self.sync(&key);
        Ok(self.view(&key, &record))
    }

    /// Fixes the weights of a load balancer's groups (empty: follow `Up` instances).
    pub(crate) async fn set_weights(
        &self,
        account: &str,
        name: &str,
        weights: BTreeMap<String, u32>,
    ) -> Result<LoadBalancer, DeployError> {
        let key = record_key(account, name);
        let Some(mut record) = lock(&self.balancers).get(&key).cloned() else {
            return Err(DeployError::no_load_balancer(name));
        };
        record.weights = weights;
        self.save(&key, &record).await?;
        self.sync(&key);
        Ok(self.view(&key, &record))
    }

    /// Stops a listener and forgets it (missing: nothing to do).
    pub(crate) async fn delete(&self, account: &str, name: &str) -> Result<(), DeployError> {
        let key = record_key(account, name);
        self.lbs.remove(name).await;
        self.registry
            .store()
            .delete_resource(PROVIDER, LOAD_BALANCER, &key)
            .await
            .map_err(LocalError::from)?;
        lock(&self.balancers).remove(&key);
        lock(&self.routes).remove(&key);
        Ok(())
    }

    /// One load balancer as the deploy layer sees it.
    pub(crate) fn balancer(&self, account: &str, name: &str) -> Option<LoadBalancer> {
        let key = record_key(account, name);
        let record = lock(&self.balancers).get(&key).cloned();
        record.map(|r| self.view(&key, &r))
    }

    /// The load balancers of an application as the deploy layer sees them.
    pub(crate) fn balancers_of(&self, application: &str) -> Vec<LoadBalancer> {
        let records: Vec<(String, BalancerRecord)> = lock(&self.balancers)
            .iter()
            .filter(|(_, r)| r.spec.application == application)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        records
            .iter()
            .map(|(key, record)| self.view(key, record))
            .collect()
    }

    /// `(account, name)` of every load balancer.
    pub(crate) fn names(&self) -> Vec<(String, String)> {
        lock(&self.balancers)
            .values()
            .map(|b| (b.spec.account.clone(), b.spec.name.clone()))
            .collect()
    }

    /// Starts or changes the listener of a record; returns where it listens. A spec
    /// asking for port 0 keeps the port it was given before, so clients find it after a
    /// restart.
    async fn listen(&self, record: &BalancerRecord) -> Result<SocketAddr, DeployError> {
        let asked: SocketAddr = record.spec.listen.parse().map_err(|_| {
            DeployError::Invalid(format!(
                "listen '{}' is not an address (write e.g. 127.0.0.1:8080)",
                record.spec.listen
            ))
        })?;
        let listen = match record.address.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(previous)) if asked.port() == 0 && previous.ip() == asked.ip() => previous,
            _ => asked,
        };
        // Checked on every listen, a restored one too: a narrowed policy closes it.
        self.policy
            .check_listen(listen)
            .map_err(DeployError::Invalid)?;
        self.lbs
            .upsert(ListenerSpec {
                name: record.spec.name.clone(),
                listen,
                allowed_cidrs: record.spec.allowed_cidrs.clone(),
                ejection_failures: record.spec.ejection_failures,
            })
            .await
            .map_err(lb_error)
    }

    async fn save(&self, key: &str, record: &BalancerRecord) -> Result<(), DeployError> {
        let document = serde_json::to_value(record)
            .map_err(|e| DeployError::Invalid(format!("load balancer: {e}")))?;
        self.registry
            .store()
            .put_resource(
                PROVIDER,
                LOAD_BALANCER,
                key,
                &document,
                ExpectedVersion::Any,
            )
            .await
            .map_err(LocalError::from)?;
        lock(&self.balancers).insert(key.to_owned(), record.clone());
        Ok(())
    }

    fn view(&self, key: &str, record: &BalancerRecord) -> LoadBalancer {
        LoadBalancer {
            spec: record.spec.clone(),
            address: record.address.clone().unwrap_or_default(),
            weights: shares(&self.routes_of(key).unwrap_or_default()),
            backends: Vec::new(),
            details: BTreeMap::new(),
        }
    }

    /// Installs a balancer record as if its listener were up, for tests of the wiring
    /// without listeners.
    #[cfg(test)]
    pub(crate) fn install(&self, key: &str, record: BalancerRecord) {
        lock(&self.balancers).insert(key.to_owned(), record);
    }
}

fn lb_error(err: LbError) -> DeployError {
    match err {
        LbError::BadCidr(_) => DeployError::Invalid(err.to_string()),
        LbError::Bind { .. } | LbError::Unknown(_) => DeployError::Unavailable(err.to_string()),
    }
}
