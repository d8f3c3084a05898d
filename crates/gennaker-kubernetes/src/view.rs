//! Live Kubernetes objects in the generic deployment model: workloads as server
//! groups (their pods as instances with health), Services and Ingresses
//! (`ingress <name>`, with the Services they route to) as load balancers, and which
//! side of a load balancer's traffic a workload belongs on. Pure: no I/O.
//!
//! A workload joins the Services its `traffic.spinnaker.io/load-balancers`
//! annotation names (Spinnaker's form, `["service web"]`) by carrying each Service's
//! selector labels on its pod template (and, for a ReplicaSet, on its pods). While a
//! load balancer's weights are fixed (`traffic.gennaker.io/weights` on the Service),
//! the named groups of the cluster holding the largest share stay in the Service;
//! the named groups of other clusters (a canary release's baseline and canary) carry
//! `traffic.gennaker.io/canary-of: <service>` instead, which the canary Service
//! selects; a group the weights do not name gets no traffic.

use std::collections::{BTreeMap, HashMap};

use gennaker_core::naming::{Moniker, parse_name};
use gennaker_deploy::{
    Capacity, HealthState, Instance, LoadBalancer, LoadBalancerSpec, ServerGroup, ServerGroupOrigin,
};
use serde_json::{Value, json};

use crate::manifest::{
    LABEL_NAME, MONIKER_APPLICATION, MONIKER_DETAIL, MONIKER_SEQUENCE, MONIKER_STACK, annotation,
};
use crate::stages::PROVIDER;
use crate::status::pod_failure;
use crate::traffic::Label;

/// Spinnaker's list of the Services a workload takes traffic from.
pub const LOAD_BALANCERS: &str = "traffic.spinnaker.io/load-balancers";
/// `"true"` / `"false"`: whether the generic stages enabled or disabled the workload
/// (without it, Spinnaker's rule: disabled when it names Services and none selects it).
pub const ENABLED: &str = "traffic.gennaker.io/enabled";
/// On a Service: the traffic share per server group the router fixed (JSON object).
pub const WEIGHTS: &str = "traffic.gennaker.io/weights";
/// On a Service: the header the canary Ingress routes on (`canary-by-header`).
pub const CANARY_BY_HEADER: &str = "traffic.gennaker.io/canary-by-header";
/// The label the canary Service of `<service>` selects, and that marks its canary
/// Service and Ingresses.
pub const CANARY_OF: &str = "traffic.gennaker.io/canary-of";
/// The label selecting a server group's pods (a group the provider created).
pub const SERVER_GROUP: &str = "gennaker.io/server-group";
/// The stage that created a server group (JSON `{executionId, stageId}`).
pub const ORIGIN: &str = "gennaker.io/origin";
/// The spec a server group was created from (JSON).
pub const SPEC: &str = "gennaker.io/spec";
/// The min and max of a server group's capacity (JSON `{min, max}`).
pub const CAPACITY: &str = "gennaker.io/capacity";
/// The ingress-nginx annotation prefix.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// A string map at `pointer`.
pub fn string_map(value: &Value, pointer: &str) -> BTreeMap<String, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A string field at `pointer`, or `""`.
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The labels a workload's pods get (a bare object's own labels for a Pod).
pub fn template_labels(workload: &Value) -> BTreeMap<String, String> {
    string_map(workload, "/spec/template/metadata/labels")
}

