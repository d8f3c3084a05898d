//! The Kubernetes traffic router: Services as load balancers, and traffic split by
//! ingress-nginx canary Ingresses.
//!
//! A load balancer is a Service (`web`, or Spinnaker's `service web`); the server
//! groups naming it in `traffic.spinnaker.io/load-balancers` take its traffic while
//! enabled. Fixing weights (a canary release's steps) records them on the Service
//! (`traffic.gennaker.io/weights`), keeps in the Service only the named groups of the
//! cluster with the largest share, and sends the other named groups' share through a
//! canary Service `<service>-canary` and, beside every Ingress routing to the Service,
//! a canary Ingress `<ingress>-canary` with `nginx.ingress.kubernetes.io/canary:
//! "true"` and `canary-weight` (and `canary-by-header` when the Service's
//! `traffic.gennaker.io/canary-by-header` annotation asks for it). Empty weights
//! remove the canary Ingresses and Service and put every enabled group back.
//!
//! The clusters view shows Services as load balancers by their names and Ingresses as
//! `ingress <name>`, with the Services they route to and the share of each server
//! group behind them (a canary Ingress with its `canaryWeight`).
//!
//! Services and Ingresses themselves are manifests: `upsertLoadBalancer` and
//! `deleteLoadBalancer` refuse, pointing at `deployManifest` / `deleteManifest`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gennaker_deploy::{DeployError, LoadBalancer, LoadBalancerSpec, ServerGroup, TrafficRouter};
use serde_json::{Value, json};

use crate::cluster::{Cascade, DeleteOptions, PatchBody};
use crate::error::KubeError;
use crate::manifest::annotation;
use crate::provider::{KubernetesProvider, Located, deploy_error};
use crate::view;

/// The Service a load balancer name means (`web` or `service web`).
fn service_name(balancer: &str) -> &str {
    balancer.strip_prefix("service ").unwrap_or(balancer).trim()
}

impl KubernetesProvider {
    /// The namespace of Service `name` in the account (one of its namespaces).
    async fn balancer_namespace(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<String>, DeployError> {
        let snapshot = self.snapshot(account).await?;
        let namespaces: Vec<&str> = snapshot
            .services
            .iter()
            .filter(|s| view::text(s, "/metadata/name") == name)
            .map(|s| view::text(s, "/metadata/namespace"))
            .collect();
        match namespaces.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).to_owned())),
            many => Err(DeployError::Invalid(format!(
                "load balancer '{name}' is ambiguous in account '{account}': there is a Service '{name}' in namespaces {}; limit the account's namespaces",
                many.join(", ")
            ))),
        }
    }

    async fn groups(&self, account: &str) -> Result<Vec<ServerGroup>, DeployError> {
        let snapshot = self.snapshot(account).await?;
        Ok(view::server_groups(
            account,
            &snapshot.workloads,
            &snapshot.pods,
            &snapshot.services,
        ))
    }

    /// Creates, updates or removes the canary Service and Ingresses of `service`.
    async fn route_canary(
        &self,
        account: &str,
        namespace: &str,
        service: &Value,
        weight: Option<u32>,
    ) -> Result<(), DeployError> {
        let account = self.account(account)?;
        let name = view::text(service, "/metadata/name");
        let canary_name = format!("{name}-canary");
        let services = account
            .resolve("v1", "Service")
            .await
            .map_err(deploy_error)?;
        let ingresses = account
            .resolve("networking.k8s.io/v1", "Ingress")
            .await
            .map_err(deploy_error)?;
        let live = account
            .list(&ingresses, Some(namespace), "")
            .await
            .map_err(deploy_error)?;
        let primaries: Vec<&Value> = live
            .iter()
            .filter(|i| !view::is_canary_ingress(i))
            .filter(|i| view::ingress_backends(i).iter().any(|b| b == name))
            .collect();
        let delete = DeleteOptions {
            cascade: Cascade::Background,
            grace_period_seconds: None,
        };
        match weight {
            Some(weight) => {
                if primaries.is_empty() {
                    return Err(DeployError::Invalid(format!(
                        "load balancer '{name}' in namespace '{namespace}' has no Ingress routing to it: a canary split needs an ingress-nginx Ingress whose backend is Service '{name}'; deploy one with deployManifest"
                    )));
                }
                let manifest = view::canary_service(service, &canary_name);
                account
                    .apply(&services, Some(namespace), &canary_name, &manifest)
                    .await
                    .map_err(deploy_error)?;
                let header = annotation(service, view::CANARY_BY_HEADER);
                for primary in primaries {
                    let canary = view::canary_ingress(primary, name, &canary_name, weight, header);
                    let ingress_name = view::text(&canary, "/metadata/name").to_owned();
                    account
                        .apply(&ingresses, Some(namespace), &ingress_name, &canary)
                        .await
                        .map_err(deploy_error)?;
                }
            }
            None => {
                for canary in live.iter().filter(|i| {
                    view::string_map(i, "/metadata/labels")
                        .get(view::CANARY_OF)
                        .is_some_and(|of| of == name)
                }) {
                    account
                        .delete(
                            &ingresses,
                            Some(namespace),
                            view::text(canary, "/metadata/name"),
                            &delete,
                        )
                        .await
                        .map_err(deploy_error)?;
                }
                account
                    .delete(&services, Some(namespace), &canary_name, &delete)
                    .await
                    .map_err(deploy_error)?;
            }
        }
        Ok(())
    }
}

