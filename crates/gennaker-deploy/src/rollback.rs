//! `rollbackServerGroup` and `rollbackCluster`: traffic first. The restore group is
//! resized to the rolled-back group's capacity (never smaller than its own), enabled,
//! and waited on until healthy; only then is the rolled-back group disabled.
//!
//! - `rollbackServerGroup` with `rollbackType` `EXPLICIT`: `rollbackContext
//!   {rollbackServerGroupName, restoreServerGroupName}`.
//! - `rollbackServerGroup` with `PREVIOUS_IMAGE`: rolls back
//!   `rollbackContext.rollbackServerGroupName` (or `serverGroupName`) to the newest older
//!   group of its cluster that runs a different spec (else the newest older one).
//! - `rollbackCluster`: rolls the cluster's newest group back to the one before it.
//!
//! Both groups are resolved once and recorded (`rollbackServerGroupName`,
//! `restoreServerGroupName`, `restoreCapacity`; `serverGroupName` is the restore group).

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Problem, ValidationReport};
use gennaker_engine::{
    StageDefinition, StageExecution, StageRegistry, Task, TaskContext, TaskError, TaskResult,
    TaskSpec,
};
use serde_json::{Map, Value, json};

use crate::authz::{Joining, may_change, may_change_cluster, may_change_named, may_route_task};
use crate::cluster::{provider_for, server_groups};
use crate::fields::{ClusterRef, capacity, capacity_json, server_group_name, task_error, text};
use crate::model::{Capacity, ServerGroup};
use crate::provider::Providers;
use crate::rules::{CloudStageType, check_cloud_provider, check_cluster_target, described_by_kind};
use crate::server_group::{WAIT_FOR_UP_INSTANCES, names};

/// Registers both stages and their tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    registry
        .stage(RollbackStage {
            kind: CloudStageType::new(
                "rollbackServerGroup",
                "Rollback Server Group",
                "send traffic back to an earlier server group, then disable the rolled-back one",
                check_rollback,
                providers,
            ),
        })
        .stage(RollbackStage {
            kind: CloudStageType::new(
                "rollbackCluster",
                "Rollback Cluster",
                "roll a cluster back to its previous server group",
                check_cluster_target,
                providers,
            ),
        })
        .task(DetermineRollback {
            providers: providers.clone(),
        })
        .task(Restore {
            providers: providers.clone(),
        })
        .task(DisableRolledBack {
            providers: providers.clone(),
        });
}

struct RollbackStage {
    kind: CloudStageType,
}

impl StageDefinition for RollbackStage {
    described_by_kind!();

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![
            TaskSpec::new("determineRollbackServerGroups"),
            TaskSpec::new("restoreServerGroup"),
            TaskSpec::new(WAIT_FOR_UP_INSTANCES),
            TaskSpec::new("disableRolledBackServerGroup"),
        ]
    }
}

/// The cluster of a rollback stage (its `rollbackContext` may name only groups).
fn rollback_cluster(context: &Map<String, Value>) -> Result<ClusterRef, TaskError> {
    let mut lookup = context.clone();
    if let Some(name) = context
        .get("rollbackContext")
        .and_then(Value::as_object)
        .and_then(|r| text(r, "rollbackServerGroupName"))
        && server_group_name(context).is_none()
    {
        lookup.insert("serverGroupName".into(), json!(name));
    }
    ClusterRef::from_context(&lookup)
}

struct DetermineRollback {
    providers: Providers,
}

/// The newest group older than `rollback`, preferring one running another spec.
fn previous<'a>(groups: &'a [ServerGroup], rollback: &ServerGroup) -> Option<&'a ServerGroup> {
    let older: Vec<&ServerGroup> = groups
        .iter()
        .take_while(|g| g.name != rollback.name)
        .collect();
    older
        .iter()
        .rev()
        .find(|g| g.spec != rollback.spec)
        .or_else(|| older.last())
        .copied()
}

