//! `deployManifest`'s `trafficManagement`: `{enabled, options: {enableTraffic,
//! services: ["service my-svc"], strategy: redblack|bluegreen|highlander|none}}`.
//!
//! The deploy writes the Services into each ReplicaSet's
//! `traffic.spinnaker.io/load-balancers` annotation and, with `enableTraffic`, copies
//! their selectors into its pod template: the new pods join the Services' endpoints
//! one by one as each becomes Ready. Only after `waitForManifestToStabilize` (every
//! new pod Ready) does [`STRATEGY`] act on the older ReplicaSets of the same
//! application and cluster: red/black (and blue/green) disables them (a never-ready
//! one with nothing available is deleted instead), highlander disables and deletes
//! them. Which ReplicaSets and what to do is decided once and recorded
//! (`trafficPlan`), so a restart does not pick up a version deployed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{Fields, Problem, ValidationReport};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult, truthy};
use serde_json::{Map, Value, json};

use super::{account, authorize};
use crate::cluster::{Account, Cascade, DeleteOptions, KubernetesAccounts};
use crate::manifest::{MONIKER_APPLICATION, MONIKER_CLUSTER, annotation, kind_key};
use crate::status::{Stability, stability};
use crate::traffic::{
    MAX_SERVICES, TrafficError, attach, has_pods, load_balancers, selectors, service_name,
    set_load_balancers, set_traffic,
};

/// The task acting on the older versions after a deploy with a strategy.
pub(super) const STRATEGY: &str = "applyTrafficStrategy";

/// Where the decided actions are recorded.
const PLAN: &str = "trafficPlan";

/// The strategies Spinnaker's Deck stores.
const STRATEGIES: &[&str] = &["redblack", "bluegreen", "highlander", "none"];

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    registry.task(StrategyTask {
        accounts: accounts.clone(),
    });
}

/// Save-time rules of `trafficManagement`.
pub(super) fn check(stage: &Fields<'_>, report: &mut ValidationReport) {
    let Some(traffic) = stage.object("trafficManagement", report) else {
        return;
    };
    let enabled = traffic.boolean("enabled", report) == Some(true);
    let Some(options) = traffic.object("options", report) else {
        if enabled {
            report.push(Problem::error(
                traffic.at("options"),
                "traffic management is enabled but has no options: name the Services in options.services",
            ));
        }
        return;
    };
    // Deck stores unset options as null.
    let set = |key: &str| options.get(key).is_some_and(|v| !v.is_null());
    if set("enableTraffic") {
        options.boolean("enableTraffic", report);
    }
    if set("namespace") {
        options.string("namespace", report);
    }
    if set("strategy") {
        options.one_of("strategy", STRATEGIES, report);
    }
    let services = if set("services") {
        options.strings("services", report)
    } else {
        Vec::new()
    };
    for (i, text) in &services {
        if !text.contains("${")
            && let Err(why) = service_name(text)
        {
            report.push(Problem::error(options.at("services").index(*i), why));
        }
    }
    if enabled && services.is_empty() {
        report.push(
            Problem::error(
                options.at("services"),
                "traffic management is enabled but names no Service",
            )
            .with_hint("\"services\": [\"service my-svc\"]"),
        );
    }
    if services.len() > MAX_SERVICES {
        report.push(Problem::error(
            options.at("services"),
            format!("at most {MAX_SERVICES} Services"),
        ));
    }
}

/// Whether a deploy stage acts on older versions after it is stable.
pub(super) fn wants_strategy(context: &Map<String, Value>) -> bool {
    let traffic = context.get("trafficManagement");
    truthy(traffic.and_then(|t| t.get("enabled")))
        && truthy(traffic.and_then(|t| t.pointer("/options/enableTraffic")))
        && traffic
            .and_then(|t| t.pointer("/options/strategy"))
            .and_then(Value::as_str)
            .is_some_and(|s| matches!(s, "redblack" | "bluegreen" | "highlander"))
}

/// What a deploy stage's `trafficManagement` asks of each manifest.
pub(super) struct TrafficOptions {
    /// The Services written into ReplicaSets' annotation (empty when disabled).
    services: Vec<String>,
    /// Whether the workloads' pods get the Services' selector labels.
    enable_traffic: bool,
}

