//! What the deployment stages check before they act (the rule is the engine's
//! [`Services::authorize`]): WRITE on the application of every server group, cluster
//! and load balancer a stage changes, READ on a cluster it only reads
//! (`findImageFromCluster`, the `clusterSize` precondition), each judged by the
//! application the resource itself records (a server group's moniker, a load
//! balancer's `application`), never by what the stage says it is.
//!
//! Sending traffic into a load balancer (creating a group that joins it, enabling a
//! group, growing it, fixing its weights) changes that balancer: it needs WRITE on the
//! balancer's application too. A balancer that does not exist yet may be named only
//! when its name belongs to the group's application (`shop` or `shop-…`, Frigga's
//! rule): a group joins whatever balancer later gets that name, so naming another
//! application's future balancer would take its traffic the moment it is created.

use gennaker_core::naming::parse_name;
use gennaker_engine::{
    Access, Execution, Services, StageExecution, StageTarget, TaskContext, TaskError,
};

use crate::fields::{ClusterRef, task_error};
use crate::model::ServerGroup;
use crate::provider::TrafficRouter;

/// A server group as an authorization target, owned by the application its moniker
/// records.
pub(crate) fn group_target(group: &ServerGroup) -> StageTarget<'_> {
    StageTarget {
        kind: "server group",
        name: &group.name,
        application: &group.moniker.app,
    }
}

/// A cluster as an authorization target: the application whose server groups the
/// provider lists for it.
pub(crate) fn cluster_target(cluster: &ClusterRef) -> StageTarget<'_> {
    StageTarget {
        kind: "cluster",
        name: &cluster.cluster,
        application: &cluster.application,
    }
}

/// Succeeds when the stage may change `group`.
pub(crate) async fn may_change(
    ctx: &TaskContext<'_>,
    group: &ServerGroup,
) -> Result<(), TaskError> {
    ctx.authorize(group_target(group), Access::Write).await
}

/// Succeeds when the stage may change the server group called `name`, judged by the
/// application its name starts with (Frigga: an application name has no `-`), before
/// the group is looked up: whether another application's group exists is not told to
/// a stage that may not change it. The group found is then checked by what it records
/// ([`may_change`]).
pub(crate) async fn may_change_named(ctx: &TaskContext<'_>, name: &str) -> Result<(), TaskError> {
    let application = parse_name(name).app;
    let target = StageTarget {
        kind: "server group",
        name,
        application: &application,
    };
    ctx.authorize(target, Access::Write).await
}

/// Succeeds when the stage may change the server groups of `cluster`.
pub(crate) async fn may_change_cluster(
    ctx: &TaskContext<'_>,
    cluster: &ClusterRef,
) -> Result<(), TaskError> {
    ctx.authorize(cluster_target(cluster), Access::Write).await
}

/// Where traffic would go: the group (or the cluster of a group not created yet), its
/// application and account.
pub(crate) struct Joining<'a> {
    /// `server group 'shop-prod-v003'` or `cluster 'shop-prod'`.
    pub(crate) what: String,
    /// The group's application.
    pub(crate) application: &'a str,
    /// The account of the group and its balancers.
    pub(crate) account: &'a str,
}

impl<'a> Joining<'a> {
    /// An existing group.
    pub(crate) fn group(group: &'a ServerGroup) -> Self {
        Self {
            what: format!("server group '{}'", group.name),
            application: &group.moniker.app,
            account: &group.account,
        }
    }

    /// The next group of a cluster.
    pub(crate) fn cluster(cluster: &'a ClusterRef) -> Self {
        Self {
            what: format!("the new server group of cluster '{}'", cluster.cluster),
            application: &cluster.application,
            account: &cluster.account,
        }
    }
}

/// Succeeds when the stage may send the group's traffic into each of `balancers`
/// (see the module docs). Without a traffic router the provider has no balancers,
/// so there is nothing to check.
pub(crate) async fn may_route(
    services: &Services,
    execution: &Execution,
    stage: &StageExecution,
    router: Option<&dyn TrafficRouter>,
    joining: &Joining<'_>,
    balancers: &[String],
) -> Result<(), TaskError> {
    let Some(router) = router else {
        return Ok(());
    };
    for name in balancers {
        match router
            .load_balancer(joining.account, name)
            .await
            .map_err(task_error)?
        {
            Some(balancer) => {
                let target = StageTarget {
                    kind: "load balancer",
                    name,
                    application: &balancer.spec.application,
                };
                services
                    .authorize(execution, stage, target, Access::Write)
                    .await?;
            }
            None if parse_name(name)
                .app
                .eq_ignore_ascii_case(joining.application) => {}
            None => {
                return Err(TaskError::Permanent(format!(
                    "stage '{}' ({}) may not put {} into load balancer '{name}': it does not exist in account '{}', and only a load balancer named after application '{}' ('{}' or '{}-…') may be named before it is created; create '{name}' with upsertLoadBalancer first",
                    stage.name,
                    stage.stage_type,
                    joining.what,
                    joining.account,
                    joining.application,
                    joining.application,
                    joining.application,
                )));
            }
        }
    }
    Ok(())
}

/// [`may_route`] for a task.
pub(crate) async fn may_route_task(
    ctx: &TaskContext<'_>,
    router: Option<&dyn TrafficRouter>,
    joining: &Joining<'_>,
    balancers: &[String],
) -> Result<(), TaskError> {
    may_route(
        ctx.services,
        ctx.execution,
        ctx.stage,
        router,
        joining,
        balancers,
    )
    .await
}
