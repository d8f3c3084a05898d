//! Builders shared by the judge tests: configs, metric-set pairs and deterministic
//! samples that classify as a test wants.

use gennaker_canary::{
    CanaryConfig, Classification, JudgeOptions, JudgeResult, MetricResult, MetricSetPair,
    ScoreThresholds, judge,
};
use serde_json::{Value, json};

/// A deterministic, roughly normal sample: mean `m`, sd about `sd`.
pub(crate) fn normal(n: usize, m: f64, sd: f64, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            let mut u = 0.0;
            for _ in 0..12 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                u += (s >> 11) as f64 / (1u64 << 53) as f64;
            }
            m + sd * (u - 6.0)
        })
        .collect()
}

pub(crate) fn metric(name: &str, groups: &[&str], canary: Value) -> Value {
    json!({"name": name, "query": {"type": "prometheus", "metricName": name}, "groups": groups,
           "analysisConfigurations": {"canary": canary}, "scopeName": "default"})
}

pub(crate) fn config(metrics: Vec<Value>, weights: Value) -> CanaryConfig {
    serde_json::from_value(
        json!({"name": "c", "metrics": metrics, "classifier": {"groupWeights": weights}}),
    )
    .unwrap()
}

pub(crate) fn pair(name: &str, experiment: Vec<f64>, control: Vec<f64>) -> MetricSetPair {
    serde_json::from_value(
        json!({"name": name, "tags": {}, "values": {"control": control, "experiment": experiment}}),
    )
    .unwrap()
}

pub(crate) fn run(config: &CanaryConfig, pairs: &[MetricSetPair]) -> JudgeResult {
    judge(
        config,
        pairs,
        &ScoreThresholds::default(),
        &JudgeOptions::default(),
    )
    .unwrap()
}

pub(crate) fn one(canary: Value, experiment: Vec<f64>, control: Vec<f64>) -> MetricResult {
    let c = config(vec![metric("m", &["g"], canary)], json!({}));
    run(&c, &[pair("m", experiment, control)]).results.remove(0)
}

pub(crate) fn reason(r: &MetricResult) -> &str {
    r.classification_reason.as_deref().unwrap_or("")
}

/// Pairs that classify as wanted: P(ass), H(igh), N(odata), E(rror).
pub(crate) fn pair_for(name: &str, kind: char) -> MetricSetPair {
    match kind {
        'P' => pair(name, vec![1.0, 2.0], vec![2.0, 1.0]),
        'H' => pair(name, normal(40, 20.0, 1.0, 25), normal(40, 10.0, 1.0, 26)),
        'N' => pair(name, vec![], vec![1.0]),
        'E' => pair(name, vec![0.0], vec![5.0]),
        _ => unreachable!(),
    }
}

pub(crate) fn scored(metrics: &[(&str, &[&str], Value, char)], weights: Value) -> JudgeResult {
    let c = config(
        metrics
            .iter()
            .map(|(n, g, a, _)| metric(n, g, a.clone()))
            .collect(),
        weights,
    );
    let pairs: Vec<MetricSetPair> = metrics.iter().map(|(n, _, _, k)| pair_for(n, *k)).collect();
    let res = run(&c, &pairs);
    for (r, (_, _, _, k)) in res.results.iter().zip(metrics) {
        let expected = match k {
            'P' => Classification::Pass,
            'H' => Classification::High,
            'N' => Classification::Nodata,
            _ => Classification::Error,
        };
        assert_eq!(r.classification, expected, "{}", r.name);
    }
    res
}
