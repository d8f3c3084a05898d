//! `deploy` and `createServerGroup`.
//!
//! A `deploy` stage's `clusters[]` each become a `createServerGroup` synthetic stage,
//! side by side (Orca's `ParallelDeployStage`). A cluster names its group with
//! `application`, `stack`, `freeFormDetails`; places it with `account` (or
//! `credentials`) and `cloudProvider` (default `local`); sizes it with `capacity`
//! (`useSourceCapacity` copies the current group's); joins `loadBalancers`; and picks a
//! `strategy` (see [`crate::strategy`]). Every other field is the provider's process
//! spec (`artifact`, `command`, `args`, `env`, `workingDir`, `healthCheck`, …), passed
//! through as [`CreateServerGroup::spec`]; a `spec` object is its base. A cluster with
//! no spec reuses the `deploymentDetails` of an upstream `findImageFromCluster`. A
//! cluster of another application needs WRITE there, and each load balancer of
//! another application it joins WRITE on that one (see [`crate::authz`]).
//!
//! `createServerGroup` runs `determineSourceServerGroup` (records the enabled group it
//! replaces, as `source`), `createServerGroup` (idempotent through its origin: this
//! execution and stage), then `waitForUpInstances`, and outputs `deploy.server.groups`
//! (`{region: [name]}`; the local provider's region is its name), `serverGroupName`,
//! `serverGroup` and `deploy.account.name`. With `rollback.onFailure`, its cancel
//! routine (run when the stage fails or is canceled) destroys the new group and
//! restores the source group, enabled at its recorded capacity, with default traffic
//! weights.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gennaker_core::artifacts::{bound_artifact, unbound_message};
use gennaker_core::{CheckContext, Fields, Problem, StageTypeDescriptor, ValidationReport};
use gennaker_engine::{
    Access, CancelOutcome, Execution, Services, StageDefinition, StageExecution, StageRegistry,
    SyntheticSpec, Task, TaskContext, TaskError, TaskResult, TaskSpec, ancestors, parallel, truthy,
};
use serde_json::{Map, Value, json};

use crate::authz::{
    Joining, cluster_target, group_target, may_change_cluster, may_route, may_route_task,
};
use crate::cluster::{provider_for, server_groups};
use crate::fields::{
    ClusterRef, account, capacity, capacity_json, cloud_provider, deploy_moniker, task_error, text,
};
use crate::model::{Capacity, CreateServerGroup, ServerGroup, ServerGroupOrigin};
use crate::provider::Providers;
use crate::rules::{CloudStageType, check_cluster};
use crate::server_group::WAIT_FOR_UP_INSTANCES;
use crate::strategy::{Strategy, after_stages};

/// The stage type each deploy cluster becomes.
pub(crate) const CREATE_SERVER_GROUP: &str = "createServerGroup";

/// Cluster fields that are not part of the provider's process spec.
pub(crate) const GENERIC_KEYS: &[&str] = &[
    "application",
    "stack",
    "freeFormDetails",
    "account",
    "credentials",
    "cloudProvider",
    "provider",
    "capacity",
    "loadBalancers",
    "strategy",
    "maxRemainingAsgs",
    "delayBeforeDisableSec",
    "scaleDown",
    "delayBeforeScaleDownSec",
    "rollback",
    "targetPercentages",
    "pipelineBeforeCleanup",
    "delayBeforeCleanup",
    "moniker",
    "name",
    "type",
    "refId",
    "requisiteStageRefIds",
    "stageTimeoutMs",
    "useSourceCapacity",
    "availabilityZones",
    "region",
    "regions",
    "spec",
    "artifactId",
    "expectedArtifactId",
    "waitForUpInstancesTimeoutMs",
    "stageEnabled",
    "failPipeline",
    "continuePipeline",
    "completeOtherBranchesThenFail",
    "markSuccessfulOnTimeout",
    "expressionEvaluationSummary",
    "exception",
    "health",
    "source",
    "serverGroupName",
    "serverGroup",
    "deploy.server.groups",
    "deploy.account.name",
    "rollbackResult",
    "cancelError",
    "comments",
    "notifications",
    "sendNotifications",
    "restrictExecutionDuringTimeWindow",
    "restrictedExecutionWindow",
    "isNew",
    "canary",
    crate::canary::BASELINE_OF,
    "baselineServerGroup",
];

