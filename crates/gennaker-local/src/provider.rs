//! [`LocalProvider`]: server groups as supervised processes on this machine.
//!
//! The store is written before anything is started (a group is persisted with its origin
//! before its first process runs), so after a crash at any point a restarted server finds
//! every group it may have started processes for, adopts the processes that still run,
//! restarts the missing ones and kills marked processes that belong to no group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::naming::{Moniker, next_sequence};
use gennaker_deploy::{
    Capacity, CreateServerGroup, DeployError, HealthState, Provider, ServerGroup,
};
use gennaker_store::{ExpectedVersion, ResourceStore};
use tokio_util::sync::CancellationToken;

use crate::artifacts::{ArtifactCache, PinnedArtifact};
use crate::error::LocalError;
use crate::group::{Group, Live, Supervisor};
use crate::lb::{BackendGroup, LoadBalancers};
use crate::process::{InstanceProcess, Launch, MARKER_ENV, marked_processes, marker};
use crate::records::{
    BalancerRecord, GroupRecord, InstanceRecord, LOAD_BALANCER, PROVIDER, SERVER_GROUP, record_key,
};
use crate::spec::ProcessSpec;
use crate::supervisor::{Start, next_health, supervise};

/// Timings of supervision; the defaults suit production, tests shorten them.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Between health probes (and crash checks) of an instance.
    pub health_interval: Duration,
    /// Consecutive failed probes that make an instance `Down`.
    pub unhealthy_threshold: u32,
    /// The first restart delay after a crash; doubled for each crash in a row.
    pub restart_backoff: Duration,
    /// The longest restart delay.
    pub max_restart_backoff: Duration,
    /// How long disabling waits for requests in flight to finish.
    pub drain_timeout: Duration,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(2),
            unhealthy_threshold: 3,
            restart_backoff: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Shared by the provider and its supervisor tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ResourceStore>,
    pub(crate) data_dir: PathBuf,
    pub(crate) cache: ArtifactCache,
    pub(crate) lbs: LoadBalancers,
    /// For health probes: straight to 127.0.0.1, never through a proxy.
    pub(crate) http: reqwest::Client,
    /// For artifact downloads: honours the system's proxy settings.
    artifact_http: reqwest::Client,
    pub(crate) settings: LocalSettings,
    /// Cancelled: supervision ends, processes keep running.
    pub(crate) shutdown: CancellationToken,
    groups: Mutex<BTreeMap<String, Arc<Group>>>,
    pub(crate) balancers: Mutex<BTreeMap<String, BalancerRecord>>,
    /// The routing table last handed to each load balancer (by record key).
    routes: Mutex<BTreeMap<String, Vec<BackendGroup>>>,
    /// Serialises creations, so one origin never creates two groups.
    create: tokio::sync::Mutex<()>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Updates under these locks are single assignments: a poisoned lock holds
    // consistent data.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `local` provider and traffic router (see the crate docs).
#[derive(Debug, Clone)]
pub struct LocalProvider {
    pub(crate) inner: Arc<Inner>,
}

