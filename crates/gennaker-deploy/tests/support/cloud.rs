//! An in-memory cloud following the Provider and TrafficRouter contracts exactly:
//! Frigga naming with the next sequence, idempotent origins, instances that turn Up
//! after a few reads (never, for a spec with `"unhealthy": true`), and a log of every
//! call that changed something, in order, so tests can check nothing was done twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use gennaker_core::naming::{Moniker, next_sequence};
use gennaker_deploy::{
    Capacity, CreateServerGroup, DeployError, HealthState, Instance, LoadBalancer,
    LoadBalancerSpec, Provider, ServerGroup, TrafficRouter,
};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<(String, String), (ServerGroup, Vec<u32>)>,
    origins: HashMap<(String, String), ServerGroup>,
    balancers: BTreeMap<(String, String), LoadBalancer>,
    weights: BTreeMap<(String, String), BTreeMap<String, u32>>,
    log: Vec<String>,
    clock: i64,
    instance_ids: u64,
    ports: u16,
}

/// The fake cloud (provider `local`).
#[derive(Debug, Default)]
pub(crate) struct FakeCloud {
    state: Mutex<State>,
}

/// Reads an instance needs before it turns Up (spec `healthyAfterPolls`, default 2).
fn reads_until_up(spec: &Value) -> u32 {
    if spec.get("unhealthy").and_then(Value::as_bool) == Some(true) {
        return u32::MAX;
    }
    spec.get("healthyAfterPolls")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(2)
}

impl State {
    fn new_instance(&mut self, group: &str) -> Instance {
        self.instance_ids += 1;
        Instance {
            id: format!("{group}-{}", self.instance_ids),
            health: HealthState::Starting,
            address: None,
            restarts: 0,
            reason: None,
            details: BTreeMap::new(),
        }
    }

    fn set_size(&mut self, key: &(String, String), desired: u32) {
        let Some((group, _)) = self.groups.get(key) else {
            return;
        };
        let name = group.name.clone();
        let spec = group.spec.clone();
        let mut fresh = Vec::new();
        let have = group.instances.len();
        for _ in have..desired as usize {
            fresh.push(self.new_instance(&name));
        }
        if let Some((group, reads)) = self.groups.get_mut(key) {
            group.instances.truncate(desired as usize);
            reads.truncate(desired as usize);
            for instance in fresh {
                group.instances.push(instance);
                reads.push(reads_until_up(&spec));
            }
        }
    }

    /// Instances' health as their group's state and reads say.
    fn refresh(group: &mut ServerGroup, reads: &[u32]) {
        let disabled = group.disabled;
        for (instance, left) in group.instances.iter_mut().zip(reads) {
            instance.health = match (*left, disabled) {
                (0, false) => HealthState::Up,
                (0, true) => HealthState::OutOfService,
                (u32::MAX, _) => HealthState::Down,
                _ => HealthState::Starting,
            };
        }
    }
}

impl FakeCloud {
    /// Every call that changed something, in order (`create shop-v001`, …).
    pub(crate) fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// How many log entries start with `prefix`.
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.log().iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// A group as it is, without counting as a health poll.
    pub(crate) fn peek(&self, name: &str) -> Option<ServerGroup> {
        let state = self.state.lock().unwrap();
        state
            .groups
            .iter()
            .find(|((_, n), _)| n == name)
            .map(|(_, (g, _))| g.clone())
    }

    /// The names of every existing group, oldest first.
    pub(crate) fn names(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut groups: Vec<&ServerGroup> = state.groups.values().map(|(g, _)| g).collect();
        groups.sort_by_key(|g| g.created_time);
        groups.iter().map(|g| g.name.clone()).collect()
    }

