//! Kayenta's "Real Time (Automatic)" canary: the server groups a `kayentaCanary` stage
//! with a `deployments` block deploys for its analysis and removes afterwards (Orca's
//! `DeployCanaryServerGroupsStage`, `PropagateDeployedServerGroupScopes` and
//! `CleanupCanaryClustersStage`). The `kayentaCanary` stage plans these two stage types
//! by name, each with the stage's `deployments` in its context:
//!
//! ```text
//! deployCanaryServerGroups            task propagateDeployedServerGroupScopes
//!  ├─ findImageFromCluster "Find baseline image"       (the production cluster)
//!  ├─ deploy "Deploy control server groups"            (after it: production's spec)
//!  └─ deploy "Deploy experiment server groups"         (side by side: the new version)
//! cleanupCanaryClusters
//!  ├─ disableCluster "Disable control cluster <c>"     (each pair, continue on failure)
//!  ├─ disableCluster "Disable experiment cluster <c>"
//!  ├─ wait "Wait before cleanup"                        (delayBeforeCleanup)
//!  ├─ shrinkCluster "Cleanup control cluster <c>"      (to 0, enabled groups too)
//!  └─ shrinkCluster "Cleanup experiment cluster <c>"
//! ```
//!
//! Both deploys use the highlander strategy, so a run replaces the groups an earlier
//! one left. A control cluster deploys what production runs: its own process fields are
//! dropped and the spec `Find baseline image` found is used (the deploy layer's
//! upstream lookup); the experiment keeps its fields, or takes an upstream find-image
//! or artifact. `propagateDeployedServerGroupScopes` outputs `deployedServerGroups`
//! (`[{controlScope, controlLocation, controlAccountId, experimentScope,
//! experimentLocation, experimentAccountId}]`, one per pair) from what the deploys
//! created; the analysis reads the first pair.
//!
//! Every stage planned here checks its own rights as any deploy stage does: READ on the
//! production cluster's application, WRITE on each control and experiment cluster's.

use async_trait::async_trait;
use gennaker_core::{Fields, ValidationReport};
use gennaker_engine::{
    StageDefinition, StageExecution, StageRegistry, SyntheticSpec, Task, TaskContext, TaskError,
    TaskResult, TaskSpec,
};
use serde_json::{Map, Value, json};

use crate::deploy::{CREATE_SERVER_GROUP, GENERIC_KEYS};
use crate::fields::{ClusterRef, account, cloud_provider, deploy_moniker, text};
use crate::provider::Providers;
use crate::rules::{CloudStageType, described_by_kind};

/// The stage deploying the control and experiment groups.
pub(crate) const DEPLOY_CANARY_SERVER_GROUPS: &str = "deployCanaryServerGroups";
/// The stage removing them.
pub(crate) const CLEANUP_CANARY_CLUSTERS: &str = "cleanupCanaryClusters";
/// Orca's names of the two deploys (the propagation task finds them by name).
const DEPLOY_CONTROL: &str = "Deploy control server groups";
const DEPLOY_EXPERIMENT: &str = "Deploy experiment server groups";
const FIND_BASELINE: &str = "Find baseline image";
const PROPAGATE_TASK: &str = "propagateDeployedServerGroupScopes";
/// Fails a stage whose `deployments` cannot be planned, with the reason.
const CHECK_TASK: &str = "checkCanaryDeployments";

/// Most server-group pairs one canary stage may deploy.
pub(crate) const MAX_PAIRS: usize = 20;

/// Registers both stage types and their tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    let deploy = CloudStageType::new(
        DEPLOY_CANARY_SERVER_GROUPS,
        "Deploy Canary Server Groups",
        "internal: a kayentaCanary stage's control (production's version) and experiment server groups",
        planned_only,
        providers,
    );
    let cleanup = CloudStageType::new(
        CLEANUP_CANARY_CLUSTERS,
        "Cleanup Canary Clusters",
        "internal: disables, then after delayBeforeCleanup destroys, a kayentaCanary stage's control and experiment clusters",
        planned_only,
        providers,
    );
    registry
        .stage(DeployCanaryServerGroupsStage { kind: deploy })
        .stage(CleanupCanaryClustersStage { kind: cleanup })
        .task(PropagateScopesTask)
        .task(CheckDeploymentsTask);
}