impl TrafficOptions {
    /// Reads the stage's `trafficManagement` (disabled: Orca's `enableTraffic: true`,
    /// so a manifest's own annotation still puts it behind its Services);
    /// `has_replica_set` says whether the stage deploys one.
    pub(super) fn of(ctx: &TaskContext<'_>, has_replica_set: bool) -> Result<Self, TaskError> {
        let traffic = ctx.stage.context.get("trafficManagement");
        if !truthy(traffic.and_then(|t| t.get("enabled"))) {
            return Ok(Self {
                services: Vec::new(),
                enable_traffic: true,
            });
        }
        let options = traffic.and_then(|t| t.get("options"));
        let services: Vec<String> = options
            .and_then(|o| o.get("services"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let stage = &ctx.stage.name;
        if services.is_empty() {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' field \"trafficManagement.options.services\": traffic management is enabled but names no Service; add \"service <name>\""
            )));
        }
        if !has_replica_set {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' field \"trafficManagement\": traffic management (services and strategies) applies to ReplicaSets, and the stage deploys none; deploy a ReplicaSet, or disable traffic management and let the Deployment's own rollout move traffic"
            )));
        }
        Ok(Self {
            services,
            enable_traffic: truthy(options.and_then(|o| o.get("enableTraffic"))),
        })
    }

    /// Writes the Services into a ReplicaSet's annotation and, with traffic enabled,
    /// the Services' selectors into the pod labels of any workload whose annotation
    /// names Services (the Services must exist: ones in this stage were applied
    /// before the workloads).
    pub(super) async fn attach(
        &self,
        account: &Account,
        manifest: &mut Value,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(), TrafficError> {
        if !has_pods(kind) {
            return Ok(());
        }
        if kind == "ReplicaSet" && !self.services.is_empty() {
            set_load_balancers(manifest, &self.services).map_err(TrafficError::Invalid)?;
        }
        let services = load_balancers(manifest).map_err(TrafficError::Invalid)?;
        if services.is_empty() || !self.enable_traffic {
            return Ok(());
        }
        for (name, selector) in selectors(account, namespace, &services).await? {
            attach(manifest, kind, &name, &selector).map_err(TrafficError::Invalid)?;
        }
        Ok(())
    }
}

struct StrategyTask {
    accounts: Arc<KubernetesAccounts>,
}

/// What is done to one older version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Step {
    /// `replicaSet web-v001`.
    #[serde(rename = "manifestName")]
    manifest_name: String,
    /// Its namespace.
    location: String,
    /// Take it out of its Services.
    disable: bool,
    /// Delete it.
    delete: bool,
}

#[async_trait]
impl Task for StrategyTask {
    fn name(&self) -> &'static str {
        STRATEGY
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let account = account(&self.accounts, ctx)?;
        let Some(recorded) = ctx.stage.context.get(PLAN) else {
            let plan = plan(ctx, &account).await?;
            // Recorded before anything is done, so a repeat acts on these versions.
            return Ok(TaskResult::running_after(Duration::ZERO).with_context(PLAN, json!(plan)));
        };
        let plan: Vec<Step> = serde_json::from_value(recorded.clone()).map_err(|err| {
            TaskError::Permanent(format!(
                "stage '{}' has an unreadable {PLAN}: {err}",
                ctx.stage.name
            ))
        })?;
        let services = stage_services(ctx);
        let kind = account.resolve("apps/v1", "ReplicaSet").await?;
        let mut disabled = Vec::new();
        let mut deleted = Vec::new();
        for step in &plan {
            let ns = Some(step.location.as_str());
            let name = step
                .manifest_name
                .split_whitespace()
                .nth(1)
                .unwrap_or_default();
            let Some(live) = account.get(&kind, ns, name).await? else {
                continue;
            };
            authorize(ctx, &account, ns, &step.manifest_name, Some(&live)).await?;
            if step.disable {
                let mut listed = load_balancers(&live).unwrap_or_default();
                if listed.is_empty() {
                    listed.clone_from(&services);
                }
                let found = selectors(&account, ns, &listed)
                    .await
                    .map_err(|err| traffic_error(ctx, &step.manifest_name, err))?;
                set_traffic(&account, &kind, ns, &live, &found, false)
                    .await
                    .map_err(|err| traffic_error(ctx, &step.manifest_name, err))?;
                disabled.push(step.manifest_name.clone());
            }
            if step.delete {
                let options = DeleteOptions {
                    cascade: Cascade::Background,
                    grace_period_seconds: None,
                };
                account.delete(&kind, ns, name, &options).await?;
                deleted.push(step.manifest_name.clone());
            }
            tracing::info!(
                execution = %ctx.execution.id,
                stage = %ctx.stage.name,
                resource = %step.manifest_name,
                disable = step.disable,
                delete = step.delete,
                "older version taken out of traffic"
            );
        }
        Ok(TaskResult::succeeded()
            .with_context("outputs.disabledManifests", json!(disabled))
            .with_context("outputs.deletedManifests", json!(deleted))
            .with_output("disabledManifests", json!(disabled))
            .with_output("deletedManifests", json!(deleted)))
    }
}

fn traffic_error(ctx: &TaskContext<'_>, target: &str, err: TrafficError) -> TaskError {
    match err {
        TrafficError::Kube(err) => err.into(),
        TrafficError::Invalid(why) => TaskError::Permanent(format!(
            "stage '{}' cannot take {target} out of traffic: {why}",
            ctx.stage.name
        )),
    }
}