/// The Services a workload's traffic annotation names (`service web` → `web`).
pub fn traffic_services(workload: &Value) -> Vec<String> {
    annotation(workload, LOAD_BALANCERS)
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| {
            let mut parts = entry.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(kind), Some(name), None) if kind.eq_ignore_ascii_case("service") => {
                    Some(name.to_owned())
                }
                (Some(name), None, None) => Some(name.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// Whether a Service's non-empty selector picks pods with `labels`.
pub fn selects(service: &Value, labels: &BTreeMap<String, String>) -> bool {
    let selector = string_map(service, "/spec/selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a workload takes traffic: what the generic stages last set, else
/// Spinnaker's rule (it names Services and one of `services` selects it). A
/// blue/green version's preview Services do not count: behind them only, it waits
/// for its promotion, which the generic enable does.
pub fn is_enabled(workload: &Value, services: &[&Value]) -> bool {
    match annotation(workload, ENABLED) {
        Some("false") => false,
        Some("true") => true,
        _ => {
            let labels = template_labels(workload);
            let preview: Vec<String> = crate::traffic::preview_load_balancers(workload)
                .unwrap_or_default()
                .iter()
                .filter_map(|s| crate::traffic::service_name(s).ok())
                .collect();
            traffic_services(workload).is_empty()
                || services.iter().any(|service| {
                    !preview.iter().any(|p| p == text(service, "/metadata/name"))
                        && selects(service, &labels)
                })
                || labels.contains_key(CANARY_OF)
        }
    }
}

/// The `vNNN` suffix of a name.
fn version_suffix(name: &str) -> Option<(&str, u32)> {
    let (base, version) = name.rsplit_once("-v")?;
    (version.len() >= 3 && version.bytes().all(|b| b.is_ascii_digit()))
        .then(|| version.parse().ok().map(|v| (base, v)))
        .flatten()
}

/// A workload's moniker: the application from its moniker annotation (or its
/// `app.kubernetes.io/name` label), stack and detail from theirs or from its name as
/// Frigga reads it, the sequence from its `-vNNN`. `None`: no application.
pub fn moniker(workload: &Value) -> Option<Moniker> {
    let app = annotation(workload, MONIKER_APPLICATION)
        .map(str::to_owned)
        .or_else(|| string_map(workload, "/metadata/labels").remove(LABEL_NAME))
        .filter(|app| !app.is_empty())?;
    let name = text(workload, "/metadata/name");
    let (base, suffix) = match version_suffix(name) {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    };
    let sequence = annotation(workload, MONIKER_SEQUENCE)
        .and_then(|s| s.parse().ok())
        .or(suffix);
    let stack = annotation(workload, MONIKER_STACK).filter(|s| !s.is_empty());
    let detail = annotation(workload, MONIKER_DETAIL).filter(|s| !s.is_empty());
    let (stack, detail) = if stack.is_some() || detail.is_some() {
        (stack.map(str::to_owned), detail.map(str::to_owned))
    } else {
        let parsed = parse_name(base);
        if parsed.app == app {
            (parsed.stack, parsed.detail)
        } else {
            (None, Some(base.to_owned()))
        }
    };
    Some(Moniker {
        app,
        stack,
        detail,
        sequence,
    })
}

/// A pod as an instance: `Up` when Ready (`OutOfService` while its group is
/// disabled), `Down` with the reason when it failed or is not ready, `Starting` while
/// Pending.
pub fn instance(pod: &Value, disabled: bool) -> Instance {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| text(c, "/type") == "Ready");
    let is_ready = ready.is_some_and(|c| text(c, "/status") == "True");
    let phase = text(pod, "/status/phase");
    let (health, reason) = if pod.pointer("/metadata/deletionTimestamp").is_some() {
        (HealthState::Down, Some("terminating".to_owned()))
    } else if let Some(failure) = pod_failure(pod) {
        (HealthState::Down, Some(failure))
    } else if is_ready {
        if disabled {
            (HealthState::OutOfService, None)
        } else {
            (HealthState::Up, None)
        }
    } else if phase.is_empty() || phase == "Pending" {
        (HealthState::Starting, None)
    } else {
        let why = ready
            .map(|c| text(c, "/message"))
            .filter(|m| !m.is_empty())
            .unwrap_or("its Ready condition is not True");
        (HealthState::Down, Some(format!("not ready: {why}")))
    };
    let restarts = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_u64))
        .sum::<u64>();
    let mut details = BTreeMap::new();
    for (key, pointer) in [
        ("namespace", "/metadata/namespace"),
        ("node", "/spec/nodeName"),
        ("phase", "/status/phase"),
    ] {
        let value = text(pod, pointer);
        if !value.is_empty() {
            details.insert(key.to_owned(), json!(value));
        }
    }
    Instance {
        id: text(pod, "/metadata/name").to_owned(),
        health,
        address: Some(text(pod, "/status/podIP"))
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned),
        restarts: u32::try_from(restarts).unwrap_or(u32::MAX),
        reason,
        details,
    }
}

fn owners(object: &Value) -> Vec<&str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("uid").and_then(Value::as_str))
        .collect()
}

fn created_ms(object: &Value) -> i64 {
    text(object, "/metadata/creationTimestamp")
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_millisecond())
}

/// A workload's capacity: its replicas, with the min and max the generic resize
/// recorded (when they still hold); a DaemonSet's scheduled count.
pub fn capacity(workload: &Value) -> Capacity {
    if text(workload, "/kind") == "DaemonSet" {
        let desired = workload
            .pointer("/status/desiredNumberScheduled")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        return Capacity::fixed(u32::try_from(desired).unwrap_or(u32::MAX));
    }
    let desired = workload
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let desired = u32::try_from(desired).unwrap_or(u32::MAX);
    annotation(workload, CAPACITY)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|c| {
            let min = u32::try_from(c.get("min")?.as_u64()?).ok()?;
            let max = u32::try_from(c.get("max")?.as_u64()?).ok()?;
            Some(Capacity { min, max, desired })
        })
        .filter(|c| c.validate().is_ok())
        .unwrap_or(Capacity::fixed(desired))
}