/// The save-time error of a planned-only stage type put in a pipeline.
fn planned_only(
    stage: &Fields<'_>,
    _context: &gennaker_core::CheckContext<'_>,
    report: &mut ValidationReport,
) {
    let stage_type = stage
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    report.push(
        gennaker_core::Problem::error(
            stage.at("type"),
            format!("'{stage_type}' is planned by a kayentaCanary stage with \"deployments\" and cannot be used on its own"),
        )
        .with_hint("use a kayentaCanary stage whose \"deployments\" names the baseline cluster and the control/experiment pairs"),
    );
}

/// One control/experiment pair: the deploy cluster configs as the stage gives them.
#[derive(Debug, Clone, PartialEq)]
struct Pair {
    control: Map<String, Value>,
    experiment: Map<String, Value>,
}

/// The `deployments` block, read for planning.
#[derive(Debug, Clone, PartialEq)]
struct Deployments {
    /// The production cluster the control copies.
    baseline: ClusterRef,
    pairs: Vec<Pair>,
    /// Seconds between disabling and destroying (`delayBeforeCleanup`, default 0).
    delay_secs: u64,
}

/// ISO-8601 durations as Java's `Duration.parse` reads them (days are 24 hours), in
/// whole seconds; `None` when not one.
pub(crate) fn iso_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.starts_with(['P', 'p']) {
        return None;
    }
    let span: jiff::Span = text.parse().ok()?;
    let total = span
        .total(jiff::SpanTotal::from(jiff::Unit::Second).days_are_24_hours())
        .ok()?;
    (total >= 0.0 && total.is_finite()).then(|| total.round() as u64)
}

/// A pair side's cluster: its moniker, account and provider.
fn side_cluster(config: &Map<String, Value>, which: &str) -> Result<ClusterRef, String> {
    let moniker = deploy_moniker(config, "").map_err(|e| format!("the {which} cluster: {e}"))?;
    Ok(ClusterRef {
        cloud_provider: cloud_provider(config).map(str::to_owned),
        account: account(config),
        cluster: moniker.cluster(),
        application: moniker.app,
    })
}

impl Deployments {
    /// Reads an evaluated stage context's `deployments` (the save-time rules of
    /// `kayentaCanary` report the details at their paths).
    fn read(context: &Map<String, Value>) -> Result<Self, String> {
        let deployments = context
            .get("deployments")
            .and_then(Value::as_object)
            .ok_or("the stage has no \"deployments\" object")?;
        let baseline = deployments
            .get("baseline")
            .and_then(Value::as_object)
            .ok_or("deployments.baseline must name the production cluster: {cloudProvider, application, account, cluster}")?;
        let cluster = text(baseline, "cluster").ok_or("deployments.baseline.cluster is missing")?;
        if text(baseline, "account").is_none() && text(baseline, "credentials").is_none() {
            return Err("deployments.baseline.account is missing".into());
        }
        let baseline = ClusterRef {
            cloud_provider: cloud_provider(baseline).map(str::to_owned),
            account: account(baseline),
            cluster: cluster.to_owned(),
            application: gennaker_core::naming::parse_name(cluster).app,
        };
        let list = deployments
            .get("serverGroupPairs")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or(
                "deployments.serverGroupPairs must hold at least one {control, experiment} pair",
            )?;
        if list.len() > MAX_PAIRS {
            return Err(format!(
                "deployments.serverGroupPairs holds {} pairs; at most {MAX_PAIRS}",
                list.len()
            ));
        }
        let mut pairs = Vec::new();
        for (i, pair) in list.iter().enumerate() {
            let side = |key: &str| {
                pair.get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .ok_or_else(|| format!("deployments.serverGroupPairs[{i}].{key} must be a deploy cluster object"))
            };
            let pair = Pair {
                control: side("control")?,
                experiment: side("experiment")?,
            };
            let control = side_cluster(&pair.control, "control")?;
            let experiment = side_cluster(&pair.experiment, "experiment")?;
            for (which, side) in [("control", &control), ("experiment", &experiment)] {
                if side.cluster == baseline.cluster && side.account == baseline.account {
                    return Err(format!(
                        "deployments.serverGroupPairs[{i}].{which} is the production cluster '{}': it would be replaced and destroyed",
                        side.cluster
                    ));
                }
            }
            if control.cluster == experiment.cluster && control.account == experiment.account {
                return Err(format!(
                    "deployments.serverGroupPairs[{i}]: control and experiment are both cluster '{}'",
                    control.cluster
                ));
            }
            pairs.push(pair);
        }
        let delay_secs = match deployments.get("delayBeforeCleanup") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) if s.trim().is_empty() => 0,
            Some(Value::String(s)) => iso_seconds(s).ok_or_else(|| {
                format!(
                    "deployments.delayBeforeCleanup '{s}' is not an ISO-8601 duration (e.g. PT1H)"
                )
            })?,
            Some(other) => {
                return Err(format!(
                    "deployments.delayBeforeCleanup must be an ISO-8601 duration such as \"PT1H\", not {other}"
                ));
            }
        };
        Ok(Self {
            baseline,
            pairs,
            delay_secs,
        })
    }
}

