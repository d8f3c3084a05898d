//! The processes of server groups: bringing a group to its capacity (new instances
//! recorded, then started under a supervisor; extras out of the load balancers, drained,
//! then stopped), starting one instance's process, and passing its health on to routing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gennaker_deploy::{Capacity, HealthState};
use tokio_util::sync::CancellationToken;

use crate::access::INSTANCES_DIR;
use crate::error::LocalError;
use crate::group::{Group, Live, Supervisor};
use crate::health;
use crate::policy::{INSTANCE_PATH, check_account};
use crate::process::{InstanceProcess, Launch, MARKER_ENV, marker};
use crate::provider::LocalSettings;
use crate::records::InstanceRecord;
use crate::registry::Registry;
use crate::routing::Traffic;
use crate::supervisor::{Start, supervise};

/// Starts, stops and supervises the instances of every group.
#[derive(Debug)]
pub(crate) struct Instances {
    pub(crate) registry: Arc<Registry>,
    pub(crate) traffic: Arc<Traffic>,
    /// Where instance directories and logs go, and what the instance marker names.
    data_dir: PathBuf,
    /// For health probes: straight to 127.0.0.1, never through a proxy, and not the
    /// outbound policy's client (instances run on this machine by design).
    pub(crate) http: reqwest::Client,
    pub(crate) settings: LocalSettings,
    /// Cancelled: supervision ends, processes keep running.
    pub(crate) shutdown: CancellationToken,
}

