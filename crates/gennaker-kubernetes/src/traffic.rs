//! Traffic as Spinnaker manages it on Kubernetes: a workload is "enabled" behind a
//! Service when its pods carry the Service's selector labels. A deploy with traffic
//! copies the selector into the pod template (so the new pods join the Service's
//! endpoints as each becomes Ready — the Service itself never changes); disabling
//! removes those labels from the workload's template and from every pod it owns,
//! enabling adds them back. The workload lists its Services in the annotation
//! `traffic.spinnaker.io/load-balancers`, so a later enable/disable finds them; a
//! blue/green version deployed with preview Services also lists those in
//! `traffic.gennaker.io/preview-load-balancers` (its pods carry only their labels until
//! it is promoted, see [`promotion`]). Every relabel — of the manifest stages and of
//! the generic provider's enable, disable and weights — goes through [`relabel`].

use serde_json::{Map, Value, json};

use crate::cluster::{Account, PatchBody, Resolved};
use crate::error::KubeError;
use crate::manifest::{ManifestName, annotation};

/// `traffic.spinnaker.io/load-balancers`: a JSON list of `"service <name>"`.
pub const LOAD_BALANCERS: &str = "traffic.spinnaker.io/load-balancers";

/// The most Services one workload is put behind (or taken out of) at once.
pub const MAX_SERVICES: usize = 20;

/// The kinds whose pods may be put behind a Service by their labels.
pub fn has_pods(kind: &str) -> bool {
    matches!(
        kind,
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" | "Pod"
    )
}

/// `traffic.gennaker.io/preview-load-balancers`: the preview Services (a JSON list of
/// `"service <name>"`) of a version deployed blue/green with a preview; a Gennaker
/// extension beside Spinnaker's annotation, which keeps listing the active Services.
pub const PREVIEW_LOAD_BALANCERS: &str = "traffic.gennaker.io/preview-load-balancers";

/// `traffic.gennaker.io/scale-down-delay-seconds`: how long after its promotion the
/// older versions a blue/green version disabled are scaled to 0 (Argo Rollouts'
/// `scaleDownDelaySeconds`; a Gennaker extension written by the deploy from
/// `trafficManagement.options.scaleDownDelaySeconds`, so a later `enableManifest`
/// finds it).
pub const SCALE_DOWN_DELAY: &str = "traffic.gennaker.io/scale-down-delay-seconds";

/// The longest `scaleDownDelaySeconds` (a day): a promotion's task waits it out.
pub const MAX_SCALE_DOWN_DELAY_SECONDS: u64 = 24 * 60 * 60;

/// A manifest's scale-down delay (`None` when it has none: the older versions keep
/// their pods).
pub fn scale_down_delay(manifest: &Value) -> Result<Option<u64>, String> {
    let Some(text) = annotation(manifest, SCALE_DOWN_DELAY) else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(seconds) if seconds <= MAX_SCALE_DOWN_DELAY_SECONDS => Ok(Some(seconds)),
        _ => Err(format!(
            "annotation {SCALE_DOWN_DELAY} is '{text}': it must be a whole number of seconds from 0 to {MAX_SCALE_DOWN_DELAY_SECONDS}"
        )),
    }
}

/// Writes the stage's `scaleDownDelaySeconds` into the manifest's annotation (the
/// stage's value wins over one the manifest carries).
pub fn set_scale_down_delay(manifest: &mut Value, seconds: u64) {
    let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(SCALE_DOWN_DELAY.into(), json!(seconds.to_string()));
    }
}

/// The Services a manifest's annotation lists (empty when none).
pub fn load_balancers(manifest: &Value) -> Result<Vec<String>, String> {
    listed(manifest, LOAD_BALANCERS)
}

/// The preview Services a manifest's annotation lists (empty when none).
pub fn preview_load_balancers(manifest: &Value) -> Result<Vec<String>, String> {
    listed(manifest, PREVIEW_LOAD_BALANCERS)
}

fn listed(manifest: &Value, key: &str) -> Result<Vec<String>, String> {
    let Some(text) = annotation(manifest, key) else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Vec<String>>(text).map_err(|_| {
        format!("annotation {key} is '{text}': it must be a JSON list like [\"service my-svc\"]")
    })
}