/// Registers `deploy`, `createServerGroup` and their tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    let deploy = CloudStageType::new(
        "deploy",
        "Deploy",
        "deploy a new server group into each of its clusters, replacing the old ones with a strategy",
        check_deploy,
        providers,
    );
    let create = CloudStageType::new(
        CREATE_SERVER_GROUP,
        "Create Server Group",
        "create one server group and wait for its instances to be up",
        check_cluster,
        providers,
    );
    registry
        .stage(DeployStage {
            kind: deploy,
            providers: providers.clone(),
        })
        .stage(CreateServerGroupStage {
            kind: create,
            providers: providers.clone(),
        })
        .task(CollectDeployed)
        .task(DetermineSource {
            providers: providers.clone(),
        })
        .task(CreateTask {
            providers: providers.clone(),
        });
}

// ----- deploy -----

struct DeployStage {
    kind: CloudStageType,
    providers: Providers,
}

/// The deploy stage's clusters.
fn clusters(stage: &StageExecution) -> Vec<Map<String, Value>> {
    stage
        .context
        .get("clusters")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_object).cloned().collect())
        .unwrap_or_default()
}

impl StageDefinition for DeployStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        self.kind.descriptor()
    }

    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
        self.kind.check(stage, context, report);
        let clusters = stage.map.get("clusters").and_then(Value::as_array);
        for (index, cluster) in clusters.into_iter().flatten().enumerate() {
            if let Value::Object(map) = cluster {
                let cluster = Fields::new(map, stage.at("clusters").index(index));
                check_provider_spec(&cluster, &self.providers, report);
                check_cluster_artifact(&cluster, context, report);
            }
        }
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new(COLLECT_DEPLOYED)]
    }

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        let application = text(&stage.context, "application").map(str::to_owned);
        parallel(
            clusters(stage)
                .into_iter()
                .map(|mut cluster| {
                    if !cluster.contains_key("application") && !cluster.contains_key("moniker") {
                        // The execution's application, evaluated when the cluster's stage
                        // starts (before it plans its strategy).
                        let value = application
                            .clone()
                            .unwrap_or_else(|| "${execution.application}".into());
                        cluster.insert("application".into(), json!(value));
                    }
                    let name = match deploy_moniker(&cluster, application.as_deref().unwrap_or(""))
                    {
                        Ok(moniker) => format!("Deploy {}", moniker.cluster()),
                        Err(_) => "Deploy".to_owned(),
                    };
                    (CREATE_SERVER_GROUP.to_owned(), name, cluster)
                })
                .collect(),
        )
    }
}

const COLLECT_DEPLOYED: &str = "collectDeployedServerGroups";

/// Gathers the clusters' `deploy.server.groups` into the deploy stage's outputs.
struct CollectDeployed;

#[async_trait]
impl Task for CollectDeployed {
    fn name(&self) -> &'static str {
        COLLECT_DEPLOYED
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        if clusters(ctx.stage).is_empty() {
            return Err(TaskError::Permanent(
                "the deploy stage has no clusters: add at least one to \"clusters\"".into(),
            ));
        }
        let mut by_region: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let children = ctx
            .execution
            .stages
            .iter()
            .filter(|s| s.parent_stage_id.as_deref() == Some(ctx.stage.id.as_str()));
        for child in children {
            if let Some(Value::Object(groups)) = child.outputs.get("deploy.server.groups") {
                for (region, names) in groups {
                    let list = by_region.entry(region.clone()).or_default();
                    list.extend(names.as_array().cloned().unwrap_or_default());
                }
            }
        }
        Ok(TaskResult::succeeded().with_output("deploy.server.groups", json!(by_region)))
    }

    fn inline(&self) -> bool {
        true
    }
}

/// A deploy stage has clusters, each well formed.
fn check_deploy(stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
    if !stage.has("clusters") {
        report.push(
            Problem::error(
                stage.at("clusters"),
                "a deploy stage needs at least one cluster",
            )
            .with_hint("add a cluster with application, account, stack, strategy and capacity"),
        );
        return;
    }
    for (_, cluster) in stage.objects("clusters", "a cluster", report) {
        check_cluster(&cluster, context, report);
    }
}

