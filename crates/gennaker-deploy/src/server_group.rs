//! Server group stages: `resizeServerGroup`, `enableServerGroup`,
//! `disableServerGroup`, `destroyServerGroup`, and the tasks they (and the deploy
//! stages) share: resolving a dynamic `target` once, and waiting for health.
//!
//! Fields: `cluster` / `moniker`, `credentials` (or `account`), `cloudProvider`, and
//! `serverGroupName` or `target` (`current_asg_dynamic`, `ancestor_asg_dynamic`,
//! `oldest_asg_dynamic`, `current_asg`, `ancestor_asg`). The target is resolved when
//! the stage starts and recorded as `serverGroupName`, so a repeat after a crash acts
//! on the same group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Problem, ValidationReport};
use gennaker_engine::{
    StageDefinition, StageExecution, StageRegistry, Task, TaskContext, TaskError, TaskResult,
    TaskSpec,
};
use serde_json::{Value, json};

use crate::authz::{Joining, may_change, may_change_cluster, may_change_named, may_route_task};
use crate::cluster::{Target, capacity_reached, healthy_instances, provider_for, server_groups};
use crate::fields::{
    ClusterRef, capacity, capacity_json, server_group_name, task_error, text, whole,
};
use crate::model::{Capacity, ServerGroup};
use crate::provider::{Provider, Providers};
use crate::rules::{CloudStageType, check_capacity, check_server_group_target, described_by_kind};

/// How often health is polled once a wait has gone on for a while (and the backoff
/// after a transient error).
const HEALTH_POLL: Duration = Duration::from_millis(500);

/// The first health poll's delay: healthy instances are usually Up within tens of
/// milliseconds, and a fixed [`HEALTH_POLL`] made every deploy wait most of it.
const FIRST_HEALTH_POLL: Duration = Duration::from_millis(20);

/// How long a server group may take to become healthy unless the stage says
/// (`waitForUpInstancesTimeoutMs`); the stage's own `stageTimeoutMs` also applies.
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Registers the server group stages and their tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    let kinds = [
        CloudStageType::new(
            "resizeServerGroup",
            "Resize Server Group",
            "change a server group's capacity and wait until it matches",
            check_resize,
            providers,
        )
        .aliases(&["resizeAsg"]),
        CloudStageType::new(
            "enableServerGroup",
            "Enable Server Group",
            "send traffic to a server group",
            check_server_group_target,
            providers,
        )
        .aliases(&["enableAsg"]),
        CloudStageType::new(
            "disableServerGroup",
            "Disable Server Group",
            "take a server group out of traffic, letting requests in flight finish",
            check_server_group_target,
            providers,
        )
        .aliases(&["disableAsg"]),
        CloudStageType::new(
            "destroyServerGroup",
            "Destroy Server Group",
            "stop a server group's instances and delete it",
            check_server_group_target,
            providers,
        )
        .aliases(&["destroyAsg"]),
    ];
    for kind in kinds {
        registry.stage(ServerGroupStage { kind });
    }
    let p = || providers.clone();
    registry
        .task(DetermineTarget { providers: p() })
        .task(DetermineResizeCapacity { providers: p() })
        .task(WaitForDestroyed { providers: p() })
        .task(WaitForHealth {
            providers: p(),
            name: WAIT_FOR_UP_INSTANCES,
            healthy: up_instances,
        })
        // Exactly the desired number of instances is healthy (after a resize).
        .task(WaitForHealth {
            providers: p(),
            name: WAIT_FOR_CAPACITY_MATCH,
            healthy: capacity_reached,
        });
    for action in [
        Action::Resize,
        Action::Enable,
        Action::Disable,
        Action::Destroy,
    ] {
        registry.task(ActOnGroup {
            providers: p(),
            action,
        });
    }
}

struct ServerGroupStage {
    kind: CloudStageType,
}

