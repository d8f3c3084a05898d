//! `enableManifest` / `disableManifest`: put a workload behind its Services, or take
//! it out, by its pods' labels (Spinnaker's way: the Services do not change). The
//! Services are the stage's `loadBalancers` (`["service my-svc"]`), else the ones the
//! workload's `traffic.spinnaker.io/load-balancers` annotation lists. The target is
//! static (`manifestName`) or dynamic (`cluster` + `criteria`, resolved once).
//!
//! Also `findArtifactsFromResource`: the images and ConfigMaps/Secrets a live
//! workload references, as artifacts in `outputs.artifacts`.

use std::sync::Arc;

use async_trait::async_trait;
use gennaker_core::{Fields, ValidationReport};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult};
use serde_json::{Value, json};

use super::deploy::shown;
use super::ops::required;
use super::{account, authorize, names_by_namespace, static_target};
use crate::artifacts::found_in;
use crate::cluster::KubernetesAccounts;
use crate::traffic::{TrafficError, load_balancers, selectors, service_name, set_traffic};

/// `enableManifest`'s task.
pub(super) const ENABLE: &str = "enableManifest";
/// `disableManifest`'s task.
pub(super) const DISABLE: &str = "disableManifest";
/// `findArtifactsFromResource`'s task.
pub(super) const FIND: &str = "findArtifactsFromResource";

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

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let stage = &ctx.stage.name;
        let account = account(&self.accounts, ctx)?;
        let target = static_target(&account, ctx).await?;
        let ns = target.namespace.as_deref();
        let live = required(account.get(&target.kind, ns, &target.name).await?, &target)?;
        authorize(ctx, &account, ns, &target.full, Some(&live)).await?;
        let mut services: Vec<String> = ctx
            .stage
            .context
            .get("loadBalancers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if services.is_empty() {
            services = load_balancers(&live)
                .map_err(|why| TaskError::Permanent(format!("{}: {why}", target.full)))?;
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