/// Reads `"service my-svc"` (the only kind Spinnaker puts traffic behind).
pub fn service_name(text: &str) -> Result<String, String> {
    let name = ManifestName::parse(text)?;
    if name.kind != "Service" {
        return Err(format!(
            "'{text}' is not a Service: traffic goes through Services (\"service <name>\")"
        ));
    }
    Ok(name.name)
}

/// Writes the stage's `services` into the manifest's annotation; a manifest that
/// already lists other Services is refused, as Spinnaker refuses it.
pub fn set_load_balancers(manifest: &mut Value, services: &[String]) -> Result<(), String> {
    set_listed(manifest, LOAD_BALANCERS, "services", services)
}

/// Writes the stage's `previewServices` into the manifest's preview annotation; a
/// manifest listing other preview Services (or any, when the stage names none) is
/// refused: without the stage's blue/green strategy nobody would promote it.
pub fn set_preview_load_balancers(manifest: &mut Value, services: &[String]) -> Result<(), String> {
    if services.is_empty() {
        let present = preview_load_balancers(manifest)?;
        if !present.is_empty() {
            return Err(format!(
                "the manifest sets annotation {PREVIEW_LOAD_BALANCERS} to {present:?} but the stage names no previewServices: set them in trafficManagement.options.previewServices (with strategy \"bluegreen\"), not in the manifest"
            ));
        }
        return Ok(());
    }
    set_listed(
        manifest,
        PREVIEW_LOAD_BALANCERS,
        "previewServices",
        services,
    )
}

fn set_listed(
    manifest: &mut Value,
    key: &str,
    field: &str,
    services: &[String],
) -> Result<(), String> {
    let present = listed(manifest, key)?;
    if !present.is_empty() {
        if present == services {
            return Ok(());
        }
        return Err(format!(
            "the manifest already has annotation {key} set to {present:?}, which differs from the stage's {field} {services:?}; remove one of them"
        ));
    }
    let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err("the manifest has no metadata".into());
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(key.into(), json!(json!(services).to_string()));
    }
    Ok(())
}

/// Where a kind's pods get their labels: a Pod's own, else its template's.
fn pod_labels_pointer(kind: &str) -> &'static str {
    if kind == "Pod" {
        "/metadata/labels"
    } else {
        "/spec/template/metadata/labels"
    }
}

/// Copies a Service's `selector` into the labels of the manifest's pods (template,
/// or a bare Pod's own). The selector must be non-empty and share no key with
/// labels the manifest sets itself: otherwise disabling (removing the keys) would
/// strip the workload's own labels (spinnaker#4923).
pub fn attach(
    manifest: &mut Value,
    kind: &str,
    service: &str,
    selector: &Map<String, Value>,
) -> Result<(), String> {
    if selector.is_empty() {
        return Err(format!(
            "service {service} has no selector, so no pods can be put behind it by their labels; give it a selector with a label only its workloads' traffic uses (e.g. frontedBy: {service})"
        ));
    }
    let pointer = pod_labels_pointer(kind);
    let existing = manifest.pointer(pointer).and_then(Value::as_object);
    if let Some(common) = selector
        .keys()
        .find(|key| existing.is_some_and(|labels| labels.contains_key(*key)))
    {
        return Err(format!(
            "service {service}'s selector label '{common}' is also set by the workload itself: the Service selector must have no label keys in common with the workload, so that disabling it removes only traffic labels; select on a dedicated label (e.g. frontedBy: {service})"
        ));
    }
    let mut path: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let labels = object_at(manifest, &mut path).ok_or_else(|| {
        format!("the manifest's {pointer} is not an object: cannot label its pods")
    })?;
    for (key, value) in selector {
        labels.insert(key.clone(), value.clone());
    }
    Ok(())
}

fn object_at<'a>(value: &'a mut Value, path: &mut [&str]) -> Option<&'a mut Map<String, Value>> {
    let mut current = value;
    for key in path.iter() {
        current = current
            .as_object_mut()?
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    current.as_object_mut()
}

