//! Spinnaker's versioning of ReplicaSets, Pods, ConfigMaps and Secrets (`-vNNN`), the
//! `strategy.spinnaker.io/*` annotations, and the rewriting of references to versioned
//! ConfigMaps and Secrets. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use gennaker_core::{Fields, Problem, ValidationReport};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::manifest::annotation;

/// `strategy.spinnaker.io/versioned`: `"true"` / `"false"` over the kind's default.
pub const VERSIONED: &str = "strategy.spinnaker.io/versioned";
/// `strategy.spinnaker.io/max-version-history`: how many versions to keep.
pub const MAX_VERSION_HISTORY: &str = "strategy.spinnaker.io/max-version-history";
/// `strategy.spinnaker.io/recreate`: delete, then create.
pub const RECREATE: &str = "strategy.spinnaker.io/recreate";
/// `strategy.spinnaker.io/replace`: replace (PUT) instead of apply.
pub const REPLACE: &str = "strategy.spinnaker.io/replace";
/// `strategy.spinnaker.io/use-source-capacity`: keep the live replica count.
pub const USE_SOURCE_CAPACITY: &str = "strategy.spinnaker.io/use-source-capacity";
/// Gennaker's record of a versioned resource's content (a SHA-256 of everything but
/// `metadata`), so an identical redeploy finds and reuses its version. Spinnaker
/// compares kubectl's last-applied-configuration, which server-side apply does not
/// write; that annotation is still read for resources Spinnaker deployed.
pub const CONTENT_HASH: &str = "gennaker.io/content-hash";
/// kubectl's client-side record of what was applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether resources of `kind` get `-vNNN` unless an annotation says otherwise.
pub fn versioned_by_default(kind: &str) -> bool {
    matches!(kind, "ReplicaSet" | "Pod" | "ConfigMap" | "Secret")
}

/// What a manifest's `strategy.spinnaker.io/*` annotations ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strategy {
    /// Whether it is versioned.
    pub versioned: bool,
    /// Keep at most this many versions (`max-version-history`).
    pub max_version_history: Option<u32>,
    /// Delete, then create.
    pub recreate: bool,
    /// Replace (PUT) instead of server-side apply.
    pub replace: bool,
    /// Keep the live object's replica count.
    pub use_source_capacity: bool,
}

impl Strategy {
    /// Reads the annotations of `manifest` (of `kind`); an unreadable value is an error
    /// naming the annotation.
    pub fn of(manifest: &Value, kind: &str) -> Result<Self, String> {
        let flag = |key: &str| -> Result<Option<bool>, String> {
            match annotation(manifest, key) {
                None => Ok(None),
                Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
                Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
                Some(v) => Err(format!(
                    "annotation {key} is '{v}': it must be \"true\" or \"false\""
                )),
            }
        };
        let max_version_history = match annotation(manifest, MAX_VERSION_HISTORY) {
            None => None,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(format!(
                        "annotation {MAX_VERSION_HISTORY} is '{v}': it must be a whole number of at least 1"
                    ));
                }
            },
        };
        let strategy = Self {
            versioned: flag(VERSIONED)?.unwrap_or_else(|| versioned_by_default(kind)),
            max_version_history,
            recreate: flag(RECREATE)?.unwrap_or(false),
            replace: flag(REPLACE)?.unwrap_or(false),
            use_source_capacity: flag(USE_SOURCE_CAPACITY)?.unwrap_or(false),
        };
        Ok(strategy)
    }
}

