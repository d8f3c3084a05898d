//! Manifests as Spinnaker names and annotates them: `"<kind> <name>"` names, kind
//! priorities, namespaces, moniker and artifact annotations. Pure: no I/O.

use serde_json::{Map, Value, json};

/// `moniker.spinnaker.io/application`: the application that owns a resource.
pub const MONIKER_APPLICATION: &str = "moniker.spinnaker.io/application";
/// `moniker.spinnaker.io/cluster`: the cluster it belongs to (`"replicaSet web"`).
pub const MONIKER_CLUSTER: &str = "moniker.spinnaker.io/cluster";
/// `moniker.spinnaker.io/stack`.
pub const MONIKER_STACK: &str = "moniker.spinnaker.io/stack";
/// `moniker.spinnaker.io/detail`.
pub const MONIKER_DETAIL: &str = "moniker.spinnaker.io/detail";
/// `moniker.spinnaker.io/sequence`: a versioned resource's version number.
pub const MONIKER_SEQUENCE: &str = "moniker.spinnaker.io/sequence";
/// `artifact.spinnaker.io/type`: `kubernetes/<kind>`.
pub const ARTIFACT_TYPE: &str = "artifact.spinnaker.io/type";
/// `artifact.spinnaker.io/name`: the name without its version.
pub const ARTIFACT_NAME: &str = "artifact.spinnaker.io/name";
/// `artifact.spinnaker.io/location`: the namespace.
pub const ARTIFACT_LOCATION: &str = "artifact.spinnaker.io/location";
/// `artifact.spinnaker.io/version`: `v003`, or empty for unversioned resources.
pub const ARTIFACT_VERSION: &str = "artifact.spinnaker.io/version";
/// The label naming the application (`app.kubernetes.io/name`).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// The label naming the deploying tool (`app.kubernetes.io/managed-by`).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// What [`LABEL_MANAGED_BY`] says: Spinnaker's value, so selectors its users wrote
/// keep finding the resources Gennaker deploys.
pub const MANAGED_BY: &str = "spinnaker";

/// A kind Gennaker can name in `manifestName` without reading the cluster's discovery:
/// Spinnaker's key (`replicaSet`), its `apiVersion` and `kind`.
const KNOWN_KINDS: &[(&str, &str, &str)] = &[
    ("deployment", "apps/v1", "Deployment"),
    ("replicaSet", "apps/v1", "ReplicaSet"),
    ("statefulSet", "apps/v1", "StatefulSet"),
    ("daemonSet", "apps/v1", "DaemonSet"),
    ("pod", "v1", "Pod"),
    ("service", "v1", "Service"),
    ("configMap", "v1", "ConfigMap"),
    ("secret", "v1", "Secret"),
    ("serviceAccount", "v1", "ServiceAccount"),
    ("persistentVolumeClaim", "v1", "PersistentVolumeClaim"),
    ("namespace", "v1", "Namespace"),
    ("job", "batch/v1", "Job"),
    ("cronJob", "batch/v1", "CronJob"),
    ("ingress", "networking.k8s.io/v1", "Ingress"),
    ("networkPolicy", "networking.k8s.io/v1", "NetworkPolicy"),
    (
        "horizontalpodautoscaler",
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    ),
    ("podDisruptionBudget", "policy/v1", "PodDisruptionBudget"),
    ("role", "rbac.authorization.k8s.io/v1", "Role"),
    ("roleBinding", "rbac.authorization.k8s.io/v1", "RoleBinding"),
];

