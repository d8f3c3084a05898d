//! `gennaker cluster …`, `gennaker servergroup …` and `gennaker loadbalancer …`.
//!
//! Operations on server groups run on the server as orchestration executions: the
//! command prints the execution to follow, or follows it with `--watch`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Context;
use super::execution::watch;
use crate::args::{ClusterCommand, LoadBalancerCommand, ServerGroupCommand, ServerGroupTarget};
use crate::error::CliError;
use crate::output::{self, OutputFormat, details, emit, table, time};

/// The fields of a server group the tables show.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerGroupView {
    name: String,
    account: String,
    capacity: CapacityView,
    disabled: bool,
    #[serde(default)]
    load_balancers: Vec<String>,
    #[serde(default)]
    instances: Vec<InstanceView>,
    created_time: Option<i64>,
}

impl ServerGroupView {
    fn cluster(&self) -> String {
        gennaker_core::parse_name(&self.name).cluster()
    }

    fn health(&self) -> String {
        let up = self.instances.iter().filter(|i| i.health == "Up").count();
        format!("{up}/{} up", self.capacity.desired)
    }

    fn state(&self) -> &'static str {
        if self.disabled { "disabled" } else { "enabled" }
    }
}

#[derive(Debug, Deserialize)]
struct CapacityView {
    min: u32,
    max: u32,
    desired: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceView {
    id: String,
    health: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    restarts: u32,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancerView {
    name: String,
    account: String,
    address: String,
    #[serde(default)]
    allowed_cidrs: Vec<String>,
    #[serde(default)]
    weights: BTreeMap<String, u32>,
    /// What it routes to in front of the server groups (a Kubernetes Ingress's Services).
    #[serde(default)]
    backends: Vec<String>,
    #[serde(default)]
    details: BTreeMap<String, Value>,
}

impl LoadBalancerView {
    /// The TRAFFIC cell: an ingress-nginx canary's weight, the Services it goes
    /// through, then each server group's share.
    fn traffic(&self) -> String {
        let shares: Vec<String> = self
            .weights
            .iter()
            .map(|(group, weight)| format!("{group} {weight}%"))
            .collect();
        let mut cell = String::new();
        if let Some(weight) = self.details.get("canaryWeight").and_then(Value::as_u64) {
            cell.push_str(&format!("canary {weight}% "));
        }
        if !self.backends.is_empty() {
            cell.push_str(&format!("via {}: ", self.backends.join(", ")));
        }
        cell.push_str(&output::list(&shares));
        cell
    }
}

pub(super) async fn clusters(
    ctx: &mut Context<'_>,
    command: ClusterCommand,
) -> Result<(), CliError> {
    let ClusterCommand::List {
        app,
        cloud_provider,
    } = command;
    let raw = ctx
        .client()?
        .get(
            &["applications", &app, "serverGroups"],
            &provider_query(cloud_provider),
        )
        .await?;
    emit(ctx.out, ctx.format, raw, |groups: &Vec<ServerGroupView>| {
        if groups.is_empty() {
            return format!(
                "Application '{app}' has no server groups yet; a deploy stage creates them."
            );
        }
        table(
            [
                "CLUSTER",
                "SERVER GROUP",
                "ACCOUNT",
                "STATE",
                "HEALTH",
                "CAPACITY",
                "CREATED",
            ],
            groups
                .iter()
                .map(|g| {
                    [
                        g.cluster(),
                        g.name.clone(),
                        g.account.clone(),
                        g.state().to_owned(),
                        g.health(),
                        format!(
                            "{}/{}/{}",
                            g.capacity.min, g.capacity.desired, g.capacity.max
                        ),
                        time(g.created_time),
                    ]
                })
                .collect(),
        )
    })
}

pub(super) async fn load_balancers(
    ctx: &mut Context<'_>,
    command: LoadBalancerCommand,
) -> Result<(), CliError> {
    let LoadBalancerCommand::List {
        app,
        cloud_provider,
    } = command;
    let raw = ctx
        .client()?
        .get(
            &["applications", &app, "loadBalancers"],
            &provider_query(cloud_provider),
        )
        .await?;
    emit(
        ctx.out,
        ctx.format,
        raw,
        |balancers: &Vec<LoadBalancerView>| {
            table(
                ["NAME", "ACCOUNT", "ADDRESS", "TRAFFIC", "ALLOWED"],
                balancers
                    .iter()
                    .map(|lb| {
                        [
                            lb.name.clone(),
                            lb.account.clone(),
                            format!("http://{}", lb.address),
                            lb.traffic(),
                            if lb.allowed_cidrs.is_empty() {
                                "everyone".to_owned()
                            } else {
                                lb.allowed_cidrs.join(", ")
                            },
                        ]
                    })
                    .collect(),
            )
        },
    )
}

pub(super) async fn server_group(
    ctx: &mut Context<'_>,
    command: ServerGroupCommand,
) -> Result<(), CliError> {
    let (operation, target, body) = match command {
        ServerGroupCommand::Get {
            app,
            name,
            cloud_provider,
        } => return get(ctx, &app, &name, cloud_provider).await,
        ServerGroupCommand::Resize {
            target,
            desired,
            min,
            max,
        } => {
            let capacity = json!({
                "min": min.unwrap_or(desired),
                "max": max.unwrap_or(desired),
                "desired": desired,
            });
            ("resize", target, json!({ "capacity": capacity }))
        }
        ServerGroupCommand::Enable(target) => ("enable", target, json!({})),
        ServerGroupCommand::Disable(target) => ("disable", target, json!({})),
        ServerGroupCommand::Destroy(target) => ("destroy", target, json!({})),
        ServerGroupCommand::Rollback(target) => ("rollback", target, json!({})),
    };
    operate(ctx, operation, &target, &body).await
}

/// `?cloudProvider=…` when one is given.
fn provider_query(cloud_provider: Option<String>) -> Vec<(&'static str, String)> {
    cloud_provider
        .map(|p| vec![("cloudProvider", p)])
        .unwrap_or_default()
}

async fn get(
    ctx: &mut Context<'_>,
    app: &str,
    name: &str,
    cloud_provider: Option<String>,
) -> Result<(), CliError> {
    let raw = ctx
        .client()?
        .get(
            &["applications", app, "serverGroups", name],
            &provider_query(cloud_provider),
        )
        .await?;
    emit(ctx.out, ctx.format, raw, |group: &ServerGroupView| {
        let summary = details(vec![
            ("Server group", group.name.clone()),
            ("Cluster", group.cluster()),
            ("Account", group.account.clone()),
            ("State", group.state().to_owned()),
            ("Health", group.health()),
            (
                "Capacity",
                format!(
                    "min {} / desired {} / max {}",
                    group.capacity.min, group.capacity.desired, group.capacity.max
                ),
            ),
            ("Load balancers", output::list(&group.load_balancers)),
            ("Created", time(group.created_time)),
        ]);
        let instances = table(
            ["INSTANCE", "HEALTH", "ADDRESS", "RESTARTS", "REASON"],
            group
                .instances
                .iter()
                .map(|i| {
                    [
                        i.id.clone(),
                        i.health.clone(),
                        output::text(i.address.as_deref()),
                        i.restarts.to_string(),
                        output::text(i.reason.as_deref()),
                    ]
                })
                .collect(),
        );
        format!("{summary}\n\n{instances}")
    })
}

async fn operate(
    ctx: &mut Context<'_>,
    operation: &str,
    target: &ServerGroupTarget,
    body: &Value,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let mut body = body.clone();
    if let Some(map) = body.as_object_mut() {
        if let Some(provider) = &target.cloud_provider {
            map.insert("cloudProvider".into(), json!(provider));
        }
        if let Some(account) = &target.account {
            map.insert("account".into(), json!(account));
        }
    }
    let raw = client
        .post(
            &[
                "applications",
                &target.app,
                "serverGroups",
                &target.name,
                operation,
            ],
            &body,
        )
        .await?;
    let execution = raw
        .get("executionId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if target.watch {
        return watch(ctx, &client, &execution, None).await;
    }
    if ctx.format != OutputFormat::Table {
        return output::write_structured(ctx.out, ctx.format, &raw);
    }
    ctx.say(&format!(
        "Started: {operation} {} (execution {execution}); follow it with `gennaker execution watch {execution}`.",
        target.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ingress_shows_its_services_and_a_canary_its_weight() {
        let view: LoadBalancerView = serde_json::from_value(json!({
            "name": "ingress shop-canary", "account": "k8s", "address": "shop.example",
            "weights": {"shop-prod-canary-v000": 100},
            "backends": ["service shop-web-canary"],
            "details": {"kind": "ingress", "canaryWeight": 10}
        }))
        .unwrap();
        assert_eq!(
            view.traffic(),
            "canary 10% via service shop-web-canary: shop-prod-canary-v000 100%"
        );
        let plain: LoadBalancerView = serde_json::from_value(json!({
            "name": "shop-lb", "account": "local", "address": "127.0.0.1:8080",
            "weights": {"shop-prod-v000": 100}
        }))
        .unwrap();
        assert_eq!(plain.traffic(), "shop-prod-v000 100%");
    }
}