/// Spinnaker's rule for the strategies that disable the older version
/// (`trafficManagement.options.strategy` red/black or blue/green): a manifest that sets
/// `max-version-history` must keep at least 2 versions, or the cleanup after the deploy
/// would delete the version the strategy just disabled, leaving nothing to roll back to.
/// Checked at save time on the manifests given inline (expressions are known only at
/// run time).
pub fn check_history_for_strategy(stage: &Fields<'_>, report: &mut ValidationReport) {
    let traffic = stage.map.get("trafficManagement");
    let enabled = traffic
        .and_then(|t| t.get("enabled"))
        .is_some_and(|e| e.as_bool() == Some(true) || e.as_str() == Some("true"));
    let strategy = traffic
        .and_then(|t| t.pointer("/options/strategy"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let label = match strategy {
        "redblack" => "red/black",
        "bluegreen" => "blue/green",
        _ => return,
    };
    if !enabled {
        return;
    }
    let Some(manifests) = stage.map.get("manifests").and_then(Value::as_array) else {
        return;
    };
    for (i, manifest) in manifests.iter().enumerate() {
        let Some(text) = annotation(manifest, MAX_VERSION_HISTORY) else {
            continue;
        };
        let Ok(keep) = text.trim().parse::<u32>() else {
            continue;
        };
        if keep >= 2 {
            continue;
        }
        let at = stage
            .at("manifests")
            .index(i)
            .key("metadata")
            .key("annotations")
            .key(MAX_VERSION_HISTORY);
        report.push(
            Problem::error(
                at,
                format!(
                    "{MAX_VERSION_HISTORY} is {keep}, which conflicts with the {label} strategy: it disables the older version and keeps it for a rollback, so at least 2 versions must be kept"
                ),
            )
            .with_hint(
                "set the annotation to \"2\" or more, or remove it (or choose another strategy in trafficManagement.options.strategy)",
            ),
        );
    }
}

/// `web-v003`.
pub fn versioned_name(base: &str, version: u32) -> String {
    format!("{base}-v{version:03}")
}

/// The version of `name` if it is `base` plus `-vNNN` (three digits or more).
pub fn version_of(name: &str, base: &str) -> Option<u32> {
    let digits = name.strip_prefix(base)?.strip_prefix("-v")?;
    if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A copy of `value` with every object's keys sorted, so equal content hashes equal
/// whatever order its keys came in.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// A manifest without its `metadata`, canonical: what two versions must share to be
/// the same version (Spinnaker's `nonMetadataEquals`).
fn content(manifest: &Value) -> Value {
    let mut copy = manifest.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    canonical(&copy)
}

/// The SHA-256 of a manifest's content (see [`CONTENT_HASH`]).
pub fn content_hash(manifest: &Value) -> String {
    let text = content(manifest).to_string();
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// One live version of a versioned resource.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveVersion {
    /// Its version number.
    pub version: u32,
    /// Its name (`web-v003`).
    pub name: String,
    /// Its [`CONTENT_HASH`], or the hash of its last-applied-configuration.
    pub hash: Option<String>,
}

impl LiveVersion {
    /// Reads a live object of base name `base`; `None` if its name carries no version.
    pub fn of(object: &Value, base: &str) -> Option<Self> {
        let name = object.pointer("/metadata/name")?.as_str()?;
        let version = version_of(name, base)?;
        let hash = annotation(object, CONTENT_HASH)
            .map(str::to_owned)
            .or_else(|| {
                let applied = annotation(object, LAST_APPLIED)?;
                serde_json::from_str::<Value>(applied)
                    .ok()
                    .map(|v| content_hash(&v))
            });
        Some(Self {
            version,
            name: name.to_owned(),
            hash,
        })
    }
}

/// Which version a deploy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionChoice {
    /// The version number.
    pub version: u32,
    /// Whether an identical live version is reused.
    pub reused: bool,
}

/// The version for content `hash`: the live version with the same content (the
/// newest, if several), else one past the highest, from 0.
pub fn choose_version(live: &[LiveVersion], hash: &str) -> VersionChoice {
    if let Some(same) = live
        .iter()
        .filter(|v| v.hash.as_deref() == Some(hash))
        .max_by_key(|v| v.version)
    {
        return VersionChoice {
            version: same.version,
            reused: true,
        };
    }
    VersionChoice {
        version: live
            .iter()
            .map(|v| v.version.saturating_add(1))
            .max()
            .unwrap_or(0),
        reused: false,
    }
}

/// The versions beyond the newest `keep` (by version number, not creation time, so
/// a clock skew or a recreated object cannot delete the newest).
pub fn versions_to_delete(live: &[LiveVersion], keep: u32) -> Vec<String> {
    let mut sorted: Vec<&LiveVersion> = live.iter().collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.version));
    sorted
        .into_iter()
        .skip(keep as usize)
        .map(|v| v.name.clone())
        .collect()
}

/// A ConfigMap or Secret deployed (versioned) in the same stage: references to
/// `base` in `namespace` become `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    /// `ConfigMap` or `Secret`.
    pub kind: &'static str,
    /// The namespace.
    pub namespace: Option<String>,
    /// The name in the manifests.
    pub base: String,
}

