//! The `canary` deploy strategy: a canary release in Argo Rollouts' steps, judged by
//! Kayenta's analysis of a canary against a fresh baseline.
//!
//! A deploy cluster with `"strategy": "canary"` and a `canary` block
//! (`{analysis: {…defaults}, capacity, steps: [{setWeight: N} | {analysis: {…}} |
//! {pause: {duration}}]}`) becomes, under its `createServerGroup` stage:
//!
//! ```text
//! before: canaryTraffic "Hold traffic on production"      (production 100%)
//!         createServerGroup "Deploy baseline <c>-baseline" (production's spec, canary size, highlander)
//!         createServerGroup "Deploy canary <c>-canary"     (the new spec, highlander)
//!         one stage per step: canaryTraffic "Set canary weight N%", kayentaCanary
//!         "Canary analysis #i", wait / manualJudgment "Pause #i"
//! tasks:  the production group of the new version, as any deploy
//! after:  canaryTraffic "Promote <group>" (the new group 100%), red/black's
//!         disableCluster (and scaleDown / shrink as configured), removeCanaryServerGroups
//! ```
//!
//! Traffic split: `setWeight: N` sends N% of the load balancers' traffic to baseline
//! and canary together, N/2 each (equal shares, as Kayenta needs: both sides must see
//! the same load), and production the remaining 100 − N. The weights are relative:
//! production `2·(100−N)`, baseline `N`, canary `N`. Each analysis is a `kayentaCanary`
//! stage whose control scope is the baseline group and experiment scope the canary
//! group (read from the `deployedServerGroups` the traffic stages output), its
//! `canaryConfig` the strategy's `analysis` with the step's fields over it.
//!
//! Any failure (an analysis at or below marginal, any step failing, cancellation) runs
//! the `createServerGroup` stage's cancel routine: traffic back to production first,
//! then the baseline, canary and (if already made) new production groups disabled and
//! destroyed, then the load balancers' default weights.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gennaker_core::lenient::value_as_i64;
use gennaker_core::naming::Moniker;
use gennaker_core::{Fields, Problem, ValidationReport};
use gennaker_engine::{
    Access, Execution, Services, StageDefinition, StageExecution, StageRegistry, SyntheticSpec,
    Task, TaskContext, TaskError, TaskResult, TaskSpec, sequential,
};
use serde_json::{Map, Value, json};

use crate::authz::{Joining, cluster_target, may_route};
use crate::cluster::{deployed_by_parent, provider_for, server_groups};
use crate::fields::{ClusterRef, capacity, capacity_json, task_error, text};
use crate::model::{Capacity, ServerGroup};
use crate::provider::{Provider, Providers};
use crate::rules::{CloudStageType, check_capacity, check_cluster_target, described_by_kind};
use crate::strategy::{Strategy, after_stages as strategy_after_stages};

/// The stage that fixes the traffic split of a canary release.
pub(crate) const CANARY_TRAFFIC: &str = "canaryTraffic";
/// The stage that removes a canary release's baseline and canary groups.
pub(crate) const REMOVE_CANARY: &str = "removeCanaryServerGroups";
/// Context key of the production cluster a baseline group copies its spec from.
pub(crate) const BASELINE_OF: &str = "baselineOf";

/// Registers `canaryTraffic` and `removeCanaryServerGroups` with their tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    let traffic = CloudStageType::new(
        CANARY_TRAFFIC,
        "Canary Traffic",
        "split a canary release's traffic between production, baseline and canary",
        check_cluster_target,
        providers,
    );
    let remove = CloudStageType::new(
        REMOVE_CANARY,
        "Remove Canary Server Groups",
        "disable and destroy a canary release's baseline and canary groups",
        check_cluster_target,
        providers,
    );
    registry
        .stage(SimpleStage {
            kind: traffic,
            task: "canaryTrafficTask",
        })
        .stage(SimpleStage {
            kind: remove,
            task: "removeCanaryServerGroupsTask",
        })
        .task(TrafficTask {
            providers: providers.clone(),
        })
        .task(RemoveTask {
            providers: providers.clone(),
        });
}

struct SimpleStage {
    kind: CloudStageType,
    task: &'static str,
}

impl StageDefinition for SimpleStage {
    described_by_kind!();

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new(self.task)]
    }
}

