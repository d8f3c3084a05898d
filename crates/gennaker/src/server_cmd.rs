//! `gennaker server`: settings from defaults, `gennaker.toml`, `GENNAKER_*` and flags (in
//! rising precedence), logging, and shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use gennaker_canary::CanarySettings;
use gennaker_engine::{PreconfiguredWebhook, PreconfiguredWebhookStage};
use gennaker_kubernetes::{ArtifactSettings, KubernetesSettings};
use gennaker_local::HostSettings;
use gennaker_notify::{NotifySettings, SlackSettings, SmtpSettings};
use gennaker_outbound::{OutboundPolicy, OutboundSettings};
use gennaker_server::{EngineSettings, HttpSettings, MetricsAccess, ServerConfig};
use serde::de::{Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Flags of `gennaker server`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// Address of the HTTP API [default: 127.0.0.1:7777].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where Gennaker keeps its data [default: the platform data dir, e.g. ~/.local/share/gennaker].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database: postgres://USER@HOST/DB, or sqlite://PATH [default: SQLite in the data dir].
    #[arg(long)]
    database_url: Option<String>,
    /// A gennaker.toml with the same settings (flags and GENNAKER_* override it).
    #[arg(long, env = "GENNAKER_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Human,
    Json,
}

/// The settings as they come from the layers, before they are checked.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<AuthSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    engine: Option<EngineFileSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhooks: Option<WebhookSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpFileSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<MetricsFileSettings>,
    /// `[outbound]`: which hosts webhooks and artifact downloads may reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outbound: Option<OutboundSettings>,
    /// `[local]`: what pipelines may run on this machine (the local provider's host
    /// policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<HostSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secrets: Option<SecretsSettings>,
    /// `[[kubernetes.accounts]]`: the clusters manifest stages deploy to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kubernetes: Option<KubernetesSettings>,
    /// `[[artifacts.github.accounts]]`: the accounts manifest artifacts are read through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifacts: Option<ArtifactSettings>,
    /// `[canary]`: the metrics accounts canary analyses read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    canary: Option<CanarySettings>,
    /// `[triggers]`: the service identity, cron time zone, webhook limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    triggers: Option<TriggerFileSettings>,
    /// `[[docker.accounts]]`: registries `docker` triggers poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    docker: Option<DockerFileSettings>,
    /// `[notifications]`: the link base, Slack's incoming webhook, the SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notifications: Option<NotificationFileSettings>,
}

/// `[triggers]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerFileSettings {
    user: Option<String>,
    cron_time_zone: Option<String>,
    docker_poll_seconds: Option<u64>,
    docker_max_new_tags: Option<usize>,
    event_claim_seconds: Option<u64>,
    log_keep: Option<i64>,
    max_payload_bytes: Option<usize>,
    webhooks_per_minute: Option<u32>,
}

/// `[docker]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerFileSettings {
    #[serde(default)]
    accounts: Vec<DockerAccountFile>,
}

/// One `[[docker.accounts]]` entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerAccountFile {
    name: String,
    url: String,
    username: Option<String>,
    password: Option<Secret>,
}

/// Checks `[triggers]` and `[[docker.accounts]]`.
fn trigger_settings(
    file: TriggerFileSettings,
    docker: DockerFileSettings,
) -> anyhow::Result<gennaker_triggers::TriggerSettings> {
    let mut settings = gennaker_triggers::TriggerSettings::default();
    if let Some(user) = file.user.filter(|u| !u.trim().is_empty()) {
        settings.user = user.trim().to_owned();
    }
    if let Some(zone) = file.cron_time_zone {
        jiff::tz::TimeZone::get(&zone).map_err(|err| {
            anyhow::anyhow!("[triggers] cron_time_zone '{zone}' is not a known time zone ({err}); use an IANA name like 'UTC'")
        })?;
        settings.cron_time_zone = zone;
    }
    let seconds = |value: Option<u64>,
                   name: &str,
                   default: std::time::Duration|
     -> anyhow::Result<std::time::Duration> {
        match value {
            None => Ok(default),
            Some(s) if (1..=86_400).contains(&s) => Ok(std::time::Duration::from_secs(s)),
            Some(s) => bail!("[triggers] {name} must be between 1 and 86400, not {s}"),
        }
    };
    settings.docker_poll = seconds(
        file.docker_poll_seconds,
        "docker_poll_seconds",
        settings.docker_poll,
    )?;
    settings.event_claim = seconds(
        file.event_claim_seconds,
        "event_claim_seconds",
        settings.event_claim,
    )?;
    if let Some(n) = file.docker_max_new_tags {
        settings.docker_max_new_tags = n;
    }
    if let Some(keep) = file.log_keep {
        if !(1..=100_000).contains(&keep) {
            bail!("[triggers] log_keep must be between 1 and 100000, not {keep}");
        }
        settings.log_keep = keep;
    }
    if let Some(bytes) = file.max_payload_bytes {
        if !(1024..=16 * 1024 * 1024).contains(&bytes) {
            bail!("[triggers] max_payload_bytes must be between 1024 and 16777216, not {bytes}");
        }
        settings.max_payload_bytes = bytes;
    }
    if let Some(rate) = file.webhooks_per_minute {
        if rate == 0 {
            bail!("[triggers] webhooks_per_minute must be at least 1");
        }
        settings.webhooks_per_minute = rate;
    }
    for account in docker.accounts {
        let url = url::Url::parse(&account.url).map_err(|err| {
            anyhow::anyhow!(
                "[[docker.accounts]] '{}': url '{}' is not a URL ({err})",
                account.name,
                account.url
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!(
                "[[docker.accounts]] '{}': url must be http:// or https://",
                account.name
            );
        }
        if settings
            .docker_accounts
            .iter()
            .any(|a| a.name == account.name)
        {
            bail!("[[docker.accounts]] '{}' is named twice", account.name);
        }
        settings
            .docker_accounts
            .push(gennaker_triggers::DockerAccount {
                name: account.name,
                url: account.url,
                username: account.username,
                password: account.password.map(|Secret(p)| p),
            });
    }
    Ok(settings)
}

/// `[notifications]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationFileSettings {
    /// The server's address as people reach it, for links in messages (default: the
    /// listen address).
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    slack: Option<SlackFileSettings>,
    #[serde(default)]
    smtp: Option<SmtpFileSettings>,
}

/// `[notifications.slack]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackFileSettings {
    /// The workspace's incoming-webhook URL (its path is a token: kept secret).
    webhook_url: Secret,
}