/// What a workload runs: the spec it was created from, else its namespace, kind and
/// pod spec.
fn spec(workload: &Value) -> Value {
    annotation(workload, SPEC)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| {
            json!({
                "namespace": text(workload, "/metadata/namespace"),
                "kind": text(workload, "/kind"),
                "podSpec": workload.pointer("/spec/template/spec").cloned().unwrap_or(Value::Null),
            })
        })
}

/// The Services of `namespace`.
pub fn services_in<'a>(services: &'a [Value], namespace: &str) -> Vec<&'a Value> {
    services
        .iter()
        .filter(|s| text(s, "/metadata/namespace") == namespace)
        .collect()
}

/// The server groups among `workloads` (Deployments, ReplicaSets not owned by a
/// Deployment, StatefulSets, DaemonSets that name an application), their pods as
/// instances.
pub fn server_groups(
    account: &str,
    workloads: &[Value],
    pods: &[Value],
    services: &[Value],
) -> Vec<ServerGroup> {
    let deployment_uids: Vec<&str> = workloads
        .iter()
        .filter(|w| text(w, "/kind") == "Deployment")
        .map(|w| text(w, "/metadata/uid"))
        .collect();
    // A Deployment's pods belong to its ReplicaSets: pod owner → the server group.
    let mut group_of: HashMap<&str, &str> = HashMap::new();
    for workload in workloads {
        let uid = text(workload, "/metadata/uid");
        group_of.insert(uid, uid);
        if text(workload, "/kind") == "ReplicaSet"
            && let Some(owner) = owners(workload)
                .into_iter()
                .find(|o| deployment_uids.contains(o))
        {
            group_of.insert(uid, owner);
        }
    }
    let mut pods_of: HashMap<&str, Vec<&Value>> = HashMap::new();
    for pod in pods {
        if let Some(group) = owners(pod).into_iter().find_map(|o| group_of.get(o)) {
            pods_of.entry(group).or_default().push(pod);
        }
    }
    workloads
        .iter()
        .filter(|w| {
            text(w, "/kind") != "ReplicaSet"
                || !owners(w).iter().any(|o| deployment_uids.contains(o))
        })
        .filter_map(|workload| {
            let moniker = moniker(workload)?;
            let namespace = text(workload, "/metadata/namespace");
            let services = services_in(services, namespace);
            let disabled = !is_enabled(workload, &services);
            let mut load_balancers = traffic_services(workload);
            if load_balancers.is_empty() {
                let labels = template_labels(workload);
                load_balancers = services
                    .iter()
                    .filter(|s| selects(s, &labels))
                    .map(|s| text(s, "/metadata/name").to_owned())
                    .collect();
            }
            let uid = text(workload, "/metadata/uid");
            let mut instances: Vec<Instance> = pods_of
                .get(uid)
                .into_iter()
                .flatten()
                .map(|pod| instance(pod, disabled))
                .collect();
            instances.sort_by(|a, b| a.id.cmp(&b.id));
            Some(ServerGroup {
                name: text(workload, "/metadata/name").to_owned(),
                moniker,
                account: account.to_owned(),
                cloud_provider: PROVIDER.to_owned(),
                capacity: capacity(workload),
                disabled,
                load_balancers,
                instances,
                created_time: created_ms(workload),
                spec: spec(workload),
                origin: annotation(workload, ORIGIN)
                    .and_then(|text| serde_json::from_str::<ServerGroupOrigin>(text).ok()),
            })
        })
        .collect()
}

/// The weights the router fixed on a Service, if any.
pub fn pinned(service: &Value) -> Option<BTreeMap<String, u32>> {
    annotation(service, WEIGHTS).and_then(|text| serde_json::from_str(text).ok())
}

/// Where a workload belongs with respect to one load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// In the Service (its selector labels on the pods).
    Stable,
    /// In the canary Service (`traffic.gennaker.io/canary-of`).
    Canary,
    /// In neither.
    Out,
}

/// The cluster holding the largest share of `pin` (ties: the first name), given the
/// cluster of each group name; groups that do not exist are left out.
pub fn stable_cluster(
    pin: &BTreeMap<String, u32>,
    cluster_of: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut best: Option<(u32, String)> = None;
    for (name, weight) in pin {
        if *weight == 0 {
            continue;
        }
        let Some(cluster) = cluster_of(name) else {
            continue;
        };
        if best.as_ref().is_none_or(|(w, _)| weight > w) {
            best = Some((*weight, cluster));
        }
    }
    best.map(|(_, cluster)| cluster)
}

