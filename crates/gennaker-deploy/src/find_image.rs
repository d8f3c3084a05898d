//! `findImageFromCluster`: finds a server group of a cluster (`selectionStrategy`
//! NEWEST, LARGEST, OLDEST or FAIL — FAIL when more than one matches; `onlyEnabled`,
//! default true) and outputs what it runs: `spec`, `serverGroupName`, and Orca's
//! `deploymentDetails` (`[{serverGroupName, account, cloudProvider, region, spec}]`),
//! which a later deploy cluster with no spec of its own picks up.

use async_trait::async_trait;
use gennaker_engine::{
    Access, StageDefinition, StageExecution, StageRegistry, Task, TaskContext, TaskError,
    TaskResult, TaskSpec,
};
use serde_json::{Value, json};

use crate::authz::cluster_target;
use crate::cluster::{provider_for, server_groups};
use crate::fields::{ClusterRef, text};
use crate::model::ServerGroup;
use crate::provider::Providers;
use crate::rules::{CloudStageType, check_cluster_target, described_by_kind};
use crate::server_group::names;

/// Registers the stage and its task.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    let kind = CloudStageType::new(
        "findImageFromCluster",
        "Find Image from Cluster",
        "find what a cluster runs, for a later deploy to reuse",
        check_cluster_target,
        providers,
    );
    registry.stage(FindImageStage { kind }).task(FindImageTask {
        providers: providers.clone(),
    });
}

struct FindImageStage {
    kind: CloudStageType,
}

impl StageDefinition for FindImageStage {
    described_by_kind!();

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new("findImageFromClusterTask")]
    }
}

struct FindImageTask {
    providers: Providers,
}

/// Picks one group per the selection strategy, from groups sorted oldest first.
fn select<'a>(
    strategy: &str,
    groups: &'a [ServerGroup],
) -> Result<Option<&'a ServerGroup>, String> {
    match strategy.to_ascii_uppercase().as_str() {
        "" | "NEWEST" => Ok(groups.last()),
        "OLDEST" => Ok(groups.first()),
        // Ties go to the newest, as Orca's sort does.
        "LARGEST" => Ok(groups
            .iter()
            .rev()
            .max_by_key(|g| g.instances.len().max(g.capacity.desired as usize))),
        "FAIL" if groups.len() > 1 => Err(format!(
            "selectionStrategy FAIL: the cluster has more than one candidate server group ({})",
            names(groups)
        )),
        "FAIL" => Ok(groups.first()),
        other => Err(format!(
            "selectionStrategy '{other}' is not known: use NEWEST, LARGEST, OLDEST or FAIL"
        )),
    }
}

#[async_trait]
impl Task for FindImageTask {
    fn name(&self) -> &'static str {
        "findImageFromClusterTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let cluster = ClusterRef::from_context(context)?;
        ctx.authorize(cluster_target(&cluster), Access::Read)
            .await?;
        let provider = provider_for(&self.providers, &cluster)?;
        let only_enabled = context
            .get("onlyEnabled")
            .is_none_or(|v| gennaker_engine::truthy(Some(v)) || v.is_null());
        let mut groups = server_groups(provider.as_ref(), &cluster).await?;
        if only_enabled {
            groups.retain(|g| !g.disabled);
        }
        let strategy = text(context, "selectionStrategy").unwrap_or("NEWEST");
        let found = select(strategy, &groups)
            .map_err(TaskError::Permanent)?
            .ok_or_else(|| {
                TaskError::Permanent(format!(
                    "cluster '{}' in account '{}' has no {}server group",
                    cluster.cluster,
                    cluster.account,
                    if only_enabled { "enabled " } else { "" }
                ))
            })?;
        let cloud = cluster
            .cloud_provider
            .clone()
            .unwrap_or_else(|| Providers::DEFAULT.to_owned());
        let details = json!([{
            "serverGroupName": found.name,
            "account": found.account,
            "cloudProvider": cloud,
            "region": text(context, "region").unwrap_or(&cloud),
            "spec": found.spec,
        }]);
        let mut result = TaskResult::succeeded();
        for (key, value) in [
            ("spec", found.spec.clone()),
            ("serverGroupName", Value::String(found.name.clone())),
            ("deploymentDetails", details),
        ] {
            result = result
                .with_context(key, value.clone())
                .with_output(key, value);
        }
        Ok(result)
    }
}
