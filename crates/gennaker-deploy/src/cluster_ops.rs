//! Cluster-wide stages (Orca's `AbstractClusterWideClouddriverTask` rules):
//!
//! - `disableCluster`: keeps `remainingEnabledServerGroups` (default 1) enabled groups,
//!   disables the rest.
//! - `scaleDownCluster`: keeps `remainingFullSizeServerGroups` (default 1) groups, scales
//!   the rest to 0; only disabled ones unless `allowScaleDownActive`.
//! - `shrinkCluster`: keeps `shrinkToSize` (default 1) groups, destroys the rest; only
//!   disabled ones unless `allowDeleteActive`.
//!
//! Groups are ranked newest first, or largest first with `preferLargerOverNewer`
//! (`retainLargerOverNewer` for shrink). The group a parent deploy stage just created,
//! and anything newer, is always kept and counts among the kept. Each run recomputes
//! from the cluster as it is, so a repeated run finds nothing left to do.

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, ValidationReport};
use gennaker_engine::{
    StageDefinition, StageExecution, StageRegistry, Task, TaskContext, TaskError, TaskResult,
    TaskSpec, truthy,
};
use serde_json::{Map, Value, json};

use crate::authz::may_change_cluster;
use crate::cluster::{deployed_by_parent, provider_for, server_groups};
use crate::fields::{ClusterRef, task_error, whole};
use crate::model::{Capacity, ServerGroup};
use crate::provider::Providers;
use crate::rules::{CloudStageType, Rules, check_cluster_target, described_by_kind};

/// The three cluster-wide operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Disable,
    ScaleDown,
    Shrink,
}

impl Operation {
    fn kind(self, providers: &Providers) -> CloudStageType {
        let (stage_type, label, description, rules): (_, _, _, Rules) = match self {
            Self::Disable => (
                "disableCluster",
                "Disable Cluster",
                "disable all but the newest server groups of a cluster",
                check_disable_cluster,
            ),
            Self::ScaleDown => (
                "scaleDownCluster",
                "Scale Down Cluster",
                "scale down all but the newest server groups of a cluster",
                check_scale_down_cluster,
            ),
            Self::Shrink => (
                "shrinkCluster",
                "Shrink Cluster",
                "delete all but the newest server groups of a cluster",
                check_shrink_cluster,
            ),
        };
        CloudStageType::new(stage_type, label, description, rules, providers)
    }

    fn task(self) -> &'static str {
        match self {
            Self::Disable => "disableClusterTask",
            Self::ScaleDown => "scaleDownClusterTask",
            Self::Shrink => "shrinkClusterTask",
        }
    }

    /// How many groups are kept, from the stage's field (default 1).
    fn keep(self, context: &Map<String, Value>) -> usize {
        let key = match self {
            Self::Disable => "remainingEnabledServerGroups",
            Self::ScaleDown => "remainingFullSizeServerGroups",
            Self::Shrink => "shrinkToSize",
        };
        whole(context, key).map_or(1, |n| usize::try_from(n.max(0)).unwrap_or(0))
    }

    fn prefers_larger(self, context: &Map<String, Value>) -> bool {
        match self {
            Self::Shrink => truthy(context.get("retainLargerOverNewer")),
            _ => truthy(context.get("preferLargerOverNewer")),
        }
    }

    /// Whether enabled groups may be acted on.
    fn allows_active(self, context: &Map<String, Value>) -> bool {
        match self {
            Self::Disable => true,
            Self::ScaleDown => truthy(context.get("allowScaleDownActive")),
            Self::Shrink => truthy(context.get("allowDeleteActive")),
        }
    }

    /// The context key listing what was acted on.
    fn result_key(self) -> &'static str {
        match self {
            Self::Disable => "disabledServerGroups",
            Self::ScaleDown => "scaledDownServerGroups",
            Self::Shrink => "destroyedServerGroups",
        }
    }
}

/// Registers the cluster-wide stages and tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    for operation in [Operation::Disable, Operation::ScaleDown, Operation::Shrink] {
        registry
            .stage(ClusterStage {
                kind: operation.kind(providers),
                operation,
            })
            .task(ClusterTask {
                operation,
                providers: providers.clone(),
            });
    }
}

struct ClusterStage {
    kind: CloudStageType,
    operation: Operation,
}

impl StageDefinition for ClusterStage {
    described_by_kind!();

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new(self.operation.task())]
    }
}

/// The groups an operation acts on, given the cluster oldest first.
fn candidates(
    operation: Operation,
    context: &Map<String, Value>,
    oldest_first: Vec<ServerGroup>,
    protected: Option<&str>,
) -> Vec<ServerGroup> {
    // The parent deploy's group and anything newer are kept, and take kept places first.
    let protected_from =
        protected.and_then(|name| oldest_first.iter().position(|g| g.name == name));
    let mut kept = Vec::new();
    let mut ranked = Vec::new();
    for (i, group) in oldest_first.into_iter().enumerate() {
        if protected_from.is_some_and(|p| i >= p) {
            kept.push(group);
        } else {
            ranked.push(group);
        }
    }
    ranked.reverse();
    if operation.prefers_larger(context) {
        // A stable sort: equal sizes stay newest first.
        ranked.sort_by_key(|g| std::cmp::Reverse(g.instances.len()));
    }
    if operation == Operation::Disable {
        kept.retain(|g| !g.disabled);
        ranked.retain(|g| !g.disabled);
    }
    let places = operation.keep(context).saturating_sub(kept.len());
    ranked
        .into_iter()
        .skip(places)
        .filter(|g| operation.allows_active(context) || g.disabled)
        .filter(|g| operation != Operation::ScaleDown || g.capacity != Capacity::fixed(0))
        .collect()
}