/// `[notifications.smtp]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpFileSettings {
    host: String,
    /// Default 587 with STARTTLS, 25 without.
    #[serde(default)]
    port: Option<u16>,
    from: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    starttls: bool,
}

/// Checks `[notifications]` and turns it into the notifier's settings.
fn notification_settings(file: NotificationFileSettings) -> anyhow::Result<NotifySettings> {
    if let Some(base) = &file.base_url
        && !(base.starts_with("http://") || base.starts_with("https://"))
    {
        bail!("[notifications] base_url must be an http(s) URL, not '{base}'");
    }
    let slack = match file.slack {
        Some(slack) => {
            let url = slack.webhook_url.0;
            if !url.starts_with("https://") && !url.starts_with("http://") {
                bail!(
                    "[notifications.slack] webhook_url must be the incoming webhook's http(s) URL"
                );
            }
            Some(SlackSettings { webhook_url: url })
        }
        None => None,
    };
    let smtp = match file.smtp {
        Some(smtp) => {
            if smtp.host.trim().is_empty() {
                bail!("[notifications.smtp] host is empty; name the SMTP server");
            }
            if !gennaker_notify::is_mailbox(&smtp.from) {
                bail!(
                    "[notifications.smtp] from '{}' is not an email address (e.g. \"Gennaker <gennaker@example.com>\")",
                    smtp.from
                );
            }
            if smtp.password.is_some() != smtp.username.is_some() {
                bail!(
                    "[notifications.smtp] username and password go together: set both or neither"
                );
            }
            Some(SmtpSettings {
                port: smtp.port.unwrap_or(if smtp.starttls { 587 } else { 25 }),
                host: smtp.host,
                from: smtp.from,
                username: smtp.username,
                password: smtp.password.map(|Secret(p)| p),
                starttls: smtp.starttls,
            })
        }
        None => None,
    };
    Ok(NotifySettings {
        base_url: file.base_url,
        slack,
        smtp,
        ..NotifySettings::default()
    })
}

/// `[http]` in gennaker.toml: what one client may hold of the server.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFileSettings {
    /// Seconds a client may take to send a request's headers (or stay idle between
    /// requests) before its connection is closed.
    #[serde(default)]
    header_read_timeout_seconds: Option<u64>,
    /// Seconds a request may take until its response starts (408 after).
    #[serde(default)]
    request_timeout_seconds: Option<u64>,
    /// Open connections at most (more are answered 503).
    #[serde(default)]
    max_connections: Option<usize>,
    /// Seconds a stopping server waits for open requests before closing them.
    #[serde(default)]
    shutdown_deadline_seconds: Option<u64>,
}

/// `[metrics]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFileSettings {
    /// Who may read `/metrics`: "open", "token" (default) or "off".
    #[serde(default)]
    access: Option<MetricsAccessSetting>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MetricsAccessSetting {
    Open,
    Token,
    Off,
}

/// `[secrets]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSettings {
    /// The key sealing secrets in stored executions (default: `secrets.key` in the data
    /// directory, created at first start); servers sharing a database share one key.
    #[serde(default)]
    key_file: Option<PathBuf>,
}

/// `[webhooks]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSettings {
    /// `[[webhooks.preconfigured]]`: stage types that call a fixed endpoint, with
    /// Spinnaker's field names (`customHeaders`, `waitForCompletion`, …).
    #[serde(default)]
    preconfigured: Vec<PreconfiguredWebhook>,
}

