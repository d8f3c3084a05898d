//! Load balancer stages, the firewall, and the traffic shift of rolling red/black.
//!
//! - `upsertLoadBalancer`: `loadBalancers[]`, or the stage itself as one: `name`,
//!   `credentials` (or `account`), `application`, `listen` (`127.0.0.1:8080`) or `port`
//!   or `listeners[0].externalPort`, `allowedCidrs`, `ejectionFailures`. A field left
//!   out keeps the existing balancer's value. Outputs `upsertedLoadBalancers`. A
//!   balancer never changes application: an existing one is changed only by executions
//!   of its own application, and a new one belongs to `application` (default: the
//!   execution's; another needs WRITE there). See [`crate::authz`].
//! - `deleteLoadBalancer`: `loadBalancerName` (or `name`, or `loadBalancers[]`).
//! - `upsertSecurityGroup`: an allow-list of source networks for load balancers:
//!   `ipIngress[].cidr` and `securityGroupIngress[].cidr` (or `allowedCidrs`) become the
//!   `allowedCidrs` of the balancers named by `loadBalancerName` / `loadBalancers[]`
//!   (default: the balancer called like the security group's `name`).
//! - `shiftTraffic` (Gennaker's, planned by rolling red/black): gives the resolved group
//!   `percentage` of its load balancers' traffic and the cluster's other enabled groups
//!   the rest, then enables it; without `percentage` it restores default weights.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Problem, ValidationReport};
use gennaker_engine::{
    Access, StageDefinition, StageExecution, StageRegistry, StageTarget, Task, TaskContext,
    TaskError, TaskResult, TaskSpec,
};
use serde_json::{Map, Value, json};

use crate::authz::{Joining, may_change, may_change_named, may_route_task};
use crate::cluster::server_groups;
use crate::fields::{account, cloud_provider, task_error, text, whole};
use crate::model::{LoadBalancer, LoadBalancerSpec};
use crate::provider::{Providers, TrafficRouter};
use crate::rules::{
    CloudStageType, check_cloud_provider, check_server_group_target, described_by_kind,
};
use crate::server_group::{DETERMINE_TARGET, acting};

/// Registers the load balancer stages and their tasks.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    let stages = [
        (
            CloudStageType::new(
                "upsertLoadBalancer",
                "Upsert Load Balancer",
                "create or update a load balancer",
                check_upsert_load_balancer,
                providers,
            )
            .aliases(&["upsertAmazonLoadBalancer"]),
            &["upsertLoadBalancerTask"][..],
        ),
        (
            CloudStageType::new(
                "deleteLoadBalancer",
                "Delete Load Balancer",
                "delete a load balancer",
                check_delete_load_balancer,
                providers,
            )
            .aliases(&["deleteAmazonLoadBalancer"]),
            &["deleteLoadBalancerTask"][..],
        ),
        (
            CloudStageType::new(
                "upsertSecurityGroup",
                "Upsert Firewall",
                "set which source networks may reach a load balancer",
                check_upsert_security_group,
                providers,
            ),
            &["upsertSecurityGroupTask"][..],
        ),
        (
            CloudStageType::new(
                "shiftTraffic",
                "Shift Traffic",
                "give a server group a share of its load balancers' traffic",
                check_shift_traffic,
                providers,
            ),
            &[DETERMINE_TARGET, "shiftTrafficTask"][..],
        ),
    ];
    for (kind, tasks) in stages {
        registry.stage(SimpleStage { kind, tasks });
    }
    registry
        .task(Upsert {
            providers: providers.clone(),
        })
        .task(Delete {
            providers: providers.clone(),
        })
        .task(Firewall {
            providers: providers.clone(),
        })
        .task(Shift {
            providers: providers.clone(),
        });
}

struct SimpleStage {
    kind: CloudStageType,
    tasks: &'static [&'static str],
}

impl StageDefinition for SimpleStage {
    described_by_kind!();

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        self.tasks.iter().map(|t| TaskSpec::new(t)).collect()
    }
}