struct ClusterTask {
    operation: Operation,
    providers: Providers,
}

#[async_trait]
impl Task for ClusterTask {
    fn name(&self) -> &'static str {
        self.operation.task()
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let cluster = ClusterRef::from_context(context)?;
        // The provider lists only groups of the cluster's application, so this one
        // check covers every group acted on; it runs again with every repeat.
        may_change_cluster(ctx, &cluster).await?;
        let provider = provider_for(&self.providers, &cluster)?;
        let groups = server_groups(provider.as_ref(), &cluster).await?;
        let protected = deployed_by_parent(ctx.execution, ctx.stage);
        let targets = candidates(self.operation, context, groups, protected.as_deref());
        let account = cluster.account.as_str();
        let mut done: Vec<String> = context
            .get(self.operation.result_key())
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for group in &targets {
            match self.operation {
                Operation::Disable => provider
                    .disable_server_group(account, &group.name)
                    .await
                    .map(drop),
                Operation::ScaleDown => provider
                    .resize_server_group(account, &group.name, Capacity::fixed(0))
                    .await
                    .map(drop),
                Operation::Shrink => provider.destroy_server_group(account, &group.name).await,
            }
            .map_err(task_error)?;
            if !done.contains(&group.name) {
                done.push(group.name.clone());
            }
        }
        Ok(TaskResult::succeeded().with_context(self.operation.result_key(), json!(done)))
    }
}

/// How many groups a shrink keeps, and whether it may delete enabled ones.
fn check_shrink_cluster(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    check_cluster_target(stage, context, report);
    stage.non_negative("shrinkToSize", report);
    stage.boolean("allowDeleteActive", report);
    stage.boolean("retainLargerOverNewer", report);
}

/// How many groups a scale-down leaves at full size.
fn check_scale_down_cluster(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    check_cluster_target(stage, context, report);
    stage.non_negative("remainingFullSizeServerGroups", report);
    stage.boolean("preferLargerOverNewer", report);
}

/// How many groups a disable leaves enabled.
fn check_disable_cluster(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    check_cluster_target(stage, context, report);
    stage.non_negative("remainingEnabledServerGroups", report);
    stage.boolean("preferLargerOverNewer", report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gennaker_core::naming::parse_name;

    fn group(name: &str, created: i64, instances: usize, disabled: bool) -> ServerGroup {
        ServerGroup {
            name: name.into(),
            moniker: parse_name(name),
            account: "local".into(),
            cloud_provider: "local".into(),
            capacity: Capacity::fixed(u32::try_from(instances).unwrap_or(0)),
            disabled,
            load_balancers: vec![],
            instances: (0..instances)
                .map(|i| crate::model::Instance {
                    id: format!("{name}-{i}"),
                    health: crate::model::HealthState::Up,
                    address: None,
                    restarts: 0,
                    reason: None,
                    details: Default::default(),
                })
                .collect(),
            created_time: created,
            spec: Value::Null,
            origin: None,
        }
    }

    fn ctx(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn names(groups: &[ServerGroup]) -> Vec<&str> {
        groups.iter().map(|g| g.name.as_str()).collect()
    }

    fn cluster() -> Vec<ServerGroup> {
        vec![
            group("a-v001", 1, 5, true),
            group("a-v002", 2, 1, false),
            group("a-v003", 3, 2, false),
            group("a-v004", 4, 0, false),
        ]
    }

    #[test]
    fn disable_keeps_the_newest_enabled_or_the_largest() {
        let plain = candidates(Operation::Disable, &ctx(json!({})), cluster(), None);
        assert_eq!(names(&plain), ["a-v003", "a-v002"]);
        let larger = candidates(
            Operation::Disable,
            &ctx(json!({"preferLargerOverNewer": true})),
            cluster(),
            None,
        );
        assert_eq!(names(&larger), ["a-v002", "a-v004"]);
        let protected = candidates(
            Operation::Disable,
            &ctx(json!({"preferLargerOverNewer": true})),
            cluster(),
            Some("a-v004"),
        );
        assert_eq!(
            names(&protected),
            ["a-v003", "a-v002"],
            "the parent's new group is kept"
        );
    }

    #[test]
    fn shrink_destroys_only_disabled_groups_unless_allowed() {
        let safe = candidates(
            Operation::Shrink,
            &ctx(json!({"shrinkToSize": 2})),
            cluster(),
            None,
        );
        assert_eq!(names(&safe), ["a-v001"]);
        let all = candidates(
            Operation::Shrink,
            &ctx(json!({"shrinkToSize": 1, "allowDeleteActive": true})),
            cluster(),
            None,
        );
        assert_eq!(names(&all), ["a-v003", "a-v002", "a-v001"]);
        let larger = candidates(
            Operation::Shrink,
            &ctx(
                json!({"shrinkToSize": 1, "allowDeleteActive": true, "retainLargerOverNewer": true}),
            ),
            cluster(),
            None,
        );
        assert_eq!(names(&larger), ["a-v003", "a-v002", "a-v004"]);
    }

    #[test]
    fn scale_down_skips_active_and_empty_groups() {
        let plain = candidates(
            Operation::ScaleDown,
            &ctx(json!({"remainingFullSizeServerGroups": 1})),
            cluster(),
            None,
        );
        assert_eq!(names(&plain), ["a-v001"]);
        let active = candidates(
            Operation::ScaleDown,
            &ctx(json!({"allowScaleDownActive": true})),
            cluster(),
            Some("a-v003"),
        );
        assert_eq!(
            names(&active),
            ["a-v002", "a-v001"],
            "v004 is newer than the parent's group"
        );
    }
}