/// A control cluster: the config without its process fields (the control runs what
/// production runs), highlander.
fn control_cluster(config: &Map<String, Value>) -> Map<String, Value> {
    let mut cluster: Map<String, Value> = config
        .iter()
        .filter(|(k, _)| GENERIC_KEYS.contains(&k.as_str()))
        .filter(|(k, _)| !matches!(k.as_str(), "spec" | "artifactId" | "expectedArtifactId"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    cluster.insert("strategy".into(), json!("highlander"));
    cluster
}

/// An experiment cluster: as configured, highlander.
fn experiment_cluster(config: &Map<String, Value>) -> Map<String, Value> {
    let mut cluster = config.clone();
    cluster.insert("strategy".into(), json!("highlander"));
    cluster
}

/// `deployCanaryServerGroups`.
struct DeployCanaryServerGroupsStage {
    kind: CloudStageType,
}

impl StageDefinition for DeployCanaryServerGroupsStage {
    described_by_kind!();

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        match Deployments::read(&stage.context) {
            Ok(_) => vec![TaskSpec::new(PROPAGATE_TASK)],
            Err(_) => vec![TaskSpec::new(CHECK_TASK)],
        }
    }

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        let Ok(deployments) = Deployments::read(&stage.context) else {
            return Vec::new();
        };
        let mut find = deployments.baseline.stage_context();
        find.insert("selectionStrategy".into(), json!("NEWEST"));
        find.insert("onlyEnabled".into(), json!(true));
        let deploy = |clusters: Vec<Map<String, Value>>| {
            let mut context = Map::new();
            context.insert(
                "clusters".into(),
                Value::Array(clusters.into_iter().map(Value::Object).collect()),
            );
            context
        };
        let controls = deployments
            .pairs
            .iter()
            .map(|p| control_cluster(&p.control))
            .collect();
        let experiments = deployments
            .pairs
            .iter()
            .map(|p| experiment_cluster(&p.experiment))
            .collect();
        vec![
            SyntheticSpec {
                stage_type: "findImageFromCluster".into(),
                name: FIND_BASELINE.into(),
                context: find,
                after: Vec::new(),
            },
            SyntheticSpec {
                stage_type: "deploy".into(),
                name: DEPLOY_CONTROL.into(),
                context: deploy(controls),
                after: vec![0],
            },
            // Not after the find: the experiment must not pick up production's spec.
            SyntheticSpec {
                stage_type: "deploy".into(),
                name: DEPLOY_EXPERIMENT.into(),
                context: deploy(experiments),
                after: Vec::new(),
            },
        ]
    }
}

/// `cleanupCanaryClusters`.
struct CleanupCanaryClustersStage {
    kind: CloudStageType,
}