/// The stage's `loadBalancers[]` objects, or the stage itself as the only one.
fn balancer_objects(context: &Map<String, Value>) -> Vec<Map<String, Value>> {
    match context.get("loadBalancers").and_then(Value::as_array) {
        Some(list) if list.iter().any(Value::is_object) => list
            .iter()
            .filter_map(Value::as_object)
            .map(|lb| {
                // Each entry inherits the stage's account and provider.
                let mut merged = Map::new();
                for key in ["credentials", "account", "cloudProvider", "application"] {
                    if let Some(value) = context.get(key) {
                        merged.insert(key.to_owned(), value.clone());
                    }
                }
                merged.extend(lb.clone());
                merged
            })
            .collect(),
        _ => vec![context.clone()],
    }
}

/// The balancer names a stage acts on: `loadBalancerName`, `loadBalancers[]` (names or
/// objects), else `name`.
fn balancer_names(context: &Map<String, Value>) -> Vec<String> {
    if let Some(name) = text(context, "loadBalancerName") {
        return vec![name.to_owned()];
    }
    let listed: Vec<String> = context
        .get("loadBalancers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|lb| {
                    lb.as_str()
                        .or_else(|| lb.get("name").and_then(Value::as_str))
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    text(context, "name")
        .map(|n| vec![n.to_owned()])
        .unwrap_or_default()
}

fn router<'a>(
    providers: &'a Providers,
    context: &Map<String, Value>,
) -> Result<&'a std::sync::Arc<dyn TrafficRouter>, TaskError> {
    providers
        .router(cloud_provider(context))
        .map_err(task_error)
}

/// A string list field.
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|list| {
        list.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

struct Upsert {
    providers: Providers,
}

#[async_trait]
impl Task for Upsert {
    fn name(&self) -> &'static str {
        "upsertLoadBalancerTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let mut upserted = Vec::new();
        for lb in balancer_objects(&ctx.stage.context) {
            let router = router(&self.providers, &lb)?;
            let name = text(&lb, "name")
                .or_else(|| text(&lb, "loadBalancerName"))
                .ok_or_else(|| {
                    TaskError::Permanent("a load balancer has no name: set \"name\"".into())
                })?;
            let account = account(&lb);
            let existing = router
                .load_balancer(&account, name)
                .await
                .map_err(task_error)?;
            let port = whole(&lb, "port").or_else(|| {
                lb.get("listeners")
                    .and_then(Value::as_array)
                    .and_then(|l| l.first())
                    .and_then(|l| l.get("externalPort"))
                    .and_then(gennaker_core::lenient::value_as_i64)
            });
            let listen = text(&lb, "listen")
                .map(str::to_owned)
                .or_else(|| port.map(|p| format!("127.0.0.1:{p}")))
                .or_else(|| existing.as_ref().map(|e| e.address.clone()))
                .ok_or_else(|| {
                    TaskError::Permanent(format!(
                        "load balancer '{name}' has no address: set \"listen\" (127.0.0.1:8080) or \"port\""
                    ))
                })?;
            let application = owner_for_upsert(ctx, &lb, name, existing.as_ref()).await?;
            let spec = LoadBalancerSpec {
                name: name.to_owned(),
                account: account.clone(),
                application,
                listen,
                allowed_cidrs: strings(lb.get("allowedCidrs"))
                    .or_else(|| existing.as_ref().map(|e| e.spec.allowed_cidrs.clone()))
                    .unwrap_or_default(),
                ejection_failures: whole(&lb, "ejectionFailures")
                    .and_then(|n| u32::try_from(n).ok())
                    .or_else(|| existing.as_ref().map(|e| e.spec.ejection_failures))
                    .unwrap_or(5),
            };
            let unchanged = existing.as_ref().is_some_and(|e| e.spec == spec);
            let balancer = match existing {
                Some(existing) if unchanged => existing,
                _ => router
                    .upsert_load_balancer(spec)
                    .await
                    .map_err(task_error)?,
            };
            upserted.push(json!({"name": balancer.spec.name, "account": balancer.spec.account, "address": balancer.address}));
        }
        Ok(TaskResult::succeeded()
            .with_context("upsertedLoadBalancers", json!(upserted))
            .with_output("upsertedLoadBalancers", json!(upserted)))
    }
}

/// A load balancer as an authorization target, owned by the application it records.
fn balancer_target(balancer: &LoadBalancer) -> StageTarget<'_> {
    StageTarget {
        kind: "load balancer",
        name: &balancer.spec.name,
        application: &balancer.spec.application,
    }
}