// ----- createServerGroup -----

struct CreateServerGroupStage {
    kind: CloudStageType,
    providers: Providers,
}

/// The new group's cluster, from a deploy cluster's fields.
fn cluster_ref(context: &Map<String, Value>, application: &str) -> Result<ClusterRef, TaskError> {
    let moniker = deploy_moniker(context, application)?;
    Ok(ClusterRef {
        cloud_provider: cloud_provider(context).map(str::to_owned),
        account: account(context),
        cluster: moniker.cluster(),
        application: moniker.app,
    })
}

/// The application a cluster without one belongs to: the execution's.
fn application_of(execution: &Execution, context: &Map<String, Value>) -> String {
    text(context, "application")
        .unwrap_or(&execution.application)
        .to_owned()
}

#[async_trait]
impl StageDefinition for CreateServerGroupStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        self.kind.descriptor()
    }

    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
        self.kind.check(stage, context, report);
        check_provider_spec(stage, &self.providers, report);
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![
            TaskSpec::new(DETERMINE_SOURCE),
            TaskSpec::new(CREATE_TASK),
            TaskSpec::new(WAIT_FOR_UP_INSTANCES),
        ]
    }

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        let context = &stage.context;
        match (Strategy::of(context), cluster_ref(context, "")) {
            (Ok(Strategy::Canary), Ok(cluster)) => crate::canary::before_stages(&cluster, context),
            _ => Vec::new(),
        }
    }

    fn after_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        // Invalid fields fail the stage's first task; nothing is planned for them.
        let context = &stage.context;
        let Ok(strategy) = Strategy::of(context) else {
            return Vec::new();
        };
        let Ok(cluster) = cluster_ref(context, "") else {
            return Vec::new();
        };
        let full = capacity(context.get("capacity"))
            .ok()
            .flatten()
            .unwrap_or_default();
        if strategy == Strategy::Canary {
            return crate::canary::after_stages(&cluster, context, full);
        }
        after_stages(strategy, &cluster, context, full)
    }

    fn has_cancel_routine(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        services: &Services,
    ) -> Result<CancelOutcome, TaskError> {
        if Strategy::of(&stage.context) == Ok(Strategy::Canary) {
            // A failed or canceled canary release always goes back to production.
            let application = application_of(execution, &stage.context);
            let cluster = cluster_ref(&stage.context, &application)?;
            let result =
                crate::canary::roll_back(&self.providers, services, execution, stage, &cluster)
                    .await?;
            let mut context = Map::new();
            context.insert("rollbackResult".into(), result);
            return Ok(CancelOutcome {
                context,
                messages: Vec::new(),
            });
        }
        let wants_rollback = stage
            .context
            .get("rollback")
            .is_some_and(|r| truthy(r.get("onFailure")));
        if !wants_rollback {
            return Ok(CancelOutcome::default());
        }
        let result = roll_back(&self.providers, services, execution, stage).await?;
        let mut context = Map::new();
        context.insert("rollbackResult".into(), result);
        Ok(CancelOutcome {
            context,
            messages: Vec::new(),
        })
    }
}

/// The origin that makes this stage's create idempotent.
fn origin(execution: &Execution, stage: &StageExecution) -> ServerGroupOrigin {
    ServerGroupOrigin {
        execution_id: execution.id.clone(),
        stage_id: stage.id.clone(),
    }
}

