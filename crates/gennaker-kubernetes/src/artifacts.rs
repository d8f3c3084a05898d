//! Spinnaker's artifact binding on manifests (`docker/image` artifacts replace the
//! images of containers of the same repository; `kubernetes/configMap` and
//! `kubernetes/secret` artifacts replace references to ConfigMaps and Secrets of the
//! same name) and the reverse: the artifacts a live workload references, for
//! `findArtifactsFromResource`. Pure: no I/O.

use serde_json::{Value, json};

use crate::manifest::version_text;

/// `docker/image`.
pub const DOCKER_IMAGE: &str = "docker/image";
/// `kubernetes/configMap`.
pub const CONFIG_MAP: &str = "kubernetes/configMap";
/// `kubernetes/secret`.
pub const SECRET: &str = "kubernetes/secret";

/// The pod specs of a manifest: a workload's template (also a CronJob's job
/// template), or a Pod's own spec.
const POD_SPECS: &[&str] = &[
    "/spec/template/spec",
    "/spec/jobTemplate/spec/template/spec",
    "/spec",
];

/// An image without its tag or digest (cut at `@`, else at the last `:` after the
/// last `/`, so a registry port stays): `gcr.io/p/app:1.2` → `gcr.io/p/app`.
pub fn image_name(image: &str) -> &str {
    if let Some((name, _)) = image.split_once('@') {
        return name;
    }
    let last_segment = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_segment..].rfind(':') {
        Some(colon) => &image[..last_segment + colon],
        None => image,
    }
}

/// A reference from a pod spec to a ConfigMap or Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl RefKind {
    /// Its artifact type.
    pub fn artifact_type(self) -> &'static str {
        match self {
            Self::ConfigMap => CONFIG_MAP,
            Self::Secret => SECRET,
        }
    }

    /// The kind of a `kubernetes/configMap` or `kubernetes/secret` artifact type.
    pub fn of_artifact_type(kind: &str) -> Option<Self> {
        match kind {
            CONFIG_MAP => Some(Self::ConfigMap),
            SECRET => Some(Self::Secret),
            _ => None,
        }
    }
}

/// The first pod spec of a manifest (one holding `containers`).
fn pod_spec_mut(manifest: &mut Value) -> Option<&mut Value> {
    let at = POD_SPECS.iter().find(|p| {
        manifest
            .pointer(p)
            .is_some_and(|s| s.get("containers").is_some())
    })?;
    manifest.pointer_mut(at)
}

fn pod_spec(manifest: &Value) -> Option<&Value> {
    POD_SPECS
        .iter()
        .filter_map(|p| manifest.pointer(p))
        .find(|s| s.get("containers").is_some())
}

/// Calls `visit` with every `image` of the manifest's containers and init containers.
fn each_image(manifest: &mut Value, mut visit: impl FnMut(&mut Value)) {
    let Some(spec) = pod_spec_mut(manifest) else {
        return;
    };
    for list in ["containers", "initContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(image) = container.get_mut("image") {
                visit(image);
            }
        }
    }
}

/// Calls `visit` with every ConfigMap or Secret name the manifest's pod spec names:
/// volumes, projected sources, `env[].valueFrom`, `envFrom`.
fn each_reference(manifest: &mut Value, mut visit: impl FnMut(RefKind, &mut Value)) {
    let Some(spec) = pod_spec_mut(manifest) else {
        return;
    };
    let mut at = |value: Option<&mut Value>, kind: RefKind| {
        if let Some(value) = value.filter(|v| v.is_string()) {
            visit(kind, value);
        }
    };
    for volume in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        at(volume.pointer_mut("/configMap/name"), RefKind::ConfigMap);
        at(volume.pointer_mut("/secret/secretName"), RefKind::Secret);
        for source in volume
            .pointer_mut("/projected/sources")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            at(source.pointer_mut("/configMap/name"), RefKind::ConfigMap);
            at(source.pointer_mut("/secret/name"), RefKind::Secret);
        }
    }
    for list in ["containers", "initContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for var in container
                .get_mut("env")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                at(
                    var.pointer_mut("/valueFrom/configMapKeyRef/name"),
                    RefKind::ConfigMap,
                );
                at(
                    var.pointer_mut("/valueFrom/secretKeyRef/name"),
                    RefKind::Secret,
                );
            }
            for source in container
                .get_mut("envFrom")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                at(source.pointer_mut("/configMapRef/name"), RefKind::ConfigMap);
                at(source.pointer_mut("/secretRef/name"), RefKind::Secret);
            }
        }
    }
}

/// The images of the manifest's containers and init containers, in order.
pub fn images(manifest: &Value) -> Vec<String> {
    let mut copy = manifest.clone();
    let mut found = Vec::new();
    each_image(&mut copy, |image| {
        if let Some(text) = image.as_str() {
            found.push(text.to_owned());
        }
    });
    found
}