impl StageDefinition for CleanupCanaryClustersStage {
    described_by_kind!();

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        match Deployments::read(&stage.context) {
            Ok(_) => Vec::new(),
            Err(_) => vec![TaskSpec::new(CHECK_TASK)],
        }
    }

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        let Ok(deployments) = Deployments::read(&stage.context) else {
            return Vec::new();
        };
        let mut sides = Vec::new();
        for pair in &deployments.pairs {
            for (which, config) in [("control", &pair.control), ("experiment", &pair.experiment)] {
                if let Ok(cluster) = side_cluster(config, which) {
                    sides.push((which, cluster));
                }
            }
        }
        // Going on after a failure: the shrink has another go at what stayed enabled.
        let keep_going = |mut context: Map<String, Value>| {
            context.insert("continuePipeline".into(), json!(true));
            context.insert("failPipeline".into(), json!(false));
            context
        };
        let mut stages: Vec<SyntheticSpec> = sides
            .iter()
            .map(|(which, cluster)| {
                let mut context = cluster.stage_context();
                context.insert("remainingEnabledServerGroups".into(), json!(0));
                SyntheticSpec {
                    stage_type: "disableCluster".into(),
                    name: format!("Disable {which} cluster {}", cluster.cluster),
                    context: keep_going(context),
                    after: Vec::new(),
                }
            })
            .collect();
        let wait = stages.len();
        let mut context = Map::new();
        context.insert("waitTime".into(), json!(deployments.delay_secs));
        stages.push(SyntheticSpec {
            stage_type: "wait".into(),
            name: "Wait before cleanup".into(),
            context,
            after: (0..wait).collect(),
        });
        for (which, cluster) in &sides {
            let mut context = cluster.stage_context();
            context.insert("shrinkToSize".into(), json!(0));
            context.insert("allowDeleteActive".into(), json!(true));
            stages.push(SyntheticSpec {
                stage_type: "shrinkCluster".into(),
                name: format!("Cleanup {which} cluster {}", cluster.cluster),
                context: keep_going(context),
                after: vec![wait],
            });
        }
        stages
    }
}

/// The first `{location: [group]}` entry of a create's `deploy.server.groups`.
fn deployed(stage: &StageExecution) -> Option<(String, String, String)> {
    let groups = stage.outputs.get("deploy.server.groups")?.as_object()?;
    let (location, names) = groups.iter().next()?;
    let name = names.as_array()?.first()?.as_str()?;
    let account = stage
        .outputs
        .get("deploy.account.name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((location.clone(), name.to_owned(), account.to_owned()))
}

/// `propagateDeployedServerGroupScopes`: pairs the groups the two deploys created, in
/// the order of `serverGroupPairs`.
struct PropagateScopesTask;

#[async_trait]
impl Task for PropagateScopesTask {
    fn name(&self) -> &'static str {
        PROPAGATE_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let execution = ctx.execution;
        let created_under = |name: &str| -> Result<Vec<&StageExecution>, TaskError> {
            let deploy = execution
                .stages
                .iter()
                .find(|s| {
                    s.parent_stage_id.as_deref() == Some(ctx.stage.id.as_str()) && s.name == name
                })
                .ok_or_else(|| {
                    TaskError::Permanent(format!("the stage '{name}' was not planned"))
                })?;
            Ok(execution
                .stages
                .iter()
                .filter(|s| {
                    s.parent_stage_id.as_deref() == Some(deploy.id.as_str())
                        && s.stage_type == CREATE_SERVER_GROUP
                })
                .collect())
        };
        let controls = created_under(DEPLOY_CONTROL)?;
        let experiments = created_under(DEPLOY_EXPERIMENT)?;
        let mut scopes = Vec::new();
        for (control, experiment) in controls.iter().zip(&experiments) {
            let side = |stage: &StageExecution| {
                deployed(stage).ok_or_else(|| {
                    TaskError::Permanent(format!(
                        "'{}' recorded no deployed server group",
                        stage.name
                    ))
                })
            };
            let (control_location, control_scope, control_account) = side(control)?;
            let (experiment_location, experiment_scope, experiment_account) = side(experiment)?;
            scopes.push(json!({
                "controlLocation": control_location,
                "controlScope": control_scope,
                "controlAccountId": control_account,
                "experimentLocation": experiment_location,
                "experimentScope": experiment_scope,
                "experimentAccountId": experiment_account,
            }));
        }
        if scopes.is_empty() {
            return Err(TaskError::Permanent(
                "no control and experiment server groups were deployed".into(),
            ));
        }
        Ok(TaskResult::succeeded().with_output("deployedServerGroups", json!(scopes)))
    }

    fn inline(&self) -> bool {
        true
    }
}

/// Fails the stage with why its `deployments` could not be planned.
struct CheckDeploymentsTask;