/// One step of `canary.steps`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Baseline and canary together get this share of traffic (percent).
    SetWeight(u32),
    /// An analysis: the step's `canaryConfig` fields.
    Analysis(Map<String, Value>),
    /// A timed pause (seconds), or a manual judgment without one.
    Pause(Option<u64>),
}

/// The step kinds, for messages.
const STEP_KINDS: &str = "setWeight, analysis or pause";

/// Argo Rollouts' pause durations: `10` (seconds), `10s`, `10m`, `1h`.
pub(crate) fn duration_seconds(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = number.trim().parse().ok()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The cluster's `canary.steps`, leniently (save-time rules report what is wrong).
pub(crate) fn steps(context: &Map<String, Value>) -> Vec<Step> {
    let list = context
        .get("canary")
        .and_then(|c| c.get("steps"))
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|step| {
            if let Some(weight) = step.get("setWeight").and_then(value_as_i64) {
                return Some(Step::SetWeight(
                    u32::try_from(weight.clamp(0, 100)).unwrap_or(0),
                ));
            }
            if let Some(analysis) = step.get("analysis") {
                return Some(Step::Analysis(
                    analysis.as_object().cloned().unwrap_or_default(),
                ));
            }
            step.get("pause")
                .map(|pause| Step::Pause(pause.get("duration").and_then(duration_seconds)))
        })
        .collect()
}

/// The baseline and canary clusters next to `production`: Deck's `-baseline` /
/// `-canary` suffix on the free-form details.
pub(crate) fn side_clusters(
    production: &ClusterRef,
) -> Result<(ClusterRef, ClusterRef), TaskError> {
    let parsed = gennaker_core::naming::parse_name(&production.cluster);
    let side = |suffix: &str| -> Result<ClusterRef, TaskError> {
        let detail = match parsed.detail.as_deref() {
            Some(detail) if !detail.is_empty() => format!("{detail}-{suffix}"),
            _ => suffix.to_owned(),
        };
        let moniker = Moniker::new(
            &production.application,
            parsed.stack.as_deref(),
            Some(&detail),
        )
        .map_err(|e| {
            TaskError::Permanent(format!("the {suffix} cluster's name is not valid: {e}"))
        })?;
        Ok(ClusterRef {
            cluster: moniker.cluster(),
            ..production.clone()
        })
    };
    Ok((side("baseline")?, side("canary")?))
}

/// The size of the baseline and canary groups: `canary.capacity`, default one instance.
fn side_capacity(context: &Map<String, Value>) -> Capacity {
    capacity(context.get("canary").and_then(|c| c.get("capacity")))
        .ok()
        .flatten()
        .unwrap_or(Capacity::fixed(1))
}

