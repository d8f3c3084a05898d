//! `enableManifest` / `disableManifest`: put a workload behind its Services, or take
//! it out, by its pods' labels (Spinnaker's way: the Services do not change). The
//! Services are the stage's `loadBalancers` (`["service my-svc"]`), else the ones the
//! workload's `traffic.spinnaker.io/load-balancers` annotation lists. The target is
//! static (`manifestName`) or dynamic (`cluster` + `criteria`, resolved once).
//!
//! Enabling a ReplicaSet deployed blue/green with preview Services (it lists them in
//! `traffic.gennaker.io/preview-load-balancers`) promotes it: once all its pods are
//! Ready it joins the active Services and leaves the preview ones, then the other
//! versions of its cluster are disabled as red/black does; which ones is decided
//! once and recorded (`promotionPlan`); one whose pods fail or that is scaled to 0
//! is refused at once, and one with a scale-down delay scales those versions to 0
//! after it. Disabling one takes it out of both. A plain enable (e.g. a rollback's
//! enable of the old version, before the new one is disabled) of a workload scaled
//! to 0 or with no Ready pod is refused: the Services would be left with no pod.
//!
//! Also `findArtifactsFromResource`: the images and ConfigMaps/Secrets a live
//! workload references, as artifacts in `outputs.artifacts`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{Fields, ValidationReport};
use gennaker_engine::{StageExecution, StageRegistry, Task, TaskContext, TaskError, TaskResult};
use serde_json::{Value, json};

use super::deploy::shown;
use super::ops::required;
use super::traffic::{
    Older, POLL, Step, applied, apply, no_ready_pod, scale_down_wait, scaling_down, versions_plan,
    waiting_for_promotion,
};
use super::{Target, account, authorize, names_by_namespace, static_target};
use crate::artifacts::found_in;
use crate::cluster::{Account, KubernetesAccounts};
use crate::traffic::{
    TrafficError, load_balancers, preview_load_balancers, selectors, service_name, set_traffic,
};

/// `enableManifest`'s task.
pub(super) const ENABLE: &str = "enableManifest";
/// `disableManifest`'s task.
pub(super) const DISABLE: &str = "disableManifest";
/// `findArtifactsFromResource`'s task.
pub(super) const FIND: &str = "findArtifactsFromResource";

/// Where a promotion's decided steps are recorded.
const PROMOTION: &str = "promotionPlan";

/// How long a promotion may wait for the new version's pods (Orca's stability wait).
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    for enable in [true, false] {
        registry.task(TrafficTask {
            accounts: accounts.clone(),
            enable,
        });
    }
    registry.task(FindTask {
        accounts: accounts.clone(),
    });
}

/// Save-time rules of enable/disable: a target, and `loadBalancers` naming Services.
pub(super) fn check(stage: &Fields<'_>, report: &mut ValidationReport) {
    super::ops::check_target(stage, report);
    for (i, text) in stage.strings("loadBalancers", report) {
        if !text.contains("${")
            && let Err(why) = service_name(text)
        {
            report.push(gennaker_core::Problem::error(
                stage.at("loadBalancers").index(i),
                why,
            ));
        }
    }
}

struct TrafficTask {
    accounts: Arc<KubernetesAccounts>,
    enable: bool,
}