/// What of a gennaker.toml decides how pipelines are validated (`[webhooks]` and
/// `[engine]`), whatever else it says.
#[derive(Debug, Default, Deserialize)]
struct ValidationOnly {
    #[serde(default)]
    webhooks: Option<WebhookSettings>,
    #[serde(default)]
    engine: Option<EngineFileSettings>,
}

/// What a server on a gennaker.toml validates pipelines against, for
/// `gennaker pipeline validate --server-config`.
#[derive(Debug)]
pub(crate) struct ValidationSettings {
    /// Its preconfigured webhook stage types.
    pub(crate) webhooks: Vec<PreconfiguredWebhookStage>,
    /// The most stages it lets a pipeline have (`[engine] max_pipeline_stages`).
    pub(crate) max_pipeline_stages: usize,
}

/// What `gennaker server` runs with.
#[derive(Debug)]
struct Settings {
    server: ServerConfig,
    webhooks: Vec<PreconfiguredWebhookStage>,
    local: HostSettings,
    kubernetes: KubernetesSettings,
    artifacts: ArtifactSettings,
    canary: CanarySettings,
    log_format: LogFormat,
}

/// `[engine]` in gennaker.toml.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFileSettings {
    /// Concurrent workers (executions advancing at once on this server).
    #[serde(default)]
    workers: Option<usize>,
    /// Seconds a worker holds an execution's messages before another server may take
    /// them over (PostgreSQL).
    #[serde(default)]
    lease_seconds: Option<u64>,
    /// How many stages a pipeline may have.
    #[serde(default)]
    max_pipeline_stages: Option<usize>,
    /// How many stages one execution may hold, synthetic stages included.
    #[serde(default)]
    max_execution_stages: Option<usize>,
}

/// The most `[engine] max_pipeline_stages` may be: every step of an execution reads and
/// writes all its stages, so one huge pipeline slows every step of its executions and
/// the workers other users' executions wait for.
const MAX_PIPELINE_STAGES_LIMIT: usize = 2_000;

/// The most `[engine] max_execution_stages` may be (ten synthetic stages for each of
/// the most pipeline stages allowed).
const MAX_EXECUTION_STAGES_LIMIT: usize = 10 * MAX_PIPELINE_STAGES_LIMIT;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSettings {
    /// Roles allowed to create applications besides admins (empty: admins only; "*":
    /// every authenticated user).
    #[serde(default)]
    application_creators: Vec<String>,
}

/// A secret setting. It is read only from a string, never guessed from a number or a
/// boolean (a token of digits is still a token, leading zeros included), and neither
/// `Debug` nor a type error ever shows its value.
#[derive(Clone, Default, PartialEq, Eq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(SecretVisitor)
    }
}

/// Accepts strings; anything else is refused by kind, not by value (serde's default
/// messages quote the value, which here is the secret).
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(&self, kind: &'static str) -> Result<Secret, E> {
        Err(E::invalid_type(Unexpected::Other(kind), self))
    }
}

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string (quote the value in gennaker.toml)")
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret(value.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret(value))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        self.refuse("a boolean")
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        self.refuse("a number")
    }
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        self.refuse("a number")
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        self.refuse("a number")
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        self.refuse("a number")
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        self.refuse("a number")
    }
}

/// Environment variables of the server (the client's GENNAKER_URL/TOKEN are not settings).
const SERVER_ENV_KEYS: [&str; 5] = [
    "listen",
    "data_dir",
    "database_url",
    "log_format",
    "admin_token",
];

/// The server's `GENNAKER_*` variables as a figment provider, every value a string.
///
/// figment's own `Env` provider guesses each value's type, so `GENNAKER_ADMIN_TOKEN=0123`
/// became the number 123: startup failed, and the error quoted the secret. Every server
/// variable is text (addresses, paths, URLs, names), so nothing is guessed here.
struct ServerEnv(Dict);

impl ServerEnv {
    /// Reads the variables through `lookup` (the process environment, or a map in tests).
    fn read(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut dict = Dict::new();
        for key in SERVER_ENV_KEYS {
            if let Some(value) = lookup(&format!("GENNAKER_{}", key.to_ascii_uppercase())) {
                dict.insert(key.to_owned(), Value::from(value));
            }
        }
        ServerEnv(dict)
    }
}

impl Provider for ServerEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("GENNAKER_* environment variables").interpolater(
            |_: &Profile, keys: &[&str]| {
                format!("GENNAKER_{}", keys.join(".").to_ascii_uppercase())
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.0.clone())]))
    }
}