/// The ConfigMaps and Secrets the manifest's pod spec references, in order.
pub fn references(manifest: &Value) -> Vec<(RefKind, String)> {
    let mut copy = manifest.clone();
    let mut found = Vec::new();
    each_reference(&mut copy, |kind, name| {
        if let Some(text) = name.as_str() {
            found.push((kind, text.to_owned()));
        }
    });
    found
}

/// An artifact that may bind: its type, name, location and what it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The artifact as given (reported in `boundArtifacts`).
    pub artifact: Value,
    /// Whether a stage's `requiredArtifacts` names it (it must bind).
    pub required: bool,
}

impl Candidate {
    fn text(&self, key: &str) -> &str {
        self.artifact
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Its `type`.
    pub fn kind(&self) -> &str {
        self.text("type")
    }

    /// Its `name`.
    pub fn name(&self) -> &str {
        self.text("name")
    }

    /// Its `reference`, else its `name`.
    pub fn reference(&self) -> &str {
        match self.text("reference") {
            "" => self.name(),
            reference => reference,
        }
    }

    /// Whether a `kubernetes/*` artifact may bind in `namespace` of `account`
    /// (same namespace; an artifact naming no account matches any).
    fn binds_in(&self, namespace: Option<&str>, account: &str) -> bool {
        let location = self.text("location");
        let same_namespace = location == namespace.unwrap_or_default();
        let artifact_account = self
            .artifact
            .pointer("/metadata/account")
            .and_then(Value::as_str)
            .unwrap_or_default();
        same_namespace && (artifact_account.is_empty() || artifact_account == account)
    }
}

/// Orders candidates as Spinnaker does (keyed by type, name and location; a required
/// artifact beats an optional one, a later one of the same standing an earlier one).
pub fn dedupe(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        let key = |c: &Candidate| {
            (
                c.kind().to_owned(),
                c.name().to_owned(),
                c.text("location").to_owned(),
            )
        };
        match kept.iter_mut().find(|k| key(k) == key(&candidate)) {
            Some(existing) if existing.required && !candidate.required => {}
            Some(existing) => *existing = candidate,
            None => kept.push(candidate),
        }
    }
    kept
}

/// Binds `candidates` into `manifest` (deployed in `namespace` through `account`):
/// container images of a `docker/image` artifact's repository become its reference,
/// references to a `kubernetes/configMap` / `kubernetes/secret` artifact's name (same
/// namespace and account) become its reference. Returns the indexes of the
/// candidates that bound something.
pub fn bind(
    manifest: &mut Value,
    candidates: &[Candidate],
    namespace: Option<&str>,
    account: &str,
) -> Vec<usize> {
    let mut bound = Vec::new();
    let mut mark = |i: usize| {
        if !bound.contains(&i) {
            bound.push(i);
        }
    };
    each_image(manifest, |image| {
        let Some(current) = image.as_str() else {
            return;
        };
        let repository = image_name(current).to_owned();
        if let Some(i) = candidates
            .iter()
            .position(|c| c.kind() == DOCKER_IMAGE && c.name() == repository)
        {
            *image = Value::String(candidates[i].reference().to_owned());
            mark(i);
        }
    });
    each_reference(manifest, |kind, name| {
        let Some(current) = name.as_str() else {
            return;
        };
        if let Some(i) = candidates.iter().position(|c| {
            RefKind::of_artifact_type(c.kind()) == Some(kind)
                && c.name() == current
                && c.binds_in(namespace, account)
        }) {
            *name = Value::String(candidates[i].reference().to_owned());
            mark(i);
        }
    });
    bound.sort_unstable();
    bound
}

/// The version of a versioned name (`web-config-v003` → `("web-config", 3)`).
fn split_version(name: &str) -> Option<(&str, u32)> {
    let (base, digits) = name.rsplit_once("-v")?;
    if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) || base.is_empty() {
        return None;
    }
    Some((base, digits.parse().ok()?))
}