/// Destroys what `stage` created and restores its source group: enabled, at its
/// recorded capacity, with the load balancers' default weights. Every step checks the
/// state first, so running it again changes nothing; and, like the stage's tasks, that
/// the execution may change the cluster and the source group's load balancers.
pub(crate) async fn roll_back(
    providers: &Providers,
    services: &Services,
    execution: &Execution,
    stage: &StageExecution,
) -> Result<Value, TaskError> {
    let application = application_of(execution, &stage.context);
    let cluster = cluster_ref(&stage.context, &application)?;
    services
        .authorize(execution, stage, cluster_target(&cluster), Access::Write)
        .await?;
    let provider = provider_for(providers, &cluster)?;
    let account = cluster.account.as_str();
    let ours = origin(execution, stage);
    // Found by origin too: a crash may have come between the create and its record.
    let created: Vec<ServerGroup> = server_groups(provider.as_ref(), &cluster)
        .await?
        .into_iter()
        .filter(|g| {
            g.origin.as_ref() == Some(&ours)
                || stage.context.get("serverGroupName").and_then(Value::as_str)
                    == Some(g.name.as_str())
        })
        .collect();
    for group in &created {
        provider
            .destroy_server_group(account, &group.name)
            .await
            .map_err(task_error)?;
    }
    let mut restored = Value::Null;
    if let Some(source) = stage.context.get("source").and_then(Value::as_object)
        && let Some(name) = text(source, "serverGroupName")
        && let Some(group) = provider
            .server_group(account, name)
            .await
            .map_err(task_error)?
    {
        services
            .authorize(execution, stage, group_target(&group), Access::Write)
            .await?;
        let router = providers
            .router(cluster.cloud_provider.as_deref())
            .ok()
            .map(AsRef::as_ref);
        let joining = Joining::group(&group);
        may_route(
            services,
            execution,
            stage,
            router,
            &joining,
            &group.load_balancers,
        )
        .await?;
        let wanted = capacity(source.get("capacity"))?.unwrap_or(group.capacity);
        if group.capacity != wanted {
            provider
                .resize_server_group(account, name, wanted)
                .await
                .map_err(task_error)?;
        }
        if group.disabled {
            provider
                .enable_server_group(account, name)
                .await
                .map_err(task_error)?;
        }
        if let Ok(router) = providers.router(cluster.cloud_provider.as_deref()) {
            for balancer in &group.load_balancers {
                let weighted = router
                    .load_balancer(account, balancer)
                    .await
                    .map_err(task_error)?
                    .is_some_and(|lb| {
                        lb.weights
                            .keys()
                            .any(|g| created.iter().any(|c| &c.name == g))
                    });
                if weighted || Strategy::of(&stage.context) == Ok(Strategy::RollingRedBlack) {
                    router
                        .set_weights(account, balancer, BTreeMap::new())
                        .await
                        .map_err(task_error)?;
                }
            }
        }
        restored = json!(name);
    }
    let destroyed: Vec<&str> = created.iter().map(|g| g.name.as_str()).collect();
    tracing::info!(
        execution = %execution.id,
        stage = %stage.name,
        destroyed = ?destroyed,
        restored = %restored,
        "deploy rolled back"
    );
    Ok(json!({
        "destroyedServerGroups": destroyed,
        "restoredServerGroup": restored,
    }))
}

const DETERMINE_SOURCE: &str = "determineSourceServerGroup";

/// Records the enabled group the deploy replaces (`source`), for `useSourceCapacity`
/// and rollbacks, and checks the strategy.
struct DetermineSource {
    providers: Providers,
}

#[async_trait]
impl Task for DetermineSource {
    fn name(&self) -> &'static str {
        DETERMINE_SOURCE
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let strategy = Strategy::of(context).map_err(TaskError::Permanent)?;
        // The strategy's stages were planned from the stage's own fields: without an
        // application there they could not be, and the deploy must not pretend.
        if strategy != Strategy::None && cluster_ref(context, "").is_err() {
            return Err(TaskError::Permanent(format!(
                "the {} strategy needs the cluster's \"application\" (or \"moniker\") set on the stage",
                text(context, "strategy").unwrap_or_default()
            )));
        }
        let cluster = cluster_ref(context, &application_of(ctx.execution, context))?;
        // Before the listing: a refusal must not show another application's groups.
        may_change_cluster(ctx, &cluster).await?;
        if context.contains_key("source") {
            return Ok(TaskResult::succeeded());
        }
        let provider = provider_for(&self.providers, &cluster)?;
        let groups = server_groups(provider.as_ref(), &cluster).await?;
        let source = groups
            .iter()
            .rev()
            .find(|g| !g.disabled)
            .map_or(Value::Null, |g| {
                json!({
                    "serverGroupName": g.name,
                    "account": g.account,
                    "capacity": capacity_json(g.capacity),
                    "loadBalancers": g.load_balancers,
                })
            });
        Ok(TaskResult::succeeded().with_context("source", source))
    }
}