impl StageDefinition for ServerGroupStage {
    described_by_kind!();

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        let mut tasks = vec![TaskSpec::new(DETERMINE_TARGET)];
        match self.kind.stage_type {
            "resizeServerGroup" => tasks.extend([
                TaskSpec::new(DETERMINE_RESIZE_CAPACITY),
                TaskSpec::new("resizeServerGroup"),
                TaskSpec::new(WAIT_FOR_CAPACITY_MATCH),
            ]),
            "enableServerGroup" => tasks.extend([
                TaskSpec::new("enableServerGroup"),
                TaskSpec::new(WAIT_FOR_UP_INSTANCES),
            ]),
            "destroyServerGroup" => tasks.extend([
                TaskSpec::new("destroyServerGroup"),
                TaskSpec::new("waitForDestroyedServerGroup"),
            ]),
            other => tasks.push(TaskSpec::new(other)),
        }
        tasks
    }
}

/// The task recording the resolved target.
pub(crate) const DETERMINE_TARGET: &str = "determineTargetServerGroup";
/// The task computing a resize's capacity once.
const DETERMINE_RESIZE_CAPACITY: &str = "determineResizeCapacity";
/// The task waiting for `Up` instances.
pub(crate) const WAIT_FOR_UP_INSTANCES: &str = "waitForUpInstances";
/// The task waiting for exactly the desired healthy instances.
const WAIT_FOR_CAPACITY_MATCH: &str = "waitForCapacityMatch";

/// The provider, cluster and group name a server group task acts on.
pub(crate) struct Acting {
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) cluster: ClusterRef,
    pub(crate) name: String,
}

impl Acting {
    /// The group's current state, if the provider lists it.
    pub(crate) async fn find(&self) -> Result<Option<ServerGroup>, TaskError> {
        self.provider
            .server_group(&self.cluster.account, &self.name)
            .await
            .map_err(task_error)
    }

    /// The group's current state (`NotFound` as a permanent error).
    pub(crate) async fn group(&self) -> Result<ServerGroup, TaskError> {
        self.find().await?.ok_or_else(|| {
            TaskError::Permanent(format!(
                "server group '{}' does not exist in account '{}'",
                self.name, self.cluster.account
            ))
        })
    }
}

/// The resolved group of a stage whose `determineTargetServerGroup` ran.
pub(crate) fn acting(providers: &Providers, ctx: &TaskContext<'_>) -> Result<Acting, TaskError> {
    let cluster = ClusterRef::from_context(&ctx.stage.context)?;
    let name = server_group_name(&ctx.stage.context)
        .ok_or_else(|| {
            TaskError::Permanent(
                "the stage names no server group: set \"serverGroupName\" or \"target\"".into(),
            )
        })?
        .to_owned();
    Ok(Acting {
        provider: provider_for(providers, &cluster)?,
        cluster,
        name,
    })
}

/// Resolves `target` to a name once, recording it as `serverGroupName`.
struct DetermineTarget {
    providers: Providers,
}

#[async_trait]
impl Task for DetermineTarget {
    fn name(&self) -> &'static str {
        DETERMINE_TARGET
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        if let Some(name) = server_group_name(context) {
            return Ok(TaskResult::succeeded().with_context("serverGroupName", json!(name)));
        }
        let Some(target) = text(context, "target") else {
            return Err(TaskError::Permanent(
                "the stage names no server group: set \"serverGroupName\", or \"target\" (current_asg_dynamic, ancestor_asg_dynamic, oldest_asg_dynamic) with \"cluster\"".into(),
            ));
        };
        let target = Target::parse(target)?;
        let cluster = ClusterRef::from_context(context)?;
        // Before the listing: a refusal must not name another application's groups.
        may_change_cluster(ctx, &cluster).await?;
        let provider = provider_for(&self.providers, &cluster)?;
        let groups = server_groups(provider.as_ref(), &cluster).await?;
        let Some(group) = target.pick(&groups) else {
            return Err(TaskError::Permanent(format!(
                "cluster '{}' in account '{}' has no server group matching target '{}' (it has {})",
                cluster.cluster,
                cluster.account,
                text(context, "target").unwrap_or_default(),
                names(&groups)
            )));
        };
        Ok(TaskResult::succeeded()
            .with_context("serverGroupName", json!(group.name))
            .with_output("serverGroupName", json!(group.name)))
    }
}

