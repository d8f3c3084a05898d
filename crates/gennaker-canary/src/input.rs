//! The judge's input: Kayenta's `MetricSetPair`, one per metric and tag set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Control and experiment samples of one metric and tag set. Timestamps are
/// irrelevant to the judge: the values are unordered samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSetPair {
    /// Name of the metric in the canary configuration.
    pub name: String,
    /// Kayenta's id of the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tag set (e.g. `{"status": "500"}`) the values belong to.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The samples.
    #[serde(default)]
    pub values: PairValues,
    /// Every other field (`scopes`, `attributes`, …), preserved as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The two sample lists. Each value may be a number, `null` (NaN) or one of the
/// strings "NaN", "Infinity", "-Infinity", "+Inf", "-Inf" (Prometheus).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairValues {
    /// Baseline samples.
    #[serde(default, with = "crate::jsonf64::vec")]
    pub control: Vec<f64>,
    /// Canary samples.
    #[serde(default, with = "crate::jsonf64::vec")]
    pub experiment: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_prometheus_style_values() {
        let p: MetricSetPair = serde_json::from_value(json!({
            "name": "latency", "tags": {"pod": "a"}, "scopes": {"control": {}},
            "values": {"control": [1, null, "NaN", "+Inf", "-Inf", "Infinity", "-Infinity", "2.5"],
                       "experiment": []}
        }))
        .unwrap();
        let c = &p.values.control;
        assert_eq!(c[0], 1.0);
        assert!(c[1].is_nan() && c[2].is_nan());
        assert_eq!(
            &c[3..],
            &[
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                2.5
            ]
        );
        assert!(p.extra.contains_key("scopes"));
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["values"]["control"][1], json!("NaN"));
        assert_eq!(back["values"]["control"][3], json!("Infinity"));
    }

    #[test]
    fn rejects_non_numbers() {
        let r: Result<MetricSetPair, _> = serde_json::from_value(
            json!({"name": "x", "values": {"control": ["abc"], "experiment": []}}),
        );
        assert!(r.is_err());
    }
}