/// Spinnaker's key of a kind: the kind with a lower-case first letter (`ReplicaSet` →
/// `replicaSet`), except the few Spinnaker spells all lower-case.
pub fn kind_key(kind: &str) -> String {
    if kind.eq_ignore_ascii_case("HorizontalPodAutoscaler") {
        return "horizontalpodautoscaler".into();
    }
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The `apiVersion` and `kind` of a kind key (`deployment`, `Deployment`,
/// `replicaSet`), when Gennaker knows it.
pub fn known_kind(key: &str) -> Option<(&'static str, &'static str)> {
    KNOWN_KINDS
        .iter()
        .find(|(k, _, kind)| k.eq_ignore_ascii_case(key) || kind.eq_ignore_ascii_case(key))
        .map(|(_, api_version, kind)| (*api_version, *kind))
}

/// The kind keys Gennaker knows, for messages.
pub fn known_kind_keys() -> String {
    KNOWN_KINDS
        .iter()
        .map(|(k, _, _)| *k)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A resource as a stage names it: `manifestName: "deployment web"` in `location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestName {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// `web`.
    pub name: String,
}

impl ManifestName {
    /// Reads `"<kind> <name>"` (Spinnaker's `manifestName`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some(kind), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "'{text}' is not a manifest name: write \"<kind> <name>\", e.g. \"deployment web\""
            ));
        };
        let Some((api_version, kind)) = known_kind(kind) else {
            return Err(format!(
                "'{kind}' in manifest name '{text}' is not a kind Gennaker knows (it knows {})",
                known_kind_keys()
            ));
        };
        Ok(Self {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
        })
    }

    /// `deployment web`.
    pub fn full(&self) -> String {
        format!("{} {}", kind_key(&self.kind), self.name)
    }
}

/// The order Spinnaker applies kinds in (`KubernetesHandler.DeployPriority`): a
/// Namespace before what lives in it, ConfigMaps before the workloads that mount them.
pub fn deploy_priority(kind: &str) -> u32 {
    match kind {
        "Namespace" => 0,
        "Role" | "ClusterRole" => 20,
        "RoleBinding" | "ClusterRoleBinding" | "CustomResourceDefinition" => 30,
        "ServiceAccount"
        | "StorageClass"
        | "PersistentVolume"
        | "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration" => 40,
        "ConfigMap" | "Secret" | "PersistentVolumeClaim" => 50,
        "Service" | "Ingress" | "NetworkPolicy" => 70,
        "PodDisruptionBudget" => 90,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Pod" | "Job" | "CronJob" => {
            100
        }
        "HorizontalPodAutoscaler" => 110,
        _ => 1000,
    }
}

/// A manifest's `kind`, `metadata.name` and `apiVersion`, or what is missing.
pub fn identity(manifest: &Value) -> Result<(&str, &str, &str), String> {
    let api_version = manifest.get("apiVersion").and_then(Value::as_str);
    let kind = manifest.get("kind").and_then(Value::as_str);
    let name = manifest.pointer("/metadata/name").and_then(Value::as_str);
    match (api_version, kind, name) {
        (Some(a), Some(k), Some(n)) if !a.is_empty() && !k.is_empty() && !n.is_empty() => {
            Ok((a, k, n))
        }
        _ => Err(
            "a manifest needs apiVersion, kind and metadata.name (generateName is not supported: a repeated deploy must find what it created)".into(),
        ),
    }
}

/// The namespace a manifest goes to: none for cluster-scoped kinds; else
/// `namespaceOverride`, else its own `metadata.namespace`, else `default`.
pub fn target_namespace(manifest: &Value, namespaced: bool, over: Option<&str>) -> Option<String> {
    if !namespaced {
        return None;
    }
    over.filter(|ns| !ns.is_empty())
        .or_else(|| {
            manifest
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
        })
        .or(Some("default"))
        .map(str::to_owned)
}

/// A Spinnaker moniker: which application and cluster a resource belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moniker {
    /// The application.
    pub app: String,
    /// The cluster (default: `"<kind> <name>"` of the resource).
    pub cluster: Option<String>,
    /// The stack.
    pub stack: Option<String>,
    /// The detail.
    pub detail: Option<String>,
}

impl Moniker {
    /// The stage's `moniker` object, or the application alone.
    pub fn from_stage(moniker: Option<&Value>, application: &str) -> Self {
        let text = |key: &str| {
            moniker
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Self {
            app: text("app").unwrap_or_else(|| application.to_owned()),
            cluster: text("cluster"),
            stack: text("stack"),
            detail: text("detail"),
        }
    }
}

/// The application a live resource's moniker names, if any.
pub fn owner(resource: &Value) -> Option<&str> {
    annotation(resource, MONIKER_APPLICATION).filter(|app| !app.is_empty())
}

/// An annotation of a manifest.
pub fn annotation<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The object at `path`, created (and replaced when not an object) on the way.
fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut current = value;
    for key in path {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = current
            .as_object_mut()?
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    current.as_object_mut()
}

/// Sets `key` in the map unless it already has a value (Spinnaker never overwrites a
/// moniker or label the manifest sets itself).
fn set_default(map: &mut Map<String, Value>, key: &str, value: &str) {
    map.entry(key.to_owned())
        .or_insert_with(|| Value::String(value.to_owned()));
}

/// Writes the moniker, artifact annotations and labels Spinnaker writes, on the object
/// and on its pod template (if it has one). `base_name` is the name without version;
/// `version` is `Some(n)` for a versioned resource.
pub fn annotate(
    manifest: &mut Value,
    moniker: &Moniker,
    base_name: &str,
    namespace: Option<&str>,
    version: Option<u32>,
) {
    let Some(kind) = manifest
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let key = kind_key(&kind);
    let cluster = moniker
        .cluster
        .clone()
        .unwrap_or_else(|| format!("{key} {base_name}"));
    let sequence = version.map(|v| v.to_string());
    let mut annotations: Vec<(&str, String)> = vec![
        (MONIKER_APPLICATION, moniker.app.clone()),
        (MONIKER_CLUSTER, cluster),
    ];
    if let Some(stack) = &moniker.stack {
        annotations.push((MONIKER_STACK, stack.clone()));
    }
    if let Some(detail) = &moniker.detail {
        annotations.push((MONIKER_DETAIL, detail.clone()));
    }
    if let Some(sequence) = &sequence {
        annotations.push((MONIKER_SEQUENCE, sequence.clone()));
    }
    let mut labels: Vec<(&str, String)> = vec![
        (LABEL_NAME, moniker.app.clone()),
        (LABEL_MANAGED_BY, MANAGED_BY.to_owned()),
    ];
    if let Some(sequence) = &sequence {
        labels.push((MONIKER_SEQUENCE, sequence.clone()));
    }
    let has_template = manifest.pointer("/spec/template").is_some();
    for at in [&["metadata"][..], &["spec", "template", "metadata"][..]] {
        if at.len() > 1 && !has_template {
            continue;
        }
        let mut path = at.to_vec();
        path.push("annotations");
        if let Some(map) = object_at(manifest, &path) {
            for (k, v) in &annotations {
                set_default(map, k, v);
            }
        }
        path.pop();
        path.push("labels");
        if let Some(map) = object_at(manifest, &path) {
            for (k, v) in &labels {
                set_default(map, k, v);
            }
        }
    }
    // The artifact identity is the object's own, not its pods'.
    let Some(map) = object_at(manifest, &["metadata", "annotations"]) else {
        return;
    };
    map.insert(
        ARTIFACT_TYPE.into(),
        Value::String(format!("kubernetes/{key}")),
    );
    map.insert(ARTIFACT_NAME.into(), Value::String(base_name.to_owned()));
    map.insert(
        ARTIFACT_LOCATION.into(),
        Value::String(namespace.unwrap_or_default().to_owned()),
    );
    map.insert(
        ARTIFACT_VERSION.into(),
        Value::String(version.map(version_text).unwrap_or_default()),
    );
}

/// `v003`.
pub fn version_text(version: u32) -> String {
    format!("v{version:03}")
}

/// The artifact Spinnaker reports for a deployed resource.
pub fn artifact(
    account: &str,
    kind: &str,
    base_name: &str,
    name: &str,
    namespace: Option<&str>,
    version: Option<u32>,
) -> Value {
    json!({
        "type": format!("kubernetes/{}", kind_key(kind)),
        "name": base_name,
        "location": namespace.unwrap_or_default(),
        "version": version.map(version_text).unwrap_or_default(),
        "reference": name,
        "metadata": {"account": account},
        "customKind": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_keyed_as_spinnaker_keys_them() {
        assert_eq!(kind_key("ReplicaSet"), "replicaSet");
        assert_eq!(kind_key("Deployment"), "deployment");
        assert_eq!(
            kind_key("HorizontalPodAutoscaler"),
            "horizontalpodautoscaler"
        );
        let name = ManifestName::parse("replicaSet web-v003").unwrap();
        assert_eq!(
            (name.api_version.as_str(), name.kind.as_str()),
            ("apps/v1", "ReplicaSet")
        );
        assert_eq!(name.full(), "replicaSet web-v003");
        assert!(
            ManifestName::parse("web")
                .unwrap_err()
                .contains("<kind> <name>")
        );
        assert!(
            ManifestName::parse("widget web")
                .unwrap_err()
                .contains("not a kind Gennaker knows")
        );
    }

    #[test]
    fn config_comes_before_workloads() {
        let mut kinds = vec!["Deployment", "Service", "ConfigMap", "Namespace", "Widget"];
        kinds.sort_by_key(|k| deploy_priority(k));
        assert_eq!(
            kinds,
            ["Namespace", "ConfigMap", "Service", "Deployment", "Widget"]
        );
    }

    #[test]
    fn the_override_applies_to_namespaced_kinds_only() {
        let m = json!({"metadata": {"name": "a", "namespace": "own"}});
        assert_eq!(
            target_namespace(&m, true, Some("shop")).as_deref(),
            Some("shop")
        );
        assert_eq!(target_namespace(&m, true, None).as_deref(), Some("own"));
        assert_eq!(target_namespace(&m, false, Some("shop")), None);
        let bare = json!({"metadata": {"name": "a"}});
        assert_eq!(
            target_namespace(&bare, true, Some("")).as_deref(),
            Some("default")
        );
    }

    #[test]
    fn monikers_and_artifacts_are_written_where_spinnaker_writes_them() {
        let mut rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-v002", "annotations": {MONIKER_CLUSTER: "mine"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}}
        });
        let moniker = Moniker::from_stage(Some(&json!({"app": "shop", "stack": "prod"})), "x");
        annotate(&mut rs, &moniker, "web", Some("default"), Some(2));
        let a = &rs["metadata"]["annotations"];
        assert_eq!(a[MONIKER_APPLICATION], "shop");
        assert_eq!(a[MONIKER_CLUSTER], "mine", "an existing value is kept");
        assert_eq!(a[MONIKER_STACK], "prod");
        assert_eq!(a[MONIKER_SEQUENCE], "2");
        assert_eq!(a[ARTIFACT_TYPE], "kubernetes/replicaSet");
        assert_eq!(a[ARTIFACT_NAME], "web");
        assert_eq!(a[ARTIFACT_LOCATION], "default");
        assert_eq!(a[ARTIFACT_VERSION], "v002");
        let t = &rs["spec"]["template"]["metadata"];
        assert_eq!(t["annotations"][MONIKER_APPLICATION], "shop");
        assert_eq!(t["annotations"][MONIKER_CLUSTER], "replicaSet web");
        assert_eq!(t["labels"]["app"], "web");
        assert_eq!(t["labels"][LABEL_NAME], "shop");
        assert_eq!(t["labels"][MONIKER_SEQUENCE], "2");
        assert_eq!(owner(&rs), Some("shop"));

        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        annotate(
            &mut svc,
            &Moniker::from_stage(None, "shop"),
            "web",
            Some("default"),
            None,
        );
        assert_eq!(svc["metadata"]["annotations"][ARTIFACT_VERSION], "");
        assert_eq!(
            svc["metadata"]["annotations"][MONIKER_CLUSTER],
            "service web"
        );
        assert!(svc.pointer("/spec/template").is_none());
    }
}