#[async_trait]
impl Task for CheckDeploymentsTask {
    fn name(&self) -> &'static str {
        CHECK_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        match Deployments::read(&ctx.stage.context) {
            Ok(_) => Ok(TaskResult::succeeded()),
            Err(error) => Err(TaskError::Permanent(format!(
                "the canary deployments cannot be planned: {error}"
            ))),
        }
    }

    fn inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn stage(context: Map<String, Value>) -> StageExecution {
        serde_json::from_value(json!({
            "id": "s1", "refId": "1<1", "type": DEPLOY_CANARY_SERVER_GROUPS,
            "name": "Deploy Canary Server Groups", "status": "RUNNING", "context": context,
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn deployments() -> Map<String, Value> {
        context(json!({"deployments": {
            "baseline": {"cloudProvider": "local", "application": "shop", "account": "local", "cluster": "shop-prod"},
            "serverGroupPairs": [{
                "control": {"application": "shop", "stack": "prod", "freeFormDetails": "baseline", "account": "local",
                            "cloudProvider": "local", "capacity": {"min": "1", "max": "1", "desired": "1"},
                            "command": "./serve", "artifact": {"reference": "v2"}},
                "experiment": {"application": "shop", "stack": "prod", "freeFormDetails": "canary", "account": "local",
                               "cloudProvider": "local", "capacity": {"min": "1", "max": "1", "desired": "1"},
                               "command": "./serve", "artifact": {"reference": "v2"}}
            }],
            "delayBeforeCleanup": "PT1H"
        }}))
    }

    #[test]
    fn deploys_find_production_then_both_sides_with_highlander() {
        let plan = DeployCanaryServerGroupsStage {
            kind: CloudStageType::new(
                DEPLOY_CANARY_SERVER_GROUPS,
                "",
                "",
                planned_only,
                &Providers::new(),
            ),
        }
        .before_stages(&stage(deployments()));
        let names: Vec<&str> = plan.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [FIND_BASELINE, DEPLOY_CONTROL, DEPLOY_EXPERIMENT]);
        assert_eq!(plan[0].context["cluster"], "shop-prod");
        assert_eq!(plan[1].after, [0]);
        assert!(plan[2].after.is_empty());
        let control = &plan[1].context["clusters"][0];
        assert_eq!(control["strategy"], "highlander");
        assert!(
            control.get("command").is_none(),
            "production's spec, not the new one"
        );
        assert!(control.get("artifact").is_none());
        let experiment = &plan[2].context["clusters"][0];
        assert_eq!(experiment["strategy"], "highlander");
        assert_eq!(experiment["artifact"]["reference"], "v2");
    }

    #[test]
    fn cleanup_disables_waits_then_shrinks_to_nothing() {
        let plan = CleanupCanaryClustersStage {
            kind: CloudStageType::new(
                CLEANUP_CANARY_CLUSTERS,
                "",
                "",
                planned_only,
                &Providers::new(),
            ),
        }
        .before_stages(&stage(deployments()));
        let names: Vec<&str> = plan.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Disable control cluster shop-prod-baseline",
                "Disable experiment cluster shop-prod-canary",
                "Wait before cleanup",
                "Cleanup control cluster shop-prod-baseline",
                "Cleanup experiment cluster shop-prod-canary",
            ]
        );
        assert_eq!(plan[2].after, [0, 1]);
        assert_eq!(plan[2].context["waitTime"], 3600);
        assert_eq!(plan[0].context["remainingEnabledServerGroups"], 0);
        assert_eq!(plan[0].context["continuePipeline"], true);
        assert_eq!(plan[3].context["shrinkToSize"], 0);
        assert_eq!(plan[3].context["allowDeleteActive"], true);
        assert_eq!(plan[4].after, [2]);
    }

    #[test]
    fn production_is_never_a_side() {
        let mut bad = deployments();
        bad["deployments"]["serverGroupPairs"][0]["control"]["freeFormDetails"] = json!("");
        let error = Deployments::read(&bad).err().unwrap_or_default();
        assert!(error.contains("production cluster 'shop-prod'"), "{error}");
        assert_eq!(iso_seconds("PT1H"), Some(3600));
        assert_eq!(iso_seconds("P1D"), Some(86_400));
        assert_eq!(iso_seconds("PT0.5S"), Some(1));
        assert_eq!(iso_seconds("1h"), None);
    }
}