const CREATE_TASK: &str = "createServerGroup";

/// Creates the cluster's next server group (once: the provider knows the origin).
struct CreateTask {
    providers: Providers,
}

/// The provider's spec: the `spec` object, extended by every non-generic field.
fn spec_of(context: &Map<String, Value>) -> Map<String, Value> {
    let mut spec = context
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in context {
        if !GENERIC_KEYS.contains(&key.as_str()) {
            spec.insert(key.clone(), value.clone());
        }
    }
    spec
}

/// The expected artifact a cluster deploys (`artifactId`, or `expectedArtifactId`).
fn artifact_id(cluster: &Map<String, Value>) -> Option<&str> {
    text(cluster, "artifactId").or_else(|| text(cluster, "expectedArtifactId"))
}

/// A cluster's `artifactId`/`expectedArtifactId` must name an expected artifact the
/// pipeline declares (stage-level names are checked for every stage type in core).
fn check_cluster_artifact(
    cluster: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    for key in ["artifactId", "expectedArtifactId"] {
        if let Some(Value::String(id)) = cluster.get(key)
            && !id.contains("${")
            && !context.artifact_ids.contains(id)
        {
            report.push(
                Problem::error(
                    cluster.at(key),
                    format!("the cluster deploys expected artifact '{id}' but the pipeline's expectedArtifacts has no such id"),
                )
                .with_hint("add it to expectedArtifacts (and the trigger's expectedArtifactIds) or fix the id"),
            );
        }
    }
}

/// The provider's own save-time checks of a cluster's spec and account (what its
/// operator lets pipelines run), reported as errors at the fields they name. Skipped
/// when the provider is not known here (offline validation, or an unconfigured
/// provider, which is reported on its own).
fn check_provider_spec(cluster: &Fields<'_>, providers: &Providers, report: &mut ValidationReport) {
    let cloud = cloud_provider(cluster.map);
    if cloud.is_some_and(|c| c.contains("${")) {
        return;
    }
    let Ok(provider) = providers.provider(cloud) else {
        return;
    };
    let account_key = if cluster.has("credentials") {
        "credentials"
    } else {
        "account"
    };
    let named = text(cluster.map, account_key).map(|_| account(cluster.map));
    let spec = Value::Object(spec_of(cluster.map));
    for problem in provider.check_spec(named.as_deref(), &spec) {
        let mut parts = problem.field.split('.');
        let first = parts.next().unwrap_or_default();
        let mut path = if problem.field == "account" {
            cluster.at(account_key)
        } else if !cluster.map.contains_key(first) && spec_base_has(cluster.map, first) {
            cluster.at("spec").key(first)
        } else {
            cluster.at(first)
        };
        for part in parts {
            path = path.key(part);
        }
        report.push(Problem::error(&path, problem.message));
    }
}

/// Whether the cluster's `spec` object has `key`.
fn spec_base_has(cluster: &Map<String, Value>, key: &str) -> bool {
    cluster
        .get("spec")
        .and_then(Value::as_object)
        .is_some_and(|spec| spec.contains_key(key))
}

/// The spec an upstream `findImageFromCluster` found for this cloud provider.
fn found_upstream(execution: &Execution, stage: &StageExecution, cloud: &str) -> Option<Value> {
    ancestors(execution, stage).into_iter().find_map(|s| {
        s.outputs
            .get("deploymentDetails")
            .and_then(Value::as_array)?
            .iter()
            .find(|d| {
                d.get("cloudProvider")
                    .and_then(Value::as_str)
                    .unwrap_or(Providers::DEFAULT)
                    == cloud
            })
            .and_then(|d| d.get("spec"))
            .cloned()
    })
}

/// The region key of `deploy.server.groups`.
fn region(context: &Map<String, Value>) -> String {
    text(context, "region")
        .map(str::to_owned)
        .or_else(|| {
            context
                .get("availabilityZones")
                .and_then(Value::as_object)
                .and_then(|zones| zones.keys().next().cloned())
        })
        .unwrap_or_else(|| {
            cloud_provider(context)
                .unwrap_or(Providers::DEFAULT)
                .to_owned()
        })
}