/// Names for a message: `a-v001, a-v002` or `none`.
pub(crate) fn names(groups: &[ServerGroup]) -> String {
    if groups.is_empty() {
        return "none".into();
    }
    groups
        .iter()
        .map(|g| g.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Computes the capacity a resize asks for, from the group as it is before the resize,
/// and records it (`targetCapacity`): a repeated resize must not scale up twice.
struct DetermineResizeCapacity {
    providers: Providers,
}

#[async_trait]
impl Task for DetermineResizeCapacity {
    fn name(&self) -> &'static str {
        DETERMINE_RESIZE_CAPACITY
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let acting = acting(&self.providers, ctx)?;
        may_change_named(ctx, &acting.name).await?;
        let group = acting.group().await?;
        may_change(ctx, &group).await?;
        let context = &ctx.stage.context;
        let action = text(context, "action")
            .unwrap_or("scale_exact")
            .to_ascii_lowercase();
        let current = group.capacity;
        // Deck's `resizeType` says which of the two it meant when both are present.
        let by_count = text(context, "resizeType").is_some_and(|t| t.eq_ignore_ascii_case("incr"));
        let pct = whole(context, "scalePct").filter(|_| !by_count);
        let delta = |base: u32| -> u32 {
            match (pct, whole(context, "scaleNum")) {
                (Some(pct), _) => {
                    let pct = u64::try_from(pct.max(0)).unwrap_or(0);
                    u32::try_from((u64::from(base) * pct).div_ceil(100)).unwrap_or(u32::MAX)
                }
                (None, Some(n)) => u32::try_from(n.max(0)).unwrap_or(u32::MAX),
                (None, None) => 0,
            }
        };
        let target = match action.as_str() {
            "scale_exact" => capacity(context.get("capacity"))?.ok_or_else(|| {
                TaskError::Permanent(
                    "resize action scale_exact needs \"capacity\" {min, max, desired}".into(),
                )
            })?,
            "scale_up" => {
                let desired = current.desired.saturating_add(delta(current.desired));
                Capacity {
                    min: current.min,
                    max: current.max.max(desired),
                    desired,
                }
            }
            "scale_down" => {
                let desired = current.desired.saturating_sub(delta(current.desired));
                Capacity {
                    min: current.min.min(desired),
                    max: current.max,
                    desired,
                }
            }
            "scale_to_cluster" => {
                let groups = server_groups(acting.provider.as_ref(), &acting.cluster).await?;
                let largest = groups
                    .iter()
                    .map(|g| g.capacity)
                    .max_by_key(|c| c.desired)
                    .unwrap_or(current);
                let desired = largest.desired.saturating_add(delta(largest.desired));
                Capacity {
                    min: largest.min.min(desired),
                    max: largest.max.max(desired),
                    desired,
                }
            }
            other => {
                return Err(TaskError::Permanent(format!(
                    "resize action '{other}' is not known: use scale_exact, scale_up, scale_down or scale_to_cluster"
                )));
            }
        };
        target.validate().map_err(TaskError::Permanent)?;
        Ok(TaskResult::succeeded()
            .with_context("targetCapacity", capacity_json(target))
            .with_context("originalCapacity", capacity_json(current)))
    }
}

/// What a server group task does to the group. Each is done only when the group still
/// needs it, so a repeat after a crash does not act twice.
#[derive(Clone, Copy)]
enum Action {
    /// Sets the recorded `targetCapacity` (unchanged groups are left alone).
    Resize,
    /// Enables the group (when it is disabled).
    Enable,
    /// Disables the group (when it is enabled); the provider drains it before returning.
    Disable,
    /// Destroys the group (a missing one is already destroyed).
    Destroy,
}

impl Action {
    fn task_name(self) -> &'static str {
        match self {
            Self::Resize => "resizeServerGroup",
            Self::Enable => "enableServerGroup",
            Self::Disable => "disableServerGroup",
            Self::Destroy => "destroyServerGroup",
        }
    }
}

