//! Kayenta's canary configuration (`CanaryConfig`), as stored and exchanged by
//! Kayenta and Deck, plus the per-metric settings the judge resolves from it.
//!
//! Loading is deliberately tolerant: unknown fields are kept (and written back), and
//! the numeric and boolean settings of `analysisConfigurations.canary` are stored as
//! raw JSON. Kayenta reads those from an untyped map at judge time and throws when a
//! value is not a number (or numeric string) / boolean (or "true"/"false"), which
//! aborts the whole judgement; [`CanaryMetricConfig::settings`] does the same and
//! returns a typed [`ConfigError`].

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A canary configuration: metrics, their groups and the group weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfig {
    /// Configuration name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kayenta's id of the stored configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Applications the configuration belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    /// The judge to use; Kayenta only ships `NetflixACAJudge-v1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeConfig>,
    /// The metrics to compare. Names must be unique: results find their metric by name.
    #[serde(default)]
    pub metrics: Vec<CanaryMetricConfig>,
    /// Named query templates (`customFilterTemplate` refers to them by key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, String>,
    /// Group weights for the scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierConfig>,
    /// Every other field (`configVersion`, timestamps, …), preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `judge` block of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeConfig {
    /// Judge name, e.g. `NetflixACAJudge-v1.0`.
    #[serde(default)]
    pub name: String,
    /// Judge settings; always empty in Kayenta.
    #[serde(default)]
    pub judge_configurations: Map<String, Value>,
}

/// The `classifier` block: group weights (and Kayenta's unused legacy thresholds,
/// kept in `extra`: the judge takes thresholds from the request).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassifierConfig {
    /// Weight of each group, in percent. Jackson accepts numeric strings here too.
    #[serde(default, deserialize_with = "lenient_weights")]
    pub group_weights: BTreeMap<String, f64>,
    /// Every other field (`scoreThresholds`), preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One metric of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetricConfig {
    /// Metric name; metric-set pairs refer to it.
    pub name: String,
    /// The provider query (polymorphic on `type`).
    #[serde(default)]
    pub query: MetricQuery,
    /// Groups the metric counts in when scoring.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Which scope of the execution request the metric is fetched for.
    #[serde(default = "default_scope_name")]
    pub scope_name: String,
    /// Analysis settings; only the `canary` entry is read by the judge.
    #[serde(default)]
    pub analysis_configurations: AnalysisConfigurations,
    /// Every other field, preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_scope_name() -> String {
    "default".to_owned()
}

/// A provider query. Only the common fields are typed; every provider-specific
/// field (`labelBindings`, `queryPairs`, `q`, …) stays in `fields`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricQuery {
    /// Provider type: `prometheus`, `signalfx`, `datadog`, `newrelic`, `atlas`, …
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Same string as `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Metric name, for the providers that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    /// Inline filter template; wins over `custom_filter_template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_inline_template: Option<String>,
    /// Key into the configuration's `templates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_filter_template: Option<String>,
    /// Provider-specific fields, preserved as is.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `analysisConfigurations` of a metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfigurations {
    /// The settings the canary judge reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryAnalysisConfig>,
    /// Other analysis types, preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `analysisConfigurations.canary`, with values kept raw until the judge reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysisConfig {
    /// `increase`, `decrease` or `either` (default; anything else means either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// `replace` replaces NaN with 0.0; anything else (or nothing) removes NaN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nan_strategy: Option<String>,
    /// A critical metric that fails fails the whole canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<Value>,
    /// Missing data fails the metric (`NodataFailMetric`) instead of `Nodata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_have_data: Option<Value>,
    /// Muted metrics are reported but not scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<Value>,
    /// Effect-size gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_size: Option<EffectSizeConfig>,
    /// Outlier removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<OutliersConfig>,
    /// Other fields, preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `effectSize` of a metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectSizeConfig {
    /// Minimum effect for `High` (default 1.0, or 0.5 for CLES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_increase: Option<Value>,
    /// Maximum effect for `Low` (default 1.0, or 0.5 for CLES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_decrease: Option<Value>,
    /// Minimum effect for a critical `High` (default 1.0, or 0.5 for CLES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_increase: Option<Value>,
    /// Maximum effect for a critical `Low` (default 1.0, or 0.5 for CLES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_decrease: Option<Value>,
    /// `meanRatio` (default) or `cles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    /// Other fields, preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `outliers` of a metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutliersConfig {
    /// Only `remove` removes outliers; the default keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// IQR factor (default 3.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_factor: Option<Value>,
    /// Other fields, preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which side of the control a metric may deviate to before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Only an increase fails (`High`).
    Increase,
    /// Only a decrease fails (`Low`).
    Decrease,
    /// Both fail.
    Either,
}

/// What happens to NaN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanStrategy {
    /// Drop them (Kayenta's default).
    Remove,
    /// Replace them with 0.0.
    Replace,
}

