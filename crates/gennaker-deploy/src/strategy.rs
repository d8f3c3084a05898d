//! Deployment strategies as stage-graph builders: the synthetic stages a
//! `createServerGroup` stage runs after its new group is healthy (Orca's
//! `RedBlackStrategy`, `HighlanderStrategy`, `RollingRedBlackStrategy`).

use gennaker_engine::{SyntheticSpec, sequential, truthy};
use serde_json::{Map, Value, json};

use crate::fields::{ClusterRef, capacity_json, text, whole};
use crate::model::Capacity;

/// A deploy cluster's `strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// `""` / `none`: deploy the new group, leave the others alone.
    None,
    /// Enable the new group, then disable (and optionally scale down) the old ones.
    RedBlack,
    /// Destroy every other group once the new one is healthy.
    Highlander,
    /// Grow the new group step by step (`targetPercentages`), shifting traffic with it.
    RollingRedBlack,
    /// A canary release: baseline and canary groups judged in steps, then red/black
    /// (see [`crate::canary`]).
    Canary,
}

impl Strategy {
    /// Parses `strategy`; unknown strategies are named in the error.
    pub(crate) fn of(context: &Map<String, Value>) -> Result<Self, String> {
        match text(context, "strategy")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "none" => Ok(Self::None),
            "redblack" => Ok(Self::RedBlack),
            "highlander" => Ok(Self::Highlander),
            "rollingredblack" => Ok(Self::RollingRedBlack),
            "canary" => Ok(Self::Canary),
            other => Err(format!(
                "deployment strategy '{other}' is not supported: use redblack, rollingredblack, highlander, canary or none"
            )),
        }
    }
}

/// `targetPercentages` (default `[100]`), each within 1..=100, ending at 100.
pub(crate) fn target_percentages(context: &Map<String, Value>) -> Vec<u32> {
    let mut percentages: Vec<u32> = context
        .get("targetPercentages")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(gennaker_core::lenient::value_as_i64)
                .filter_map(|n| u32::try_from(n.clamp(1, 100)).ok())
                .collect()
        })
        .unwrap_or_default();
    if percentages.last() != Some(&100) {
        percentages.push(100);
    }
    percentages
}

/// The capacity of one rolling step: `pct` of `full`, pinned below 100%.
pub(crate) fn step_capacity(full: Capacity, pct: u32) -> Capacity {
    if pct >= 100 {
        return full;
    }
    let desired = (u64::from(full.desired) * u64::from(pct)).div_ceil(100);
    Capacity::fixed(u32::try_from(desired).unwrap_or(full.desired))
}

