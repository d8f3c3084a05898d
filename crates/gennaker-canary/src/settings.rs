//! `[canary]` in gennaker.toml: the metrics accounts canary analyses read from.
//!
//! ```toml
//! [canary]
//! default_account = "prom"          # used when a stage names none (default: builtin)
//! sample_retention_hours = 24       # how long the builtin samples are kept
//!
//! [[canary.accounts]]
//! name = "prom"
//! kind = "prometheus"
//! url = "http://127.0.0.1:9090"
//! bearer_token = "..."              # or username + password
//! timeout_seconds = 10
//! scope_label = "instance"
//! ```
//!
//! An account named `builtin` (the built-in load balancer's samples) is always there.

use std::sync::Arc;
use std::time::Duration;

use gennaker_store::MetricSampleStore;
use serde::{Deserialize, Serialize};

use crate::source::MetricSources;
use crate::source::builtin::BuiltinSource;
use crate::source::prometheus::{
    DEFAULT_MAX_RESPONSE_BYTES, PrometheusAccount, PrometheusAuth, PrometheusSource,
};

/// The name of the always-present builtin account.
pub const BUILTIN_ACCOUNT: &str = "builtin";
/// Seconds a Prometheus query may take by default.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// Hours the builtin samples are kept by default.
pub const DEFAULT_SAMPLE_RETENTION_HOURS: u64 = 24;

/// A credential: shown nowhere (`Debug` prints `<redacted>`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[canary]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySettings {
    /// `[[canary.accounts]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<CanaryAccountSettings>,
    /// The account used when a stage names none (default `builtin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_account: Option<String>,
    /// Hours the builtin samples are kept (default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_retention_hours: Option<u64>,
}

/// The kind of a metrics account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// The built-in load balancer's samples.
    Builtin,
    /// A Prometheus server.
    Prometheus,
}

/// One `[[canary.accounts]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryAccountSettings {
    /// The name stages use (`canaryConfig.metricsAccountName`).
    pub name: String,
    /// `builtin` or `prometheus`.
    pub kind: AccountKind,
    /// Prometheus: the server's base URL (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Prometheus: a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// Prometheus: the basic-auth user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Prometheus: the basic-auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Prometheus: seconds one query may take (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Prometheus: the label `gce_instance` queries match the scope on (default
    /// `instance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_label: Option<String>,
    /// Prometheus: the largest answer read, bytes (default 32 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<usize>,
}

/// A `[canary]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CanarySettingsError {
    /// One account is wrong.
    #[error("[[canary.accounts]] {account:?}: {message}")]
    Account {
        /// The account's name.
        account: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Something outside the accounts is wrong.
    #[error("[canary] {0}")]
    Invalid(String),
}

impl CanarySettings {
    /// How long builtin samples are kept.
    pub fn sample_retention(&self) -> Duration {
        Duration::from_secs(
            self.sample_retention_hours
                .unwrap_or(DEFAULT_SAMPLE_RETENTION_HOURS)
                .saturating_mul(3600),
        )
    }
}

impl MetricSources {
    /// The accounts of `[canary]`, plus `builtin` reading `samples`; the default is
    /// `default_account`, else `builtin`.
    pub fn from_settings(
        settings: &CanarySettings,
        samples: Arc<dyn MetricSampleStore>,
    ) -> Result<Self, CanarySettingsError> {
        if settings.sample_retention_hours == Some(0) {
            return Err(CanarySettingsError::Invalid(
                "sample_retention_hours must be at least 1".to_owned(),
            ));
        }
        let mut sources = MetricSources::new();
        sources.insert(
            BUILTIN_ACCOUNT,
            Arc::new(BuiltinSource::new(BUILTIN_ACCOUNT, samples.clone())),
        );
        let mut seen = std::collections::BTreeSet::new();
        for account in &settings.accounts {
            let invalid = |message: &str| CanarySettingsError::Account {
                account: account.name.clone(),
                message: message.to_owned(),
            };
            if account.name.trim().is_empty() {
                return Err(invalid("name must not be empty"));
            }
            if !seen.insert(account.name.as_str()) {
                return Err(invalid("is configured twice; account names must be unique"));
            }
            match account.kind {
                AccountKind::Builtin => {
                    if account.url.is_some()
                        || account.bearer_token.is_some()
                        || account.username.is_some()
                    {
                        return Err(invalid("a builtin account takes no url or credentials"));
                    }
                    sources.insert(
                        account.name.clone(),
                        Arc::new(BuiltinSource::new(account.name.clone(), samples.clone())),
                    );
                }
                AccountKind::Prometheus => {
                    if account.name == BUILTIN_ACCOUNT {
                        return Err(invalid(
                            "the name builtin is reserved for the built-in load balancer's samples; choose another",
                        ));
                    }
                    sources.insert(account.name.clone(), Arc::new(prometheus(account)?));
                }
            }
        }
        if let Some(default) = &settings.default_account {
            sources
                .set_default(default)
                .map_err(|e| CanarySettingsError::Invalid(format!("default_account: {e}")))?;
        } else {
            sources
                .set_default(BUILTIN_ACCOUNT)
                .map_err(|e| CanarySettingsError::Invalid(e.to_string()))?;
        }
        Ok(sources)
    }
}

