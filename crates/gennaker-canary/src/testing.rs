//! A deterministic canary setup for tests of what shows a judgement (reports, pages,
//! the CLI) rather than of the judgement itself: a metric source whose canary has
//! three times the baseline's errors and the same latency, and a two-metric config
//! that judges it. Only built with the `test-support` feature.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::source::{MetricSet, MetricSource, MetricSources, ScopeQuery, SourceError};
use crate::{CanaryConfig, CanaryMetricConfig, InMemoryCanaryConfigs};

/// The metrics account the sources of [`canary_fixture`] are registered under.
pub const FIXTURE_ACCOUNT: &str = "fake";

/// Serves `errors` three times higher for the canary scope than for any other scope,
/// and every other metric the same for all scopes: a canary that scores 50 with
/// [`two_metric_config`] (errors High, latency Pass).
#[derive(Debug, Clone)]
pub struct TripledCanaryErrors {
    canary_scope: String,
}

impl TripledCanaryErrors {
    /// A source whose scope `canary_scope` is the bad canary.
    pub fn new(canary_scope: impl Into<String>) -> Self {
        Self {
            canary_scope: canary_scope.into(),
        }
    }
}

#[async_trait::async_trait]
impl MetricSource for TripledCanaryErrors {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn query(
        &self,
        _config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError> {
        let ratio = if scope.scope == self.canary_scope && metric.name == "errors" {
            3.0
        } else {
            1.0
        };
        Ok(vec![series(metric, scope, ratio)])
    }
}

/// Serves every metric the same for all scopes: a canary as good as its baseline.
#[derive(Debug, Clone, Default)]
pub struct SameForEveryScope;

#[async_trait::async_trait]
impl MetricSource for SameForEveryScope {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn query(
        &self,
        _config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError> {
        Ok(vec![series(metric, scope, 1.0)])
    }
}

/// The fixture's series over `scope`, scaled by `ratio`.
fn series(metric: &CanaryMetricConfig, scope: &ScopeQuery, ratio: f64) -> MetricSet {
    let span = scope.end.as_second() - scope.start.as_second();
    let step = i64::try_from(scope.step_seconds).unwrap_or(i64::MAX).max(1);
    let points = usize::try_from(span / step).unwrap_or(0) + 1;
    MetricSet {
        tags: BTreeMap::new(),
        // A little spread, so the judge compares distributions, not constants.
        values: (0..points)
            .map(|i| ratio * (10.0 + (i % 5) as f64 * 0.1))
            .collect(),
        start: scope.start,
        step_seconds: scope.step_seconds,
        query: format!("{}{{scope=\"{}\"}}", metric.name, scope.scope),
    }
}

/// A config named `name` for `application` with two equally weighted groups,
/// `errors` and `latency`, each of one metric that fails when it increases.
pub fn two_metric_config(name: &str, application: &str) -> Result<CanaryConfig, serde_json::Error> {
    let metric = |metric: &str| {
        json!({"name": metric, "query": {"type": "builtin", "metricName": metric}, "groups": [metric],
               "analysisConfigurations": {"canary": {"direction": "increase"}}})
    };
    let config = json!({
        "name": name, "applications": [application],
        "metrics": [metric("errors"), metric("latency")],
        "classifier": {"groupWeights": {"errors": 50, "latency": 50}}
    });
    serde_json::from_value(config)
}

/// The sources and configs of a canary whose scope `name` is bad: account
/// [`FIXTURE_ACCOUNT`] serves [`TripledCanaryErrors`] and config `config_id`
/// (named `name`, of `application`) is [`two_metric_config`].
pub fn canary_fixture(
    config_id: &str,
    name: &str,
    application: &str,
) -> Result<(MetricSources, InMemoryCanaryConfigs), serde_json::Error> {
    let mut sources = MetricSources::new();
    sources.insert(FIXTURE_ACCOUNT, Arc::new(TripledCanaryErrors::new(name)));
    let configs = InMemoryCanaryConfigs::new();
    configs.insert(
        config_id,
        name,
        &[application],
        two_metric_config(name, application)?,
    );
    Ok((sources, configs))
}