/// The selectors of `services` (`"service x"`) in `namespace`; a missing Service or
/// one without a selector is an error naming it.
pub async fn selectors(
    account: &Account,
    namespace: Option<&str>,
    services: &[String],
) -> Result<Vec<(String, Map<String, Value>)>, TrafficError> {
    if services.len() > MAX_SERVICES {
        return Err(TrafficError::Invalid(format!(
            "{} Services are named; at most {MAX_SERVICES}",
            services.len()
        )));
    }
    let kind = account.resolve("v1", "Service").await?;
    let mut found = Vec::with_capacity(services.len());
    for text in services {
        let name = service_name(text).map_err(TrafficError::Invalid)?;
        let live = account
            .get(&kind, namespace, &name)
            .await?
            .ok_or_else(|| {
                TrafficError::Invalid(format!(
                    "service {name} does not exist in namespace '{}': create it (in this stage's manifests or before) or leave it out of the services",
                    namespace.unwrap_or_default()
                ))
            })?;
        let selector = live
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if selector.is_empty() {
            return Err(TrafficError::Invalid(format!(
                "service {name} has no selector, so traffic cannot be moved by pod labels"
            )));
        }
        found.push((name, selector));
    }
    Ok(found)
}

/// Why traffic could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The API server refused or failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The workload or Services do not allow it; what to change.
    #[error("{0}")]
    Invalid(String),
}

/// What an enable or disable changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// Whether the workload's template (or a Pod's labels) changed.
    pub workload: bool,
    /// The pods relabelled.
    pub pods: Vec<String>,
}

/// What a relabel does to one label key of a workload's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// Sets it to this value.
    Set(Value),
    /// Removes it, whatever its value.
    Removed,
    /// Removes it when it has this value: a pod the key puts behind another Service
    /// (same key, other value) stays there.
    RemovedIf(Value),
}

/// Puts `workload` (live, of `kind`) behind (`enable`) or out of the Services whose
/// `selectors` are given.
pub async fn set_traffic(
    account: &Account,
    kind: &Resolved,
    namespace: Option<&str>,
    workload: &Value,
    selectors: &[(String, Map<String, Value>)],
    enable: bool,
) -> Result<Moved, TrafficError> {
    relabel(
        account,
        kind,
        namespace,
        workload,
        &wanted_labels(selectors, enable),
    )
    .await
}

/// The label changes that promote a blue/green version: into every `active`
/// Service and out of the `preview` ones, in one patch per object (a preview
/// selector sharing a key with an active one is replaced by the active value).
pub fn promotion(
    active: &[(String, Map<String, Value>)],
    preview: &[(String, Map<String, Value>)],
) -> Vec<(String, Label)> {
    let mut changes = wanted_labels(active, true);
    for (key, label) in wanted_labels(preview, false) {
        if !changes.iter().any(|(k, _)| *k == key) {
            changes.push((key, label));
        }
    }
    changes
}