fn settings(args: &ServerArgs, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
    let mut figment = Figment::new();
    if let Some(path) = &args.config {
        if !path.is_file() {
            bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    let flags = RawSettings {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        log_format: args.log_format,
        admin_token: None,
        auth: None,
        engine: None,
        webhooks: None,
        http: None,
        metrics: None,
        outbound: None,
        local: None,
        secrets: None,
        kubernetes: None,
        artifacts: None,
        canary: None,
        triggers: None,
        docker: None,
        notifications: None,
    };
    let raw: RawSettings = figment
        .merge(ServerEnv::read(env))
        .merge(Serialized::defaults(flags))
        .extract()
        .context("invalid server settings")?;
    let data_dir = match raw.data_dir {
        Some(dir) => dir,
        None => dirs::data_dir()
            .map(|dir| dir.join("gennaker"))
            .context("cannot find the platform data directory; pass --data-dir")?,
    };
    let database_url = raw
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("gennaker.db").display()));
    let config = ServerConfig {
        listen: raw
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7777))),
        data_dir,
        database_url,
        admin_token: raw
            .admin_token
            .map(|Secret(token)| token)
            .filter(|token| !token.is_empty()),
        application_creators: raw
            .auth
            .map(|auth| auth.application_creators)
            .unwrap_or_default(),
        engine: engine_settings(raw.engine.unwrap_or_default())?,
        http: http_settings(raw.http.unwrap_or_default())?,
        metrics_access: match raw.metrics.and_then(|m| m.access) {
            Some(MetricsAccessSetting::Open) => MetricsAccess::Open,
            Some(MetricsAccessSetting::Off) => MetricsAccess::Off,
            Some(MetricsAccessSetting::Token) | None => MetricsAccess::Token,
        },
        outbound: OutboundPolicy::new(&raw.outbound.unwrap_or_default())
            .context("invalid server settings")?,
        secrets_key_file: raw.secrets.and_then(|secrets| secrets.key_file),
        triggers: trigger_settings(
            raw.triggers.unwrap_or_default(),
            raw.docker.unwrap_or_default(),
        )
        .context("invalid server settings")?,
        notifications: notification_settings(raw.notifications.unwrap_or_default())
            .context("invalid server settings")?,
    };
    let webhooks = preconfigured_webhooks(raw.webhooks).context("invalid server settings")?;
    let kubernetes = raw.kubernetes.unwrap_or_default();
    kubernetes.validate().context("invalid server settings")?;
    let artifacts = raw.artifacts.unwrap_or_default();
    artifacts.validate().context("invalid server settings")?;
    Ok(Settings {
        server: config,
        webhooks,
        local: raw.local.unwrap_or_default(),
        kubernetes,
        artifacts,
        canary: raw.canary.unwrap_or_default(),
        log_format: raw.log_format.unwrap_or(LogFormat::Human),
    })
}

fn preconfigured_webhooks(
    settings: Option<WebhookSettings>,
) -> anyhow::Result<Vec<PreconfiguredWebhookStage>> {
    let entries = settings.map(|s| s.preconfigured).unwrap_or_default();
    Ok(gennaker::wiring::preconfigured_webhooks(&entries)?)
}

/// The preconfigured webhook stage types and the stage limit a server on the
/// gennaker.toml at `path` would have (for `gennaker pipeline validate --server-config`).
pub(crate) fn validation_settings_in(path: &Path) -> anyhow::Result<ValidationSettings> {
    if !path.is_file() {
        bail!("server config file {} does not exist", path.display());
    }
    let invalid = || format!("invalid server settings in {}", path.display());
    let file: ValidationOnly = Figment::from(Toml::file(path))
        .extract()
        .with_context(invalid)?;
    Ok(ValidationSettings {
        webhooks: preconfigured_webhooks(file.webhooks).with_context(invalid)?,
        max_pipeline_stages: engine_settings(file.engine.unwrap_or_default())
            .with_context(invalid)?
            .max_pipeline_stages,
    })
}

fn engine_settings(file: EngineFileSettings) -> anyhow::Result<EngineSettings> {
    let defaults = EngineSettings::default();
    let workers = file.workers.unwrap_or(defaults.workers);
    if !(1..=1024).contains(&workers) {
        bail!("[engine] workers must be between 1 and 1024, not {workers}");
    }
    let lease = file
        .lease_seconds
        .map_or(defaults.lease, Duration::from_secs);
    if lease < Duration::from_secs(3) || lease > Duration::from_secs(3600) {
        bail!(
            "[engine] lease_seconds must be between 3 and 3600, not {}",
            lease.as_secs()
        );
    }
    let max_pipeline_stages = file
        .max_pipeline_stages
        .unwrap_or(defaults.max_pipeline_stages);
    if !(1..=MAX_PIPELINE_STAGES_LIMIT).contains(&max_pipeline_stages) {
        bail!(
            "[engine] max_pipeline_stages must be between 1 and {MAX_PIPELINE_STAGES_LIMIT}, not {max_pipeline_stages}"
        );
    }
    let max_execution_stages = file
        .max_execution_stages
        .unwrap_or(defaults.max_execution_stages);
    if !(1..=MAX_EXECUTION_STAGES_LIMIT).contains(&max_execution_stages) {
        bail!(
            "[engine] max_execution_stages must be between 1 and {MAX_EXECUTION_STAGES_LIMIT}, not {max_execution_stages}"
        );
    }
    if max_execution_stages < max_pipeline_stages {
        bail!(
            "[engine] max_execution_stages ({max_execution_stages}) must be at least max_pipeline_stages ({max_pipeline_stages}): an execution holds all of its pipeline's stages"
        );
    }
    Ok(EngineSettings {
        workers,
        lease,
        max_pipeline_stages,
        max_execution_stages,
    })
}