/// Where an (enabled or not) group goes under `pin`.
pub fn side(
    pin: Option<&BTreeMap<String, u32>>,
    stable: Option<&str>,
    name: &str,
    cluster: &str,
    enabled: bool,
) -> Side {
    if !enabled {
        return Side::Out;
    }
    let Some(pin) = pin else {
        return Side::Stable;
    };
    match pin.get(name) {
        Some(weight) if *weight > 0 => {
            if stable == Some(cluster) {
                Side::Stable
            } else {
                Side::Canary
            }
        }
        _ => Side::Out,
    }
}

/// The canary Ingress's `canary-weight` under `pin`: the canary side's share of the
/// total, in percent (rounded).
pub fn canary_weight(
    pin: &BTreeMap<String, u32>,
    cluster_of: &dyn Fn(&str) -> Option<String>,
) -> u32 {
    let stable = stable_cluster(pin, cluster_of);
    let (mut canary, mut total) = (0u64, 0u64);
    for (name, weight) in pin {
        let Some(cluster) = cluster_of(name) else {
            continue;
        };
        total += u64::from(*weight);
        if Some(&cluster) != stable.as_ref() {
            canary += u64::from(*weight);
        }
    }
    if total == 0 {
        return 0;
    }
    u32::try_from((canary * 100 + total / 2) / total).unwrap_or(100)
}

/// The label changes that put a workload on `side` of the Service with `selector`:
/// `Some(value)` to set, `None` to remove.
pub fn label_changes(
    selector: &BTreeMap<String, String>,
    service: &str,
    current: &BTreeMap<String, String>,
    side: Side,
) -> BTreeMap<String, Option<String>> {
    let mut changes = BTreeMap::new();
    for (key, value) in selector {
        changes.insert(key.clone(), (side == Side::Stable).then(|| value.clone()));
    }
    if side == Side::Canary {
        changes.insert(CANARY_OF.to_owned(), Some(service.to_owned()));
    } else if current.get(CANARY_OF).map(String::as_str) == Some(service) {
        changes.insert(CANARY_OF.to_owned(), None);
    }
    changes.retain(|key, value| current.get(key) != value.as_ref());
    changes
}

/// The pod labels that put a workload on `side` of the Service with `selector`,
/// whatever its labels are now: [`crate::traffic::relabel`] patches only what differs,
/// on the template and on every pod, so a relabel cut short after the template (a
/// crash, a restart) is finished by the next one, where changes computed from the
/// template alone would find nothing left to do and leave the pods as they were.
/// Removals come first so that a key another Service sets wins over one this Service
/// removes; a key is removed only where it has this Service's value.
pub fn side_labels(
    selector: &BTreeMap<String, String>,
    service: &str,
    side: Side,
) -> Vec<(String, Label)> {
    let mut labels: Vec<(String, Label)> = Vec::new();
    if side != Side::Stable {
        for (key, value) in selector {
            labels.push((key.clone(), Label::RemovedIf(json!(value))));
        }
    }
    if side != Side::Canary {
        labels.push((CANARY_OF.to_owned(), Label::RemovedIf(json!(service))));
    }
    if side == Side::Stable {
        for (key, value) in selector {
            labels.push((key.clone(), Label::Set(json!(value))));
        }
    }
    if side == Side::Canary {
        labels.push((CANARY_OF.to_owned(), Label::Set(json!(service))));
    }
    labels
}

/// Relative weights as percentages summing to 100 (the remainder to the largest).
pub fn percentages(weights: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return BTreeMap::new();
    }
    let mut shares: BTreeMap<String, u32> = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(name, w)| {
            let share = u64::from(*w) * 100 / total;
            (name.clone(), u32::try_from(share).unwrap_or(100))
        })
        .collect();
    let given: u32 = shares.values().sum();
    if let Some(name) = weights
        .iter()
        .max_by_key(|(_, w)| **w)
        .map(|(name, _)| name.clone())
        && let Some(share) = shares.get_mut(&name)
    {
        *share += 100 - given.min(100);
    }
    shares
}

/// The application a Service or Ingress belongs to: its moniker annotation, its
/// `app.kubernetes.io/name` label, else the application part of its name.
pub fn application_of(object: &Value) -> String {
    annotation(object, MONIKER_APPLICATION)
        .map(str::to_owned)
        .or_else(|| string_map(object, "/metadata/labels").remove(LABEL_NAME))
        .unwrap_or_else(|| parse_name(text(object, "/metadata/name")).app)
}