/// Looks up the group, acts on it if needed, and outputs `serverGroupName`.
struct ActOnGroup {
    providers: Providers,
    action: Action,
}

#[async_trait]
impl Task for ActOnGroup {
    fn name(&self) -> &'static str {
        self.action.task_name()
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let acting = acting(&self.providers, ctx)?;
        may_change_named(ctx, &acting.name).await?;
        let (provider, account, name) = (&acting.provider, &acting.cluster.account, &acting.name);
        let router = self
            .providers
            .router(acting.cluster.cloud_provider.as_deref())
            .ok()
            .map(AsRef::as_ref);
        // Each action checks, right before it acts, that the stage may change the group
        // (as the provider records it) and, when the group's traffic grows, the
        // load balancers it is in.
        match self.action {
            Action::Resize => {
                let target =
                    capacity(ctx.stage.context.get("targetCapacity"))?.ok_or_else(|| {
                        TaskError::Permanent(
                            "the resize has no targetCapacity; restart the stage".into(),
                        )
                    })?;
                let group = acting.group().await?;
                may_change(ctx, &group).await?;
                if group.capacity != target {
                    if !group.disabled && target.desired > group.capacity.desired {
                        let joining = Joining::group(&group);
                        may_route_task(ctx, router, &joining, &group.load_balancers).await?;
                    }
                    provider
                        .resize_server_group(account, name, target)
                        .await
                        .map_err(task_error)?;
                }
            }
            Action::Enable => {
                let group = acting.group().await?;
                may_change(ctx, &group).await?;
                if group.disabled {
                    let joining = Joining::group(&group);
                    may_route_task(ctx, router, &joining, &group.load_balancers).await?;
                    provider
                        .enable_server_group(account, name)
                        .await
                        .map_err(task_error)?;
                }
            }
            Action::Disable => {
                let group = acting.group().await?;
                may_change(ctx, &group).await?;
                if !group.disabled {
                    provider
                        .disable_server_group(account, name)
                        .await
                        .map_err(task_error)?;
                }
            }
            Action::Destroy => {
                if let Some(group) = acting.find().await? {
                    may_change(ctx, &group).await?;
                    provider
                        .destroy_server_group(account, name)
                        .await
                        .map_err(task_error)?;
                }
            }
        }
        Ok(TaskResult::succeeded().with_output("serverGroupName", json!(acting.name)))
    }
}

/// Waits until the provider no longer lists the group.
struct WaitForDestroyed {
    providers: Providers,
}

#[async_trait]
impl Task for WaitForDestroyed {
    fn name(&self) -> &'static str {
        "waitForDestroyedServerGroup"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let gone = acting(&self.providers, ctx)?.find().await?.is_none();
        Ok(if gone {
            TaskResult::succeeded()
        } else {
            TaskResult::running_after(poll_delay(ctx))
        })
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        HEALTH_POLL
    }
}

/// The delay before a wait's next poll, given how long the task has run: it doubles
/// from [`FIRST_HEALTH_POLL`] up to [`HEALTH_POLL`] (each poll waits as long as the task
/// has run so far), so a quick change is seen within milliseconds and a slow one costs no
/// more polls than before, bar a handful.
fn poll_delay(ctx: &TaskContext<'_>) -> Duration {
    let started = ctx.task.start_time.unwrap_or(ctx.now);
    let running = u64::try_from(ctx.now.saturating_sub(started)).unwrap_or(0);
    next_poll(Duration::from_millis(running))
}

