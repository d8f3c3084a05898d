//! Test doubles of Gennaker's own canary traits for the stage tests: a deterministic
//! metric source (series generated per scope and window length, the canary scaled by a
//! configurable ratio) and an in-memory canary-config lookup; and the engine kit's
//! harness with the canary stages registered on them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use gennaker_canary::source::{MetricSet, MetricSource, MetricSources, ScopeQuery, SourceError};
use gennaker_canary::{CanaryConfig, CanaryMetricConfig, InMemoryCanaryConfigs};
use gennaker_engine::StageRegistry;
use gennaker_engine::testing::{self, TestBackend};
use serde_json::{Value, json};

/// The account the fake source is configured under.
pub(crate) const ACCOUNT: &str = "fake-metrics";
/// The id of the kit's canary config (of application `shop`).
pub(crate) const CONFIG_ID: &str = "cfg-shop-1";
/// Its name.
pub(crate) const CONFIG_NAME: &str = "shop-canary";

/// One query the source answered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Query {
    pub(crate) metric: String,
    pub(crate) scope: String,
    pub(crate) start: jiff::Timestamp,
    pub(crate) end: jiff::Timestamp,
}

/// Series generated per scope: `points = (end − start) / step + 1`, value `i` a fixed
/// pattern around 10, times the scope's ratio (default 1: identical to the baseline).
#[derive(Debug, Default)]
pub(crate) struct FakeMetrics {
    ratios: Mutex<BTreeMap<String, f64>>,
    ratio_from_points: Mutex<usize>,
    queries: Mutex<Vec<Query>>,
}

impl FakeMetrics {
    /// Multiplies the values of `scope` by `ratio`.
    pub(crate) fn set_ratio(&self, scope: &str, ratio: f64) {
        self.ratios.lock().unwrap().insert(scope.to_owned(), ratio);
    }

    /// Applies the ratios only to windows of at least `points` points (a canary that
    /// goes bad later in the analysis).
    pub(crate) fn ratio_from_points(&self, points: usize) {
        *self.ratio_from_points.lock().unwrap() = points;
    }

    /// Every query answered so far.
    pub(crate) fn queries(&self) -> Vec<Query> {
        self.queries.lock().unwrap().clone()
    }

    /// The distinct experiment windows queried, in order.
    pub(crate) fn windows(&self, scope: &str) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
        let mut windows: Vec<_> = self
            .queries()
            .into_iter()
            .filter(|q| q.scope == scope)
            .map(|q| (q.start, q.end))
            .collect();
        windows.sort();
        windows.dedup();
        windows
    }
}

#[async_trait::async_trait]
impl MetricSource for FakeMetrics {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn query(
        &self,
        _config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError> {
        self.queries.lock().unwrap().push(Query {
            metric: metric.name.clone(),
            scope: scope.scope.clone(),
            start: scope.start,
            end: scope.end,
        });
        let span = scope.end.as_second() - scope.start.as_second();
        let points = usize::try_from(span / scope.step_seconds as i64).unwrap() + 1;
        let from = *self.ratio_from_points.lock().unwrap();
        let ratio = match self.ratios.lock().unwrap().get(&scope.scope) {
            Some(ratio) if points >= from => *ratio,
            _ => 1.0,
        };
        let values = (0..points)
            .map(|i| ratio * (10.0 + ((i * 7) % 5) as f64 * 0.1))
            .collect();
        Ok(vec![MetricSet {
            tags: BTreeMap::new(),
            values,
            start: scope.start,
            step_seconds: scope.step_seconds,
            query: format!("{}{{scope=\"{}\"}}", metric.name, scope.scope),
        }])
    }
}

/// The kit's canary config: `errors` (increase fails) and `latency`, one group each,
/// equal weights.
pub(crate) fn canary_config() -> CanaryConfig {
    serde_json::from_value(json!({
        "name": CONFIG_NAME, "applications": ["shop"],
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [
            {"name": "errors", "query": {"type": "builtin", "metricName": "errors"}, "groups": ["errors"],
             "analysisConfigurations": {"canary": {"direction": "increase"}}, "scopeName": "default"},
            {"name": "latency", "query": {"type": "builtin", "metricName": "latency"}, "groups": ["latency"],
             "analysisConfigurations": {"canary": {"direction": "increase"}}, "scopeName": "default"}
        ],
        "classifier": {"groupWeights": {"errors": 50, "latency": 50}}
    }))
    .unwrap()
}

/// Sources with the fake under [`ACCOUNT`] (the default account).
pub(crate) fn sources(metrics: &Arc<FakeMetrics>) -> MetricSources {
    let mut sources = MetricSources::new();
    sources.insert(ACCOUNT, metrics.clone());
    sources
}

/// The kit's config (of `shop`) in a fresh lookup.
pub(crate) fn configs() -> Arc<InMemoryCanaryConfigs> {
    let configs = Arc::new(InMemoryCanaryConfigs::new());
    configs.insert(CONFIG_ID, CONFIG_NAME, &["shop"], canary_config());
    configs
}

/// Registers the canary stages on `metrics` and `configs`.
pub(crate) fn canary_stages(
    metrics: &Arc<FakeMetrics>,
    configs: &Arc<InMemoryCanaryConfigs>,
) -> impl Fn(&mut StageRegistry) + Send + Sync + 'static {
    let sources = sources(metrics);
    let configs = configs.clone();
    move |registry| gennaker_canary::stage::register(registry, sources.clone(), configs.clone())
}

/// A real-time canary stage: `lifetime` ISO, interval and warm-up in minutes (strings,
/// as Deck writes them), step 5 s, thresholds 75/90, plus `extra` stage fields.
pub(crate) fn canary_stage(lifetime: &str, interval: &str, warmup: &str, extra: Value) -> Value {
    let mut stage = json!({
        "refId": "1", "name": "Canary Analysis", "type": "kayentaCanary", "analysisType": "realTime",
        "canaryConfig": {
            "canaryConfigId": CONFIG_ID, "metricsAccountName": ACCOUNT, "storageAccountName": "store",
            "lifetimeDuration": lifetime, "canaryAnalysisIntervalMins": interval,
            "beginCanaryAnalysisAfterMins": warmup,
            "scoreThresholds": {"marginal": "75", "pass": "90"},
            "scopes": [{"scopeName": "default", "controlScope": "shop-baseline", "controlLocation": "local",
                        "experimentScope": "shop-canary", "experimentLocation": "local",
                        "extendedScopeParams": {}, "step": "5"}]
        }
    });
    if let (Value::Object(s), Value::Object(e)) = (&mut stage, extra) {
        s.extend(e);
    }
    stage
}

/// The engine kit's harness with the canary stages, the fake source and the lookup.
pub(crate) struct Harness {
    kit: testing::Harness,
    pub(crate) metrics: Arc<FakeMetrics>,
    pub(crate) configs: Arc<InMemoryCanaryConfigs>,
}

impl Harness {
    pub(crate) async fn new(backend: TestBackend) -> Self {
        let metrics = Arc::new(FakeMetrics::default());
        let configs = configs();
        let kit = testing::Harness::with_stages(backend, canary_stages(&metrics, &configs)).await;
        Harness {
            kit,
            metrics,
            configs,
        }
    }

    pub(crate) async fn stop(self) {
        self.kit.stop().await;
    }
}

impl Deref for Harness {
    type Target = testing::Harness;

    fn deref(&self) -> &testing::Harness {
        &self.kit
    }
}