/// A Service as a load balancer: its cluster IP and first port, its source ranges,
/// and the traffic share of each server group (the fixed weights, else by `Up`
/// instances of the enabled groups it selects).
pub fn load_balancer(account: &str, service: &Value, groups: &[ServerGroup]) -> LoadBalancer {
    let name = text(service, "/metadata/name").to_owned();
    let port = service
        .pointer("/spec/ports/0/port")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let address = format!("{}:{port}", text(service, "/spec/clusterIP"));
    let weights = match pinned(service) {
        Some(pin) => percentages(&pin),
        None => {
            let up: BTreeMap<String, u32> = groups
                .iter()
                .filter(|g| !g.disabled && g.load_balancers.contains(&name))
                .map(|g| {
                    (
                        g.name.clone(),
                        u32::try_from(g.up_instances()).unwrap_or(u32::MAX),
                    )
                })
                .collect();
            percentages(&up)
        }
    };
    LoadBalancer {
        spec: LoadBalancerSpec {
            name,
            account: account.to_owned(),
            application: application_of(service),
            listen: address.clone(),
            allowed_cidrs: service
                .pointer("/spec/loadBalancerSourceRanges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            ejection_failures: 0,
        },
        address,
        weights,
        backends: Vec::new(),
        details: BTreeMap::new(),
    }
}

/// The name an Ingress has as a load balancer: `ingress <name>` (a Service keeps its
/// bare name, as workloads' `traffic.spinnaker.io/load-balancers` name it).
pub fn ingress_balancer_name(ingress: &str) -> String {
    format!("ingress {ingress}")
}

/// The enabled server groups whose pods Service `service` takes: those naming it in
/// their traffic annotation or whose pod labels its selector picks (a canary Service's
/// groups), by their workloads in its namespace.
fn groups_behind<'a>(
    service: &Value,
    workloads: &[Value],
    groups: &'a [ServerGroup],
) -> Vec<&'a ServerGroup> {
    let name = text(service, "/metadata/name");
    let namespace = text(service, "/metadata/namespace");
    let mut behind: Vec<&ServerGroup> = Vec::new();
    for workload in workloads
        .iter()
        .filter(|w| text(w, "/metadata/namespace") == namespace)
    {
        let in_it = traffic_services(workload).iter().any(|s| s == name)
            || selects(service, &template_labels(workload));
        if !in_it {
            continue;
        }
        let workload_name = text(workload, "/metadata/name");
        if let Some(group) = groups
            .iter()
            .find(|g| g.name == workload_name && !g.disabled)
            && !behind.iter().any(|b| b.name == group.name)
        {
            behind.push(group);
        }
    }
    behind
}

/// The traffic share of each server group behind Service `service`: the weights the
/// router fixed, else by `Up` instances of the enabled groups behind it.
fn service_shares(
    service: &Value,
    workloads: &[Value],
    groups: &[ServerGroup],
) -> BTreeMap<String, u32> {
    if let Some(pin) = pinned(service) {
        return percentages(&pin);
    }
    let up: BTreeMap<String, u32> = groups_behind(service, workloads, groups)
        .into_iter()
        .map(|g| {
            (
                g.name.clone(),
                u32::try_from(g.up_instances()).unwrap_or(u32::MAX),
            )
        })
        .collect();
    percentages(&up)
}

/// The hosts an Ingress's rules name, in order.
fn ingress_hosts(ingress: &Value) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for rule in ingress
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = text(rule, "/host");
        if !host.is_empty() && !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
        }
    }
    hosts
}

/// An Ingress as a load balancer `ingress <name>`: the Services its rules and default
/// backend route to as its backends, the traffic share of each server group behind
/// them (each Service's share, averaged over its Services), its address (what the
/// ingress controller reports, else its first host), ingress-nginx's source-range
/// allow-list, and for an ingress-nginx canary its `canaryWeight` in `details`.
pub fn ingress_load_balancer(
    account: &str,
    ingress: &Value,
    services: &[Value],
    workloads: &[Value],
    groups: &[ServerGroup],
) -> LoadBalancer {
    let namespace = text(ingress, "/metadata/namespace");
    let backends = ingress_backends(ingress);
    let service = |name: &str| {
        services.iter().find(|s| {
            text(s, "/metadata/namespace") == namespace && text(s, "/metadata/name") == name
        })
    };
    let mut summed: BTreeMap<String, u32> = BTreeMap::new();
    for found in backends.iter().filter_map(|name| service(name)) {
        for (group, share) in service_shares(found, workloads, groups) {
            *summed.entry(group).or_default() += share;
        }
    }
    let hosts = ingress_hosts(ingress);
    let status_address = [
        "/status/loadBalancer/ingress/0/ip",
        "/status/loadBalancer/ingress/0/hostname",
    ]
    .iter()
    .map(|p| text(ingress, p))
    .find(|a| !a.is_empty());
    let listen = hosts.first().cloned().unwrap_or_else(|| "*".to_owned());
    let address = status_address.map_or_else(|| listen.clone(), str::to_owned);
    let allowed_cidrs = ["whitelist-source-range", "allowlist-source-range"]
        .iter()
        .filter_map(|key| annotation(ingress, &format!("{NGINX}{key}")))
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|cidr| !cidr.is_empty())
        .map(str::to_owned)
        .collect();
    let mut details = BTreeMap::from([
        ("kind".to_owned(), json!("ingress")),
        ("namespace".to_owned(), json!(namespace)),
        ("hosts".to_owned(), json!(hosts)),
    ]);
    let class = text(ingress, "/spec/ingressClassName");
    if !class.is_empty() {
        details.insert("ingressClassName".to_owned(), json!(class));
    }
    if is_canary_ingress(ingress) {
        let weight = annotation(ingress, &format!("{NGINX}canary-weight"))
            .and_then(|w| w.trim().parse::<u32>().ok())
            .unwrap_or(0);
        details.insert("canaryWeight".to_owned(), json!(weight));
        if let Some(header) = annotation(ingress, &format!("{NGINX}canary-by-header")) {
            details.insert("canaryByHeader".to_owned(), json!(header));
        }
    }
    // A canary Ingress the router made belongs to its Service's application.
    let application = match string_map(ingress, "/metadata/labels").get(CANARY_OF) {
        Some(of) if annotation(ingress, MONIKER_APPLICATION).is_none() => {
            service(of).map_or_else(|| application_of(ingress), application_of)
        }
        _ => application_of(ingress),
    };
    LoadBalancer {
        spec: LoadBalancerSpec {
            name: ingress_balancer_name(text(ingress, "/metadata/name")),
            account: account.to_owned(),
            application,
            listen,
            allowed_cidrs,
            ejection_failures: 0,
        },
        address,
        weights: percentages(&summed),
        backends: backends.iter().map(|b| format!("service {b}")).collect(),
        details,
    }
}

