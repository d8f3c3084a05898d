//! A cluster's server groups as stages see them: listed oldest first, and the dynamic
//! targets Spinnaker resolves against them (`current_asg_dynamic`, …).

use std::sync::Arc;

use gennaker_engine::{Execution, StageExecution, TaskError};

use crate::fields::{ClusterRef, task_error};
use crate::model::{HealthState, ServerGroup};
use crate::provider::{Provider, Providers};

/// The provider a cluster lives in.
pub(crate) fn provider_for(
    providers: &Providers,
    cluster: &ClusterRef,
) -> Result<Arc<dyn Provider>, TaskError> {
    providers
        .provider(cluster.cloud_provider.as_deref())
        .cloned()
        .map_err(task_error)
}

/// The cluster's server groups in its account, oldest first.
pub(crate) async fn server_groups(
    provider: &dyn Provider,
    cluster: &ClusterRef,
) -> Result<Vec<ServerGroup>, TaskError> {
    let mut groups: Vec<ServerGroup> = provider
        .server_groups(&cluster.application)
        .await
        .map_err(task_error)?
        .into_iter()
        .filter(|g| g.account == cluster.account && g.cluster() == cluster.cluster)
        .collect();
    sort_oldest_first(&mut groups);
    Ok(groups)
}

/// Creation time, then sequence (a wrapped `v000` created later is newer than `v999`).
pub(crate) fn sort_oldest_first(groups: &mut [ServerGroup]) {
    groups.sort_by_key(|g| (g.created_time, g.moniker.sequence, g.name.clone()));
}

/// Spinnaker's dynamic server group targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The newest server group (`current_asg_dynamic`, `current_asg`).
    Current,
    /// The one before the newest (`ancestor_asg_dynamic`, `ancestor_asg`).
    Ancestor,
    /// The oldest (`oldest_asg_dynamic`).
    Oldest,
}

impl Target {
    /// Parses a `target` field.
    pub(crate) fn parse(text: &str) -> Result<Self, TaskError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "current_asg_dynamic" | "current_asg" => Ok(Self::Current),
            "ancestor_asg_dynamic" | "ancestor_asg" => Ok(Self::Ancestor),
            "oldest_asg_dynamic" | "oldest_asg" => Ok(Self::Oldest),
            other => Err(TaskError::Permanent(format!(
                "target '{other}' is not known: use current_asg_dynamic, ancestor_asg_dynamic or oldest_asg_dynamic"
            ))),
        }
    }

    /// Picks the target among groups sorted oldest first.
    pub(crate) fn pick(self, oldest_first: &[ServerGroup]) -> Option<&ServerGroup> {
        match self {
            Self::Current => oldest_first.last(),
            Self::Ancestor => oldest_first.iter().rev().nth(1),
            Self::Oldest => oldest_first.first(),
        }
    }
}

/// Instances that count as healthy: `Up`, or taken out of service only because their
/// group is disabled.
pub(crate) fn healthy_instances(group: &ServerGroup) -> usize {
    group
        .instances
        .iter()
        .filter(|i| i.health.is_up() || (group.disabled && i.health == HealthState::OutOfService))
        .count()
}

/// Whether exactly the desired number of instances is healthy: more are still being
/// stopped after a scale down, fewer still starting (Orca's `WaitForCapacityMatchTask`).
pub(crate) fn capacity_reached(group: &ServerGroup) -> bool {
    healthy_instances(group) == group.capacity.desired as usize
}

/// The server group the nearest `createServerGroup` stage above `stage` deployed (a
/// strategy's cluster-wide stages never touch it).
pub(crate) fn deployed_by_parent(execution: &Execution, stage: &StageExecution) -> Option<String> {
    let mut current = stage.parent_stage_id.as_deref();
    while let Some(id) = current {
        let parent = execution.stage(id)?;
        if parent.stage_type == crate::deploy::CREATE_SERVER_GROUP
            && let Some(name) = parent
                .context
                .get("serverGroupName")
                .and_then(|v| v.as_str())
        {
            return Some(name.to_owned());
        }
        current = parent.parent_stage_id.as_deref();
    }
    None
}
