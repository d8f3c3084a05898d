//! The real `kayentaCanary` stage judging from the fake cloud: a metric source whose
//! series are tripled for a group whose spec says `"bad": true`, and a one-metric
//! config (`errors`, an increase fails it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gennaker_canary::source::{MetricSet, MetricSource, MetricSources, ScopeQuery, SourceError};
use gennaker_canary::{CanaryConfig, CanaryMetricConfig, InMemoryCanaryConfigs};
use gennaker_engine::StageRegistry;
use serde_json::{Value, json};

use super::FakeCloud;

/// The metrics account of the test source.
pub(crate) const ACCOUNT: &str = "cloud-metrics";

/// The `artifact` of each scope's group when the source read it, by scope.
pub(crate) type Seen = Arc<Mutex<BTreeMap<String, Value>>>;

/// Series per scope: a fixed pattern around 10, tripled for a `"bad"` group; as many
/// points as the window holds. Records each scope's `artifact` in `seen`.
#[derive(Debug)]
struct CloudMetrics {
    cloud: Arc<FakeCloud>,
    seen: Seen,
}

#[async_trait::async_trait]
impl MetricSource for CloudMetrics {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn query(
        &self,
        _config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError> {
        let group = self.cloud.peek(&scope.scope);
        let bad = group
            .as_ref()
            .is_some_and(|g| g.spec.get("bad") == Some(&json!(true)));
        let artifact = group.map_or(Value::Null, |g| g.spec["artifact"].clone());
        self.seen
            .lock()
            .unwrap()
            .insert(scope.scope.clone(), artifact);
        let span = scope.end.as_second() - scope.start.as_second();
        let points = usize::try_from(span / scope.step_seconds as i64).unwrap() + 1;
        let ratio = if bad { 3.0 } else { 1.0 };
        Ok(vec![MetricSet {
            tags: BTreeMap::new(),
            values: (0..points)
                .map(|i| ratio * (10.0 + ((i * 7) % 5) as f64 * 0.1))
                .collect(),
            start: scope.start,
            step_seconds: scope.step_seconds,
            query: format!("{}{{scope=\"{}\"}}", metric.name, scope.scope),
        }])
    }
}

/// One metric (`errors`, an increase fails it).
fn canary_config() -> CanaryConfig {
    serde_json::from_value(json!({
        "name": "shop-canary", "applications": ["shop"],
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [{"name": "errors", "query": {"type": "builtin", "metricName": "errors"},
                     "groups": ["errors"], "scopeName": "default",
                     "analysisConfigurations": {"canary": {"direction": "increase"}}}],
        "classifier": {"groupWeights": {"errors": 100}}
    }))
    .unwrap()
}

/// The deploy stages on `cloud` and the canary stage judging from it (config
/// `cfg-1`, account [`ACCOUNT`]), recording what it read in `seen`.
pub(crate) fn canary_stages(
    cloud: &Arc<FakeCloud>,
    seen: &Seen,
) -> impl Fn(&mut StageRegistry) + Send + Sync + 'static {
    let deploy = super::deploy_stages(cloud);
    let mut sources = MetricSources::new();
    sources.insert(
        ACCOUNT,
        Arc::new(CloudMetrics {
            cloud: cloud.clone(),
            seen: seen.clone(),
        }),
    );
    let configs = Arc::new(InMemoryCanaryConfigs::new());
    configs.insert("cfg-1", "shop-canary", &["shop"], canary_config());
    move |registry| {
        deploy(registry);
        gennaker_canary::stage::register(registry, sources.clone(), configs.clone());
    }
}