/// The Services an Ingress routes to (its default backend and its rules' paths).
pub fn ingress_backends(ingress: &Value) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(name) = ingress
        .pointer("/spec/defaultBackend/service/name")
        .and_then(Value::as_str)
    {
        names.push(name.to_owned());
    }
    for rule in ingress
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for path in rule
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = path
                .pointer("/backend/service/name")
                .and_then(Value::as_str)
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Whether an Ingress is an ingress-nginx canary.
pub fn is_canary_ingress(ingress: &Value) -> bool {
    annotation(ingress, &format!("{NGINX}canary")) == Some("true")
}

/// The canary Ingress of `primary` for Service `service`: the same rules with
/// `service` replaced by `canary_service`, and the canary annotations.
pub fn canary_ingress(
    primary: &Value,
    service: &str,
    canary_service: &str,
    weight: u32,
    header: Option<&str>,
) -> Value {
    let mut spec = primary.get("spec").cloned().unwrap_or(json!({}));
    retarget(&mut spec, service, canary_service);
    if let Some(map) = spec.as_object_mut() {
        // TLS belongs to the primary; ingress-nginx takes it from there.
        map.remove("tls");
    }
    let mut annotations = serde_json::Map::new();
    annotations.insert(format!("{NGINX}canary"), json!("true"));
    annotations.insert(format!("{NGINX}canary-weight"), json!(weight.to_string()));
    if let Some(header) = header.filter(|h| !h.is_empty()) {
        annotations.insert(format!("{NGINX}canary-by-header"), json!(header));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": format!("{}-canary", text(primary, "/metadata/name")),
            "namespace": text(primary, "/metadata/namespace"),
            "labels": {CANARY_OF: service},
            "annotations": annotations,
        },
        "spec": spec,
    })
}

fn retarget(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(service)) = map.get_mut("service")
                && service.get("name").and_then(Value::as_str) == Some(from)
            {
                service.insert("name".into(), json!(to));
            }
            for (_, child) in map.iter_mut() {
                retarget(child, from, to);
            }
        }
        Value::Array(items) => {
            for item in items {
                retarget(item, from, to);
            }
        }
        _ => {}
    }
}