impl Instances {
    pub(crate) fn new(
        registry: Arc<Registry>,
        traffic: Arc<Traffic>,
        data_dir: PathBuf,
        settings: LocalSettings,
        shutdown: CancellationToken,
    ) -> Result<Self, LocalError> {
        Ok(Self {
            registry,
            traffic,
            data_dir,
            http: crate::http_client(reqwest::Client::builder().no_proxy())?,
            settings,
            shutdown,
        })
    }

    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Runs instance `index` of `group` under a new supervisor task.
    pub(crate) fn start_supervisor(self: &Arc<Self>, group: &Arc<Group>, index: u32, start: Start) {
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

    /// Ends every supervisor WITHOUT stopping its process (a server restart).
    pub(crate) async fn detach(&self) {
        self.shutdown.cancel();
        for group in self.registry.all() {
            let supervisors: Vec<Supervisor> = std::mem::take(&mut group.state().supervisors)
                .into_values()
                .collect();
            for supervisor in supervisors {
                let _ = supervisor.join.await;
            }
        }
    }

    /// Sets an instance's health directly (it exited or could not start).
    pub(crate) fn set_live(
        &self,
        group: &Group,
        index: u32,
        health: HealthState,
        reason: Option<String>,
    ) {
        if health::set(group, index, health, reason) {
            self.traffic.sync_group(group);
        }
    }

    /// Applies one probe result; the load balancers follow when `Up` changes.
    pub(crate) fn record_probe(&self, group: &Group, index: u32, result: &Result<(), String>) {
        if health::record_probe(group, index, result, self.settings.unhealthy_threshold) {
            self.traffic.sync_group(group);
        }
    }

    /// Sets a group's capacity and brings its instances there.
    pub(crate) async fn resize(
        self: &Arc<Self>,
        group: &Arc<Group>,
        capacity: Capacity,
    ) -> Result<(), LocalError> {
        let _ops = group.ops.lock().await;
        let changed = {
            let mut state = group.state();
            let changed = state.record.capacity != capacity;
            state.record.capacity = capacity;
            changed
        };
        if changed {
            self.registry.try_persist(group).await?;
        }
        self.reconcile(group).await
    }

    /// Takes a group out of traffic, stops every instance and deletes its record.
    pub(crate) async fn destroy(self: &Arc<Self>, group: &Arc<Group>) -> Result<(), LocalError> {
        let _ops = group.ops.lock().await;
        self.traffic.set_disabled(group, true).await;
        self.traffic.drain(group).await;
        group.state().record.capacity = Capacity::fixed(0);
        self.reconcile(group).await?;
        self.registry.remove(&group.key).await?;
        self.traffic.sync_group(group);
        tracing::info!(group = %group.key, "server group destroyed");
        Ok(())
    }

    /// Brings the number of instances to `desired`: new ones at the lowest free indices,
    /// extras (highest indices) out of the load balancers, drained, then stopped.
    pub(crate) async fn reconcile(self: &Arc<Self>, group: &Arc<Group>) -> Result<(), LocalError> {
        let (desired, present) = {
            let state = group.state();
            (
                state.record.capacity.desired as usize,
                state.record.instances.len(),
            )
        };
        if present < desired {
            self.add_instances(group, desired - present).await
        } else if present > desired {
            self.remove_instances(group, present - desired).await
        } else {
            Ok(())
        }
    }

    async fn add_instances(
        self: &Arc<Self>,
        group: &Arc<Group>,
        count: usize,
    ) -> Result<(), LocalError> {
        let mut added = Vec::new();
        for _ in 0..count {
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
        // Recorded before started: a crash now leaves instances to start, not processes
        // nobody knows.
        self.registry.try_persist(group).await?;
        for index in added {
            self.start_supervisor(group, index, Start::Fresh);
        }
        Ok(())
    }

    async fn remove_instances(&self, group: &Arc<Group>, count: usize) -> Result<(), LocalError> {
        let extras: Vec<u32> = {
            let mut state = group.state();
            let extras: Vec<u32> = state
                .record
                .instances
                .keys()
                .rev()
                .take(count)
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
        self.traffic.sync_group(group);
        self.traffic.drain(group).await;
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
            self.registry.try_persist(group).await?;
        }
        Ok(())
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
        let process = InstanceProcess::spawn(&self.launch(group, index, &instance.id, port)?)?;
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
        self.registry.persist(group).await;
        Ok(process)
    }

    /// A port free on 127.0.0.1 now and not given to another instance.
    fn free_port(&self) -> Result<u16, LocalError> {
        let taken = self.registry.ports_in_use();
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

    /// What instance `index` runs, checked against the host policy again (it may have
    /// been narrowed since the group was created): the program, in a clean environment
    /// (a fixed `PATH`, `HOME`, `LANG`, what the spec sets, then `PORT`, `INSTANCE_ID`,
    /// `SERVER_GROUP`, `CLUSTER`, `APPLICATION` and the marker), as the run-as user when one is configured.
    fn launch(&self, group: &Group, index: u32, id: &str, port: u16) -> Result<Launch, LocalError> {
        let record = group.record();
        let spec = &group.spec;
        let policy = &self.settings.host;
        check_account(&record.account)?;
        let program = match (&spec.command, &record.artifact) {
            (Some(command), _) => policy.command(command)?.display().to_string(),
            (None, Some(artifact)) => artifact.path.display().to_string(),
            (None, None) => String::new(),
        };
        let instance_dir = self
            .data_dir
            .join(INSTANCES_DIR)
            .join(&record.account)
            .join(id);
        let working_dir = match &spec.working_dir {
            Some(dir) => policy.working_dir(dir)?,
            None => instance_dir.clone(),
        };
        let run_as = policy.run_as();
        let home = run_as.map_or_else(|| instance_dir.clone(), |user| user.home.clone());
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), INSTANCE_PATH.to_owned()),
            ("HOME".to_owned(), home.display().to_string()),
        ]);
        if let Ok(lang) = std::env::var("LANG") {
            env.insert("LANG".to_owned(), lang);
        }
        env.extend(spec.env.clone());
        env.insert("PORT".to_owned(), port.to_string());
        env.insert("INSTANCE_ID".to_owned(), id.to_owned());
        // So a program can label its own metrics the way canary queries select them.
        env.insert("SERVER_GROUP".to_owned(), record.name.clone());
        env.insert("CLUSTER".to_owned(), record.moniker.cluster());
        env.insert("APPLICATION".to_owned(), record.moniker.app.clone());
        env.insert(
            MARKER_ENV.to_owned(),
            marker(&self.data_dir, &format!("{}/{index}", group.key)),
        );
        Ok(Launch {
            program,
            args: spec.args.clone(),
            env,
            // Its own directory is made the run-as user's; a configured one is the
            // operator's to prepare.
            owned_dir: run_as.map(|user| (instance_dir, user.uid, user.gid)),
            user: run_as.map(|user| (user.uid, user.gid)),
            working_dir,
            log_file: self
                .data_dir
                .join("logs")
                .join(&record.account)
                .join(format!("{id}.log")),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    //! The wiring from health changes and enable/disable to the routing tables handed
    //! to the load balancer, without processes or listeners (the balancer record is
    //! installed directly, as if its listener were up).

    use std::collections::BTreeMap;

    use gennaker_core::naming::Moniker;
    use gennaker_deploy::LoadBalancerSpec;
    use gennaker_store::SqlStore;
    use serde_json::json;

    use super::*;
    use crate::lb::LoadBalancers;
    use crate::records::{BalancerRecord, GroupRecord, record_key};
    use crate::spec::ProcessSpec;

    async fn instances(dir: &std::path::Path) -> Arc<Instances> {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        let registry = Arc::new(Registry::new(Arc::new(store)));
        let settings = LocalSettings::default();
        let traffic = Arc::new(Traffic::new(
            registry.clone(),
            LoadBalancers::default(),
            settings.drain_timeout,
            settings.host.clone(),
        ));
        let instances = Instances::new(
            registry,
            traffic,
            dir.to_path_buf(),
            settings,
            CancellationToken::new(),
        );
        Arc::new(instances.unwrap())
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

    fn table(traffic: &Traffic) -> Vec<(String, u32, Vec<String>)> {
        traffic
            .routes_of(&record_key("local", "front"))
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
        let instances = instances(dir.path()).await;
        let traffic = &instances.traffic;
        let spec = LoadBalancerSpec {
            name: "front".to_owned(),
            account: "local".to_owned(),
            application: "web".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            allowed_cidrs: Vec::new(),
            ejection_failures: 5,
        };
        traffic.install(
            &record_key("local", "front"),
            BalancerRecord {
                spec,
                address: None,
                weights: BTreeMap::new(),
            },
        );
        let old = group("web-v000", &[41000, 41001]);
        let new = group("web-v001", &[41002]);
        for g in [&old, &new] {
            instances.registry.insert((*g).clone());
        }

        instances.record_probe(&old, 0, &Ok(()));
        assert_eq!(
            table(traffic),
            [
                ("web-v000".to_owned(), 1, vec!["web-v000-0".to_owned()]),
                ("web-v001".to_owned(), 0, vec![])
            ]
        );
        instances.record_probe(&old, 1, &Ok(()));
        instances.record_probe(&new, 0, &Ok(()));
        assert_eq!(table(traffic)[0].1, 2);
        assert_eq!(table(traffic)[1].1, 1);

        // Failing probes take an instance out once the threshold is reached.
        for _ in 0..instances.settings.unhealthy_threshold {
            instances.record_probe(&old, 1, &Err("GET /health → 503".to_owned()));
        }
        assert_eq!(
            table(traffic)[0],
            ("web-v000".to_owned(), 1, vec!["web-v000-0".to_owned()])
        );

        // Disabled: out of the table altogether; enabled: back.
        traffic.set_disabled(&old, true).await;
        assert_eq!(table(traffic).len(), 1);
        assert_eq!(table(traffic)[0].0, "web-v001");
        traffic.set_disabled(&old, false).await;
        assert_eq!(table(traffic).len(), 2);

        // A crashed instance leaves at once.
        instances.set_live(&new, 0, HealthState::Down, Some("exited".to_owned()));
        assert_eq!(table(traffic)[1], ("web-v001".to_owned(), 0, vec![]));
    }
}