fn prometheus(account: &CanaryAccountSettings) -> Result<PrometheusSource, CanarySettingsError> {
    let invalid = |message: String| CanarySettingsError::Account {
        account: account.name.clone(),
        message,
    };
    let Some(url) = account.url.as_deref() else {
        return Err(invalid(
            "a prometheus account needs url (e.g. http://127.0.0.1:9090)".to_owned(),
        ));
    };
    let url = url::Url::parse(url).map_err(|e| invalid(format!("url is not a URL: {e}")))?;
    let auth = match (&account.bearer_token, &account.username, &account.password) {
        (None, None, None) => PrometheusAuth::None,
        (Some(token), None, None) => PrometheusAuth::Bearer(token.clone()),
        (None, Some(username), Some(password)) => PrometheusAuth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        (None, _, _) => {
            return Err(invalid(
                "basic authentication needs both username and password".to_owned(),
            ));
        }
        (Some(_), _, _) => {
            return Err(invalid(
                "set either bearer_token or username and password, not both".to_owned(),
            ));
        }
    };
    let timeout = account.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if timeout == 0 || timeout > 3600 {
        return Err(invalid(format!(
            "timeout_seconds must be between 1 and 3600, not {timeout}"
        )));
    }
    PrometheusSource::new(PrometheusAccount {
        name: account.name.clone(),
        url,
        auth,
        timeout: Duration::from_secs(timeout),
        scope_label: account
            .scope_label
            .clone()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "instance".to_owned()),
        max_response_bytes: account
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
            .max(1024),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sources(
        toml_accounts: serde_json::Value,
    ) -> Result<MetricSources, CanarySettingsError> {
        let settings: CanarySettings = serde_json::from_value(toml_accounts).unwrap();
        let store = gennaker_store::SqlStore::connect("sqlite::memory:")
            .await
            .unwrap();
        MetricSources::from_settings(&settings, Arc::new(store))
    }

    #[tokio::test]
    async fn builtin_is_always_there_and_the_default() {
        let s = sources(serde_json::json!({})).await.unwrap();
        assert_eq!(s.names().collect::<Vec<_>>(), ["builtin"]);
        assert_eq!(s.default_account(), Some("builtin"));
        let s = sources(serde_json::json!({"default_account": "prom", "accounts": [
            {"name": "prom", "kind": "prometheus", "url": "http://127.0.0.1:9090/prefix/",
             "username": "u", "password": "p"}]}))
        .await
        .unwrap();
        assert_eq!(s.default_account(), Some("prom"));
        assert_eq!(s.get("prom").unwrap().kind(), "prometheus");
    }

    #[tokio::test]
    async fn bad_accounts_are_named_with_the_fix() {
        let cases = [
            (
                serde_json::json!({"accounts": [{"name": "p", "kind": "prometheus"}]}),
                "needs url",
            ),
            (
                serde_json::json!({"accounts": [{"name": "p", "kind": "prometheus", "url": "ftp://x"}]}),
                "http:// or https://",
            ),
            (
                serde_json::json!({"accounts": [{"name": "p", "kind": "prometheus", "url": "http://u:pw@x"}]}),
                "must not contain credentials",
            ),
            (
                serde_json::json!({"accounts": [{"name": "p", "kind": "prometheus", "url": "http://x", "username": "u"}]}),
                "both username and password",
            ),
            (
                serde_json::json!({"accounts": [{"name": "p", "kind": "prometheus", "url": "http://x", "bearer_token": "t", "username": "u", "password": "p"}]}),
                "not both",
            ),
            (
                serde_json::json!({"accounts": [{"name": "builtin", "kind": "prometheus", "url": "http://x"}]}),
                "reserved",
            ),
            (
                serde_json::json!({"accounts": [{"name": "a", "kind": "builtin"}, {"name": "a", "kind": "builtin"}]}),
                "configured twice",
            ),
            (
                serde_json::json!({"default_account": "nope"}),
                "default_account",
            ),
            (
                serde_json::json!({"sample_retention_hours": 0}),
                "at least 1",
            ),
        ];
        for (settings, expected) in cases {
            let error = sources(settings.clone()).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{settings}: {error}");
            assert!(!error.contains("pw"), "{error}");
        }
    }
}