/// Applies `changes` to `workload`'s (live, of `kind`) pod labels: its pod template
/// (a Pod's own labels), then every pod a ReplicaSet owns (the template reaches only
/// new pods; a Deployment's, StatefulSet's or DaemonSet's controller rolls its pods
/// itself). Idempotent: only what differs is patched. A key of the workload's own
/// selector is never touched.
pub async fn relabel(
    account: &Account,
    kind: &Resolved,
    namespace: Option<&str>,
    workload: &Value,
    changes: &[(String, Label)],
) -> Result<Moved, TrafficError> {
    let kind_name = kind.resource.kind.as_str();
    if !has_pods(kind_name) {
        return Err(TrafficError::Invalid(format!(
            "a {kind_name} has no pods to put behind a Service; enable and disable act on ReplicaSets, Deployments, StatefulSets, DaemonSets and Pods"
        )));
    }
    let name = workload
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let own = workload
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    if let Some((key, _)) = changes
        .iter()
        .find(|(key, _)| own.is_some_and(|own| own.contains_key(key)))
    {
        return Err(TrafficError::Invalid(format!(
            "{kind_name} '{name}' in namespace '{}' selects its pods by label '{key}', which a Service's selector also uses: a Service selector must have no label keys in common with the workload's selector (give the Service a dedicated label, e.g. frontedBy: <service>)",
            namespace.unwrap_or_default()
        )));
    }
    let mut moved = Moved::default();
    let pointer = pod_labels_pointer(kind_name);
    if let Some(change) = difference(workload.pointer(pointer), changes) {
        let body = if kind_name == "Pod" {
            json!({"metadata": {"labels": change}})
        } else {
            json!({"spec": {"template": {"metadata": {"labels": change}}}})
        };
        account
            .patch(kind, namespace, name, PatchBody::Merge(body))
            .await?;
        moved.workload = true;
    }
    if kind_name != "ReplicaSet" {
        return Ok(moved);
    }
    let Some(uid) = workload.pointer("/metadata/uid").and_then(Value::as_str) else {
        return Ok(moved);
    };
    let pods_kind = account.resolve("v1", "Pod").await?;
    for pod in account
        .list(&pods_kind, namespace, &match_labels(workload))
        .await?
    {
        if !owned_by(&pod, uid) || pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let Some(change) = difference(pod.pointer("/metadata/labels"), changes) else {
            continue;
        };
        let pod_name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match account
            .patch(
                &pods_kind,
                namespace,
                &pod_name,
                PatchBody::Merge(json!({"metadata": {"labels": change}})),
            )
            .await
        {
            Ok(_) => moved.pods.push(pod_name),
            // Gone meanwhile: nothing left to move.
            Err(KubeError::Refused { code: 404, .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(moved)
}

/// The labels an enable sets or a disable removes (each only where it has the
/// Service's value).
fn wanted_labels(selectors: &[(String, Map<String, Value>)], enable: bool) -> Vec<(String, Label)> {
    let mut wanted: Vec<(String, Label)> = Vec::new();
    for (_, selector) in selectors {
        for (key, value) in selector {
            let label = if enable {
                if wanted.iter().any(|(k, _)| k == key) {
                    continue;
                }
                Label::Set(value.clone())
            } else {
                Label::RemovedIf(value.clone())
            };
            wanted.push((key.clone(), label));
        }
    }
    wanted
}

/// The merge patch of `labels` that gets them to `wanted`, or `None` when they are
/// there already.
fn difference(labels: Option<&Value>, wanted: &[(String, Label)]) -> Option<Value> {
    let mut change = Map::new();
    for (key, label) in wanted {
        let current = labels.and_then(|l| l.get(key));
        let remove = match label {
            Label::Set(want) => {
                if current != Some(want) {
                    change.insert(key.clone(), want.clone());
                }
                continue;
            }
            Label::Removed => current.is_some(),
            Label::RemovedIf(value) => current == Some(value),
        };
        if remove {
            change.insert(key.clone(), Value::Null);
        }
    }
    (!change.is_empty()).then_some(Value::Object(change))
}

/// Whether `object` has an owner reference to `uid`.
pub fn owned_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// `spec.selector.matchLabels` as a label selector (`a=b,c=d`).
pub fn match_labels(workload: &Value) -> String {
    workload
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Whether a live workload is behind a Service with this selector (its pod labels
/// hold every key and value).
pub fn selected_by(workload: &Value, kind: &str, selector: &Map<String, Value>) -> bool {
    let labels = workload.pointer(pod_labels_pointer(kind));
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}}})
    }

    fn selector(pairs: Value) -> Map<String, Value> {
        pairs.as_object().unwrap().clone()
    }

    #[test]
    fn a_service_selector_is_copied_into_the_pod_template() {
        let mut manifest = rs();
        attach(
            &mut manifest,
            "ReplicaSet",
            "web",
            &selector(json!({"frontedBy": "web"})),
        )
        .unwrap();
        assert_eq!(
            manifest["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", "frontedBy": "web"})
        );
        assert!(selected_by(
            &manifest,
            "ReplicaSet",
            &selector(json!({"frontedBy": "web"}))
        ));
        let mut pod = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {}});
        attach(
            &mut pod,
            "Pod",
            "web",
            &selector(json!({"frontedBy": "web"})),
        )
        .unwrap();
        assert_eq!(pod["metadata"]["labels"]["frontedBy"], "web");
    }

    #[test]
    fn selectors_sharing_a_key_with_the_workload_or_empty_are_refused() {
        let mut manifest = rs();
        let why = attach(
            &mut manifest,
            "ReplicaSet",
            "web",
            &selector(json!({"app": "web"})),
        )
        .unwrap_err();
        assert!(why.contains("'app'"), "{why}");
        assert!(why.contains("frontedBy"), "{why}");
        let why = attach(&mut manifest, "ReplicaSet", "web", &Map::new()).unwrap_err();
        assert!(why.contains("no selector"), "{why}");
    }

    #[test]
    fn the_load_balancers_annotation_is_written_once_and_conflicts_are_refused() {
        let mut manifest = rs();
        let services = vec!["service web".to_owned()];
        set_load_balancers(&mut manifest, &services).unwrap();
        assert_eq!(load_balancers(&manifest).unwrap(), services);
        set_load_balancers(&mut manifest, &services).unwrap();
        let why = set_load_balancers(&mut manifest, &["service other".to_owned()]).unwrap_err();
        assert!(why.contains("already has annotation"), "{why}");
        assert!(service_name("deployment web").is_err());
        assert_eq!(service_name("service web").unwrap(), "web");
    }

    #[test]
    fn only_the_labels_that_differ_are_patched() {
        let selectors = vec![("web".to_owned(), selector(json!({"frontedBy": "web"})))];
        let on = wanted_labels(&selectors, true);
        let off = wanted_labels(&selectors, false);
        let labelled = json!({"app": "web", "frontedBy": "web"});
        let bare = json!({"app": "web"});
        let elsewhere = json!({"app": "web", "frontedBy": "web-preview"});
        assert_eq!(difference(Some(&labelled), &on), None);
        assert_eq!(
            difference(Some(&labelled), &off),
            Some(json!({"frontedBy": null}))
        );
        assert_eq!(difference(Some(&bare), &off), None);
        assert_eq!(
            difference(Some(&elsewhere), &off),
            None,
            "a disable leaves a pod that the key puts behind another Service"
        );
        assert_eq!(difference(None, &on), Some(json!({"frontedBy": "web"})));
        assert_eq!(
            difference(Some(&labelled), &[("frontedBy".into(), Label::Removed)]),
            Some(json!({"frontedBy": null}))
        );
    }

    #[test]
    fn a_scale_down_delay_is_read_back_bounded() {
        let mut rs = json!({"metadata": {"name": "web-v001"}});
        assert_eq!(scale_down_delay(&rs), Ok(None));
        set_scale_down_delay(&mut rs, 30);
        assert_eq!(scale_down_delay(&rs), Ok(Some(30)));
        let too_long = json!({"metadata": {"annotations": {SCALE_DOWN_DELAY: "86401"}}});
        let why = scale_down_delay(&too_long).unwrap_err();
        assert!(
            why.contains(SCALE_DOWN_DELAY) && why.contains("86400"),
            "{why}"
        );
    }

    #[test]
    fn a_promotion_moves_the_pods_from_the_preview_to_the_active_services_in_one_patch() {
        let active = vec![("web".to_owned(), selector(json!({"frontedBy": "web"})))];
        let same_key = vec![(
            "web-preview".to_owned(),
            selector(json!({"frontedBy": "web-preview"})),
        )];
        let own_key = vec![(
            "web-preview".to_owned(),
            selector(json!({"previewOf": "web"})),
        )];
        let previewed = json!({"app": "web", "frontedBy": "web-preview"});
        assert_eq!(
            difference(Some(&previewed), &promotion(&active, &same_key)),
            Some(json!({"frontedBy": "web"}))
        );
        let previewed = json!({"app": "web", "previewOf": "web"});
        assert_eq!(
            difference(Some(&previewed), &promotion(&active, &own_key)),
            Some(json!({"frontedBy": "web", "previewOf": null}))
        );
        let promoted = json!({"app": "web", "frontedBy": "web"});
        assert_eq!(
            difference(Some(&promoted), &promotion(&active, &same_key)),
            None,
            "a repeated promotion patches nothing"
        );
    }

    #[test]
    fn the_preview_annotation_is_written_only_from_the_stage() {
        let mut manifest = rs();
        set_preview_load_balancers(&mut manifest, &[]).unwrap();
        assert!(preview_load_balancers(&manifest).unwrap().is_empty());
        let preview = vec!["service web-preview".to_owned()];
        set_preview_load_balancers(&mut manifest, &preview).unwrap();
        assert_eq!(preview_load_balancers(&manifest).unwrap(), preview);
        assert!(load_balancers(&manifest).unwrap().is_empty());
        let why = set_preview_load_balancers(&mut manifest, &[]).unwrap_err();
        assert!(why.contains("previewServices"), "{why}");
    }
}