    /// The weights last set on a balancer (empty: default routing).
    pub(crate) fn weights(&self, balancer: &str) -> BTreeMap<String, u32> {
        let state = self.state.lock().unwrap();
        state
            .weights
            .get(&("local".to_owned(), balancer.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Creates a healthy, enabled group of `cluster` (`app[-stack]`) outside any
    /// execution, as an earlier deploy would have.
    pub(crate) async fn seed(
        &self,
        cluster: &str,
        desired: u32,
        spec: Value,
        load_balancers: &[&str],
    ) -> String {
        let parts = gennaker_core::naming::parse_name(cluster);
        let moniker =
            Moniker::new(&parts.app, parts.stack.as_deref(), parts.detail.as_deref()).unwrap();
        let seq = self.state.lock().unwrap().clock;
        let group = self
            .create_server_group(CreateServerGroup {
                account: "local".into(),
                moniker,
                capacity: Capacity::fixed(desired),
                load_balancers: load_balancers.iter().map(|s| s.to_string()).collect(),
                enabled: true,
                spec,
                origin: gennaker_deploy::ServerGroupOrigin {
                    execution_id: "seed".into(),
                    stage_id: format!("seed-{seq}"),
                },
            })
            .await
            .unwrap();
        let mut state = self.state.lock().unwrap();
        if let Some((g, reads)) = state
            .groups
            .get_mut(&("local".to_owned(), group.name.clone()))
        {
            reads.iter_mut().for_each(|r| *r = 0);
            State::refresh(g, reads);
        }
        state.log.clear();
        group.name
    }

    /// Creates the load balancer `name` of application `shop` outside any execution.
    pub(crate) async fn balancer(&self, name: &str) {
        self.balancer_of(name, "shop").await;
    }

    /// Creates the load balancer `name` of `application` outside any execution.
    pub(crate) async fn balancer_of(&self, name: &str, application: &str) {
        self.upsert_load_balancer(LoadBalancerSpec {
            name: name.into(),
            account: "local".into(),
            application: application.into(),
            listen: "127.0.0.1:0".into(),
            allowed_cidrs: vec![],
            ejection_failures: 5,
        })
        .await
        .unwrap();
        self.state.lock().unwrap().log.clear();
    }

    /// Disables a group outside any execution.
    pub(crate) async fn seed_disabled(&self, name: &str) {
        self.disable_server_group("local", name).await.unwrap();
        self.state.lock().unwrap().log.clear();
    }

    /// Enables or disables a group outside any execution, without logging it.
    pub(crate) fn switch_quietly(&self, name: &str, disabled: bool) {
        let mut state = self.state.lock().unwrap();
        if let Some((group, reads)) = state.groups.get_mut(&Self::key("local", name)) {
            group.disabled = disabled;
            State::refresh(group, reads);
        }
    }

    fn key(account: &str, name: &str) -> (String, String) {
        (account.to_owned(), name.to_owned())
    }

    /// Enables or disables a group, logging the change (not a repeat).
    fn switch(
        &self,
        account: &str,
        name: &str,
        disabled: bool,
    ) -> Result<ServerGroup, DeployError> {
        let mut state = self.state.lock().unwrap();
        let key = Self::key(account, name);
        let (group, reads) = state
            .groups
            .get_mut(&key)
            .ok_or_else(|| DeployError::no_server_group(name))?;
        let changed = group.disabled != disabled;
        group.disabled = disabled;
        State::refresh(group, reads);
        let group = group.clone();
        if changed {
            let verb = if disabled { "disable" } else { "enable" };
            Self::record(&mut state, format!("{verb} {name}"));
        }
        Ok(group)
    }

    fn record(state: &mut State, entry: String) {
        state.log.push(entry);
    }
}

#[async_trait]
impl Provider for FakeCloud {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create_server_group(
        &self,
        request: CreateServerGroup,
    ) -> Result<ServerGroup, DeployError> {
        request.capacity.validate().map_err(DeployError::Invalid)?;
        let mut state = self.state.lock().unwrap();
        let origin = (
            request.origin.execution_id.clone(),
            request.origin.stage_id.clone(),
        );
        if let Some(existing) = state.origins.get(&origin) {
            let key = Self::key(&existing.account, &existing.name);
            return Ok(state
                .groups
                .get(&key)
                .map(|(g, _)| g.clone())
                .unwrap_or_else(|| existing.clone()));
        }
        let cluster = request.moniker.cluster();
        let latest = state
            .groups
            .values()
            .filter(|(g, _)| g.account == request.account && g.cluster() == cluster)
            .max_by_key(|(g, _)| g.created_time)
            .and_then(|(g, _)| g.moniker.sequence);
        let moniker = request.moniker.clone().with_sequence(next_sequence(latest));
        state.clock += 1;
        let group = ServerGroup {
            name: moniker.name(),
            moniker,
            account: request.account.clone(),
            cloud_provider: "local".into(),
            capacity: request.capacity,
            disabled: !request.enabled,
            load_balancers: request.load_balancers.clone(),
            instances: Vec::new(),
            created_time: state.clock,
            spec: request.spec.clone(),
            origin: Some(request.origin.clone()),
        };
        let key = Self::key(&group.account, &group.name);
        Self::record(
            &mut state,
            format!("create {} {}", group.name, request.capacity.desired),
        );
        state
            .groups
            .insert(key.clone(), (group.clone(), Vec::new()));
        state.origins.insert(origin, group);
        state.set_size(&key, request.capacity.desired);
        let (group, reads) = state.groups.get_mut(&key).unwrap();
        State::refresh(group, reads);
        Ok(group.clone())
    }

    async fn resize_server_group(
        &self,
        account: &str,
        name: &str,
        capacity: Capacity,
    ) -> Result<ServerGroup, DeployError> {
        capacity.validate().map_err(DeployError::Invalid)?;
        let mut state = self.state.lock().unwrap();
        let key = Self::key(account, name);
        let (group, _) = state
            .groups
            .get_mut(&key)
            .ok_or_else(|| DeployError::no_server_group(name))?;
        if group.capacity != capacity {
            group.capacity = capacity;
            Self::record(&mut state, format!("resize {name} {}", capacity.desired));
            state.set_size(&key, capacity.desired);
        }
        let (group, reads) = state.groups.get_mut(&key).unwrap();
        State::refresh(group, reads);
        Ok(group.clone())
    }

    async fn enable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        self.switch(account, name, false)
    }

    async fn disable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        self.switch(account, name, true)
    }

    async fn destroy_server_group(&self, account: &str, name: &str) -> Result<(), DeployError> {
        let mut state = self.state.lock().unwrap();
        if state.groups.remove(&Self::key(account, name)).is_some() {
            Self::record(&mut state, format!("destroy {name}"));
        }
        Ok(())
    }

    async fn server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<ServerGroup>, DeployError> {
        let mut state = self.state.lock().unwrap();
        Ok(state
            .groups
            .get_mut(&Self::key(account, name))
            .map(|(group, reads)| {
                // Each read is a health check: starting instances get closer to Up.
                for left in reads.iter_mut() {
                    if *left != u32::MAX && *left > 0 {
                        *left -= 1;
                    }
                }
                State::refresh(group, reads);
                group.clone()
            }))
    }

    async fn server_groups(&self, application: &str) -> Result<Vec<ServerGroup>, DeployError> {
        let state = self.state.lock().unwrap();
        let mut groups: Vec<ServerGroup> = state
            .groups
            .values()
            .map(|(g, _)| g.clone())
            .filter(|g| g.moniker.app == application)
            .collect();
        groups.sort_by_key(|g| g.created_time);
        Ok(groups)
    }
}

impl FakeCloud {
    fn routed(state: &State, account: &str, balancer: &LoadBalancer) -> BTreeMap<String, u32> {
        let key = Self::key(account, &balancer.spec.name);
        let enabled: Vec<&ServerGroup> = state
            .groups
            .values()
            .map(|(g, _)| g)
            .filter(|g| {
                !g.disabled
                    && g.account == account
                    && g.load_balancers.contains(&balancer.spec.name)
            })
            .collect();
        match state.weights.get(&key).filter(|w| !w.is_empty()) {
            Some(fixed) => enabled
                .iter()
                .filter_map(|g| fixed.get(&g.name).map(|w| (g.name.clone(), *w)))
                .collect(),
            None => enabled
                .iter()
                .map(|g| (g.name.clone(), u32::try_from(g.up_instances()).unwrap_or(0)))
                .filter(|(_, w)| *w > 0)
                .collect(),
        }
    }