/// Effect-size measure gating `High`/`Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectMeasure {
    /// `mean(experiment) / mean(control)`.
    MeanRatio,
    /// Common-language effect size: P(X > Y) + ½P(X = Y).
    Cles,
}

/// The settings of one metric with Kayenta's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSettings {
    /// Allowed direction of deviation.
    pub direction: Direction,
    /// NaN handling.
    pub nan_strategy: NanStrategy,
    /// Critical metric.
    pub critical: bool,
    /// Missing data fails the metric.
    pub must_have_data: bool,
    /// Reported but not scored.
    pub muted: bool,
    /// IQR factor when outliers are removed; `None` keeps outliers.
    pub outlier_factor: Option<f64>,
    /// Effect-size measure.
    pub measure: EffectMeasure,
    /// Gate for `High`.
    pub allowed_increase: f64,
    /// Gate for `Low`.
    pub allowed_decrease: f64,
    /// Gate for a critical `High`.
    pub critical_increase: f64,
    /// Gate for a critical `Low`.
    pub critical_decrease: f64,
}

/// A setting of `analysisConfigurations.canary` has the wrong type; Kayenta aborts
/// the whole judgement in that case.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("metric {metric:?}: `{key}` must be a {expected}, got {value}")]
pub struct ConfigError {
    /// Metric name.
    pub metric: String,
    /// Path of the setting, e.g. `effectSize.allowedIncrease`.
    pub key: &'static str,
    /// `number` or `boolean`.
    pub expected: &'static str,
    /// The offending value, as JSON text.
    pub value: String,
}

impl CanaryMetricConfig {
    /// Resolves the judge settings with Kayenta's defaults.
    pub fn settings(&self) -> Result<MetricSettings, ConfigError> {
        let empty = CanaryAnalysisConfig::default();
        let c = self
            .analysis_configurations
            .canary
            .as_ref()
            .unwrap_or(&empty);
        let number = |key: &'static str, v: Option<&Value>, default: f64| {
            v.map_or(Ok(default), |v| {
                lenient_f64(v).ok_or_else(|| self.config_error(key, "number", v))
            })
        };
        let boolean = |key: &'static str, v: Option<&Value>| {
            v.map_or(Ok(false), |v| {
                lenient_bool(v).ok_or_else(|| self.config_error(key, "boolean", v))
            })
        };
        let effect = c.effect_size.as_ref();
        let measure = match effect.and_then(|e| e.measure.as_deref()) {
            Some("cles") => EffectMeasure::Cles,
            _ => EffectMeasure::MeanRatio,
        };
        let gate_default = if measure == EffectMeasure::Cles {
            0.5
        } else {
            1.0
        };
        let outliers = c.outliers.as_ref();
        let outlier_factor = match outliers.and_then(|o| o.strategy.as_deref()) {
            Some("remove") => Some(number(
                "outliers.outlierFactor",
                outliers.and_then(|o| o.outlier_factor.as_ref()),
                3.0,
            )?),
            _ => None,
        };
        Ok(MetricSettings {
            direction: match c.direction.as_deref() {
                Some("increase") => Direction::Increase,
                Some("decrease") => Direction::Decrease,
                _ => Direction::Either,
            },
            nan_strategy: match c.nan_strategy.as_deref() {
                Some("replace") => NanStrategy::Replace,
                _ => NanStrategy::Remove,
            },
            critical: boolean("critical", c.critical.as_ref())?,
            must_have_data: boolean("mustHaveData", c.must_have_data.as_ref())?,
            muted: boolean("muted", c.muted.as_ref())?,
            outlier_factor,
            measure,
            allowed_increase: number(
                "effectSize.allowedIncrease",
                effect.and_then(|e| e.allowed_increase.as_ref()),
                gate_default,
            )?,
            allowed_decrease: number(
                "effectSize.allowedDecrease",
                effect.and_then(|e| e.allowed_decrease.as_ref()),
                gate_default,
            )?,
            critical_increase: number(
                "effectSize.criticalIncrease",
                effect.and_then(|e| e.critical_increase.as_ref()),
                gate_default,
            )?,
            critical_decrease: number(
                "effectSize.criticalDecrease",
                effect.and_then(|e| e.critical_decrease.as_ref()),
                gate_default,
            )?,
        })
    }

    fn config_error(
        &self,
        key: &'static str,
        expected: &'static str,
        value: &Value,
    ) -> ConfigError {
        ConfigError {
            metric: self.name.clone(),
            key,
            expected,
            value: value.to_string(),
        }
    }
}

/// A JSON number, or a string Java's `Double.parseDouble` would accept (after
/// trimming). `null` never gets here: serde maps it to "absent".
pub(crate) fn lenient_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_java_double(s),
        _ => None,
    }
}

fn parse_java_double(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        // Rust also accepts "inf"/"nan" spellings Java rejects; refuse them.
        t if t
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) =>
        {
            None
        }
        t => t.parse().ok(),
    }
}