/// The artifacts a live workload references, as `findArtifactsFromResource` reports
/// them: one `docker/image` per distinct image, one `kubernetes/configMap` or
/// `kubernetes/secret` per referenced name (a versioned name split into base name
/// and version, as Spinnaker's deploy wrote it).
pub fn found_in(manifest: &Value, account: &str) -> Vec<Value> {
    let namespace = manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut found: Vec<Value> = Vec::new();
    let mut push = |artifact: Value| {
        if !found.contains(&artifact) {
            found.push(artifact);
        }
    };
    if pod_spec(manifest).is_none() {
        return Vec::new();
    }
    for image in images(manifest) {
        let name = image_name(&image).to_owned();
        let version = image
            .strip_prefix(&name)
            .map(|rest| rest.trim_start_matches([':', '@']))
            .unwrap_or_default()
            .to_owned();
        push(json!({
            "type": DOCKER_IMAGE, "name": name, "reference": image, "version": version,
            "customKind": false
        }));
    }
    for (kind, name) in references(manifest) {
        let (base, version) = match split_version(&name) {
            Some((base, v)) => (base.to_owned(), version_text(v)),
            None => (name.clone(), String::new()),
        };
        push(json!({
            "type": kind.artifact_type(), "name": base, "reference": name,
            "location": namespace, "version": version,
            "metadata": {"account": account}, "customKind": false
        }));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(artifact: Value) -> Candidate {
        Candidate {
            artifact,
            required: false,
        }
    }

    fn workload() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "migrate", "image": "gcr.io/p/app:latest"}],
                "containers": [
                    {"name": "web", "image": "gcr.io/p/app",
                     "envFrom": [{"configMapRef": {"name": "web-config"}}],
                     "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]},
                    {"name": "proxy", "image": "registry:5000/envoy:1.0"},
                    {"name": "other", "image": "gcr.io/p/application:2"}],
                "volumes": [{"name": "v", "configMap": {"name": "web-config"}}]}}}
        })
    }

    #[test]
    fn image_names_lose_their_tag_or_digest_but_not_a_registry_port() {
        assert_eq!(image_name("gcr.io/p/app:1.2.3"), "gcr.io/p/app");
        assert_eq!(image_name("gcr.io/p/app"), "gcr.io/p/app");
        assert_eq!(image_name("nginx@sha256:abc"), "nginx");
        assert_eq!(image_name("registry:5000/envoy:1.0"), "registry:5000/envoy");
        assert_eq!(image_name("registry:5000/envoy"), "registry:5000/envoy");
    }

    #[test]
    fn images_of_the_same_repository_take_the_artifact_reference_whatever_their_tag() {
        let mut manifest = workload();
        let candidates = vec![
            candidate(json!({"type": "docker/image", "name": "gcr.io/p/app",
                             "reference": "gcr.io/p/app:1.2.3"})),
            candidate(json!({"type": "docker/image", "name": "unused", "reference": "unused:1"})),
        ];
        let bound = bind(&mut manifest, &candidates, Some("shop"), "k8s");
        assert_eq!(bound, [0]);
        assert_eq!(
            images(&manifest),
            [
                "gcr.io/p/app:1.2.3",
                "registry:5000/envoy:1.0",
                "gcr.io/p/application:2",
                "gcr.io/p/app:1.2.3",
            ]
        );
    }

    #[test]
    fn config_map_and_secret_artifacts_bind_in_their_namespace_and_account_only() {
        let cm = json!({"type": "kubernetes/configMap", "name": "web-config",
                        "reference": "web-config-v004", "location": "shop"});
        let secret = json!({"type": "kubernetes/secret", "name": "db", "reference": "db-v002",
                            "location": "shop", "metadata": {"account": "other"}});
        let elsewhere = json!({"type": "kubernetes/configMap", "name": "web-config",
                               "reference": "web-config-v009", "location": "prod"});
        let candidates = vec![candidate(elsewhere), candidate(cm), candidate(secret)];
        let mut manifest = workload();
        let bound = bind(&mut manifest, &candidates, Some("shop"), "k8s");
        assert_eq!(bound, [1], "the secret belongs to another account");
        assert_eq!(
            references(&manifest),
            [
                (RefKind::ConfigMap, "web-config-v004".to_owned()),
                (RefKind::Secret, "db".to_owned()),
                (RefKind::ConfigMap, "web-config-v004".to_owned()),
            ]
        );
    }

    #[test]
    fn required_artifacts_beat_optional_ones_of_the_same_identity() {
        let optional =
            candidate(json!({"type": "docker/image", "name": "app", "reference": "app:1"}));
        let required = Candidate {
            artifact: json!({"type": "docker/image", "name": "app", "reference": "app:2"}),
            required: true,
        };
        let later = candidate(json!({"type": "docker/image", "name": "app", "reference": "app:3"}));
        let kept = dedupe(vec![optional, required, later]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].reference(), "app:2");
    }

    #[test]
    fn a_workload_reports_its_images_and_versioned_config() {
        let mut manifest = workload();
        manifest["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"] =
            json!("web-config-v003");
        let found = found_in(&manifest, "k8s");
        let kinds: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|a| {
                (
                    a["type"].as_str().unwrap(),
                    a["name"].as_str().unwrap(),
                    a["version"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("docker/image", "gcr.io/p/app", ""),
                ("docker/image", "registry:5000/envoy", "1.0"),
                ("docker/image", "gcr.io/p/application", "2"),
                ("docker/image", "gcr.io/p/app", "latest"),
                ("kubernetes/configMap", "web-config", ""),
                ("kubernetes/secret", "db", ""),
                ("kubernetes/configMap", "web-config", "v003"),
            ]
        );
        assert_eq!(found[6]["reference"], "web-config-v003");
        assert_eq!(found[6]["location"], "shop");
        assert!(found_in(&json!({"kind": "Service", "spec": {}}), "k8s").is_empty());
    }
}