    fn view(state: &State, account: &str, name: &str) -> Option<LoadBalancer> {
        let mut balancer = state.balancers.get(&Self::key(account, name))?.clone();
        balancer.weights = Self::routed(state, account, &balancer);
        Some(balancer)
    }
}

#[async_trait]
impl TrafficRouter for FakeCloud {
    async fn upsert_load_balancer(
        &self,
        spec: LoadBalancerSpec,
    ) -> Result<LoadBalancer, DeployError> {
        let mut state = self.state.lock().unwrap();
        let key = Self::key(&spec.account, &spec.name);
        let address = match spec.listen.strip_suffix(":0") {
            Some(host) => {
                state.ports += 1;
                format!("{host}:{}", 40000 + state.ports)
            }
            None => spec.listen.clone(),
        };
        Self::record(
            &mut state,
            format!("upsert-lb {} {}", spec.name, spec.allowed_cidrs.join(",")),
        );
        state.balancers.insert(
            key,
            LoadBalancer {
                spec: spec.clone(),
                address,
                weights: BTreeMap::new(),
                backends: Vec::new(),
                details: BTreeMap::new(),
            },
        );
        Ok(Self::view(&state, &spec.account, &spec.name).unwrap())
    }

    async fn delete_load_balancer(&self, account: &str, name: &str) -> Result<(), DeployError> {
        let mut state = self.state.lock().unwrap();
        if state.balancers.remove(&Self::key(account, name)).is_some() {
            Self::record(&mut state, format!("delete-lb {name}"));
        }
        Ok(())
    }

    async fn load_balancer(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<LoadBalancer>, DeployError> {
        Ok(Self::view(&self.state.lock().unwrap(), account, name))
    }

    async fn load_balancers(&self, application: &str) -> Result<Vec<LoadBalancer>, DeployError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .balancers
            .iter()
            .filter(|(_, lb)| lb.spec.application == application)
            .filter_map(|((account, name), _)| Self::view(&state, account, name))
            .collect())
    }

    async fn set_weights(
        &self,
        account: &str,
        load_balancer: &str,
        weights: BTreeMap<String, u32>,
    ) -> Result<LoadBalancer, DeployError> {
        let mut state = self.state.lock().unwrap();
        let key = Self::key(account, load_balancer);
        if !state.balancers.contains_key(&key) {
            return Err(DeployError::no_load_balancer(load_balancer));
        }
        if state.weights.get(&key).cloned().unwrap_or_default() != weights {
            Self::record(
                &mut state,
                format!("weights {load_balancer} {}", json!(weights)),
            );
            state.weights.insert(key, weights);
        }
        Ok(Self::view(&state, account, load_balancer).unwrap())
    }
}