impl LocalProvider {
    /// Loads every server group and load balancer from the store, re-creates the
    /// listeners, adopts live instances (same pid AND process start time), restarts the
    /// missing ones and kills processes of this data directory that belong to no group.
    /// Supervision runs until `shutdown` is cancelled (or [`shutdown`](Self::shutdown)).
    pub async fn start(
        store: Arc<dyn ResourceStore>,
        data_dir: &Path,
        lbs: LoadBalancers,
        settings: LocalSettings,
        shutdown: CancellationToken,
    ) -> Result<Self, LocalError> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|e| LocalError::io(data_dir, &e))?;
        // The marker compares paths as text: use one spelling per directory.
        let data_dir = tokio::fs::canonicalize(data_dir)
            .await
            .map_err(|e| LocalError::io(data_dir, &e))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| LocalError::Io {
                path: "http client".to_owned(),
                reason: e.to_string(),
            })?;
        let artifact_http = reqwest::Client::builder()
            .build()
            .map_err(|e| LocalError::Io {
                path: "http client".to_owned(),
                reason: e.to_string(),
            })?;
        let inner = Arc::new(Inner {
            store,
            artifact_http,
            cache: ArtifactCache::new(&data_dir),
            data_dir,
            lbs,
            http,
            settings,
            shutdown,
            groups: Mutex::new(BTreeMap::new()),
            balancers: Mutex::new(BTreeMap::new()),
            routes: Mutex::new(BTreeMap::new()),
            create: tokio::sync::Mutex::new(()),
        });
        inner.restore_balancers().await?;
        inner.restore_groups().await?;
        Ok(Self { inner })
    }

    /// Ends supervision WITHOUT stopping instances (a server restart): the next
    /// [`start`](Self::start) on the same store and data directory adopts them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let groups: Vec<Arc<Group>> = lock(&self.inner.groups).values().cloned().collect();
        for group in groups {
            let supervisors: Vec<Supervisor> = std::mem::take(&mut group.state().supervisors)
                .into_values()
                .collect();
            for supervisor in supervisors {
                let _ = supervisor.join.await;
            }
        }
    }

    /// Destroys every server group (stopping its processes) and deletes every load
    /// balancer: the clean-up of a throw-away installation (`gennaker demo`).
    pub async fn destroy_all(&self) -> Result<(), DeployError> {
        let keys: Vec<(String, String)> = lock(&self.inner.groups)
            .values()
            .map(|g| {
                let state = g.state();
                (state.record.account.clone(), state.record.name.clone())
            })
            .collect();
        for (account, name) in keys {
            self.destroy_server_group(&account, &name).await?;
        }
        let balancers: Vec<(String, String)> = lock(&self.inner.balancers)
            .values()
            .map(|b| (b.spec.account.clone(), b.spec.name.clone()))
            .collect();
        for (account, name) in balancers {
            crate::router::delete_balancer(&self.inner, &account, &name).await?;
        }
        Ok(())
    }

    /// The artifact a server group is pinned to.
    pub fn artifact(&self, account: &str, name: &str) -> Option<PinnedArtifact> {
        self.inner
            .group(&record_key(account, name))
            .and_then(|g| g.state().record.artifact.clone())
    }

    /// The routing table last handed to a load balancer
    /// ([`LoadBalancers::set_backends`]), for status pages and tests.
    pub fn routes(&self, account: &str, load_balancer: &str) -> Option<Vec<BackendGroup>> {
        lock(&self.inner.routes)
            .get(&record_key(account, load_balancer))
            .cloned()
    }

    /// Enables or disables a group under its operation lock; disabling drains it too.
    async fn switch(
        &self,
        account: &str,
        name: &str,
        disabled: bool,
    ) -> Result<ServerGroup, DeployError> {
        let group = self.inner.find(account, name)?;
        let _ops = group.ops.lock().await;
        self.inner.set_disabled(&group, disabled).await;
        if disabled {
            self.inner.drain(&group).await;
        }
        Ok(group.view())
    }
}

fn store_err(err: gennaker_store::StoreError) -> DeployError {
    LocalError::from(err).into()
}

impl Inner {
    pub(crate) fn group(&self, key: &str) -> Option<Arc<Group>> {
        lock(&self.groups).get(key).cloned()
    }

    fn find(&self, account: &str, name: &str) -> Result<Arc<Group>, DeployError> {
        self.group(&record_key(account, name))
            .ok_or_else(|| DeployError::no_server_group(name))
    }

    async fn restore_balancers(&self) -> Result<(), LocalError> {
        for resource in self
            .store
            .list_resources(PROVIDER, LOAD_BALANCER, "")
            .await?
        {
            let record: BalancerRecord =
                serde_json::from_value(resource.document).map_err(|e| LocalError::Corrupt {
                    kind: "load balancer",
                    key: resource.key.clone(),
                    reason: e.to_string(),
                })?;
            if let Err(e) = crate::router::listen(self, &record).await {
                tracing::error!(load_balancer = %record.spec.name, error = %e, "load balancer not restored");
            }
            lock(&self.balancers).insert(resource.key, record);
        }
        Ok(())
    }