#[async_trait]
impl Task for DetermineRollback {
    fn name(&self) -> &'static str {
        "determineRollbackServerGroups"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        if text(context, "restoreServerGroupName").is_some()
            && context.contains_key("restoreCapacity")
        {
            return Ok(TaskResult::succeeded());
        }
        let cluster = rollback_cluster(context)?;
        // Before the listing: a refusal must not name another application's groups.
        may_change_cluster(ctx, &cluster).await?;
        let provider = provider_for(&self.providers, &cluster)?;
        let groups = server_groups(provider.as_ref(), &cluster).await?;
        let explicit = context.get("rollbackContext").and_then(Value::as_object);
        let named = |name: &str| -> Result<&ServerGroup, TaskError> {
            groups.iter().find(|g| g.name == name).ok_or_else(|| {
                TaskError::Permanent(format!(
                    "server group '{name}' is not in cluster '{}' (it has {})",
                    cluster.cluster,
                    names(&groups)
                ))
            })
        };
        let (rollback, restore) = if ctx.stage.stage_type == "rollbackCluster" {
            let rollback = groups.last().ok_or_else(|| {
                TaskError::Permanent(format!(
                    "cluster '{}' has no server groups to roll back",
                    cluster.cluster
                ))
            })?;
            (rollback, previous(&groups, rollback))
        } else {
            let rollback_type = text(context, "rollbackType")
                .unwrap_or("EXPLICIT")
                .to_ascii_uppercase();
            let rollback_name = explicit
                .and_then(|r| text(r, "rollbackServerGroupName"))
                .or_else(|| server_group_name(context))
                .ok_or_else(|| {
                    TaskError::Permanent("set rollbackContext.rollbackServerGroupName".into())
                })?;
            let rollback = named(rollback_name)?;
            match rollback_type.as_str() {
                "EXPLICIT" => {
                    let restore = explicit
                        .and_then(|r| text(r, "restoreServerGroupName"))
                        .ok_or_else(|| {
                            TaskError::Permanent(
                                "an EXPLICIT rollback needs rollbackContext.restoreServerGroupName"
                                    .into(),
                            )
                        })?;
                    (rollback, Some(named(restore)?))
                }
                "PREVIOUS_IMAGE" => (rollback, previous(&groups, rollback)),
                other => {
                    return Err(TaskError::Permanent(format!(
                        "rollbackType '{other}' is not supported: use EXPLICIT or PREVIOUS_IMAGE"
                    )));
                }
            }
        };
        let restore = restore.ok_or_else(|| {
            TaskError::Permanent(format!(
                "server group '{}' has no older server group to roll back to",
                rollback.name
            ))
        })?;
        // The restore group takes all of the rolled-back group's traffic.
        let wanted = Capacity {
            min: restore.capacity.min.max(rollback.capacity.min),
            max: restore.capacity.max.max(rollback.capacity.max),
            desired: restore.capacity.desired.max(rollback.capacity.desired),
        };
        Ok(TaskResult::succeeded()
            .with_context("rollbackServerGroupName", json!(rollback.name))
            .with_context("restoreServerGroupName", json!(restore.name))
            .with_context("serverGroupName", json!(restore.name))
            .with_context("cluster", json!(cluster.cluster))
            .with_context("credentials", json!(cluster.account))
            .with_context("restoreCapacity", capacity_json(wanted))
            .with_output("rollbackServerGroupName", json!(rollback.name))
            .with_output("restoreServerGroupName", json!(restore.name)))
    }
}

/// The two recorded names and the cluster.
fn recorded(context: &Map<String, Value>, key: &str) -> Result<String, TaskError> {
    text(context, key).map(str::to_owned).ok_or_else(|| {
        TaskError::Permanent(format!("the rollback has no {key}; restart the stage"))
    })
}

struct Restore {
    providers: Providers,
}

#[async_trait]
impl Task for Restore {
    fn name(&self) -> &'static str {
        "restoreServerGroup"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let cluster = ClusterRef::from_context(context)?;
        let provider = provider_for(&self.providers, &cluster)?;
        let name = recorded(context, "restoreServerGroupName")?;
        may_change_named(ctx, &name).await?;
        let wanted = capacity(context.get("restoreCapacity"))?.ok_or_else(|| {
            TaskError::Permanent("the rollback has no restoreCapacity; restart the stage".into())
        })?;
        let group = provider
            .server_group(&cluster.account, &name)
            .await
            .map_err(task_error)?
            .ok_or_else(|| {
                TaskError::Permanent(format!("server group '{name}' no longer exists"))
            })?;
        // The restore group takes the traffic back: it and its load balancers must be
        // the stage's to change, checked again on every run.
        may_change(ctx, &group).await?;
        let router = self
            .providers
            .router(cluster.cloud_provider.as_deref())
            .ok()
            .map(AsRef::as_ref);
        may_route_task(ctx, router, &Joining::group(&group), &group.load_balancers).await?;
        if group.capacity != wanted {
            provider
                .resize_server_group(&cluster.account, &name, wanted)
                .await
                .map_err(task_error)?;
        }
        if group.disabled {
            provider
                .enable_server_group(&cluster.account, &name)
                .await
                .map_err(task_error)?;
        }
        Ok(TaskResult::succeeded())
    }
}

struct DisableRolledBack {
    providers: Providers,
}

#[async_trait]
impl Task for DisableRolledBack {
    fn name(&self) -> &'static str {
        "disableRolledBackServerGroup"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let cluster = ClusterRef::from_context(context)?;
        let provider = provider_for(&self.providers, &cluster)?;
        let name = recorded(context, "rollbackServerGroupName")?;
        may_change_named(ctx, &name).await?;
        let group = provider
            .server_group(&cluster.account, &name)
            .await
            .map_err(task_error)?;
        if let Some(group) = &group {
            may_change(ctx, group).await?;
        }
        if group.is_some_and(|g| !g.disabled) {
            provider
                .disable_server_group(&cluster.account, &name)
                .await
                .map_err(task_error)?;
        }
        Ok(TaskResult::succeeded())
    }
}

const ROLLBACK_TYPES: &[&str] = &["EXPLICIT", "PREVIOUS_IMAGE", "TEST"];

/// A rollback names its kind and, when EXPLICIT, both server groups.
fn check_rollback(stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
    let kind = stage.one_of("rollbackType", ROLLBACK_TYPES, report);
    let rollback = stage.object("rollbackContext", report);
    if kind == Some("EXPLICIT") {
        match rollback {
            Some(rollback) => {
                rollback.required_string("rollbackServerGroupName", "the server group to roll back", report);
                rollback.required_string("restoreServerGroupName", "the server group to restore", report);
            }
            None => report.push(Problem::error(
                stage.at("rollbackContext"),
                "an EXPLICIT rollback needs rollbackContext with rollbackServerGroupName and restoreServerGroupName",
            )),
        }
    }
    if !stage.has("rollbackType") {
        report.push(
            Problem::error(
                stage.at("rollbackType"),
                "rollbackServerGroup needs a rollbackType",
            )
            .with_hint("EXPLICIT (name both server groups) or PREVIOUS_IMAGE"),
        );
    }
    stage.require_account(report);
    check_cloud_provider(stage, context, report);
}
