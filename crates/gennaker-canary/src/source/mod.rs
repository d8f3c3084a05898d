//! Where canary metrics come from: one trait, one implementation per source type
//! (`builtin`: the built-in load balancer's per-server-group series; `prometheus`:
//! range queries against a Prometheus server), named by account in server config.
//!
//! A source answers Kayenta's question "the values of this metric for this scope in
//! this window" with Kayenta's `MetricSet`s: one per tag set, values in time order,
//! gaps not filled (a missing step only makes the list shorter).

pub mod builtin;
pub mod prometheus;
mod template;

use crate::config::{CanaryConfig, CanaryMetricConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One side (control or experiment) of one scope, as the `kayentaCanary` stage
/// hands it to a source: which server group, where, and which window.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeQuery {
    /// The scope: a server group name (`app-canary-v001`) or what the source's
    /// query templates expect in `${scope}`.
    pub scope: String,
    /// The location (region, namespace); may be empty. `${location}` in templates.
    pub location: String,
    /// Start of the window (inclusive).
    pub start: jiff::Timestamp,
    /// End of the window (inclusive).
    pub end: jiff::Timestamp,
    /// Seconds between points (`scopes[].step`, Kayenta's default 60).
    pub step_seconds: u64,
    /// `extendedScopeParams`: extra template variables (`${namespace}`, …).
    pub extended_params: BTreeMap<String, String>,
}

/// The values of one metric for one side and one tag set (Kayenta's `MetricSet`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSet {
    /// The series' labels (Prometheus labels minus `__name__`); empty for one series.
    pub tags: BTreeMap<String, String>,
    /// Values in time order; NaN where the source had a point without a value.
    pub values: Vec<f64>,
    /// Time of the first value.
    pub start: jiff::Timestamp,
    /// Seconds between values.
    pub step_seconds: u64,
    /// The query exactly as sent to the source, shown in the report.
    pub query: String,
}

/// Why a source could not answer. Every variant names the account, and the query
/// where there was one, so the stage's error tells the user what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The stage names an account the server does not configure.
    #[error(
        "metrics account {account:?} is not configured; configured accounts: {known}. \
         Name one of them in canaryConfig.metricsAccountName, or add it under [[canary.accounts]] in the server config"
    )]
    UnknownAccount {
        /// The account asked for.
        account: String,
        /// The configured account names, comma separated (or "none").
        known: String,
    },
    /// The metric's query cannot be built (missing template, undefined variable,
    /// wrong query type for this source).
    #[error("metric {metric:?}: cannot build the {source_kind} query: {message}")]
    BadQuery {
        /// The metric's name in the canary config.
        metric: String,
        /// The source type (`builtin`, `prometheus`).
        source_kind: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The source answered with an error, or could not be reached.
    #[error("metrics account {account:?}: query {query:?} failed: {message}")]
    QueryFailed {
        /// The account queried.
        account: String,
        /// The query as sent.
        query: String,
        /// The source's own error text (secrets removed).
        message: String,
    },
    /// The source did not answer within its timeout.
    #[error("metrics account {account:?}: query {query:?} timed out after {seconds} s")]
    Timeout {
        /// The account queried.
        account: String,
        /// The query as sent.
        query: String,
        /// The timeout that expired.
        seconds: u64,
    },
}

/// A place canary metrics are read from.
#[async_trait::async_trait]
pub trait MetricSource: Send + Sync + std::fmt::Debug {
    /// The source type: `builtin` or `prometheus` (Kayenta's query `type`).
    fn kind(&self) -> &'static str;

    /// The values of `metric` (of `config`) for one side of one scope. No data is
    /// `Ok` with one empty set (the judge classifies it NoData), not an error.
    async fn query(
        &self,
        config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError>;
}

/// The configured metric sources, by account name.
#[derive(Debug, Clone, Default)]
pub struct MetricSources {
    accounts: BTreeMap<String, Arc<dyn MetricSource>>,
    default_account: Option<String>,
}

impl MetricSources {
    /// No sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an account. The first account added is the default one,
    /// used when a stage names none, unless [`Self::set_default`] says otherwise.
    pub fn insert(&mut self, account: impl Into<String>, source: Arc<dyn MetricSource>) {
        let account = account.into();
        if self.default_account.is_none() {
            self.default_account = Some(account.clone());
        }
        self.accounts.insert(account, source);
    }

    /// Makes `account` the default (it must have been inserted).
    pub fn set_default(&mut self, account: &str) -> Result<(), SourceError> {
        self.get(account)?;
        self.default_account = Some(account.to_owned());
        Ok(())
    }

    /// The default account's name, if any account is configured.
    pub fn default_account(&self) -> Option<&str> {
        self.default_account.as_deref()
    }

    /// The configured account names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    /// The source of `account`, or an error naming the configured ones.
    pub fn get(&self, account: &str) -> Result<Arc<dyn MetricSource>, SourceError> {
        self.accounts
            .get(account)
            .cloned()
            .ok_or_else(|| SourceError::UnknownAccount {
                account: account.to_owned(),
                known: if self.accounts.is_empty() {
                    "none".to_owned()
                } else {
                    self.names().collect::<Vec<_>>().join(", ")
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Empty;

    #[async_trait::async_trait]
    impl MetricSource for Empty {
        fn kind(&self) -> &'static str {
            "builtin"
        }
        async fn query(
            &self,
            _config: &CanaryConfig,
            _metric: &CanaryMetricConfig,
            _scope: &ScopeQuery,
        ) -> Result<Vec<MetricSet>, SourceError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn the_first_account_is_the_default_and_unknown_accounts_name_the_known_ones() {
        let mut sources = MetricSources::new();
        assert!(matches!(
            sources.get("prom"),
            Err(SourceError::UnknownAccount { known, .. }) if known == "none"
        ));
        sources.insert("lb", Arc::new(Empty));
        sources.insert("prom", Arc::new(Empty));
        assert_eq!(sources.default_account(), Some("lb"));
        sources.set_default("prom").unwrap_or_default();
        assert_eq!(sources.default_account(), Some("prom"));
        let error = sources.get("datadog").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("lb, prom")));
    }
}