/// The cluster fields of a baseline or canary deploy: the production cluster's, with
/// the `-baseline`/`-canary` details, the canary size, highlander (a leftover group of
/// an earlier release is replaced), and no rollback of its own.
fn side_deploy(context: &Map<String, Value>, suffix: &str, keep_spec: bool) -> Map<String, Value> {
    const KEEP: &[&str] = &[
        "application",
        "stack",
        "account",
        "credentials",
        "cloudProvider",
        "provider",
        "loadBalancers",
        "moniker",
        "waitForUpInstancesTimeoutMs",
        "region",
    ];
    let mut side: Map<String, Value> = if keep_spec {
        context.clone()
    } else {
        context
            .iter()
            .filter(|(k, _)| KEEP.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for key in [
        "canary",
        "rollback",
        "source",
        "serverGroupName",
        "serverGroup",
        "useSourceCapacity",
        "maxRemainingAsgs",
        "scaleDown",
        "delayBeforeDisableSec",
        "delayBeforeScaleDownSec",
    ] {
        side.remove(key);
    }
    let detail = text(context, "freeFormDetails")
        .or_else(|| {
            context
                .get("moniker")
                .and_then(|m| m.get("detail"))
                .and_then(Value::as_str)
        })
        .filter(|d| !d.is_empty())
        .map_or_else(|| suffix.to_owned(), |d| format!("{d}-{suffix}"));
    side.insert("freeFormDetails".into(), json!(detail));
    if let Some(Value::Object(moniker)) = side.get_mut("moniker") {
        moniker.insert("detail".into(), json!(detail));
        moniker.remove("cluster");
    }
    side.insert("strategy".into(), json!("highlander"));
    side.insert("capacity".into(), capacity_json(side_capacity(context)));
    side
}

/// The fields every canary-traffic and removal stage gets.
fn side_context(production: &ClusterRef, context: &Map<String, Value>) -> Map<String, Value> {
    let mut map = production.stage_context();
    map.insert(
        "loadBalancers".into(),
        context.get("loadBalancers").cloned().unwrap_or(json!([])),
    );
    map
}

/// The stages a canary release runs before its production group is created.
pub(crate) fn before_stages(
    production: &ClusterRef,
    context: &Map<String, Value>,
) -> Vec<SyntheticSpec> {
    let Ok((baseline, canary)) = side_clusters(production) else {
        return Vec::new();
    };
    let base = side_context(production, context);
    let with = |extra: Value| -> Map<String, Value> {
        let mut map = base.clone();
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
        map
    };
    let mut stages: Vec<(String, String, Map<String, Value>)> = vec![(
        CANARY_TRAFFIC.into(),
        "Hold traffic on production".into(),
        with(json!({"weight": 0})),
    )];
    let mut baseline_deploy = side_deploy(context, "baseline", false);
    baseline_deploy.insert(BASELINE_OF.into(), json!(production.cluster));
    stages.push((
        crate::deploy::CREATE_SERVER_GROUP.into(),
        format!("Deploy baseline {}", baseline.cluster),
        baseline_deploy,
    ));
    stages.push((
        crate::deploy::CREATE_SERVER_GROUP.into(),
        format!("Deploy canary {}", canary.cluster),
        side_deploy(context, "canary", true),
    ));
    let defaults = context
        .get("canary")
        .and_then(|c| c.get("analysis"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let (mut analyses, mut pauses) = (0, 0);
    for step in steps(context) {
        match step {
            Step::SetWeight(weight) => stages.push((
                CANARY_TRAFFIC.into(),
                format!("Set canary weight {weight}%"),
                with(json!({"weight": weight})),
            )),
            Step::Analysis(fields) => {
                analyses += 1;
                stages.push((
                    "kayentaCanary".into(),
                    format!("Canary analysis #{analyses}"),
                    analysis_context(&defaults, &fields),
                ));
            }
            Step::Pause(seconds) => {
                pauses += 1;
                let name = format!("Pause #{pauses}");
                match seconds {
                    Some(seconds) => {
                        stages.push(("wait".into(), name, with(json!({"waitTime": seconds}))));
                    }
                    None => stages.push((
                        "manualJudgment".into(),
                        name,
                        with(json!({"instructions": "Continue the canary release?"})),
                    )),
                }
            }
        }
    }
    sequential(stages)
}

/// A `kayentaCanary` stage's context: the step's fields over the strategy's analysis
/// defaults, scoped to the deployed baseline (control) and canary (experiment). The
/// analysis always fails its stage when the canary fails: the release must not go on
/// to promotion (the deploy stage's own `failPipeline`/`continuePipeline` decide what
/// the pipeline does then).
fn analysis_context(
    defaults: &Map<String, Value>,
    step: &Map<String, Value>,
) -> Map<String, Value> {
    let mut config = defaults.clone();
    config.extend(step.clone());
    // The configured scopes keep their other fields (`step`, `extendedScopeParams`);
    // their names and locations are the deployed groups', as Orca overwrites them.
    let mut scopes: Vec<Value> = config
        .get("scopes")
        .and_then(Value::as_array)
        .filter(|list| !list.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!({"scopeName": "default"})]);
    for scope in &mut scopes {
        if let Value::Object(scope) = scope {
            for key in [
                "controlScope",
                "controlLocation",
                "experimentScope",
                "experimentLocation",
            ] {
                scope.insert(
                    key.to_owned(),
                    json!(format!("${{deployedServerGroups[0].{key}}}")),
                );
            }
        }
    }
    config.insert("scopes".into(), Value::Array(scopes));
    let mut context = Map::new();
    context.insert("canaryConfig".into(), Value::Object(config));
    context.insert("analysisType".into(), json!("realTime"));
    context.insert("failPipeline".into(), json!(true));
    context.insert("continuePipeline".into(), json!(false));
    context
}

/// The stages a canary release runs once its production group is up: the new group
/// takes all traffic, red/black disables the old ones, baseline and canary go.
pub(crate) fn after_stages(
    production: &ClusterRef,
    context: &Map<String, Value>,
    full: Capacity,
) -> Vec<SyntheticSpec> {
    let base = side_context(production, context);
    let mut promote = base.clone();
    promote.insert("promote".into(), json!(true));
    let mut stages = vec![SyntheticSpec {
        stage_type: CANARY_TRAFFIC.into(),
        name: "Promote the canary's version".into(),
        context: promote,
        after: Vec::new(),
    }];
    for mut spec in strategy_after_stages(Strategy::RedBlack, production, context, full) {
        spec.after = spec.after.iter().map(|i| i + 1).collect();
        if spec.after.is_empty() {
            spec.after = vec![0];
        }
        stages.push(spec);
    }
    let last = stages.len() - 1;
    stages.push(SyntheticSpec {
        stage_type: REMOVE_CANARY.into(),
        name: "Remove baseline and canary".into(),
        context: base,
        after: vec![last],
    });
    stages
}

// ----- save-time rules -----

/// The `canary` block of a cluster whose strategy is `canary`: steps of known kinds,
/// weights 0–100 that never go down, an analysis config for every analysis, and an
/// analysis only after some traffic reaches the canary.
pub(crate) fn check_canary(cluster: &Fields<'_>, report: &mut ValidationReport) {
    if !cluster.has("canary") {
        report.push(
            Problem::error(cluster.at("canary"), "the canary strategy needs a \"canary\" block")
                .with_hint("add \"canary\": {\"analysis\": {…}, \"steps\": [{\"setWeight\": 10}, {\"analysis\": {…}}]}"),
        );
        return;
    }
    let Some(canary) = cluster.object("canary", report) else {
        return;
    };
    if cluster.strings("loadBalancers", report).is_empty() {
        report.push(
            Problem::error(
                cluster.at("loadBalancers"),
                "a canary release shares a load balancer's traffic: name at least one in \"loadBalancers\"",
            ),
        );
    }
    check_capacity(&canary, report);
    let defaults = canary.object("analysis", report);
    let has_config = |fields: Option<&Fields<'_>>| {
        fields.is_some_and(|f| f.has("canaryConfigId") || f.has("canaryConfigName"))
    };
    let has_lifetime = |fields: Option<&Fields<'_>>| {
        fields.is_some_and(|f| f.has("lifetimeDuration") || f.has("lifetimeHours"))
    };
    if !canary.has("steps") {
        report.push(Problem::error(
            canary.at("steps"),
            "the canary release has no steps: add at least one analysis step",
        ));
        return;
    }
    let mut weight: Option<(u64, String)> = None;
    let mut analyses = 0;
    for (index, step) in canary.objects("steps", "a step", report) {
        let path = canary.at("steps").index(index);
        let kinds: Vec<&String> = step.map.keys().collect();
        if kinds.len() != 1 {
            report.push(Problem::error(
                &path,
                format!(
                    "a step has exactly one of {STEP_KINDS}, this one has {}",
                    if kinds.is_empty() {
                        "none".to_owned()
                    } else {
                        format!("{kinds:?}")
                    }
                ),
            ));
            continue;
        }
        match kinds[0].as_str() {
            "setWeight" => {
                let Some(value) = step.get("setWeight") else {
                    continue;
                };
                match gennaker_core::lenient::value_as_u64(value).filter(|n| *n <= 100) {
                    Some(n) => {
                        if let Some((previous, at)) = &weight
                            && n < *previous
                        {
                            report.push(Problem::error(
                                step.at("setWeight"),
                                format!("setWeight {n} is below the {previous} set at {at}: weights may only grow"),
                            ));
                        }
                        weight = Some((n, path.to_string()));
                    }
                    None if gennaker_core::is_expression(value) => {}
                    None => report.push(Problem::error(
                        step.at("setWeight"),
                        format!("setWeight must be a whole number from 0 to 100, not {value}"),
                    )),
                }
            }
            "analysis" => {
                analyses += 1;
                let fields = step.object("analysis", report);
                if !has_config(fields.as_ref()) && !has_config(defaults.as_ref()) {
                    report.push(
                        Problem::error(
                            step.at("analysis").key("canaryConfigName"),
                            "the analysis names no canary config",
                        )
                        .with_hint("set canaryConfigName (or canaryConfigId) in canary.analysis or in the step"),
                    );
                }
                if !has_lifetime(fields.as_ref()) && !has_lifetime(defaults.as_ref()) {
                    report.push(Problem::error(
                        step.at("analysis").key("lifetimeDuration"),
                        "the analysis has no lifetimeDuration (ISO-8601, e.g. PT5M)",
                    ));
                }
                if weight.as_ref().is_none_or(|(n, _)| *n == 0) {
                    report.push(
                        Problem::error(
                            &path,
                            "this analysis would judge a baseline and canary that receive no traffic",
                        )
                        .with_hint("put a {\"setWeight\": N} step with N > 0 before it"),
                    );
                }
            }
            "pause" => {
                if let Some(pause) = step.object("pause", report)
                    && let Some(duration) = pause.get("duration")
                    && duration_seconds(duration).is_none()
                    && !gennaker_core::is_expression(duration)
                {
                    report.push(Problem::error(
                        pause.at("duration"),
                        format!("duration must be seconds or a number with s, m or h (10s, 5m, 1h), not {duration}"),
                    ));
                }
            }
            other => report.push(Problem::error(
                path.key(other),
                format!("'{other}' is not a canary step: use {STEP_KINDS}"),
            )),
        }
    }
    if analyses == 0 {
        report.push(Problem::error(
            canary.at("steps"),
            "the canary release has no analysis step: without one nothing judges the canary",
        ));
    }
}

// ----- run time -----

/// The groups of `cluster` this execution created.
async fn created_here(
    provider: &dyn Provider,
    cluster: &ClusterRef,
    execution: &Execution,
) -> Result<Vec<ServerGroup>, TaskError> {
    Ok(server_groups(provider, cluster)
        .await?
        .into_iter()
        .filter(|g| {
            g.origin
                .as_ref()
                .is_some_and(|o| o.execution_id == execution.id)
        })
        .collect())
}

/// The stage's `loadBalancers`.
fn balancers(context: &Map<String, Value>) -> Vec<String> {
    context
        .get("loadBalancers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Relative weights: `total` split over `groups` (remainder to the first).
fn split(weights: &mut BTreeMap<String, u32>, groups: &[&ServerGroup], total: u32) {
    let count = u32::try_from(groups.len()).unwrap_or(1).max(1);
    for (i, group) in groups.iter().enumerate() {
        let share = total / count + u32::from(i == 0) * (total % count);
        if share > 0 {
            weights.insert(group.name.clone(), share);
        }
    }
}

/// Sets `weights` on every balancer, after checking the stage may route into each.
async fn set_weights(
    providers: &Providers,
    services: &Services,
    execution: &Execution,
    stage: &StageExecution,
    production: &ClusterRef,
    weights: &BTreeMap<String, u32>,
) -> Result<(), TaskError> {
    let Ok(router) = providers.router(production.cloud_provider.as_deref()) else {
        return Ok(());
    };
    let names = balancers(&stage.context);
    may_route(
        services,
        execution,
        stage,
        Some(router.as_ref()),
        &Joining::cluster(production),
        &names,
    )
    .await?;
    for balancer in &names {
        // Checked first, so a repeat changes nothing.
        let current = router
            .load_balancer(&production.account, balancer)
            .await
            .map_err(task_error)?
            .map(|lb| lb.weights);
        if current.as_ref() == Some(weights) {
            continue;
        }
        router
            .set_weights(&production.account, balancer, weights.clone())
            .await
            .map_err(task_error)?;
    }
    Ok(())
}

/// WRITE on the three clusters a canary release changes.
async fn authorize_clusters(
    services: &Services,
    execution: &Execution,
    stage: &StageExecution,
    clusters: [&ClusterRef; 3],
) -> Result<(), TaskError> {
    for cluster in clusters {
        services
            .authorize(execution, stage, cluster_target(cluster), Access::Write)
            .await?;
    }
    Ok(())
}

/// `canaryTrafficTask`: `weight` N → production `2·(100−N)`, baseline `N`, canary `N`
/// (relative); `promote` → the group the parent deploy created takes all of it.
/// Outputs `deployedServerGroups` (Orca's shape) once both sides exist.
struct TrafficTask {
    providers: Providers,
}

#[async_trait]
impl Task for TrafficTask {
    fn name(&self) -> &'static str {
        "canaryTrafficTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let production = ClusterRef::from_context(context)?;
        let (baseline, canary) = side_clusters(&production)?;
        authorize_clusters(
            ctx.services,
            ctx.execution,
            ctx.stage,
            [&production, &baseline, &canary],
        )
        .await?;
        let provider = provider_for(&self.providers, &production)?;
        let mut weights = BTreeMap::new();
        let mut result = TaskResult::succeeded();
        if gennaker_engine::truthy(context.get("promote")) {
            let new = deployed_by_parent(ctx.execution, ctx.stage).ok_or_else(|| {
                TaskError::Permanent("there is no new production server group to promote".into())
            })?;
            weights.insert(new, 100);
        } else {
            let weight = crate::fields::whole(context, "weight")
                .map_or(0, |w| u32::try_from(w.clamp(0, 100)).unwrap_or(0));
            let production_groups = server_groups(provider.as_ref(), &production).await?;
            let serving: Vec<&ServerGroup> = production_groups
                .iter()
                .filter(|g| !g.disabled)
                .filter(|g| {
                    g.origin
                        .as_ref()
                        .is_none_or(|o| o.execution_id != ctx.execution.id)
                })
                .collect();
            if serving.is_empty() {
                return Err(TaskError::Permanent(format!(
                    "cluster '{}' has no enabled server group: a canary release compares a new version with production, deploy production first",
                    production.cluster
                )));
            }
            split(&mut weights, &serving, 2 * (100 - weight));
            let baseline_groups = created_here(provider.as_ref(), &baseline, ctx.execution).await?;
            let canary_groups = created_here(provider.as_ref(), &canary, ctx.execution).await?;
            if weight > 0 {
                split(
                    &mut weights,
                    &baseline_groups.iter().collect::<Vec<_>>(),
                    weight,
                );
                split(
                    &mut weights,
                    &canary_groups.iter().collect::<Vec<_>>(),
                    weight,
                );
            }
            if let (Some(control), Some(experiment)) =
                (baseline_groups.last(), canary_groups.last())
            {
                let location = production
                    .cloud_provider
                    .clone()
                    .unwrap_or_else(|| Providers::DEFAULT.to_owned());
                let deployed = json!([{
                    "controlScope": control.name, "controlLocation": location,
                    "controlAccountId": control.account,
                    "experimentScope": experiment.name, "experimentLocation": location,
                    "experimentAccountId": experiment.account,
                }]);
                result = result.with_output("deployedServerGroups", deployed);
            }
        }
        set_weights(
            &self.providers,
            ctx.services,
            ctx.execution,
            ctx.stage,
            &production,
            &weights,
        )
        .await?;
        Ok(result.with_context("weights", json!(weights)))
    }
}

/// Disables then destroys the baseline and canary groups this execution created, and
/// returns their names.
async fn remove_sides(
    provider: &dyn Provider,
    production: &ClusterRef,
    execution: &Execution,
) -> Result<Vec<String>, TaskError> {
    let (baseline, canary) = side_clusters(production)?;
    let mut removed = Vec::new();
    for cluster in [&baseline, &canary] {
        for group in created_here(provider, cluster, execution).await? {
            if !group.disabled {
                provider
                    .disable_server_group(&group.account, &group.name)
                    .await
                    .map_err(task_error)?;
            }
            provider
                .destroy_server_group(&group.account, &group.name)
                .await
                .map_err(task_error)?;
            removed.push(group.name);
        }
    }
    Ok(removed)
}

/// Whether `stage` is below `ancestor` (its synthetic stages, theirs, …).
fn descends_from(execution: &Execution, stage: &StageExecution, ancestor: &str) -> bool {
    let mut current = stage.parent_stage_id.as_deref();
    while let Some(id) = current {
        if id == ancestor {
            return true;
        }
        current = execution
            .stage(id)
            .and_then(|s| s.parent_stage_id.as_deref());
    }
    false
}

/// The canary scores of the release's analyses, one list per analysis in order: the
/// aggregated `canaryScores`, or for an analysis stopped early the scores of the
/// judgements it made.
fn canary_scores(execution: &Execution, release: &StageExecution) -> Value {
    let scores: Vec<Value> = execution
        .stages
        .iter()
        .filter(|s| {
            s.parent_stage_id.as_deref() == Some(release.id.as_str())
                && s.stage_type == "kayentaCanary"
        })
        .map(|analysis| {
            analysis
                .context
                .get("canaryScores")
                .cloned()
                .unwrap_or_else(|| {
                    let judged: Vec<Value> = execution
                        .stages
                        .iter()
                        .filter(|s| {
                            s.stage_type == "runCanary" && descends_from(execution, s, &analysis.id)
                        })
                        .filter_map(|s| s.context.get("canaryScore").cloned())
                        .collect();
                    json!(judged)
                })
        })
        .collect();
    json!(scores)
}

/// `removeCanaryServerGroupsTask`: once traffic has moved to the promoted group, the
/// baseline and canary go, then the balancers return to default weights.
struct RemoveTask {
    providers: Providers,
}

#[async_trait]
impl Task for RemoveTask {
    fn name(&self) -> &'static str {
        "removeCanaryServerGroupsTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let production = ClusterRef::from_context(&ctx.stage.context)?;
        let (baseline, canary) = side_clusters(&production)?;
        authorize_clusters(
            ctx.services,
            ctx.execution,
            ctx.stage,
            [&production, &baseline, &canary],
        )
        .await?;
        let provider = provider_for(&self.providers, &production)?;
        let removed = remove_sides(provider.as_ref(), &production, ctx.execution).await?;
        set_weights(
            &self.providers,
            ctx.services,
            ctx.execution,
            ctx.stage,
            &production,
            &BTreeMap::new(),
        )
        .await?;
        let scores = ctx
            .stage
            .parent_stage_id
            .as_deref()
            .and_then(|id| ctx.execution.stage(id))
            .map_or(json!([]), |release| canary_scores(ctx.execution, release));
        Ok(TaskResult::succeeded()
            .with_context("destroyedServerGroups", json!(removed))
            .with_output("canaryScores", scores))
    }
}

/// The cancel routine of a canary release's `createServerGroup` stage (failure or
/// cancellation): production takes all traffic again (its recorded source group
/// re-enabled if a later step had disabled it), then the baseline, canary and new
/// production groups are disabled and destroyed, then default weights. Each step
/// looks at the state first, so a repeat changes nothing.
pub(crate) async fn roll_back(
    providers: &Providers,
    services: &Services,
    execution: &Execution,
    stage: &StageExecution,
    production: &ClusterRef,
) -> Result<Value, TaskError> {
    let (baseline, canary) = side_clusters(production)?;
    authorize_clusters(services, execution, stage, [production, &baseline, &canary]).await?;
    let provider = provider_for(providers, production)?;
    let source = stage
        .context
        .get("source")
        .and_then(|s| s.get("serverGroupName"))
        .and_then(Value::as_str);
    let ours = |g: &ServerGroup| {
        g.origin
            .as_ref()
            .is_some_and(|o| o.execution_id == execution.id && o.stage_id == stage.id)
    };
    let groups = server_groups(provider.as_ref(), production).await?;
    for group in groups
        .iter()
        .filter(|g| g.disabled && Some(g.name.as_str()) == source)
    {
        provider
            .enable_server_group(&group.account, &group.name)
            .await
            .map_err(task_error)?;
    }
    let serving: Vec<&ServerGroup> = groups
        .iter()
        .filter(|g| !ours(g) && (!g.disabled || Some(g.name.as_str()) == source))
        .collect();
    let (baseline_groups, canary_groups) = (
        created_here(provider.as_ref(), &baseline, execution).await?,
        created_here(provider.as_ref(), &canary, execution).await?,
    );
    // Traffic moves first, while there is something to take it from (a repeat after
    // everything was removed finds nothing and leaves the default weights alone).
    if !baseline_groups.is_empty() || !canary_groups.is_empty() || groups.iter().any(&ours) {
        let mut weights = BTreeMap::new();
        split(&mut weights, &serving, 100);
        set_weights(providers, services, execution, stage, production, &weights).await?;
    }
    let mut destroyed = remove_sides(provider.as_ref(), production, execution).await?;
    for group in groups.iter().filter(|g| ours(g)) {
        if !group.disabled {
            provider
                .disable_server_group(&group.account, &group.name)
                .await
                .map_err(task_error)?;
        }
        provider
            .destroy_server_group(&group.account, &group.name)
            .await
            .map_err(task_error)?;
        destroyed.push(group.name.clone());
    }
    set_weights(
        providers,
        services,
        execution,
        stage,
        production,
        &BTreeMap::new(),
    )
    .await?;
    let serving: Vec<&str> = serving.iter().map(|g| g.name.as_str()).collect();
    tracing::info!(
        execution = %execution.id,
        stage = %stage.name,
        destroyed = ?destroyed,
        serving = ?serving,
        "canary release rolled back"
    );
    Ok(json!({
        "destroyedServerGroups": destroyed,
        "trafficRestoredTo": serving,
        "canaryScores": canary_scores(execution, stage),
    }))
}

/// The spec of the production group a baseline copies: the newest enabled group of
/// the production cluster not created by this execution.
pub(crate) async fn baseline_spec(
    provider: &dyn Provider,
    production: &ClusterRef,
    execution: &Execution,
) -> Result<(String, Value), TaskError> {
    server_groups(provider, production)
        .await?
        .into_iter()
        .rev()
        .find(|g| !g.disabled && g.origin.as_ref().is_none_or(|o| o.execution_id != execution.id))
        .map(|g| (g.name, g.spec))
        .ok_or_else(|| {
            TaskError::Permanent(format!(
                "cluster '{}' has no enabled server group for the baseline to copy: a canary release compares a new version with production, deploy production first",
                production.cluster
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_read_argo_durations() {
        assert_eq!(duration_seconds(&json!(10)), Some(10));
        assert_eq!(duration_seconds(&json!("10s")), Some(10));
        assert_eq!(duration_seconds(&json!("5m")), Some(300));
        assert_eq!(duration_seconds(&json!("1h")), Some(3600));
        assert_eq!(duration_seconds(&json!("7")), Some(7));
        assert_eq!(duration_seconds(&json!("1d")), None);
        assert_eq!(duration_seconds(&json!("soon")), None);
    }

    #[test]
    fn side_clusters_take_decks_suffixes() {
        let production = ClusterRef {
            cloud_provider: None,
            account: "local".into(),
            cluster: "shop-prod".into(),
            application: "shop".into(),
        };
        let (baseline, canary) = side_clusters(&production).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(baseline.cluster, "shop-prod-baseline");
        assert_eq!(canary.cluster, "shop-prod-canary");
        let detailed = ClusterRef {
            cluster: "shop-prod-web".into(),
            ..production
        };
        let (baseline, _) = side_clusters(&detailed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(baseline.cluster, "shop-prod-web-baseline");
    }

    #[test]
    fn steps_become_visible_stages() {
        let context = json!({
            "application": "shop", "stack": "prod", "account": "local", "loadBalancers": ["shop-lb"],
            "command": "./serve", "strategy": "canary",
            "canary": {"analysis": {"canaryConfigName": "demo", "scoreThresholds": {"pass": "80", "marginal": "50"}},
                       "steps": [{"setWeight": 10}, {"analysis": {"lifetimeDuration": "PT30S"}},
                                 {"setWeight": 50}, {"pause": {"duration": "10s"}}, {"pause": {}}]}
        });
        let context = context.as_object().cloned().unwrap_or_default();
        let production = ClusterRef {
            cloud_provider: None,
            account: "local".into(),
            cluster: "shop-prod".into(),
            application: "shop".into(),
        };
        let planned = before_stages(&production, &context);
        let names: Vec<&str> = planned.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Hold traffic on production",
                "Deploy baseline shop-prod-baseline",
                "Deploy canary shop-prod-canary",
                "Set canary weight 10%",
                "Canary analysis #1",
                "Set canary weight 50%",
                "Pause #1",
                "Pause #2"
            ]
        );
        assert_eq!(planned[6].stage_type, "wait");
        assert_eq!(planned[6].context["waitTime"], 10);
        assert_eq!(planned[7].stage_type, "manualJudgment");
        let analysis = &planned[4].context["canaryConfig"];
        assert_eq!(analysis["canaryConfigName"], "demo");
        assert_eq!(analysis["lifetimeDuration"], "PT30S");
        assert_eq!(
            analysis["scopes"][0]["controlScope"],
            "${deployedServerGroups[0].controlScope}"
        );
        let baseline = &planned[1].context;
        assert_eq!(baseline["freeFormDetails"], "baseline");
        assert_eq!(baseline[BASELINE_OF], "shop-prod");
        assert!(
            baseline.get("command").is_none(),
            "the baseline runs production's spec"
        );
        let canary = &planned[2].context;
        assert_eq!(canary["command"], "./serve");
        assert_eq!(canary["strategy"], "highlander");
        assert_eq!(
            canary["capacity"],
            json!({"min": 1, "max": 1, "desired": 1})
        );
        assert!(canary.get("canary").is_none());
    }
}