#[async_trait]
impl Task for TrafficTask {
    fn name(&self) -> &'static str {
        if self.enable { ENABLE } else { DISABLE }
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        POLL
    }

    fn timeout(&self, stage: &StageExecution) -> Option<Duration> {
        Some(TIMEOUT + scale_down_wait(stage))
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let stage = &ctx.stage.name;
        let account = account(&self.accounts, ctx)?;
        let target = static_target(&account, ctx).await?;
        let ns = target.namespace.as_deref();
        let live = required(account.get(&target.kind, ns, &target.name).await?, &target)?;
        authorize(ctx, &account, ns, &target.full, Some(&live)).await?;
        let named: Vec<String> = ctx
            .stage
            .context
            .get("loadBalancers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let unreadable = |why| TaskError::Permanent(format!("{}: {why}", target.full));
        let mut services = named.clone();
        if services.is_empty() {
            services = load_balancers(&live).map_err(unreadable)?;
        }
        let preview = if target.kind.resource.kind == "ReplicaSet" {
            preview_load_balancers(&live).map_err(unreadable)?
        } else {
            Vec::new()
        };
        if self.enable && !preview.is_empty() {
            return promote(ctx, &account, &target, &live, services).await;
        }
        if self.enable
            && let Some(why) = no_ready_pod(&target.kind.resource.kind, &live)
        {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' cannot enable {} in namespace '{}': {why}; its Services stay as they are",
                target.full,
                ns.unwrap_or_default()
            )));
        }
        if named.is_empty() {
            services.extend(preview);
        }
        if services.is_empty() {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}': {} is behind no Service that Gennaker knows of: name them in \"loadBalancers\" ([\"service my-svc\"]) or deploy it with trafficManagement services",
                target.full
            )));
        }
        let invalid = |err: TrafficError| match err {
            TrafficError::Kube(err) => TaskError::from(err),
            TrafficError::Invalid(why) => TaskError::Permanent(format!(
                "stage '{stage}' cannot {} {}: {why}",
                if self.enable { "enable" } else { "disable" },
                target.full
            )),
        };
        let found = selectors(&account, ns, &services).await.map_err(invalid)?;
        let moved = set_traffic(&account, &target.kind, ns, &live, &found, self.enable)
            .await
            .map_err(invalid)?;
        tracing::info!(
            execution = %ctx.execution.id,
            stage = %stage,
            resource = %target.full,
            enable = self.enable,
            pods = moved.pods.len(),
            "traffic moved"
        );
        let names = names_by_namespace(ns, &target.full);
        Ok(TaskResult::succeeded()
            .with_context("loadBalancers", json!(services))
            .with_context("relabelledPods", json!(moved.pods))
            .with_context("outputs.manifestNamesByNamespace", names.clone())
            .with_output("manifestNamesByNamespace", names))
    }
}

/// Promotes a blue/green version (see the module's doc): waits for its pods, records
/// the plan, then does it.
async fn promote(
    ctx: &TaskContext<'_>,
    account: &Account,
    target: &Target,
    live: &Value,
    services: Vec<String>,
) -> Result<TaskResult, TaskError> {
    let plan: Vec<Step> = match ctx.stage.context.get(PROMOTION) {
        Some(recorded) => serde_json::from_value(recorded.clone()).map_err(|err| {
            TaskError::Permanent(format!(
                "stage '{}' has an unreadable {PROMOTION}: {err}",
                ctx.stage.name
            ))
        })?,
        None => versions_plan(account, &[live], true, Older::Disable).await?,
    };
    if let Some(result) = scaling_down(ctx, account, &target.kind, &plan).await? {
        return Ok(with_target(result, target, &services));
    }
    if let Some(waiting) = waiting_for_promotion(ctx, account, &target.kind, &plan).await? {
        return Ok(TaskResult::running_after(POLL).with_context("waitingFor", json!([waiting])));
    }
    if !ctx.stage.context.contains_key(PROMOTION) {
        // Recorded before anything moves, so a repeat acts on these versions.
        return Ok(TaskResult::running_after(Duration::ZERO).with_context(PROMOTION, json!(plan)));
    }
    let done = apply(ctx, account, &target.kind, &plan, &services, &[]).await?;
    tracing::info!(
        execution = %ctx.execution.id,
        stage = %ctx.stage.name,
        resource = %target.full,
        "blue/green version promoted"
    );
    Ok(with_target(applied(ctx, done), target, &services))
}

/// A promotion's result with the Services it moved to and the version it promoted.
fn with_target(result: TaskResult, target: &Target, services: &[String]) -> TaskResult {
    let names = names_by_namespace(target.namespace.as_deref(), &target.full);
    result
        .with_context("loadBalancers", json!(services))
        .with_context("outputs.manifestNamesByNamespace", names.clone())
        .with_output("manifestNamesByNamespace", names)
}

struct FindTask {
    accounts: Arc<KubernetesAccounts>,
}

#[async_trait]
impl Task for FindTask {
    fn name(&self) -> &'static str {
        FIND
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let account = account(&self.accounts, ctx)?;
        let target = static_target(&account, ctx).await?;
        let ns = target.namespace.as_deref();
        let live = required(account.get(&target.kind, ns, &target.name).await?, &target)?;
        authorize(ctx, &account, ns, &target.full, Some(&live)).await?;
        let artifacts = found_in(&live, &account.name);
        let shown = shown(live);
        Ok(TaskResult::succeeded()
            .with_context("manifest", shown.clone())
            .with_context("artifacts", json!(artifacts))
            .with_output("manifest", shown)
            .with_output("artifacts", json!(artifacts)))
    }
}