/// The canary Service of `service`: its ports, selecting the canary-side pods.
pub fn canary_service(service: &Value, canary_name: &str) -> Value {
    let name = text(service, "/metadata/name");
    let ports: Vec<Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|port| {
            let mut port = port.clone();
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
            port
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": canary_name,
            "namespace": text(service, "/metadata/namespace"),
            "labels": {CANARY_OF: name},
            "annotations": {MONIKER_APPLICATION: application_of(service)},
        },
        "spec": {"selector": {CANARY_OF: name}, "ports": ports},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, annotations: Value, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                         "annotations": annotations, "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": labels}}}})
    }

    fn pod(name: &str, owner: &str, ready: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop",
                            "ownerReferences": [{"uid": format!("uid-{owner}")}]},
               "status": {"phase": phase, "podIP": "10.0.0.9",
                          "conditions": [{"type": "Ready", "status": ready}]}})
    }

    #[test]
    fn monikers_come_from_annotations_or_the_name() {
        let m = moniker(&rs(
            "shop-prod-v003",
            json!({MONIKER_APPLICATION: "shop"}),
            json!({}),
        ))
        .unwrap();
        assert_eq!((m.cluster(), m.sequence), ("shop-prod".to_owned(), Some(3)));
        let m = moniker(&rs(
            "web-v000",
            json!({MONIKER_APPLICATION: "shop"}),
            json!({}),
        ))
        .unwrap();
        assert_eq!(m.cluster(), "shop--web");
        let m = moniker(&rs(
            "x",
            json!({MONIKER_APPLICATION: "shop", MONIKER_STACK: "prod", MONIKER_DETAIL: "canary"}),
            json!({}),
        ))
        .unwrap();
        assert_eq!(m.cluster(), "shop-prod-canary");
        assert!(moniker(&rs("x", json!({}), json!({}))).is_none());
    }

    #[test]
    fn pods_become_instances_with_health() {
        let up = instance(&pod("a", "g", "True", "Running"), false);
        assert_eq!(up.health, HealthState::Up);
        assert_eq!(up.address.as_deref(), Some("10.0.0.9"));
        assert_eq!(
            instance(&pod("a", "g", "True", "Running"), true).health,
            HealthState::OutOfService
        );
        let down = instance(&pod("a", "g", "False", "Running"), false);
        assert_eq!(down.health, HealthState::Down);
        assert!(down.reason.unwrap().contains("not ready"));
        assert_eq!(
            instance(&pod("a", "g", "False", "Pending"), false).health,
            HealthState::Starting
        );
    }

    #[test]
    fn disabled_follows_the_annotation_then_spinnakers_rule() {
        let service = json!({"metadata": {"name": "web", "namespace": "shop"},
                             "spec": {"selector": {"frontedBy": "web"}}});
        let traffic = json!({LOAD_BALANCERS: "[\"service web\"]"});
        let inside = rs("a-v000", traffic.clone(), json!({"frontedBy": "web"}));
        let outside = rs("a-v001", traffic, json!({}));
        assert!(is_enabled(&inside, &[&service]));
        assert!(!is_enabled(&outside, &[&service]));
        let explicit = rs(
            "a-v002",
            json!({LOAD_BALANCERS: "[\"service web\"]", ENABLED: "true"}),
            json!({}),
        );
        assert!(is_enabled(&explicit, &[&service]));
        let preview = json!({"metadata": {"name": "web-preview", "namespace": "shop"},
                             "spec": {"selector": {"frontedBy": "web-preview"}}});
        let previewed = rs(
            "a-v003",
            json!({LOAD_BALANCERS: "[\"service web\"]",
                   crate::traffic::PREVIEW_LOAD_BALANCERS: "[\"service web-preview\"]"}),
            json!({"frontedBy": "web-preview"}),
        );
        assert!(
            !is_enabled(&previewed, &[&service, &preview]),
            "behind its preview only, a version waits for its promotion"
        );
        let groups = server_groups(
            "k8s",
            &[rs(
                "shop-v000",
                json!({MONIKER_APPLICATION: "shop"}),
                json!({}),
            )],
            &[
                pod("p1", "shop-v000", "True", "Running"),
                pod("p2", "shop-v000", "False", "Running"),
            ],
            &[service],
        );
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].up_instances(), 1);
        assert_eq!(groups[0].capacity, Capacity::fixed(2));
    }

    #[test]
    fn weights_split_into_a_stable_and_a_canary_side() {
        let cluster_of = |name: &str| -> Option<String> {
            Some(parse_name(name).cluster()).filter(|_| name != "gone-v000")
        };
        let pin: BTreeMap<String, u32> = [
            ("shop-prod-v000".to_owned(), 180),
            ("shop-prod-baseline-v000".to_owned(), 10),
            ("shop-prod-canary-v000".to_owned(), 10),
        ]
        .into();
        let stable = stable_cluster(&pin, &cluster_of);
        assert_eq!(stable.as_deref(), Some("shop-prod"));
        assert_eq!(canary_weight(&pin, &cluster_of), 10);
        assert_eq!(
            side(
                Some(&pin),
                stable.as_deref(),
                "shop-prod-v000",
                "shop-prod",
                true
            ),
            Side::Stable
        );
        assert_eq!(
            side(
                Some(&pin),
                stable.as_deref(),
                "shop-prod-canary-v000",
                "shop-prod-canary",
                true
            ),
            Side::Canary
        );
        assert_eq!(
            side(
                Some(&pin),
                stable.as_deref(),
                "shop-prod-v001",
                "shop-prod",
                true
            ),
            Side::Out,
            "a group the weights do not name gets nothing"
        );
        assert_eq!(
            side(None, None, "shop-prod-v001", "shop-prod", true),
            Side::Stable
        );
        assert_eq!(
            side(None, None, "shop-prod-v001", "shop-prod", false),
            Side::Out
        );
        let promoted: BTreeMap<String, u32> = [("shop-prod-v001".to_owned(), 100)].into();
        assert_eq!(canary_weight(&promoted, &cluster_of), 0);
        assert_eq!(
            percentages(&pin),
            [
                ("shop-prod-baseline-v000".to_owned(), 5),
                ("shop-prod-canary-v000".to_owned(), 5),
                ("shop-prod-v000".to_owned(), 90)
            ]
            .into()
        );
    }

    #[test]
    fn label_changes_move_a_group_between_sides() {
        let selector: BTreeMap<String, String> =
            [("frontedBy".to_owned(), "web".to_owned())].into();
        let none = BTreeMap::new();
        assert_eq!(
            label_changes(&selector, "web", &none, Side::Stable),
            [("frontedBy".to_owned(), Some("web".to_owned()))].into()
        );
        let stable: BTreeMap<String, String> = selector.clone();
        assert_eq!(
            label_changes(&selector, "web", &stable, Side::Canary),
            [
                ("frontedBy".to_owned(), None),
                (CANARY_OF.to_owned(), Some("web".to_owned()))
            ]
            .into()
        );
        assert!(label_changes(&selector, "web", &stable, Side::Stable).is_empty());
        assert!(label_changes(&selector, "web", &none, Side::Out).is_empty());
    }

    #[test]
    fn side_labels_are_the_whole_side_whatever_the_template_says() {
        let selector: BTreeMap<String, String> =
            [("frontedBy".to_owned(), "web".to_owned())].into();
        let removed = |k: &str, v: &str| (k.to_owned(), Label::RemovedIf(json!(v)));
        let set = |k: &str, v: &str| (k.to_owned(), Label::Set(json!(v)));
        assert_eq!(
            side_labels(&selector, "web", Side::Out),
            [removed("frontedBy", "web"), removed(CANARY_OF, "web")]
        );
        assert_eq!(
            side_labels(&selector, "web", Side::Stable),
            [removed(CANARY_OF, "web"), set("frontedBy", "web")]
        );
        assert_eq!(
            side_labels(&selector, "web", Side::Canary),
            [removed("frontedBy", "web"), set(CANARY_OF, "web")]
        );
    }

    #[test]
    fn an_ingress_is_a_load_balancer_of_the_services_it_routes_to() {
        let service = json!({"metadata": {"name": "web", "namespace": "shop",
                                          "annotations": {MONIKER_APPLICATION: "shop"}},
                             "spec": {"selector": {"frontedBy": "web"}}});
        let ingress = json!({"metadata": {"name": "edge", "namespace": "shop",
                "annotations": {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8, 192.168.0.0/16"}},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                     "rules": [{"host": "shop.example"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}});
        let workload = rs(
            "shop-v000",
            json!({MONIKER_APPLICATION: "shop"}),
            json!({"frontedBy": "web"}),
        );
        let groups = server_groups(
            "k8s",
            std::slice::from_ref(&workload),
            &[pod("p1", "shop-v000", "True", "Running")],
            std::slice::from_ref(&service),
        );
        let balancer = ingress_load_balancer(
            "k8s",
            &ingress,
            std::slice::from_ref(&service),
            std::slice::from_ref(&workload),
            &groups,
        );
        assert_eq!(balancer.spec.name, "ingress edge");
        assert_eq!(balancer.backends, ["service web"]);
        assert_eq!(
            balancer.address, "203.0.113.7",
            "what the controller reports"
        );
        assert_eq!(balancer.spec.listen, "shop.example");
        assert_eq!(
            balancer.spec.allowed_cidrs,
            ["10.0.0.0/8", "192.168.0.0/16"]
        );
        assert_eq!(balancer.weights, [("shop-v000".to_owned(), 100)].into());
        assert!(!balancer.details.contains_key("canaryWeight"));
    }

    #[test]
    fn the_canary_ingress_routes_the_primarys_rules_to_the_canary_service() {
        let primary = json!({"metadata": {"name": "shop", "namespace": "shop"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["shop.example"]}],
                     "rules": [{"host": "shop.example", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        assert_eq!(ingress_backends(&primary), ["web"]);
        let canary = canary_ingress(&primary, "web", "web-canary", 10, Some("X-Canary"));
        assert_eq!(canary["metadata"]["name"], "shop-canary");
        assert_eq!(
            canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
            "10"
        );
        assert_eq!(
            canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"],
            "X-Canary"
        );
        assert_eq!(
            canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "web-canary"
        );
        assert!(canary["spec"].get("tls").is_none());
        assert!(is_canary_ingress(&canary));
    }
}