fn stage_services(ctx: &TaskContext<'_>) -> Vec<String> {
    ctx.stage
        .context
        .get("trafficManagement")
        .and_then(|t| t.pointer("/options/services"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// For every ReplicaSet the deploy applied, the other live ReplicaSets of its
/// application and cluster, and what the strategy does to each.
async fn plan(ctx: &TaskContext<'_>, account: &Account) -> Result<Vec<Step>, TaskError> {
    let strategy = ctx
        .stage
        .context
        .get("trafficManagement")
        .and_then(|t| t.pointer("/options/strategy"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let deployed: Vec<&Value> = ctx
        .stage
        .context
        .get("outputs.manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("kind").and_then(Value::as_str) == Some("ReplicaSet"))
        .collect();
    let name_of = |o: &Value| {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let deployed_names: Vec<(String, String)> = deployed
        .iter()
        .map(|m| {
            (
                m.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name_of(m),
            )
        })
        .collect();
    let kind = account.resolve("apps/v1", "ReplicaSet").await?;
    let mut steps: Vec<Step> = Vec::new();
    for new in deployed {
        let namespace = new
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (Some(application), Some(cluster)) = (
            annotation(new, MONIKER_APPLICATION),
            annotation(new, MONIKER_CLUSTER),
        ) else {
            continue;
        };
        for old in account.list(&kind, Some(namespace), "").await? {
            let name = name_of(&old);
            if deployed_names.contains(&(namespace.to_owned(), name.clone()))
                || old.pointer("/metadata/deletionTimestamp").is_some()
                || annotation(&old, MONIKER_APPLICATION) != Some(application)
                || annotation(&old, MONIKER_CLUSTER) != Some(cluster)
            {
                continue;
            }
            let manifest_name = format!("{} {name}", kind_key("ReplicaSet"));
            if steps
                .iter()
                .any(|s| s.manifest_name == manifest_name && s.location == namespace)
            {
                continue;
            }
            let (disable, delete) = match strategy {
                "highlander" => (true, true),
                _ if never_ready(&old) => (false, true),
                _ => (true, false),
            };
            steps.push(Step {
                manifest_name,
                location: namespace.to_owned(),
                disable,
                delete,
            });
        }
    }
    steps.sort_by(|a, b| a.manifest_name.cmp(&b.manifest_name));
    Ok(steps)
}

/// Orca's rule for red/black: an older ReplicaSet neither stable nor failed with no
/// ready or available replica never served; it is deleted, not kept disabled.
fn never_ready(rs: &Value) -> bool {
    let unsettled = matches!(stability("ReplicaSet", rs), Stability::Unstable(_));
    let count = |p: &str| rs.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    unsettled && count("/status/readyReplicas") == 0 && count("/status/availableReplicas") == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_runs_only_when_traffic_is_enabled_and_moved() {
        let context = |enabled: bool, enable_traffic: bool, strategy: &str| {
            json!({"trafficManagement": {"enabled": enabled, "options": {
                "enableTraffic": enable_traffic, "services": ["service web"], "strategy": strategy}}})
            .as_object()
            .unwrap()
            .clone()
        };
        assert!(wants_strategy(&context(true, true, "redblack")));
        assert!(wants_strategy(&context(true, true, "highlander")));
        assert!(!wants_strategy(&context(true, true, "none")));
        assert!(!wants_strategy(&context(false, true, "redblack")));
        assert!(
            !wants_strategy(&context(true, false, "redblack")),
            "a dark deploy does not take traffic from the old version"
        );
    }

    #[test]
    fn decks_defaults_save_cleanly_and_enabled_traffic_needs_services() {
        let report = |traffic: Value| {
            let stage = json!({"trafficManagement": traffic});
            let mut report = ValidationReport::default();
            check(
                &Fields::new(stage.as_object().unwrap(), gennaker_core::JsonPath::root()),
                &mut report,
            );
            report
        };
        let defaults = report(json!({"enabled": false, "options": {
            "namespace": null, "services": [], "enableTraffic": false, "strategy": null}}));
        assert!(defaults.problems.is_empty(), "{:?}", defaults.problems);
        let empty =
            report(json!({"enabled": true, "options": {"services": [], "strategy": "redblack"}}));
        assert!(
            empty
                .problems
                .iter()
                .any(|p| p.message.contains("names no Service")),
            "{:?}",
            empty.problems
        );
        let bad = report(json!({"enabled": true, "options": {
            "services": ["deployment web"], "strategy": "canary"}}));
        assert_eq!(bad.problems.len(), 2, "{:?}", bad.problems);
    }

    #[test]
    fn only_an_older_version_that_never_served_is_deleted_by_red_black() {
        let never = json!({"spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 0}});
        let serving = json!({"spec": {"replicas": 2}, "metadata": {"generation": 1},
            "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                       "availableReplicas": 2, "observedGeneration": 1}});
        let scaled_down = json!({"spec": {"replicas": 0}, "status": {"replicas": 0}});
        assert!(never_ready(&never));
        assert!(!never_ready(&serving));
        assert!(!never_ready(&scaled_down));
    }
}