#[async_trait]
impl Task for CreateTask {
    fn name(&self) -> &'static str {
        CREATE_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let application = application_of(ctx.execution, context);
        let moniker = deploy_moniker(context, &application)?;
        let cluster = cluster_ref(context, &application)?;
        let provider = provider_for(&self.providers, &cluster)?;
        let strategy = Strategy::of(context).map_err(TaskError::Permanent)?;
        let source_capacity = context
            .get("source")
            .and_then(|s| s.get("capacity"))
            .map(|c| capacity(Some(c)))
            .transpose()?
            .flatten();
        let full = match (truthy(context.get("useSourceCapacity")), source_capacity) {
            (true, Some(source)) => source,
            _ => capacity(context.get("capacity"))?.ok_or_else(|| {
                TaskError::Permanent(
                    "the cluster has no capacity: set \"capacity\" {min, max, desired}".into(),
                )
            })?,
        };
        // Rolling red/black starts empty and out of traffic; its steps grow it.
        let (initial, enabled) = if strategy == Strategy::RollingRedBlack {
            (
                Capacity {
                    min: 0,
                    max: full.max,
                    desired: 0,
                },
                false,
            )
        } else {
            (full, true)
        };
        let mut spec = spec_of(context);
        let mut result = TaskResult::succeeded();
        if spec.is_empty()
            && let Some(production) = text(context, crate::canary::BASELINE_OF)
        {
            // A canary release's baseline: what production runs now.
            let production = ClusterRef {
                cluster: production.to_owned(),
                ..cluster.clone()
            };
            let (name, found) =
                crate::canary::baseline_spec(provider.as_ref(), &production, ctx.execution).await?;
            if let Value::Object(found) = found {
                spec = found;
            }
            result = result.with_context("baselineServerGroup", json!(name));
        }
        if spec.is_empty() {
            let cloud = cloud_provider(context).unwrap_or(Providers::DEFAULT);
            if let Some(Value::Object(found)) = found_upstream(ctx.execution, ctx.stage, cloud) {
                spec = found;
            }
        }
        if let Some(id) = artifact_id(context) {
            let artifact = bound_artifact(&ctx.execution.trigger, id)
                .ok_or_else(|| TaskError::Permanent(unbound_message(&ctx.execution.trigger, id)))?;
            spec.extend(
                provider.artifact_spec(&artifact).map_err(|err| {
                    TaskError::Permanent(format!("expected artifact '{id}': {err}"))
                })?,
            );
        }
        let load_balancers: Vec<String> = context
            .get("loadBalancers")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        // Right before the create, on every run (a repeat after a crash checks again).
        may_change_cluster(ctx, &cluster).await?;
        let router = self
            .providers
            .router(cluster.cloud_provider.as_deref())
            .ok()
            .map(AsRef::as_ref);
        may_route_task(ctx, router, &Joining::cluster(&cluster), &load_balancers).await?;
        let group = provider
            .create_server_group(CreateServerGroup {
                account: cluster.account.clone(),
                moniker,
                capacity: initial,
                load_balancers,
                enabled,
                spec: Value::Object(spec),
                origin: origin(ctx.execution, ctx.stage),
            })
            .await
            .map_err(task_error)?;
        let groups = json!({ region(context): [group.name] });
        for (key, value) in [
            ("deploy.server.groups", groups),
            ("deploy.account.name", json!(group.account)),
            ("serverGroupName", json!(group.name)),
            ("serverGroup", json!(group.name)),
        ] {
            result = result
                .with_context(key, value.clone())
                .with_output(key, value);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_the_cluster_without_generic_fields() {
        let cluster = json!({
            "application": "shop", "stack": "prod", "capacity": {"desired": 1}, "strategy": "redblack",
            "spec": {"command": "old", "env": {"A": "1"}}, "command": "./serve", "args": ["--port", "$PORT"],
        });
        let spec = spec_of(cluster.as_object().unwrap_or(&Map::new()));
        assert_eq!(
            Value::Object(spec),
            json!({"command": "./serve", "args": ["--port", "$PORT"], "env": {"A": "1"}})
        );
    }
}