/// Rewrites references to ConfigMaps and Secrets in a workload's pod spec (volumes,
/// projected sources, `env[].valueFrom`, `envFrom`) to their versioned names, for the
/// bindings in the workload's `namespace`. Returns how many were rewritten.
pub fn rewrite_references(
    manifest: &mut Value,
    namespace: Option<&str>,
    bindings: &HashMap<Binding, String>,
) -> usize {
    if bindings.is_empty() {
        return 0;
    }
    let lookup = |kind: &'static str, base: &str| {
        bindings.get(&Binding {
            kind,
            namespace: namespace.map(str::to_owned),
            base: base.to_owned(),
        })
    };
    let mut count = 0;
    let mut rename = |value: Option<&mut Value>, kind: &'static str| {
        if let Some(value) = value
            && let Some(name) = value.as_str().and_then(|base| lookup(kind, base))
        {
            *value = Value::String(name.clone());
            count += 1;
        }
    };
    for pod_spec in [
        "/spec/template/spec",
        "/spec/jobTemplate/spec/template/spec",
        "/spec",
    ] {
        let Some(spec) = manifest.pointer_mut(pod_spec) else {
            continue;
        };
        if spec.get("containers").is_none() {
            continue;
        }
        if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
            for volume in volumes {
                rename(volume.pointer_mut("/configMap/name"), "ConfigMap");
                rename(volume.pointer_mut("/secret/secretName"), "Secret");
                if let Some(sources) = volume
                    .pointer_mut("/projected/sources")
                    .and_then(Value::as_array_mut)
                {
                    for source in sources {
                        rename(source.pointer_mut("/configMap/name"), "ConfigMap");
                        rename(source.pointer_mut("/secret/name"), "Secret");
                    }
                }
            }
        }
        for list in ["containers", "initContainers"] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in containers {
                if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                    for var in env {
                        rename(
                            var.pointer_mut("/valueFrom/configMapKeyRef/name"),
                            "ConfigMap",
                        );
                        rename(var.pointer_mut("/valueFrom/secretKeyRef/name"), "Secret");
                    }
                }
                if let Some(from) = container.get_mut("envFrom").and_then(Value::as_array_mut) {
                    for source in from {
                        rename(source.pointer_mut("/configMapRef/name"), "ConfigMap");
                        rename(source.pointer_mut("/secretRef/name"), "Secret");
                    }
                }
            }
        }
        // A pod spec found: the deeper ones are not pod specs of this manifest.
        break;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn history_problems(strategy: &str, keep: &str) -> Vec<(String, String, Option<String>)> {
        let stage = json!({"type": "deployManifest", "manifests": [
            {"kind": "ConfigMap", "metadata": {"name": "c"}},
            {"kind": "ReplicaSet", "metadata": {"name": "web",
                "annotations": {MAX_VERSION_HISTORY: keep}}}],
            "trafficManagement": {"enabled": true, "options": {
                "strategy": strategy, "services": ["service web"]}}});
        let fields = Fields::new(
            stage.as_object().unwrap(),
            gennaker_core::JsonPath::root().key("stages").index(0),
        );
        let mut report = ValidationReport::default();
        check_history_for_strategy(&fields, &mut report);
        report
            .errors()
            .map(|p| (p.path.clone(), p.message.clone(), p.hint.clone()))
            .collect()
    }

    #[test]
    fn red_black_needs_a_max_version_history_of_at_least_two() {
        let problems = history_problems("redblack", "1");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (path, message, hint) = &problems[0];
        assert_eq!(
            path,
            "$.stages[0].manifests[1].metadata.annotations['strategy.spinnaker.io/max-version-history']"
        );
        assert!(message.contains("red/black"), "{message}");
        assert!(message.contains("at least 2"), "{message}");
        assert!(
            hint.as_deref().unwrap().contains("\"2\" or more"),
            "{hint:?}"
        );
        assert_eq!(history_problems("bluegreen", "1").len(), 1);
        assert!(history_problems("redblack", "2").is_empty());
        assert!(history_problems("highlander", "1").is_empty());
        assert!(history_problems("redblack", "${keep}").is_empty());
    }

    #[test]
    fn kinds_and_annotations_decide_what_is_versioned() {
        let rs = json!({"kind": "ReplicaSet", "metadata": {"name": "web"}});
        assert!(Strategy::of(&rs, "ReplicaSet").unwrap().versioned);
        let deploy = json!({"kind": "Deployment", "metadata": {"name": "web"}});
        assert!(!Strategy::of(&deploy, "Deployment").unwrap().versioned);
        let opted = json!({"metadata": {"annotations": {
            VERSIONED: "true", MAX_VERSION_HISTORY: "2", RECREATE: "True",
            USE_SOURCE_CAPACITY: "true"}}});
        let s = Strategy::of(&opted, "Deployment").unwrap();
        assert!(s.versioned && s.recreate && s.use_source_capacity && !s.replace);
        assert_eq!(s.max_version_history, Some(2));
        let off = json!({"metadata": {"annotations": {VERSIONED: "false"}}});
        assert!(!Strategy::of(&off, "ConfigMap").unwrap().versioned);
        let bad = json!({"metadata": {"annotations": {MAX_VERSION_HISTORY: "zero"}}});
        assert!(
            Strategy::of(&bad, "ReplicaSet")
                .unwrap_err()
                .contains(MAX_VERSION_HISTORY)
        );
        let bad = json!({"metadata": {"annotations": {REPLACE: "yes"}}});
        assert!(
            Strategy::of(&bad, "ReplicaSet")
                .unwrap_err()
                .contains(REPLACE)
        );
    }

    #[test]
    fn names_carry_three_digit_versions() {
        assert_eq!(versioned_name("web", 0), "web-v000");
        assert_eq!(versioned_name("web", 1234), "web-v1234");
        assert_eq!(version_of("web-v007", "web"), Some(7));
        assert_eq!(version_of("web-v1234", "web"), Some(1234));
        assert_eq!(version_of("web-v07", "web"), None);
        assert_eq!(version_of("web-api-v001", "web"), None);
        assert_eq!(version_of("web", "web"), None);
    }

    #[test]
    fn identical_content_reuses_its_version_whatever_the_metadata_or_key_order() {
        let a = json!({"kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}},
                       "data": {"k": "v", "j": "w"}});
        let b = json!({"data": {"j": "w", "k": "v"}, "kind": "ConfigMap",
                       "metadata": {"name": "b"}});
        assert_eq!(content_hash(&a), content_hash(&b));
        let changed = json!({"kind": "ConfigMap", "metadata": {}, "data": {"k": "v2", "j": "w"}});
        assert_ne!(content_hash(&a), content_hash(&changed));

        let live = |version, hash: &str| LiveVersion {
            version,
            name: versioned_name("a", version),
            hash: Some(hash.into()),
        };
        assert_eq!(
            choose_version(&[], "h"),
            VersionChoice {
                version: 0,
                reused: false
            }
        );
        let versions = [live(0, "h0"), live(1, "h1"), live(3, "h3")];
        assert_eq!(
            choose_version(&versions, "h1"),
            VersionChoice {
                version: 1,
                reused: true
            }
        );
        assert_eq!(
            choose_version(&versions, "new"),
            VersionChoice {
                version: 4,
                reused: false
            }
        );
        assert_eq!(versions_to_delete(&versions, 2), vec!["a-v000"]);
        assert_eq!(versions_to_delete(&versions, 1), vec!["a-v001", "a-v000"]);
        assert!(versions_to_delete(&versions, 5).is_empty());
    }

    #[test]
    fn live_versions_are_read_from_our_hash_or_kubectls_record() {
        let ours = json!({"metadata": {"name": "web-v002", "annotations": {CONTENT_HASH: "abc"}}});
        assert_eq!(
            LiveVersion::of(&ours, "web"),
            Some(LiveVersion {
                version: 2,
                name: "web-v002".into(),
                hash: Some("abc".into())
            })
        );
        let applied = json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}});
        let spinnakers = json!({"metadata": {"name": "cfg-v000", "annotations": {
            LAST_APPLIED: applied.to_string()}}});
        assert_eq!(
            LiveVersion::of(&spinnakers, "cfg").unwrap().hash,
            Some(content_hash(&applied))
        );
        assert_eq!(LiveVersion::of(&ours, "other"), None);
    }

    #[test]
    fn references_to_versioned_config_are_rewritten_in_the_same_namespace_only() {
        let mut deployment = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "volumes": [{"name": "c", "configMap": {"name": "cfg"}},
                        {"name": "s", "secret": {"secretName": "creds"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "cfg"}}]}}],
            "containers": [{"name": "web",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "other", "key": "b"}}}],
                "envFrom": [{"secretRef": {"name": "creds"}}]}]}}}});
        let mut bindings = HashMap::new();
        bindings.insert(
            Binding {
                kind: "ConfigMap",
                namespace: Some("shop".into()),
                base: "cfg".into(),
            },
            "cfg-v004".to_owned(),
        );
        bindings.insert(
            Binding {
                kind: "Secret",
                namespace: Some("shop".into()),
                base: "creds".into(),
            },
            "creds-v001".to_owned(),
        );
        let mut elsewhere = deployment.clone();
        assert_eq!(
            rewrite_references(&mut elsewhere, Some("dev"), &bindings),
            0
        );
        assert_eq!(
            rewrite_references(&mut deployment, Some("shop"), &bindings),
            5
        );
        let spec = &deployment["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][0]["configMap"]["name"], "cfg-v004");
        assert_eq!(spec["volumes"][1]["secret"]["secretName"], "creds-v001");
        assert_eq!(
            spec["volumes"][2]["projected"]["sources"][0]["configMap"]["name"],
            "cfg-v004"
        );
        let web = &spec["containers"][0];
        assert_eq!(
            web["env"][0]["valueFrom"]["configMapKeyRef"]["name"],
            "cfg-v004"
        );
        assert_eq!(web["env"][1]["valueFrom"]["secretKeyRef"]["name"], "other");
        assert_eq!(web["envFrom"][0]["secretRef"]["name"], "creds-v001");

        let mut pod = json!({"kind": "Pod", "spec": {"containers": [
            {"name": "a", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}});
        assert_eq!(rewrite_references(&mut pod, Some("shop"), &bindings), 1);
    }
}
