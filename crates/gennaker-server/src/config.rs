//! The server's settings, parsed once by the binary and handed down.

use gennaker_notify::NotifySettings;
use gennaker_outbound::OutboundPolicy;
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
    /// Roles allowed to create applications besides admins; empty means admins only
    /// (Spinnaker's `fiat.restrictApplicationCreation`), and `"*"` every authenticated
    /// user.
    pub application_creators: Vec<String>,
    /// How the execution engine runs.
    pub engine: EngineSettings,
    /// Limits of the HTTP server (`[http]`).
    pub http: HttpSettings,
    /// Who may read `/metrics` (`[metrics] access`).
    pub metrics_access: MetricsAccess,
    /// Which hosts the server's own requests (webhooks, artifact downloads) may
    /// reach (`[outbound]` in `gennaker.toml`).
    pub outbound: OutboundPolicy,
    /// The key that seals secrets in stored executions (`[secrets] key_file`); `None`
    /// is `secrets.key` in the data directory, created at first start. Servers sharing
    /// one PostgreSQL database must name the same key.
    pub secrets_key_file: Option<PathBuf>,
    /// How triggers run (`[triggers]`, `[[docker.accounts]]`).
    pub triggers: gennaker_triggers::TriggerSettings,
    /// How pipeline and stage notifications are sent (`[notifications]`: the link base,
    /// Slack's incoming webhook, the SMTP server).
    pub notifications: NotifySettings,
}

impl ServerConfig {
    /// A server listening on `listen` with its files in `data_dir` and its data in
    /// `database_url`; every other setting at its default (the safe one): a generated
    /// admin token, admins-only application creation, the default engine, HTTP limits,
    /// `/metrics` access and outbound policy, the key in the data directory.
    pub fn new(listen: SocketAddr, data_dir: PathBuf, database_url: String) -> Self {
        Self {
            listen,
            data_dir,
            database_url,
            admin_token: None,
            application_creators: Vec::new(),
            engine: EngineSettings::default(),
            http: HttpSettings::default(),
            metrics_access: MetricsAccess::default(),
            outbound: OutboundPolicy::default(),
            secrets_key_file: None,
            triggers: gennaker_triggers::TriggerSettings::default(),
            notifications: NotifySettings::default(),
        }
    }

    /// Where the key sealing secrets at rest is read from.
    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }
}

/// The `application_creators` entry that lets every authenticated user create
/// applications.
pub const EVERYONE: &str = "*";

/// The execution engine's settings (`[engine]` in `gennaker.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Concurrent workers: how many executions advance at once on this server.
    pub workers: usize,
    /// How long a worker holds an execution's messages before another server may take
    /// them over (PostgreSQL); extended while the worker is busy.
    pub lease: Duration,
    /// How many stages a pipeline may have (a bigger one is refused at save, 400, and
    /// at run).
    pub max_pipeline_stages: usize,
    /// How many stages one execution may hold, synthetic stages included (a stage that
    /// would plan more fails).
    pub max_execution_stages: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            workers: 8,
            lease: Duration::from_secs(30),
            max_pipeline_stages: gennaker_core::MAX_PIPELINE_STAGES,
            max_execution_stages: gennaker_engine::MAX_EXECUTION_STAGES,
        }
    }
}

/// The HTTP server's limits (`[http]` in `gennaker.toml`): what one client may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long a client may take to send a request's headers (and how long an idle
    /// kept-alive connection stays open); the connection is closed after it.
    pub header_read_timeout: Duration,
    /// How long a request may take until its response starts (reading the body
    /// included); answered 408 after it. Event streams are not limited once started.
    pub request_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a stopping server waits for open requests before closing their
    /// connections.
    pub shutdown_deadline: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsAccess {
    /// Anyone who can reach the server, without a token (for a scraper inside a
    /// trusted network).
    Open,
    /// Any valid API token (the default).
    #[default]
    Token,
    /// Not served (404).
    Off,
}