fn http_settings(file: HttpFileSettings) -> anyhow::Result<HttpSettings> {
    let defaults = HttpSettings::default();
    let seconds = |value: Option<u64>, default: Duration, name: &str, max: u64| {
        let chosen = value.map_or(default, Duration::from_secs);
        if chosen < Duration::from_secs(1) || chosen > Duration::from_secs(max) {
            bail!(
                "[http] {name} must be between 1 and {max}, not {}",
                chosen.as_secs()
            );
        }
        Ok(chosen)
    };
    let max_connections = file.max_connections.unwrap_or(defaults.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        bail!("[http] max_connections must be between 1 and 1000000, not {max_connections}");
    }
    Ok(HttpSettings {
        header_read_timeout: seconds(
            file.header_read_timeout_seconds,
            defaults.header_read_timeout,
            "header_read_timeout_seconds",
            3600,
        )?,
        request_timeout: seconds(
            file.request_timeout_seconds,
            defaults.request_timeout,
            "request_timeout_seconds",
            86_400,
        )?,
        max_connections,
        shutdown_deadline: seconds(
            file.shutdown_deadline_seconds,
            defaults.shutdown_deadline,
            "shutdown_deadline_seconds",
            3600,
        )?,
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let Settings {
        server: config,
        webhooks,
        local,
        kubernetes,
        artifacts,
        canary,
        log_format,
    } = settings(&args, |name| std::env::var(name).ok())?;
    init_logging(log_format);
    let database = gennaker_store::redact_database_url(&config.database_url);
    let wiring = gennaker::wiring::WiringSettings {
        webhooks,
        local,
        kubernetes,
        artifacts,
        canary,
    };
    let server = gennaker::wiring::start_server(config, &wiring)
        .await
        .with_context(|| format!("gennaker server failed to start (database {database})"))?;
    shutdown_signal().await;
    server
        .stop()
        .await
        .with_context(|| format!("gennaker server failed (database {database})"))
}

#[cfg(test)]
mod tests {
    use gennaker_engine::StageDefinition;

    use super::{ServerArgs, settings};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn args(config: Option<std::path::PathBuf>) -> ServerArgs {
        ServerArgs {
            listen: None,
            data_dir: None,
            database_url: None,
            config,
            log_format: None,
        }
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/gk\"\n[auth]\napplication_creators = [\"leads\"]\n[engine]\nworkers = 3\n[secrets]\nkey_file = \"/etc/gk/secrets.key\"\n").unwrap();
        let config = settings(&args(Some(file.clone())), no_env).unwrap().server;
        assert_eq!(
            config.secrets_key_path(),
            std::path::Path::new("/etc/gk/secrets.key")
        );
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.database_url, "sqlite:///srv/gk/gennaker.db");
        assert_eq!(config.application_creators, ["leads"]);
        assert_eq!(config.engine.workers, 3);
        assert_eq!(config.engine.lease, std::time::Duration::from_secs(30));

        let mut flagged = args(Some(file));
        flagged.listen = Some("127.0.0.1:9100".parse().unwrap());
        flagged.database_url = Some("postgres://u@h/db".to_owned());
        let config = settings(&flagged, no_env).unwrap().server;
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.database_url, "postgres://u@h/db");
        let config = settings(&args(None), no_env).unwrap().server;
        assert_eq!(
            config.secrets_key_path(),
            config.data_dir.join("secrets.key"),
            "the key lives in the data directory unless configured"
        );
    }

    #[test]
    fn http_and_metrics_settings_are_read_with_safe_defaults() {
        let defaults = settings(&args(None), no_env).unwrap().server;
        assert_eq!(
            defaults.metrics_access,
            gennaker_server::MetricsAccess::Token
        );
        assert_eq!(defaults.http, gennaker_server::HttpSettings::default());
        assert!(defaults.application_creators.is_empty(), "admins only");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(
            &file,
            "[http]\nheader_read_timeout_seconds = 5\nrequest_timeout_seconds = 30\nmax_connections = 10\nshutdown_deadline_seconds = 2\n[metrics]\naccess = \"open\"\n[auth]\napplication_creators = [\"*\"]\n",
        )
        .unwrap();
        let config = settings(&args(Some(file.clone())), no_env).unwrap().server;
        assert_eq!(config.http.header_read_timeout.as_secs(), 5);
        assert_eq!(config.http.request_timeout.as_secs(), 30);
        assert_eq!(config.http.max_connections, 10);
        assert_eq!(config.http.shutdown_deadline.as_secs(), 2);
        assert_eq!(config.metrics_access, gennaker_server::MetricsAccess::Open);
        assert_eq!(config.application_creators, ["*"]);

        std::fs::write(&file, "[metrics]\naccess = \"everyone\"\n").unwrap();
        let err = format!(
            "{:#}",
            settings(&args(Some(file.clone())), no_env).unwrap_err()
        );
        assert!(err.contains("everyone"), "{err}");
        std::fs::write(&file, "[http]\nmax_connections = 0\n").unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(err.contains("max_connections must be between 1"), "{err}");
    }

    #[test]
    fn notification_settings_are_read_checked_and_kept_out_of_debug_output() {
        let defaults = settings(&args(None), no_env).unwrap().server;
        assert_eq!(
            defaults.notifications,
            gennaker_notify::NotifySettings::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(
            &file,
            "[notifications]\nbase_url = \"https://gk.example.com\"\n[notifications.slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/SLACKTOKEN\"\n[notifications.smtp]\nhost = \"mail.example.com\"\nfrom = \"Gennaker <gk@example.com>\"\nusername = \"gk\"\npassword = \"hunter2\"\nstarttls = true\n",
        )
        .unwrap();
        let config = settings(&args(Some(file.clone())), no_env).unwrap().server;
        let smtp = config.notifications.smtp.clone().unwrap();
        assert_eq!((smtp.port, smtp.starttls), (587, true));
        assert_eq!(smtp.password.as_deref(), Some("hunter2"));
        assert_eq!(
            config.notifications.base_url.as_deref(),
            Some("https://gk.example.com")
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("SLACKTOKEN") && !shown.contains("hunter2"),
            "{shown}"
        );
        for (bad, expected) in [
            (
                "[notifications.smtp]\nhost = \"m\"\nfrom = \"not an address\"\n",
                "from 'not an address'",
            ),
            (
                "[notifications.smtp]\nhost = \"m\"\nfrom = \"a@b.c\"\nusername = \"u\"\n",
                "username and password go together",
            ),
            (
                "[notifications.slack]\nwebhook_url = \"hooks.slack.com\"\n",
                "webhook_url must be",
            ),
            (
                "[notifications]\nbase_url = \"gk.example.com\"\n",
                "base_url must be",
            ),
        ] {
            std::fs::write(&file, bad).unwrap();
            let err = format!(
                "{:#}",
                settings(&args(Some(file.clone())), no_env).unwrap_err()
            );
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn stage_limits_are_read_from_the_engine_section_within_their_ranges() {
        let defaults = settings(&args(None), no_env).unwrap().server.engine;
        assert_eq!(
            defaults.max_pipeline_stages,
            gennaker_core::MAX_PIPELINE_STAGES
        );
        assert_eq!(
            defaults.max_execution_stages,
            gennaker_engine::MAX_EXECUTION_STAGES
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(
            &file,
            "[engine]\nmax_pipeline_stages = 50\nmax_execution_stages = 400\n",
        )
        .unwrap();
        let engine = settings(&args(Some(file.clone())), no_env)
            .unwrap()
            .server
            .engine;
        assert_eq!(engine.max_pipeline_stages, 50);
        assert_eq!(engine.max_execution_stages, 400);

        for (toml, message) in [
            (
                "max_pipeline_stages = 0",
                "[engine] max_pipeline_stages must be between 1 and 2000, not 0",
            ),
            (
                "max_pipeline_stages = 10000",
                "[engine] max_pipeline_stages must be between 1 and 2000, not 10000",
            ),
            (
                "max_execution_stages = 0",
                "[engine] max_execution_stages must be between 1 and 20000, not 0",
            ),
            (
                "max_execution_stages = 20001",
                "[engine] max_execution_stages must be between 1 and 20000, not 20001",
            ),
            (
                "max_pipeline_stages = 600\nmax_execution_stages = 500",
                "[engine] max_execution_stages (500) must be at least max_pipeline_stages (600): an execution holds all of its pipeline's stages",
            ),
        ] {
            std::fs::write(&file, format!("[engine]\n{toml}\n")).unwrap();
            let err = format!(
                "{:#}",
                settings(&args(Some(file.clone())), no_env).unwrap_err()
            );
            assert!(err.contains(message), "{toml}: {err}");
        }
    }

    #[test]
    fn canary_accounts_are_read_from_their_section() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        assert_eq!(
            settings(&args(None), no_env).unwrap().canary,
            gennaker_canary::CanarySettings::default()
        );
        std::fs::write(
            &file,
            "[canary]\ndefault_account = \"prom\"\nsample_retention_hours = 6\n\n[[canary.accounts]]\nname = \"prom\"\nkind = \"prometheus\"\nurl = \"http://127.0.0.1:9090\"\nbearer_token = \"t0ken\"\ntimeout_seconds = 5\n",
        )
        .unwrap();
        let canary = settings(&args(Some(file.clone())), no_env).unwrap().canary;
        assert_eq!(canary.accounts.len(), 1);
        assert_eq!(
            canary.accounts[0].kind,
            gennaker_canary::settings::AccountKind::Prometheus
        );
        assert_eq!(
            canary.sample_retention(),
            std::time::Duration::from_secs(6 * 3600)
        );
        assert!(
            !format!("{canary:?}").contains("t0ken"),
            "the token is never shown"
        );
        std::fs::write(
            &file,
            "[[canary.accounts]]\nname = \"p\"\nknd = \"prometheus\"\n",
        )
        .unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(err.contains("knd"), "{err}");
    }

    #[test]
    fn the_local_host_policy_is_read_from_its_section() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        let read = settings(&args(None), no_env).unwrap();
        assert_eq!(read.local, gennaker_local::HostSettings::default());
        std::fs::write(
            &file,
            "[local]\nartifact_roots = [\"/srv/builds\"]\ncommands = [\"/usr/bin/python3\"]\nrun_as_user = \"apps\"\nallow_artifact_urls = false\nload_balancer_bind = [\"0.0.0.0\"]\nmax_artifact_bytes = 1024\nartifact_fetch_timeout_seconds = 20\n",
        )
        .unwrap();
        let local = settings(&args(Some(file.clone())), no_env).unwrap().local;
        assert_eq!(
            local.artifact_roots,
            [std::path::PathBuf::from("/srv/builds")]
        );
        assert_eq!(
            local.commands,
            [std::path::PathBuf::from("/usr/bin/python3")]
        );
        assert!(local.working_dir_roots.is_empty());
        assert_eq!(local.run_as_user.as_deref(), Some("apps"));
        assert!(!local.allow_artifact_urls);
        assert_eq!(
            local.load_balancer_bind,
            ["0.0.0.0".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(local.max_artifact_bytes, 1024);
        assert_eq!(local.artifact_fetch_timeout_seconds, 20);
        std::fs::write(&file, "[local]\ncomands = [\"/bin/sh\"]\n").unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(err.contains("comands"), "{err}");
    }

    #[test]
    fn kubernetes_accounts_are_read_and_checked_and_their_tokens_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(
            &file,
            "[[kubernetes.accounts]]\nname = \"k8s\"\nkubeconfig = \"/etc/kube/config\"\ncontext = \"prod\"\nnamespaces = [\"default\", \"shop\"]\n\n[[kubernetes.accounts]]\nname = \"edge\"\nurl = \"https://10.0.0.1:6443\"\ntoken = \"tok-3f9a\"\nca_file = \"/etc/kube/ca.crt\"\n",
        )
        .unwrap();
        let read = settings(&args(Some(file.clone())), no_env).unwrap();
        let accounts = &read.kubernetes.accounts;
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].context.as_deref(), Some("prod"));
        assert_eq!(accounts[0].namespaces, ["default", "shop"]);
        assert_eq!(accounts[1].token.as_deref(), Some("tok-3f9a"));
        assert!(!format!("{read:?}").contains("tok-3f9a"));
        std::fs::write(
            &file,
            "[[kubernetes.accounts]]\nname = \"edge\"\nurl = \"https://10.0.0.1:6443\"\n",
        )
        .unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(err.contains("kubernetes.accounts[0].token"), "{err}");
    }

    #[test]
    fn github_artifact_accounts_are_read_and_checked_and_their_tokens_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(
            &file,
            "[[artifacts.github.accounts]]\nname = \"github\"\ntoken = \"ghp_3f9a\"\n\n[[artifacts.github.accounts]]\nname = \"ghe\"\napi_base_url = \"https://ghe.example.com/api/v3\"\n",
        )
        .unwrap();
        let read = settings(&args(Some(file.clone())), no_env).unwrap();
        let accounts = &read.artifacts.github.accounts;
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].api_base_url, "https://api.github.com");
        assert_eq!(accounts[0].token.as_deref(), Some("ghp_3f9a"));
        assert_eq!(accounts[1].api_base_url, "https://ghe.example.com/api/v3");
        assert!(!format!("{read:?}").contains("ghp_3f9a"));
        std::fs::write(
            &file,
            "[[artifacts.github.accounts]]\nname = \"gh\"\napi_base_url = \"api.github.com\"\n",
        )
        .unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(
            err.contains("artifacts.github.accounts[0].api_base_url"),
            "{err}"
        );
    }

    #[test]
    fn unknown_or_missing_settings_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(settings(&args(Some(dir.path().join("missing.toml"))), no_env).is_err());
        let file = dir.path().join("gennaker.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = format!(
            "{:#}",
            settings(&args(Some(file.clone())), no_env).unwrap_err()
        );
        assert!(err.contains("lisen"), "{err}");
        std::fs::write(&file, "[engine]\nworkers = 0\n").unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(err.contains("workers must be between 1 and 1024"), "{err}");
    }

    #[test]
    fn the_outbound_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        let defaults = settings(&args(None), no_env).unwrap().server.outbound;
        assert_eq!(defaults, gennaker_outbound::OutboundPolicy::default());
        assert_eq!(defaults.max_response_bytes(), 1 << 20);
        std::fs::write(
            &file,
            "[outbound]\nallow = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"hooks.example.com\", \"*.corp.example\"]\nmax_response_bytes = 4096\nrequest_timeout_seconds = 5\n",
        )
        .unwrap();
        let outbound = settings(&args(Some(file.clone())), no_env)
            .unwrap()
            .server
            .outbound;
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(outbound.check_url(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(outbound.check_url(&url("http://10.2.3.4/")).is_ok());
        assert!(outbound.check_url(&url("http://192.168.0.1/")).is_err());
        assert!(outbound.allows_host("ci.corp.example"));
        assert_eq!(outbound.max_response_bytes(), 4096);
        assert_eq!(
            outbound.request_timeout(),
            std::time::Duration::from_secs(5)
        );
        for (text, expected) in [
            (
                "[outbound]\nallow = [\"http://x.example.com\"]\n",
                "[outbound] allow entry 'http://x.example.com' looks like a URL",
            ),
            (
                "[outbound]\nmax_response_bytes = 1\n",
                "[outbound] max_response_bytes must be between",
            ),
            ("[outbound]\nallow_lists = []\n", "allow_lists"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = format!(
                "{:#}",
                settings(&args(Some(file.clone())), no_env).unwrap_err()
            );
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn secrets_are_strings_from_the_environment_and_never_quoted() {
        let env = |name: &str| match name {
            "GENNAKER_ADMIN_TOKEN" => Some("007".to_owned()),
            "GENNAKER_LISTEN" => Some("127.0.0.1:9200".to_owned()),
            _ => None,
        };
        let config = settings(&args(None), env).unwrap().server;
        assert_eq!(config.admin_token.as_deref(), Some("007"));
        assert_eq!(config.listen.port(), 9200);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        for value in ["4815162342", "true", "3.14"] {
            std::fs::write(&file, format!("admin_token = {value}\n")).unwrap();
            let err = format!(
                "{:#}",
                settings(&args(Some(file.clone())), no_env).unwrap_err()
            );
            assert!(err.contains("admin_token"), "{err}");
            assert!(!err.contains(value), "the secret is quoted: {err}");
        }
        let wrong = |name: &str| (name == "GENNAKER_LISTEN").then(|| "not-an-address".to_owned());
        let err = format!("{:#}", settings(&args(None), wrong).unwrap_err());
        assert!(err.contains("GENNAKER_LISTEN"), "{err}");
    }

    #[test]
    fn preconfigured_webhooks_are_read_with_spinnaker_names_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gennaker.toml");
        std::fs::write(
            &file,
            r#"
[[webhooks.preconfigured]]
type = "deployHook"
label = "Deploy hook"
url = "https://deployer.example.com/${parameterValues.env}"
method = "PUT"
customHeaders = { X-Team = "shop", X-Env = ["a", "b"] }
payload = { service = "${parameterValues.service}", replicas = 2 }
waitForCompletion = true
statusJsonPath = "$.state"
successStatuses = "DONE"
retryStatusCodes = [409]
parameters = [{ name = "service", label = "Service" }, { name = "env", label = "Env", defaultValue = "staging" }]

[[webhooks.preconfigured]]
type = "notify"
url = "https://chat.example.com/hook"
payload = '{"text": "deployed"}'
"#,
        )
        .unwrap();
        let read = settings(&args(Some(file.clone())), no_env).unwrap();
        let types: Vec<String> = read
            .webhooks
            .iter()
            .map(|w| w.descriptor().stage_type)
            .collect();
        assert_eq!(types, ["deployHook", "notify"]);
        let offline = super::validation_settings_in(&file).unwrap();
        assert_eq!(offline.webhooks.len(), 2);
        assert_eq!(
            offline.max_pipeline_stages,
            gennaker_core::MAX_PIPELINE_STAGES
        );

        std::fs::write(
            &file,
            "[[webhooks.preconfigured]]\ntype = \"wait\"\nurl = \"https://x.example.com\"\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            settings(&args(Some(file.clone())), no_env).unwrap_err()
        );
        assert!(
            err.contains("webhooks.preconfigured[0].type: 'wait' is a built-in stage type"),
            "{err}"
        );
        std::fs::write(
            &file,
            "[[webhooks.preconfigured]]\ntype = \"x\"\nurl = \"https://x.example.com\"\nwaitForCompletoin = true\n",
        )
        .unwrap();
        let err = format!("{:#}", settings(&args(Some(file)), no_env).unwrap_err());
        assert!(err.contains("waitForCompletoin"), "{err}");
    }
}