impl KubernetesProvider {
    /// Ingress `name` of the account as a load balancer (a name used in two
    /// namespaces is refused, naming them).
    async fn ingress_balancer(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<LoadBalancer>, DeployError> {
        let snapshot = self.snapshot(account).await?;
        let found: Vec<&Value> = snapshot
            .ingresses
            .iter()
            .filter(|i| view::text(i, "/metadata/name") == name)
            .collect();
        let ingress = match found.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            many => {
                return Err(DeployError::Invalid(format!(
                    "load balancer 'ingress {name}' is ambiguous in account '{account}': there is an Ingress '{name}' in namespaces {}; limit the account's namespaces",
                    many.iter()
                        .map(|i| view::text(i, "/metadata/namespace"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let groups = view::server_groups(
            account,
            &snapshot.workloads,
            &snapshot.pods,
            &snapshot.services,
        );
        Ok(Some(view::ingress_load_balancer(
            account,
            ingress,
            &snapshot.services,
            &snapshot.workloads,
            &groups,
        )))
    }
}

#[async_trait]
impl TrafficRouter for KubernetesProvider {
    async fn upsert_load_balancer(
        &self,
        spec: LoadBalancerSpec,
    ) -> Result<LoadBalancer, DeployError> {
        Err(DeployError::Unsupported(format!(
            "load balancer '{}': on Kubernetes a load balancer is a Service (and its Ingress); deploy it with a deployManifest stage",
            spec.name
        )))
    }

    async fn delete_load_balancer(&self, _account: &str, name: &str) -> Result<(), DeployError> {
        Err(DeployError::Unsupported(format!(
            "load balancer '{name}': on Kubernetes a load balancer is a Service (and its Ingress); delete it with a deleteManifest stage"
        )))
    }

    async fn load_balancer(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<LoadBalancer>, DeployError> {
        if self.accounts.get(account).is_none() {
            return Ok(None);
        }
        if let Some(ingress) = name.strip_prefix("ingress ") {
            return self.ingress_balancer(account, ingress.trim()).await;
        }
        let name = service_name(name);
        let Some(namespace) = self.balancer_namespace(account, name).await? else {
            return Ok(None);
        };
        let Some(service) = self
            .service(&*self.account(account)?, &namespace, name)
            .await?
        else {
            return Ok(None);
        };
        let groups = self.groups(account).await?;
        Ok(Some(view::load_balancer(account, &service, &groups)))
    }

    async fn load_balancers(&self, application: &str) -> Result<Vec<LoadBalancer>, DeployError> {
        let mut all = Vec::new();
        for account in self.accounts.names() {
            let snapshot = self.snapshot(account).await?;
            let groups = view::server_groups(
                account,
                &snapshot.workloads,
                &snapshot.pods,
                &snapshot.services,
            );
            let mut shown: Vec<(&str, &str)> = Vec::new();
            for service in &snapshot.services {
                let name = view::text(service, "/metadata/name");
                let named = groups.iter().any(|g| {
                    g.moniker.app == application && g.load_balancers.iter().any(|b| b == name)
                });
                if view::application_of(service) == application || named {
                    all.push(view::load_balancer(account, service, &groups));
                    shown.push((view::text(service, "/metadata/namespace"), name));
                }
            }
            // An Ingress is the application's when it says so or routes to one of its
            // Services or server groups.
            for ingress in &snapshot.ingresses {
                let balancer = view::ingress_load_balancer(
                    account,
                    ingress,
                    &snapshot.services,
                    &snapshot.workloads,
                    &groups,
                );
                let namespace = view::text(ingress, "/metadata/namespace");
                let routes_to_ours = view::ingress_backends(ingress)
                    .iter()
                    .any(|b| shown.contains(&(namespace, b.as_str())));
                let serves_ours = balancer.weights.keys().any(|name| {
                    groups
                        .iter()
                        .any(|g| &g.name == name && g.moniker.app == application)
                });
                if balancer.spec.application == application || routes_to_ours || serves_ours {
                    all.push(balancer);
                }
            }
        }
        all.sort_by(|a, b| (&a.spec.account, &a.spec.name).cmp(&(&b.spec.account, &b.spec.name)));
        Ok(all)
    }

    async fn set_weights(
        &self,
        account: &str,
        load_balancer: &str,
        weights: BTreeMap<String, u32>,
    ) -> Result<LoadBalancer, DeployError> {
        if load_balancer.starts_with("ingress ") {
            return Err(DeployError::Invalid(format!(
                "load balancer '{load_balancer}': traffic weights are set on the Service an Ingress routes to (its canary Ingress follows them); name the Service instead"
            )));
        }
        let name = service_name(load_balancer);
        let namespace = self
            .balancer_namespace(account, name)
            .await?
            .ok_or_else(|| DeployError::no_load_balancer(name))?;
        let kube_account = self.account(account)?;
        let services = kube_account
            .resolve("v1", "Service")
            .await
            .map_err(deploy_error)?;
        let pin = (!weights.is_empty()).then_some(&weights);
        let recorded = pin.map_or(Value::Null, |w| {
            json!(serde_json::to_string(w).unwrap_or_default())
        });
        let service = match kube_account
            .patch(
                &services,
                Some(&namespace),
                name,
                PatchBody::Merge(json!({"metadata": {"annotations": {view::WEIGHTS: recorded}}})),
            )
            .await
        {
            Ok(service) => service,
            Err(KubeError::Refused { code: 404, .. }) => {
                return Err(DeployError::no_load_balancer(name));
            }
            Err(err) => return Err(deploy_error(err)),
        };
        let groups = self.groups(account).await?;
        let cluster_of = |group: &str| {
            groups
                .iter()
                .find(|g| g.name == group)
                .map(ServerGroup::cluster)
        };
        let stable = pin.and_then(|pin| view::stable_cluster(pin, &cluster_of));
        let selector = view::string_map(&service, "/spec/selector");
        let snapshot = self.snapshot(account).await?;
        let in_namespace = view::services_in(&snapshot.services, &namespace);
        // Canary side first, so the stable side shrinks only once the canary can serve.
        let mut moves: Vec<(view::Side, Located, Value)> = Vec::new();
        for workload in &snapshot.workloads {
            if view::text(workload, "/metadata/namespace") != namespace
                || !view::traffic_services(workload).iter().any(|s| s == name)
            {
                continue;
            }
            let Some(group) = groups
                .iter()
                .find(|g| g.name == view::text(workload, "/metadata/name"))
            else {
                continue;
            };
            let at = Located {
                account: kube_account.clone(),
                kind: match view::text(workload, "/kind") {
                    "Deployment" => "Deployment",
                    "StatefulSet" => "StatefulSet",
                    "DaemonSet" => "DaemonSet",
                    _ => "ReplicaSet",
                },
                namespace: namespace.clone(),
                name: group.name.clone(),
            };
            // Enabled or not as it is now, not as the watch last saw it: the relabel
            // brings every pod to the side decided here, so a cache that has not yet
            // seen a disable must not put the disabled group's pods back.
            let live = match self.live(&at).await {
                Ok(live) => live,
                // Deleted since the cache saw it: nothing to move.
                Err(DeployError::NotFound { .. }) => continue,
                Err(err) => return Err(err),
            };
            let side = view::side(
                pin,
                stable.as_deref(),
                &group.name,
                &group.cluster(),
                view::is_enabled(&live, &in_namespace),
            );
            moves.push((side, at, live));
        }
        let weight = pin.map(|pin| view::canary_weight(pin, &cluster_of));
        let canary = weight.filter(|w| *w > 0);
        if canary.is_some() {
            self.route_canary(account, &namespace, &service, canary)
                .await?;
        }
        moves.sort_by_key(|(side, _, _)| match side {
            view::Side::Canary => 0,
            view::Side::Stable => 1,
            view::Side::Out => 2,
        });
        for (side, at, workload) in moves {
            self.relabel(&at, &workload, view::side_labels(&selector, name, side))
                .await?;
        }
        if canary.is_none() {
            self.route_canary(account, &namespace, &service, None)
                .await?;
        }
        tracing::info!(account = %account, load_balancer = %name, weights = ?weights, canary_weight = ?canary, "kubernetes traffic weights set");
        Ok(view::load_balancer(account, &service, &groups))
    }
}