    async fn restore_groups(self: &Arc<Self>) -> Result<(), LocalError> {
        let mut marked: HashMap<String, i32> = marked_processes(&self.data_dir)
            .into_iter()
            .map(|(pid, key)| (key, pid))
            .collect();
        let mut restored = Vec::new();
        for resource in self
            .store
            .list_resources(PROVIDER, SERVER_GROUP, "")
            .await?
        {
            let corrupt = |reason: String| LocalError::Corrupt {
                kind: "server group",
                key: resource.key.clone(),
                reason,
            };
            let record: GroupRecord = serde_json::from_value(resource.document.clone())
                .map_err(|e| corrupt(e.to_string()))?;
            let spec = ProcessSpec::parse(&record.spec).map_err(|e| corrupt(e.to_string()))?;
            let group = Arc::new(Group::new(record.clone(), spec));
            lock(&self.groups).insert(group.key.clone(), group.clone());
            for (index, instance) in &record.instances {
                let instance_key = format!("{}/{index}", group.key);
                let found = marked.remove(&instance_key);
                let adopted = match (instance.pid, instance.start_time) {
                    (Some(pid), Some(start)) => InstanceProcess::adopt(pid, start),
                    _ => None,
                }
                // Started but never recorded (a crash in between): found by its marker.
                .or_else(|| {
                    found.and_then(|pid| {
                        crate::process::start_time(pid)
                            .and_then(|start| InstanceProcess::adopt(pid, start))
                    })
                });
                let start = match adopted {
                    Some(process) => {
                        tracing::info!(instance = %instance.id, pid = process.pid, "instance adopted");
                        let (pid, start_time) = (process.pid, process.start_time);
                        if let Some(rec) = group.state().record.instances.get_mut(index) {
                            rec.pid = Some(pid);
                            rec.start_time = Some(start_time);
                        }
                        // A marked process of this instance that is not the adopted one
                        // is a stray duplicate.
                        if let Some(other) = found.filter(|p| *p != pid) {
                            marked.insert(format!("{instance_key}/stray"), other);
                        }
                        Start::Adopted(Box::new(process))
                    }
                    None if instance.pid.is_some() => Start::Lost,
                    None => Start::Fresh,
                };
                group.state().live.insert(*index, Live::starting());
                self.start_supervisor(&group, *index, start);
            }
            restored.push(group);
        }
        // Whatever carries this data directory's marker but belongs to no instance was
        // left by a destroyed group (or a crash mid-destroy): stop it.
        for (key, pid) in marked {
            if let Some(start) = crate::process::start_time(pid)
                && let Some(mut orphan) = InstanceProcess::adopt(pid, start)
            {
                tracing::warn!(pid, instance = %key, "stopping an orphaned instance");
                orphan.stop(Duration::from_secs(5)).await;
            }
        }
        for group in restored {
            self.persist(&group).await;
            self.reconcile(&group)
                .await
                .map_err(|e| LocalError::Spawn {
                    program: group.key.clone(),
                    reason: e.to_string(),
                })?;
        }
        self.sync_all_routes();
        Ok(())
    }

    fn start_supervisor(self: &Arc<Self>, group: &Arc<Group>, index: u32, start: Start) {
        let stop = CancellationToken::new();
        let join = tokio::spawn(supervise(
            self.clone(),
            group.clone(),
            index,
            start,
            stop.clone(),
        ));
        group
            .state()
            .supervisors
            .insert(index, Supervisor { stop, join });
    }

    /// Saves the group's record (the newest snapshot wins).
    pub(crate) async fn persist(&self, group: &Group) {
        if let Err(e) = self.try_persist(group).await {
            tracing::error!(group = %group.key, error = %e, "server group not saved");
        }
    }

