//! The operator's trigger settings (`[triggers]` and `[[docker.accounts]]` in
//! gennaker.toml).

use std::time::Duration;

/// How triggers run on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSettings {
    /// The service identity triggered executions run as. An admin creates it (Gennaker
    /// never does: no identity acts unless an operator made it); it must hold EXECUTE on
    /// an application for that application's triggers to fire.
    pub user: String,
    /// The time zone of cron triggers without `timeZone` (an IANA name).
    pub cron_time_zone: String,
    /// Docker registry v2 accounts that `docker` triggers name.
    pub docker_accounts: Vec<DockerAccount>,
    /// How often registries are polled for new tags.
    pub docker_poll: Duration,
    /// More new tags than this in one poll of a repository are recorded without
    /// firing (a new or re-indexed repository), as Igor's threshold does.
    pub docker_max_new_tags: usize,
    /// How long a server handling an event holds it before another may re-handle it
    /// (it died meanwhile); also how often pending events are looked for.
    pub event_claim: Duration,
    /// Log entries kept per application (older ones are dropped).
    pub log_keep: i64,
    /// The largest webhook body accepted.
    pub max_payload_bytes: usize,
    /// Webhook requests accepted per source and minute (a burst may use them at once).
    pub webhooks_per_minute: u32,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        Self {
            user: "triggers".to_owned(),
            cron_time_zone: "UTC".to_owned(),
            docker_accounts: Vec::new(),
            docker_poll: Duration::from_secs(30),
            docker_max_new_tags: 1000,
            event_claim: Duration::from_secs(60),
            log_keep: 500,
            max_payload_bytes: 1024 * 1024,
            webhooks_per_minute: 120,
        }
    }
}

/// A Docker registry (v2 API) that `docker` triggers poll.
#[derive(Clone, PartialEq, Eq)]
pub struct DockerAccount {
    /// What triggers call it (`account`).
    pub name: String,
    /// The registry's base URL (`https://registry.example.com`).
    pub url: String,
    /// Basic-auth user, if the registry needs one.
    pub username: Option<String>,
    /// Basic-auth password (never shown).
    pub password: Option<String>,
}

impl DockerAccount {
    /// The registry as image references name it: the URL's host and port.
    pub fn registry(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(url) => match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                _ => self.name.clone(),
            },
            Err(_) => self.name.clone(),
        }
    }
}

impl std::fmt::Debug for DockerAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerAccount")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
