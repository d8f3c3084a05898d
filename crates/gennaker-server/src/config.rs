//! The server's settings, parsed once by the binary and handed down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `gennaker server` needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Where Gennaker keeps its files (SQLite database, admin token).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The first admin's token, when chosen by the operator instead of generated.
    pub admin_token: Option<String>,
    /// Roles allowed to create applications; empty means every authenticated user, as in
    /// Spinnaker without `fiat.restrictApplicationCreation`.
    pub application_creators: Vec<String>,
    /// How the execution engine runs.
    pub engine: EngineSettings,
    /// The key that seals secrets in stored executions (`[secrets] key_file`); `None`
    /// is `secrets.key` in the data directory, created at first start. Servers sharing
    /// one PostgreSQL database must name the same key.
    pub secrets_key_file: Option<PathBuf>,
}

impl ServerConfig {
    /// Where the key sealing secrets at rest is read from.
    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }
}

/// The execution engine's settings (`[engine]` in `gennaker.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Concurrent workers: how many executions advance at once on this server.
    pub workers: usize,
    /// How long a worker holds an execution's messages before another server may take
    /// them over (PostgreSQL); extended while the worker is busy.
    pub lease: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            workers: 8,
            lease: Duration::from_secs(30),
        }
    }
}
