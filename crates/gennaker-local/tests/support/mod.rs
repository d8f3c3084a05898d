//! Shared by the provider tests: the demo-app binary (built once), a store and data
//! directory per test, fast supervision settings, and polling helpers with deadlines.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gennaker_core::naming::Moniker;
use gennaker_deploy::{
    Capacity, CreateServerGroup, Instance, Provider, ServerGroup, ServerGroupOrigin,
};
use gennaker_local::lb::LoadBalancers;
use gennaker_local::{HostPolicy, HostSettings, LocalProvider, LocalSettings};
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{ResourceStore, SqlStore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// The `demo-app` binary, built once per test process with the same profile as the
/// tests (`target/<profile>/demo-app`, next to this test's `deps/`).
pub fn demo_app() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = std::process::Command::new(cargo);
        command
            .args(["build", "--quiet", "-p", "demo-app", "--manifest-path"])
            .arg(&manifest);
        if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            command.arg("--release");
        }
        // Build into the same target directory as this test binary.
        if let Some(target) = profile_dir.parent() {
            command.env("CARGO_TARGET_DIR", target);
        }
        let status = command.status().unwrap();
        assert!(status.success(), "cargo build -p demo-app failed");
        let path = profile_dir.join("demo-app");
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
    .clone()
}

/// A process spec running demo-app with `args`.
pub fn demo_spec(args: &[&str]) -> Value {
    json!({
        "command": demo_app().display().to_string(),
        "args": args,
        "healthCheck": {"path": "/health"},
        "gracePeriodSeconds": 5
    })
}

/// A create request for cluster `<app>-prod` from stage `stage`.
pub fn request(app: &str, stage: &str, capacity: Capacity, spec: Value) -> CreateServerGroup {
    CreateServerGroup {
        account: "local".to_owned(),
        moniker: Moniker::new(app, Some("prod"), None).unwrap(),
        capacity,
        load_balancers: vec![format!("{app}-lb")],
        enabled: true,
        spec,
        origin: ServerGroupOrigin {
            execution_id: format!("exec-{app}"),
            stage_id: stage.to_owned(),
        },
    }
}

/// Supervision fast enough for tests, under the default host policy (URL artifacts
/// only).
pub fn fast_settings() -> LocalSettings {
    LocalSettings {
        host: HostPolicy::default(),
        health_interval: Duration::from_millis(100),
        unhealthy_threshold: 3,
        restart_backoff: Duration::from_millis(100),
        max_restart_backoff: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
        // Artifact servers in these tests listen on 127.0.0.1.
        outbound: gennaker_outbound::OutboundPolicy::allowing(&["127.0.0.1/32"]).unwrap(),
    }
}

/// A store and a data directory that outlive the providers started on them.
pub struct TestEnv {
    _db: TestDatabase,
    pub store: SqlStore,
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
}

impl TestEnv {
    pub async fn new(backend: TestBackend) -> Self {
        let (db, store) = TestDatabase::store(backend).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let data = data.canonicalize().unwrap();
        // Built before the first provider needs it, outside any timeout.
        demo_app();
        Self {
            _db: db,
            store,
            dir,
            data,
        }
    }

    /// The host policy the tests run under: demo-app may be the command, artifacts may
    /// come from the test's directory.
    pub fn host_settings(&self) -> HostSettings {
        HostSettings {
            commands: vec![demo_app()],
            artifact_roots: vec![self.dir.path().to_path_buf()],
            ..HostSettings::default()
        }
    }

    /// Starts a provider on this store and data directory, under [`Self::host_settings`].
    pub async fn provider(&self) -> LocalProvider {
        self.provider_with(self.host_settings()).await
    }

    /// Starts a provider on this store and data directory under the host policy
    /// `host`.
    pub async fn provider_with(&self, host: HostSettings) -> LocalProvider {
        self.provider_with_settings(LocalSettings {
            host: HostPolicy::new(&host).unwrap(),
            ..fast_settings()
        })
        .await
    }

    /// Starts a provider on this store and data directory with these settings.
    pub async fn provider_with_settings(&self, settings: LocalSettings) -> LocalProvider {
        LocalProvider::start(
            Arc::new(self.store.clone()),
            &self.data,
            LoadBalancers::default(),
            settings,
            CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    /// Deletes a server group's record behind the provider's back.
    pub async fn forget_group(&self, key: &str) {
        assert!(
            self.store
                .delete_resource("local", "serverGroup", key)
                .await
                .unwrap()
        );
    }

    /// Live processes carrying this data directory's instance marker.
    pub fn marked_pids(&self) -> Vec<i32> {
        let needle = format!("GENNAKER_LOCAL_INSTANCE={}|", self.data.display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let marked = environ
                .split(|b| *b == 0)
                .any(|var| var.starts_with(needle.as_bytes()));
            if marked && is_running(pid) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids
    }
}

impl Drop for TestEnv {
    /// A failed test must not leave its instances running: they carry this test's
    /// marker, so exactly they are killed.
    fn drop(&mut self) {
        for pid in self.marked_pids() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone.
pub async fn wait_gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while is_running(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the group until `check` holds; fails with the last state after the deadline.
pub async fn wait_for(
    provider: &LocalProvider,
    name: &str,
    what: &str,
    check: impl Fn(&ServerGroup) -> bool,
) -> ServerGroup {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let group = provider.server_group("local", name).await.unwrap();
        if let Some(group) = &group
            && check(group)
        {
            return group.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: not {what} in time; last: {group:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn pid_of(instance: &Instance) -> i32 {
    instance.details["pid"].as_i64().unwrap() as i32
}

pub fn port_of(instance: &Instance) -> u16 {
    instance.details["port"].as_u64().unwrap() as u16
}

pub async fn get_json(url: &str) -> Value {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client.get(url).send().await.unwrap().json().await.unwrap()
}

pub fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}
