//! A real `gennaker server` process for end-to-end tests: started, killed with
//! SIGKILL and restarted on the same data directory and database.
#![allow(dead_code)]

pub(crate) mod api;
pub(crate) mod browser;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_gennaker");
/// The admin token every test server starts with.
pub(crate) const TOKEN: &str = "gnk_e2e-test-admin-token-0123456789";

/// The `[outbound]` section of a server whose webhooks call test servers on this
/// machine (refused by default).
pub(crate) const LOOPBACK_OUTBOUND: &str = "[outbound]\nallow = [\"127.0.0.1/32\", \"::1/128\"]\n";

/// The `[local]` section of every test server: pipelines may deploy the binary under
/// test (`artifact_roots` is its directory).
pub(crate) fn test_host_policy() -> String {
    let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
    format!("[local]\nartifact_roots = [{bin_dir:?}]\n")
}

pub(crate) struct Server {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    database_url: String,
    /// More flags of `gennaker server` (e.g. `--config`).
    args: Vec<String>,
}

impl Server {
    pub(crate) fn start(data_dir: PathBuf, database_url: String) -> Server {
        Server::start_with(data_dir, database_url, Vec::new())
    }

    /// Starts the server whose webhooks may also call servers on 127.0.0.1
    /// ([`LOOPBACK_OUTBOUND`]), with the test host policy.
    pub(crate) fn start_loopback(data_dir: PathBuf, database_url: String) -> Server {
        let config = data_dir.join("loopback.toml");
        std::fs::write(
            &config,
            format!("{}{LOOPBACK_OUTBOUND}", test_host_policy()),
        )
        .unwrap();
        let config = config.display().to_string();
        Server::start_with(data_dir, database_url, vec!["--config".into(), config])
    }

    /// Starts the server with more flags. Without a `--config`, it gets one whose host
    /// policy lets pipelines deploy the binary under test (`[local] artifact_roots` is
    /// its directory).
    pub(crate) fn start_with(
        data_dir: PathBuf,
        database_url: String,
        mut args: Vec<String>,
    ) -> Server {
        if !args.iter().any(|a| a == "--config") {
            let config = data_dir.join("gennaker-test.toml");
            std::fs::write(&config, test_host_policy()).unwrap();
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Server {
            child: None,
            port,
            data_dir,
            database_url,
            args,
        };
        server.spawn();
        server
    }

    pub(crate) fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("server.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["server", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database-url", &self.database_url])
            .args(&self.args)
            .env("GENNAKER_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    pub(crate) async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = http.get(self.url("/readyz")).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become ready:\n{}", self.log());
    }

    /// SIGKILL: no shutdown path runs.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes whose local-provider marker names `data_dir`: instances it started.
pub(crate) fn instances_of(data_dir: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let environ = String::from_utf8_lossy(&environ);
        if environ.contains("GENNAKER_LOCAL_INSTANCE=") && environ.contains(data_dir) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills, when dropped, every instance started under `dir`: a failed test leaves
/// nothing running.
pub(crate) struct KillInstances<'a>(pub(crate) &'a Path);

impl Drop for KillInstances<'_> {
    fn drop(&mut self) {
        for pid in instances_of(&self.0.display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Starts `gennaker server` with `config` as its gennaker.toml, expecting it to refuse
/// to start; returns what it printed (stdout, then stderr).
pub(crate) fn refused_server_start(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gennaker.toml");
    std::fs::write(&path, config).unwrap();
    let output: Output = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("GENNAKER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the server started");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every stage type the binary assembles, as a server with the local provider (and no
/// preconfigured webhooks) validates pipelines.
pub(crate) fn local_server_catalog() -> gennaker_core::StageCatalog {
    let mut catalog = gennaker::wiring::offline_catalog(&[]);
    catalog.set_cloud_providers(["local".to_owned()]);
    catalog
}