/// The application an upserted balancer belongs to, once the stage may upsert it.
///
/// A balancer never changes application, and only executions of its own application
/// change it: an existing balancer of another application is refused even to a user
/// with rights there (so no pipeline of one team reconfigures, readdresses or adopts
/// another team's balancer), and naming another `application` for an existing one is
/// refused too. A new balancer belongs to the stage's `application` (default: the
/// execution's), which needs WRITE there.
async fn owner_for_upsert(
    ctx: &TaskContext<'_>,
    lb: &Map<String, Value>,
    name: &str,
    existing: Option<&LoadBalancer>,
) -> Result<String, TaskError> {
    let (stage, own) = (ctx.stage, &ctx.execution.application);
    let asked = text(lb, "application");
    let Some(existing) = existing else {
        let application = asked.unwrap_or(own);
        let target = StageTarget {
            kind: "load balancer",
            name,
            application,
        };
        ctx.authorize(target, Access::Write).await?;
        return Ok(application.to_owned());
    };
    let owner = &existing.spec.application;
    if !owner.eq_ignore_ascii_case(own) {
        return Err(TaskError::Permanent(format!(
            "stage '{}' ({}) may not change load balancer '{name}' of application '{owner}': a load balancer is changed only by pipelines of its own application; run this stage in a pipeline of '{owner}'",
            stage.name, stage.stage_type
        )));
    }
    if let Some(asked) = asked
        && !asked.eq_ignore_ascii_case(owner)
    {
        return Err(TaskError::Permanent(format!(
            "stage '{}' ({}) may not move load balancer '{name}' from application '{owner}' to '{asked}': a load balancer never changes application; remove \"application\" from the stage, or delete the balancer and create it in '{asked}'",
            stage.name, stage.stage_type
        )));
    }
    Ok(owner.clone())
}

struct Delete {
    providers: Providers,
}

#[async_trait]
impl Task for Delete {
    fn name(&self) -> &'static str {
        "deleteLoadBalancerTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let names = balancer_names(context);
        if names.is_empty() {
            return Err(TaskError::Permanent(
                "the stage names no load balancer: set \"loadBalancerName\"".into(),
            ));
        }
        let router = router(&self.providers, context)?;
        let account = account(context);
        for name in &names {
            if let Some(existing) = router
                .load_balancer(&account, name)
                .await
                .map_err(task_error)?
            {
                ctx.authorize(balancer_target(&existing), Access::Write)
                    .await?;
                router
                    .delete_load_balancer(&account, name)
                    .await
                    .map_err(task_error)?;
            }
        }
        Ok(TaskResult::succeeded().with_context("deletedLoadBalancers", json!(names)))
    }
}

/// The source networks a security group allows.
fn ingress_cidrs(context: &Map<String, Value>) -> Result<Vec<String>, TaskError> {
    let mut cidrs = strings(context.get("allowedCidrs")).unwrap_or_default();
    for key in ["ipIngress", "securityGroupIngress"] {
        for rule in context
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match rule.get("cidr").and_then(Value::as_str) {
                Some(cidr) => cidrs.push(cidr.trim().to_owned()),
                None => {
                    return Err(TaskError::Permanent(format!(
                        "{key} rule {rule} has no \"cidr\": load balancer firewalls allow source networks only"
                    )));
                }
            }
        }
    }
    cidrs.sort();
    cidrs.dedup();
    Ok(cidrs)
}

struct Firewall {
    providers: Providers,
}

#[async_trait]
impl Task for Firewall {
    fn name(&self) -> &'static str {
        "upsertSecurityGroupTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        let cidrs = ingress_cidrs(context)?;
        if cidrs.is_empty() {
            return Err(TaskError::Permanent(
                "the security group allows no source network; a load balancer without one admits everyone, so add \"ipIngress\" [{\"cidr\": …}]".into(),
            ));
        }
        let names = balancer_names(context);
        if names.is_empty() {
            return Err(TaskError::Permanent(
                "the security group names no load balancer: set \"loadBalancerName\" or \"name\""
                    .into(),
            ));
        }
        let router = router(&self.providers, context)?;
        let account = account(context);
        for name in &names {
            let existing = router.load_balancer(&account, name).await.map_err(task_error)?.ok_or_else(|| {
                TaskError::Permanent(format!(
                    "load balancer '{name}' does not exist in account '{account}'; create it with upsertLoadBalancer first"
                ))
            })?;
            ctx.authorize(balancer_target(&existing), Access::Write)
                .await?;
            if existing.spec.allowed_cidrs != cidrs {
                let mut spec = existing.spec.clone();
                spec.allowed_cidrs = cidrs.clone();
                // Keep the port the balancer actually listens on.
                spec.listen = existing.address.clone();
                router
                    .upsert_load_balancer(spec)
                    .await
                    .map_err(task_error)?;
            }
        }
        Ok(TaskResult::succeeded()
            .with_context("allowedCidrs", json!(cidrs))
            .with_context("loadBalancerNames", json!(names)))
    }
}