/// A JSON boolean or the strings "true"/"false" in any case (Scala's `toBoolean`).
pub(crate) fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn lenient_weights<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match lenient_f64(&v) {
            Some(w) => Ok((k, w)),
            None => Err(serde::de::Error::custom(format!(
                "group weight {k:?} is not a number: {v}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(canary: Value) -> CanaryMetricConfig {
        serde_json::from_value(json!({"name": "m", "analysisConfigurations": {"canary": canary}}))
            .unwrap()
    }

    #[test]
    fn defaults_match_kayenta() {
        let s = metric(json!({})).settings().unwrap();
        assert_eq!(s.direction, Direction::Either);
        assert_eq!(s.nan_strategy, NanStrategy::Remove);
        assert!(!s.critical && !s.must_have_data && !s.muted);
        assert_eq!(s.outlier_factor, None);
        assert_eq!(s.measure, EffectMeasure::MeanRatio);
        assert_eq!((s.allowed_increase, s.allowed_decrease), (1.0, 1.0));
        assert_eq!((s.critical_increase, s.critical_decrease), (1.0, 1.0));
        let bare: CanaryMetricConfig = serde_json::from_value(json!({"name": "m"})).unwrap();
        assert_eq!(bare.settings().unwrap(), s);
        assert_eq!(bare.scope_name, "default");
    }

    #[test]
    fn odd_values_fall_back_like_kayenta() {
        let s = metric(json!({"direction": "sideways", "nanStrategy": "none",
            "outliers": {"strategy": "keep", "outlierFactor": "junk"}}))
        .settings()
        .unwrap();
        assert_eq!(s.direction, Direction::Either);
        assert_eq!(s.nan_strategy, NanStrategy::Remove);
        assert_eq!(s.outlier_factor, None, "factor is only read when removing");
        let s = metric(json!({"nanStrategy": "replace", "outliers": {"strategy": "remove"}}))
            .settings()
            .unwrap();
        assert_eq!(s.nan_strategy, NanStrategy::Replace);
        assert_eq!(s.outlier_factor, Some(3.0));
    }

    #[test]
    fn cles_defaults_to_half() {
        let s = metric(json!({"effectSize": {"measure": "cles", "allowedIncrease": 0.7}}))
            .settings()
            .unwrap();
        assert_eq!(s.measure, EffectMeasure::Cles);
        assert_eq!((s.allowed_increase, s.allowed_decrease), (0.7, 0.5));
        assert_eq!((s.critical_increase, s.critical_decrease), (0.5, 0.5));
    }

    #[test]
    fn numbers_and_booleans_as_strings() {
        let s = metric(
            json!({"critical": "TRUE", "mustHaveData": "false", "muted": false,
            "effectSize": {"allowedIncrease": " 1.2 ", "criticalIncrease": "1e1"}}),
        )
        .settings()
        .unwrap();
        assert!(s.critical && !s.must_have_data);
        assert_eq!((s.allowed_increase, s.critical_increase), (1.2, 10.0));
    }

    #[test]
    fn bad_types_are_config_errors() {
        let e = metric(json!({"effectSize": {"allowedIncrease": "lots"}}))
            .settings()
            .unwrap_err();
        assert_eq!(e.key, "effectSize.allowedIncrease");
        let e = metric(json!({"critical": "yes"})).settings().unwrap_err();
        assert_eq!((e.key, e.expected), ("critical", "boolean"));
        let e = metric(json!({"effectSize": {"allowedDecrease": "inf"}}))
            .settings()
            .unwrap_err();
        assert_eq!(e.expected, "number");
    }

    #[test]
    fn real_kayenta_config_round_trips() {
        let raw = json!({
          "createdTimestamp": 1534963200000_u64, "updatedTimestamp": 1534963200000_u64,
          "createdTimestampIso": "2018-08-22T18:40:00Z", "updatedTimestampIso": "2018-08-22T18:40:00Z",
          "applications": ["myapp"], "name": "my-canary", "description": "", "configVersion": "1",
          "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
          "metrics": [{
            "name": "5xx", "query": {"type": "prometheus", "serviceType": "prometheus",
              "metricName": "http_requests_total", "labelBindings": [], "groupByFields": [],
              "customFilterTemplate": "status"},
            "groups": ["errors"],
            "analysisConfigurations": {"canary": {"direction": "increase", "critical": true,
              "nanStrategy": "replace", "effectSize": {"allowedIncrease": 1.1}}},
            "scopeName": "default"
          }],
          "templates": {"status": "status=~\"5..\""},
          "classifier": {"groupWeights": {"errors": "100"}, "scoreThresholds": {"pass": 95, "marginal": 75}}
        });
        let c: CanaryConfig = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(
            c.classifier.as_ref().unwrap().group_weights["errors"],
            100.0
        );
        assert_eq!(c.metrics[0].query.kind.as_deref(), Some("prometheus"));
        let back = serde_json::to_value(&c).unwrap();
        // Everything survives except the weight, which is normalised to a number.
        let mut expected = raw;
        expected["classifier"]["groupWeights"]["errors"] = json!(100.0);
        assert_eq!(back, expected);
    }
}