/// [`poll_delay`] for a task that has run for `running`.
fn next_poll(running: Duration) -> Duration {
    running.clamp(FIRST_HEALTH_POLL, HEALTH_POLL)
}

/// Health as a stage shows it.
fn health_context(group: &ServerGroup) -> Value {
    json!({
        "up": healthy_instances(group),
        "desired": group.capacity.desired,
        "instances": group.instances.iter().map(|i| json!({"id": i.id, "health": i.health, "reason": i.reason})).collect::<Vec<_>>(),
    })
}

/// The health timeout: `waitForUpInstancesTimeoutMs`, else 30 minutes.
fn health_timeout(stage: &StageExecution) -> Duration {
    whole(&stage.context, "waitForUpInstancesTimeoutMs")
        .and_then(|ms| u64::try_from(ms).ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_HEALTH_TIMEOUT, Duration::from_millis)
}

/// Polls the group's health until `healthy` holds, showing it in the stage; fails
/// after the health timeout.
struct WaitForHealth {
    providers: Providers,
    name: &'static str,
    healthy: fn(&ServerGroup) -> bool,
}

#[async_trait]
impl Task for WaitForHealth {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let group = acting(&self.providers, ctx)?.group().await?;
        let result = if (self.healthy)(&group) {
            TaskResult::succeeded()
        } else {
            TaskResult::running_after(poll_delay(ctx))
        };
        Ok(result.with_context("health", health_context(&group)))
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        HEALTH_POLL
    }

    fn timeout(&self, stage: &StageExecution) -> Option<Duration> {
        Some(health_timeout(stage))
    }
}

/// At least the desired number of instances is `Up` (Orca's `WaitForUpInstancesTask`).
fn up_instances(group: &ServerGroup) -> bool {
    healthy_instances(group) >= group.capacity.desired as usize
}

const RESIZE_ACTIONS: &[&str] = &[
    "scale_exact",
    "scale_up",
    "scale_down",
    "scale_to_cluster",
    "scale_to_server_group",
];

/// A resize names its target and how much to resize by.
fn check_resize(stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
    check_server_group_target(stage, context, report);
    let action = stage.one_of("action", RESIZE_ACTIONS, report);
    check_capacity(stage, report);
    stage.number("scalePct", report);
    stage.number("scaleNum", report);
    let amount = stage.has("capacity") || stage.has("scalePct") || stage.has("scaleNum");
    let needs_amount = !matches!(action, Some("scale_to_cluster" | "scale_to_server_group"));
    if !amount && needs_amount && !stage.has("action") {
        report.push(
            Problem::error(stage.at("capacity"), "resizeServerGroup needs a capacity, scalePct or scaleNum")
                .with_hint("e.g. \"action\": \"scale_exact\", \"capacity\": {\"min\": 2, \"max\": 2, \"desired\": 2}"),
        );
    } else if !amount && needs_amount {
        report.push(Problem::error(
            stage.at("capacity"),
            format!(
                "action '{}' needs a capacity, scalePct or scaleNum",
                action.unwrap_or("?")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delays of successive polls of a wait whose polls run on time.
    fn schedule(polls: usize) -> Vec<u64> {
        let mut running = Duration::ZERO;
        (0..polls)
            .map(|_| {
                let delay = next_poll(running);
                running += delay;
                u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
            })
            .collect()
    }

    #[test]
    fn health_polls_start_fast_and_back_off_to_the_steady_interval() {
        assert_eq!(schedule(9), [20, 20, 40, 80, 160, 320, 500, 500, 500]);
    }

    #[test]
    fn a_long_wait_polls_at_the_steady_interval() {
        assert_eq!(next_poll(Duration::from_secs(60)), HEALTH_POLL);
        // A task that has only just started polls soon.
        assert_eq!(next_poll(Duration::ZERO), FIRST_HEALTH_POLL);
    }
}