    async fn try_persist(&self, group: &Group) -> Result<(), LocalError> {
        let _order = group.persist.lock().await;
        let record = group.record();
        let document = serde_json::to_value(&record).map_err(|e| LocalError::Corrupt {
            kind: "server group",
            key: group.key.clone(),
            reason: e.to_string(),
        })?;
        self.store
            .put_resource(
                PROVIDER,
                SERVER_GROUP,
                &group.key,
                &document,
                ExpectedVersion::Any,
            )
            .await?;
        Ok(())
    }

    /// Every port recorded by any group.
    fn ports_in_use(&self) -> HashSet<u16> {
        lock(&self.groups)
            .values()
            .flat_map(|g| {
                g.state()
                    .record
                    .instances
                    .values()
                    .map(|i| i.port)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A port free on 127.0.0.1 now and not given to another instance.
    fn free_port(&self) -> Result<u16, LocalError> {
        let taken = self.ports_in_use();
        for _ in 0..50 {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|listener| listener.local_addr())
                .map_err(|e| LocalError::Io {
                    path: "127.0.0.1:0".to_owned(),
                    reason: e.to_string(),
                })?
                .port();
            if !taken.contains(&port) {
                return Ok(port);
            }
        }
        Err(LocalError::Io {
            path: "127.0.0.1".to_owned(),
            reason: "no free port found".to_owned(),
        })
    }

    fn launch(&self, group: &Group, index: u32, id: &str, port: u16) -> Launch {
        let record = group.record();
        let spec = &group.spec;
        let program = match (&spec.command, &record.artifact) {
            (Some(command), _) => command.clone(),
            (None, Some(artifact)) => artifact.path.display().to_string(),
            (None, None) => String::new(),
        };
        let instance_dir = self
            .data_dir
            .join("instances")
            .join(&record.account)
            .join(id);
        let mut env = spec.env.clone();
        env.insert("PORT".to_owned(), port.to_string());
        env.insert("INSTANCE_ID".to_owned(), id.to_owned());
        env.insert(
            MARKER_ENV.to_owned(),
            marker(&self.data_dir, &format!("{}/{index}", group.key)),
        );
        Launch {
            program,
            args: spec.args.clone(),
            env,
            working_dir: spec
                .working_dir
                .as_ref()
                .map_or(instance_dir, PathBuf::from),
            log_file: self
                .data_dir
                .join("logs")
                .join(&record.account)
                .join(format!("{id}.log")),
        }
    }

    /// Starts instance `index`'s process (on its recorded port when that is still free)
    /// and records its pid and start time.
    pub(crate) async fn spawn_instance(
        &self,
        group: &Arc<Group>,
        index: u32,
        restart: bool,
    ) -> Result<InstanceProcess, LocalError> {
        let Some(instance) = group.state().record.instances.get(&index).cloned() else {
            return Err(LocalError::Spawn {
                program: group.key.clone(),
                reason: format!("instance {index} is no longer part of the group"),
            });
        };
        let port = if std::net::TcpListener::bind(("127.0.0.1", instance.port)).is_ok() {
            instance.port
        } else {
            self.free_port()?
        };
        let process = InstanceProcess::spawn(&self.launch(group, index, &instance.id, port))?;
        {
            let mut state = group.state();
            if let Some(rec) = state.record.instances.get_mut(&index) {
                rec.port = port;
                rec.pid = Some(process.pid);
                rec.start_time = Some(process.start_time);
                if restart {
                    rec.restarts = rec.restarts.saturating_add(1);
                }
            }
            let reason = state.live.get(&index).and_then(|l| l.reason.clone());
            state.live.insert(
                index,
                Live {
                    reason: if restart { reason } else { None },
                    ..Live::starting()
                },
            );
        }
        tracing::info!(instance = %instance.id, pid = process.pid, port, "instance started");
        self.persist(group).await;
        Ok(process)
    }

    /// Sets an instance's health directly (it exited or could not start).
    pub(crate) fn set_live(
        &self,
        group: &Group,
        index: u32,
        health: HealthState,
        reason: Option<String>,
    ) {
        let changed = {
            let mut state = group.state();
            let live = state.live.entry(index).or_insert_with(Live::starting);
            let changed = (live.health == HealthState::Up) != (health == HealthState::Up);
            *live = Live {
                health,
                reason,
                failures: live.failures,
            };
            changed
        };
        if changed {
            self.sync_routes_of(group);
        }
    }

    /// Applies one probe result; the load balancers follow when `Up` changes.
    pub(crate) fn record_probe(&self, group: &Group, index: u32, result: Result<(), String>) {
        let changed = {
            let mut state = group.state();
            if !state.record.instances.contains_key(&index) {
                return;
            }
            let live = state.live.entry(index).or_insert_with(Live::starting);
            if live.health == HealthState::OutOfService {
                // Being stopped (scale-down): a passing probe must not put it back.
                return;
            }
            let next = next_health(live, &result, self.settings.unhealthy_threshold);
            let changed = (live.health == HealthState::Up) != (next.health == HealthState::Up);
            if changed {
                tracing::info!(group = %group.key, index, health = ?next.health, reason = ?next.reason, "instance health changed");
            }
            *live = next;
            changed
        };
        if changed {
            self.sync_routes_of(group);
        }
    }

    /// Hands fresh routing tables to the load balancers `group` joins.
    pub(crate) fn sync_routes_of(&self, group: &Group) {
        let (account, names) = {
            let state = group.state();
            (
                state.record.account.clone(),
                state.record.load_balancers.clone(),
            )
        };
        for name in names {
            self.sync_routes(&record_key(&account, &name));
        }
    }

    pub(crate) fn sync_all_routes(&self) {
        let keys: Vec<String> = lock(&self.balancers).keys().cloned().collect();
        for key in keys {
            self.sync_routes(&key);
        }
    }

    /// Recomputes one load balancer's routing table and hands it over.
    pub(crate) fn sync_routes(&self, key: &str) {
        let Some(balancer) = lock(&self.balancers).get(key).cloned() else {
            return;
        };
        let groups: Vec<_> = lock(&self.groups).values().map(|g| g.routes()).collect();
        let table = crate::routing::routing_table(
            &balancer.spec.account,
            &balancer.spec.name,
            &groups,
            &balancer.weights,
        );
        if let Err(e) = self.lbs.set_backends(&balancer.spec.name, table.clone()) {
            tracing::warn!(load_balancer = %balancer.spec.name, error = %e, "routing table not applied");
        }
        lock(&self.routes).insert(key.to_owned(), table);
    }

    pub(crate) fn routes_of(&self, key: &str) -> Vec<BackendGroup> {
        lock(&self.routes).get(key).cloned().unwrap_or_default()
    }

    pub(crate) fn forget_routes(&self, key: &str) {
        lock(&self.routes).remove(key);
    }

    /// Brings the number of instances to `desired`: new ones at the lowest free indices,
    /// extras (highest indices) out of the load balancers, drained, then stopped.
    async fn reconcile(self: &Arc<Self>, group: &Arc<Group>) -> Result<(), LocalError> {
        let (desired, present) = {
            let state = group.state();
            (
                state.record.capacity.desired as usize,
                state.record.instances.len(),
            )
        };
        if present < desired {
            let mut added = Vec::new();
            for _ in present..desired {
                let port = self.free_port()?;
                let mut state = group.state();
                let index = (0u32..)
                    .find(|i| !state.record.instances.contains_key(i))
                    .unwrap_or(u32::MAX);
                let id = format!("{}-{index}", state.record.name);
                state.record.instances.insert(
                    index,
                    InstanceRecord {
                        id,
                        port,
                        pid: None,
                        start_time: None,
                        restarts: 0,
                    },
                );
                state.live.insert(index, Live::starting());
                added.push(index);
            }
            // Recorded before started: a crash now leaves instances to start, not
            // processes nobody knows.
            self.try_persist(group).await?;
            for index in added {
                self.start_supervisor(group, index, Start::Fresh);
            }
        } else if present > desired {
            let extras: Vec<u32> = {
                let mut state = group.state();
                let extras: Vec<u32> = state
                    .record
                    .instances
                    .keys()
                    .rev()
                    .take(present - desired)
                    .copied()
                    .collect();
                for index in &extras {
                    state.live.insert(
                        *index,
                        Live {
                            health: HealthState::OutOfService,
                            reason: Some("stopping".to_owned()),
                            failures: 0,
                        },
                    );
                }
                extras
            };
            self.sync_routes_of(group);
            self.drain(group).await;
            for index in extras {
                let supervisor = group.state().supervisors.remove(&index);
                let instance = group.state().record.instances.get(&index).cloned();
                if let Some(supervisor) = supervisor {
                    supervisor.stop.cancel();
                    let _ = supervisor.join.await;
                } else if let Some(instance) = instance
                    && let (Some(pid), Some(start)) = (instance.pid, instance.start_time)
                    && let Some(mut process) = InstanceProcess::adopt(pid, start)
                {
                    process
                        .stop(Duration::from_secs(group.spec.grace_period_seconds))
                        .await;
                }
                {
                    let mut state = group.state();
                    state.record.instances.remove(&index);
                    state.live.remove(&index);
                }
                self.try_persist(group).await?;
            }
        }
        Ok(())
    }

    /// Waits (bounded) for requests in flight to the group through its load balancers.
    async fn drain(&self, group: &Group) {
        let (name, balancers) = {
            let state = group.state();
            (
                state.record.name.clone(),
                state.record.load_balancers.clone(),
            )
        };
        for balancer in balancers {
            if !self
                .lbs
                .drain(&balancer, &name, self.settings.drain_timeout)
                .await
            {
                tracing::warn!(load_balancer = %balancer, group = %name, "requests still in flight after the drain timeout");
            }
        }
    }

    /// The name of the next server group of a cluster: the newest group's sequence + 1
    /// (Frigga/Clouddriver), skipping names still taken after a wrap-around.
    async fn next_moniker(&self, account: &str, cluster: &Moniker) -> Result<Moniker, LocalError> {
        let records = self.load_records().await?;
        let cluster_name = cluster.cluster();
        let same: Vec<&GroupRecord> = records
            .iter()
            .filter(|r| r.account == account && r.moniker.cluster() == cluster_name)
            .collect();
        let newest = same
            .iter()
            .max_by_key(|r| (r.created_time, r.moniker.sequence))
            .and_then(|r| r.moniker.sequence);
        let taken: HashSet<Option<u32>> = same.iter().map(|r| r.moniker.sequence).collect();
        let mut sequence = next_sequence(newest);
        for _ in 0..gennaker_core::naming::SEQUENCE_MODULUS {
            if !taken.contains(&Some(sequence)) {
                break;
            }
            sequence = next_sequence(Some(sequence));
        }
        Ok(cluster.clone().with_sequence(sequence))
    }

    async fn load_records(&self) -> Result<Vec<GroupRecord>, LocalError> {
        self.store
            .list_resources(PROVIDER, SERVER_GROUP, "")
            .await?
            .into_iter()
            .map(|resource| {
                serde_json::from_value(resource.document).map_err(|e| LocalError::Corrupt {
                    kind: "server group",
                    key: resource.key,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    async fn set_disabled(&self, group: &Group, disabled: bool) {
        let changed = {
            let mut state = group.state();
            let changed = state.record.disabled != disabled;
            state.record.disabled = disabled;
            changed
        };
        if changed {
            self.persist(group).await;
        }
        // Always re-sync: a repeated call after a crash re-applies the routing.
        self.sync_routes_of(group);
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create_server_group(
        &self,
        request: CreateServerGroup,
    ) -> Result<ServerGroup, DeployError> {
        request.capacity.validate().map_err(DeployError::Invalid)?;
        let spec = ProcessSpec::parse(&request.spec)?;
        let inner = &self.inner;
        let _one_at_a_time = inner.create.lock().await;
        let records = inner.load_records().await?;
        if let Some(existing) = records
            .iter()
            .find(|r| r.origin.as_ref() == Some(&request.origin))
        {
            return inner
                .group(&existing.key())
                .map(|g| g.view())
                .ok_or_else(|| DeployError::no_server_group(&existing.name));
        }
        let artifact = match &spec.artifact {
            Some(source) => Some(inner.cache.fetch(source, &inner.artifact_http).await?),
            None => None,
        };
        let moniker = inner
            .next_moniker(&request.account, &request.moniker)
            .await?;
        let record = GroupRecord {
            name: moniker.name(),
            moniker,
            account: request.account.clone(),
            capacity: request.capacity,
            disabled: !request.enabled,
            load_balancers: request.load_balancers.clone(),
            created_time: gennaker_store::now_millis(),
            spec: request.spec.clone(),
            origin: Some(request.origin.clone()),
            artifact,
            instances: BTreeMap::new(),
        };
        let document = serde_json::to_value(&record)
            .map_err(|e| DeployError::Invalid(format!("server group: {e}")))?;
        // Persisted (with its origin) before any process starts.
        inner
            .store
            .put_resource(
                PROVIDER,
                SERVER_GROUP,
                &record.key(),
                &document,
                ExpectedVersion::Absent,
            )
            .await
            .map_err(store_err)?;
        let group = Arc::new(Group::new(record, spec));
        lock(&inner.groups).insert(group.key.clone(), group.clone());
        tracing::info!(group = %group.key, "server group created");
        inner.reconcile(&group).await?;
        Ok(group.view())
    }

    async fn resize_server_group(
        &self,
        account: &str,
        name: &str,
        capacity: Capacity,
    ) -> Result<ServerGroup, DeployError> {
        capacity.validate().map_err(DeployError::Invalid)?;
        let group = self.inner.find(account, name)?;
        let _ops = group.ops.lock().await;
        let changed = {
            let mut state = group.state();
            let changed = state.record.capacity != capacity;
            state.record.capacity = capacity;
            changed
        };
        if changed {
            self.inner.try_persist(&group).await?;
        }
        self.inner.reconcile(&group).await?;
        Ok(group.view())
    }

    async fn enable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        self.switch(account, name, false).await
    }

    async fn disable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        self.switch(account, name, true).await
    }

    async fn destroy_server_group(&self, account: &str, name: &str) -> Result<(), DeployError> {
        let Some(group) = self.inner.group(&record_key(account, name)) else {
            // Not known here: make sure no record is left either (idempotent).
            self.inner
                .store
                .delete_resource(PROVIDER, SERVER_GROUP, &record_key(account, name))
                .await
                .map_err(store_err)?;
            return Ok(());
        };
        let _ops = group.ops.lock().await;
        self.inner.set_disabled(&group, true).await;
        self.inner.drain(&group).await;
        group.state().record.capacity = Capacity::fixed(0);
        self.inner.reconcile(&group).await?;
        self.inner
            .store
            .delete_resource(PROVIDER, SERVER_GROUP, &group.key)
            .await
            .map_err(store_err)?;
        lock(&self.inner.groups).remove(&group.key);
        self.inner.sync_routes_of(&group);
        tracing::info!(group = %group.key, "server group destroyed");
        Ok(())
    }

    async fn server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<ServerGroup>, DeployError> {
        Ok(self
            .inner
            .group(&record_key(account, name))
            .map(|g| g.view()))
    }

    async fn server_groups(&self, application: &str) -> Result<Vec<ServerGroup>, DeployError> {
        let mut groups: Vec<ServerGroup> = lock(&self.inner.groups)
            .values()
            .filter(|g| g.state().record.moniker.app == application)
            .map(|g| g.view())
            .collect();
        groups.sort_by(|a, b| {
            (a.cluster(), a.created_time, &a.name).cmp(&(b.cluster(), b.created_time, &b.name))
        });
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    //! The wiring from health changes and enable/disable to the routing tables handed
    //! to the load balancer, without processes or listeners (the balancer record is
    //! installed directly, as if its listener were up).

    use gennaker_core::naming::Moniker;
    use gennaker_deploy::LoadBalancerSpec;
    use gennaker_store::SqlStore;
    use serde_json::json;

    use super::*;

    async fn provider(dir: &Path) -> LocalProvider {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        LocalProvider::start(
            Arc::new(store),
            dir,
            LoadBalancers::default(),
            LocalSettings::default(),
            CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    fn group(name: &str, ports: &[u16]) -> Arc<Group> {
        let instances = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let index = u32::try_from(i).unwrap();
                (
                    index,
                    InstanceRecord {
                        id: format!("{name}-{index}"),
                        port: *port,
                        pid: None,
                        start_time: None,
                        restarts: 0,
                    },
                )
            })
            .collect();
        let record = GroupRecord {
            name: name.to_owned(),
            moniker: Moniker::new("web", None, None).unwrap(),
            account: "local".to_owned(),
            capacity: Capacity::fixed(u32::try_from(ports.len()).unwrap()),
            disabled: false,
            load_balancers: vec!["front".to_owned()],
            created_time: 0,
            spec: json!({"command": "/bin/true"}),
            origin: None,
            artifact: None,
            instances,
        };
        let spec = ProcessSpec::parse(&record.spec).unwrap();
        Arc::new(Group::new(record, spec))
    }

    fn table(provider: &LocalProvider) -> Vec<(String, u32, Vec<String>)> {
        provider
            .routes("local", "front")
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                let ids = g.backends.into_iter().map(|b| b.instance_id).collect();
                (g.server_group, g.weight, ids)
            })
            .collect()
    }

    #[tokio::test]
    async fn health_and_enablement_drive_the_routing_table() {
        let dir = tempfile::tempdir().unwrap();
        let provider = provider(dir.path()).await;
        let inner = &provider.inner;
        let spec = LoadBalancerSpec {
            name: "front".to_owned(),
            account: "local".to_owned(),
            application: "web".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            allowed_cidrs: Vec::new(),
            ejection_failures: 5,
        };
        lock(&inner.balancers).insert(
            record_key("local", "front"),
            BalancerRecord {
                spec,
                address: None,
                weights: BTreeMap::new(),
            },
        );
        let old = group("web-v000", &[41000, 41001]);
        let new = group("web-v001", &[41002]);
        for g in [&old, &new] {
            lock(&inner.groups).insert(g.key.clone(), (*g).clone());
        }

        inner.record_probe(&old, 0, Ok(()));
        assert_eq!(
            table(&provider),
            [
                ("web-v000".to_owned(), 1, vec!["web-v000-0".to_owned()]),
                ("web-v001".to_owned(), 0, vec![])
            ]
        );
        inner.record_probe(&old, 1, Ok(()));
        inner.record_probe(&new, 0, Ok(()));
        assert_eq!(table(&provider)[0].1, 2);
        assert_eq!(table(&provider)[1].1, 1);

        // Failing probes take an instance out once the threshold is reached.
        for _ in 0..inner.settings.unhealthy_threshold {
            inner.record_probe(&old, 1, Err("GET /health → 503".to_owned()));
        }
        assert_eq!(
            table(&provider)[0],
            ("web-v000".to_owned(), 1, vec!["web-v000-0".to_owned()])
        );

        // Disabled: out of the table altogether; enabled: back.
        inner.set_disabled(&old, true).await;
        assert_eq!(table(&provider).len(), 1);
        assert_eq!(table(&provider)[0].0, "web-v001");
        inner.set_disabled(&old, false).await;
        assert_eq!(table(&provider).len(), 2);

        // A crashed instance leaves at once.
        inner.set_live(&new, 0, HealthState::Down, Some("exited".to_owned()));
        assert_eq!(table(&provider)[1], ("web-v001".to_owned(), 0, vec![]));
    }
}