struct Shift {
    providers: Providers,
}

#[async_trait]
impl Task for Shift {
    fn name(&self) -> &'static str {
        "shiftTrafficTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let acting = acting(&self.providers, ctx)?;
        may_change_named(ctx, &acting.name).await?;
        let router = self
            .providers
            .router(acting.cluster.cloud_provider.as_deref())
            .ok();
        let group = acting.group().await?;
        // Fixing weights changes every balancer the group is in: the group and each
        // balancer must be the stage's to change, checked again on every run.
        may_change(ctx, &group).await?;
        may_route_task(
            ctx,
            router.map(AsRef::as_ref),
            &Joining::group(&group),
            &group.load_balancers,
        )
        .await?;
        let percentage = whole(&ctx.stage.context, "percentage")
            .map(|p| u32::try_from(p.clamp(0, 100)).unwrap_or(100));
        let mut weights = BTreeMap::new();
        if let Some(pct) = percentage {
            weights.insert(group.name.clone(), pct);
            let others: Vec<String> = server_groups(acting.provider.as_ref(), &acting.cluster)
                .await?
                .into_iter()
                .filter(|g| !g.disabled && g.name != group.name)
                .map(|g| g.name)
                .collect();
            let rest = 100 - pct.min(100);
            let count = u32::try_from(others.len()).unwrap_or(1).max(1);
            for (i, name) in others.into_iter().enumerate() {
                let share = rest / count + u32::from(i == 0) * (rest % count);
                if share > 0 {
                    weights.insert(name, share);
                }
            }
        }
        if let Some(router) = router {
            for balancer in &group.load_balancers {
                // Setting weights is idempotent: a repeat sets the same split.
                router
                    .set_weights(&acting.cluster.account, balancer, weights.clone())
                    .await
                    .map_err(task_error)?;
            }
        }
        if group.disabled {
            acting
                .provider
                .enable_server_group(&acting.cluster.account, &group.name)
                .await
                .map_err(task_error)?;
        }
        Ok(TaskResult::succeeded().with_context("weights", json!(weights)))
    }
}

/// Each load balancer has a name and an account.
fn check_upsert_load_balancer(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    check_cloud_provider(stage, context, report);
    if stage.has("loadBalancers") {
        for (_, lb) in stage.objects("loadBalancers", "a load balancer", report) {
            lb.required_string("name", "the load balancer name", report);
            lb.require_account(report);
        }
        return;
    }
    stage.required_string("name", "the load balancer name", report);
    stage.require_account(report);
}

/// A firewall has a name and an account.
fn check_upsert_security_group(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    check_cloud_provider(stage, context, report);
    if !stage.has("name") && !stage.has("securityGroupName") {
        report.push(Problem::error(
            stage.at("name"),
            "the firewall has no name ('name')",
        ));
    }
    stage.string("name", report);
    stage.string("securityGroupName", report);
    stage.require_account(report);
}

/// A deletion names the load balancer and its account.
fn check_delete_load_balancer(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    stage.required_string("loadBalancerName", "the load balancer to delete", report);
    stage.require_account(report);
    check_cloud_provider(stage, context, report);
}

/// A traffic shift names its server group (or a cluster and target) and its share.
fn check_shift_traffic(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    check_server_group_target(stage, context, report);
    if let Some(percent) = stage.number("percentage", report)
        && !(0.0..=100.0).contains(&percent)
    {
        report.push(Problem::error(
            stage.at("percentage"),
            format!("percentage must be between 0 and 100, not {percent}"),
        ));
    }
}