/// What a strategy plans after the new group is up.
pub(crate) fn after_stages(
    strategy: Strategy,
    cluster: &ClusterRef,
    context: &Map<String, Value>,
    full: Capacity,
) -> Vec<SyntheticSpec> {
    let base = cluster.stage_context();
    let with = |extra: Value| -> Map<String, Value> {
        let mut map = base.clone();
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
        map
    };
    let seconds = |key: &str| whole(context, key).filter(|s| *s > 0);
    let mut stages: Vec<(String, String, Map<String, Value>)> = Vec::new();
    let cleanup = |stages: &mut Vec<(String, String, Map<String, Value>)>, shrink_first: bool| {
        let shrink = whole(context, "maxRemainingAsgs").filter(|n| *n > 0).map(|n| {
            (
                "shrinkCluster".to_owned(),
                "shrinkCluster".to_owned(),
                with(json!({"shrinkToSize": n, "allowDeleteActive": false, "retainLargerOverNewer": false})),
            )
        });
        if shrink_first && let Some(shrink) = shrink.clone() {
            stages.push(shrink);
        }
        if let Some(delay) = seconds("delayBeforeDisableSec") {
            stages.push((
                "wait".into(),
                "waitBeforeDisable".into(),
                with(json!({"waitTime": delay})),
            ));
        }
        stages.push((
            "disableCluster".into(),
            "disableCluster".into(),
            with(json!({"remainingEnabledServerGroups": 1, "preferLargerOverNewer": false})),
        ));
        if strategy == Strategy::RollingRedBlack {
            stages.push((
                "shiftTraffic".into(),
                "restoreTrafficWeights".into(),
                with(json!({"target": "current_asg_dynamic"})),
            ));
        }
        if truthy(context.get("scaleDown")) {
            if let Some(delay) = seconds("delayBeforeScaleDownSec") {
                stages.push((
                    "wait".into(),
                    "waitBeforeScaleDown".into(),
                    with(json!({"waitTime": delay})),
                ));
            }
            stages.push((
                "scaleDownCluster".into(),
                "scaleDownCluster".into(),
                with(json!({"remainingFullSizeServerGroups": 1, "preferLargerOverNewer": false, "allowScaleDownActive": false})),
            ));
        }
        if !shrink_first && let Some(shrink) = shrink {
            stages.push(shrink);
        }
    };
    match strategy {
        // The canary release plans its own stages (crate::canary).
        Strategy::None | Strategy::Canary => {}
        Strategy::Highlander => stages.push((
            "shrinkCluster".into(),
            "shrinkCluster".into(),
            with(json!({"shrinkToSize": 1, "allowDeleteActive": true, "retainLargerOverNewer": false})),
        )),
        Strategy::RedBlack => cleanup(&mut stages, true),
        Strategy::RollingRedBlack => {
            let validation = context.get("pipelineBeforeCleanup").and_then(Value::as_object);
            for pct in target_percentages(context) {
                stages.push((
                    "resizeServerGroup".into(),
                    format!("Grow to {pct}%"),
                    with(json!({
                        "target": "current_asg_dynamic",
                        "action": "scale_exact",
                        "capacity": capacity_json(step_capacity(full, pct)),
                        "scalePct": pct,
                    })),
                ));
                stages.push((
                    "shiftTraffic".into(),
                    format!("Shift {pct}% of traffic"),
                    with(json!({"target": "current_asg_dynamic", "percentage": pct})),
                ));
                if let Some(validation) = validation
                    && let Some(pipeline) = text(validation, "pipelineId")
                {
                    let mut run = Map::new();
                    run.insert("pipeline".into(), json!(pipeline));
                    if let Some(application) = text(validation, "application") {
                        run.insert("application".into(), json!(application));
                    }
                    let mut parameters = validation
                        .get("pipelineParameters")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    parameters.insert("deployPercentage".into(), json!(pct));
                    run.insert("pipelineParameters".into(), Value::Object(parameters));
                    run.insert("waitForCompletion".into(), json!(true));
                    stages.push(("pipeline".into(), format!("Validate at {pct}%"), run));
                }
                if let Some(delay) = seconds("delayBeforeCleanup") {
                    stages.push(("wait".into(), format!("Wait at {pct}%"), with(json!({"waitTime": delay}))));
                }
            }
            cleanup(&mut stages, false);
        }
    }
    sequential(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn cluster() -> ClusterRef {
        ClusterRef {
            cloud_provider: None,
            account: "local".into(),
            cluster: "shop".into(),
            application: "shop".into(),
        }
    }

    fn plan(context: Value) -> Vec<String> {
        let context = ctx(context);
        let strategy = Strategy::of(&context).unwrap_or(Strategy::None);
        after_stages(strategy, &cluster(), &context, Capacity::fixed(4))
            .into_iter()
            .map(|s| s.stage_type)
            .collect()
    }

    #[test]
    fn red_black_follows_orca_order() {
        assert_eq!(
            plan(
                json!({"strategy": "redblack", "maxRemainingAsgs": 2, "delayBeforeDisableSec": 5, "scaleDown": true, "delayBeforeScaleDownSec": 7})
            ),
            [
                "shrinkCluster",
                "wait",
                "disableCluster",
                "wait",
                "scaleDownCluster"
            ]
        );
        assert_eq!(plan(json!({"strategy": "redblack"})), ["disableCluster"]);
        assert_eq!(plan(json!({"strategy": "highlander"})), ["shrinkCluster"]);
        assert!(plan(json!({"strategy": ""})).is_empty());
        assert!(Strategy::of(&ctx(json!({"strategy": "rollingpush"}))).is_err());
    }

    #[test]
    fn rolling_steps_grow_then_clean_up() {
        assert_eq!(
            plan(
                json!({"strategy": "rollingredblack", "targetPercentages": [50, 100],
                        "pipelineBeforeCleanup": {"application": "shop", "pipelineId": "p1"}})
            ),
            [
                "resizeServerGroup",
                "shiftTraffic",
                "pipeline",
                "resizeServerGroup",
                "shiftTraffic",
                "pipeline",
                "disableCluster",
                "shiftTraffic"
            ]
        );
        assert_eq!(
            target_percentages(&ctx(json!({"targetPercentages": [25, 50]}))),
            [25, 50, 100]
        );
        assert_eq!(step_capacity(Capacity::fixed(4), 25), Capacity::fixed(1));
        assert_eq!(step_capacity(Capacity::fixed(3), 50), Capacity::fixed(2));
        let full = Capacity {
            min: 1,
            max: 6,
            desired: 4,
        };
        assert_eq!(step_capacity(full, 100), full);
    }
}
