//! The stages that change resources already there: `deleteManifest`,
//! `scaleManifest`, `patchManifest` (its body inline, or read from an artifact by
//! `source`), `undoRolloutManifest`, `rollingRestartManifest`.

use std::sync::Arc;

use async_trait::async_trait;
use gennaker_core::lenient::value_as_i64;
use gennaker_core::{Fields, Problem, ValidationReport};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult};
use serde_json::{Map, Value, json};

use super::source::{RECORD, RESOLVE_PATCH, from_artifact};
use super::wait::{match_labels, owned_by, revision};
use super::{Target, account, authorize, names_by_namespace, static_target};
use crate::cluster::{Account, Cascade, DeleteOptions, KubernetesAccounts, PatchBody};
use crate::manifest::{kind_key, known_kind};

/// `deleteManifest`'s task.
pub(super) const DELETE: &str = "deleteManifest";
/// `scaleManifest`'s task.
pub(super) const SCALE: &str = "scaleManifest";
/// `patchManifest`'s task.
pub(super) const PATCH: &str = "patchManifest";
/// Records which ReplicaSet an undo goes back to, once.
pub(super) const RESOLVE_UNDO: &str = "resolveUndoRolloutTarget";
/// `undoRolloutManifest`'s task.
pub(super) const UNDO: &str = "undoRolloutManifest";
/// `rollingRestartManifest`'s task.
pub(super) const RESTART: &str = "rollingRestartManifest";

/// The annotation a patch writes with itself, so a repeat finds it done.
const PATCHED_BY: &str = "gennaker.io/patched-by";
/// kubectl's restart stamp on a pod template.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The most objects a label-selector delete removes.
const MAX_DELETE: usize = 200;

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    for action in [
        Action::Delete,
        Action::Scale,
        Action::Patch,
        Action::ResolveUndo,
        Action::Undo,
        Action::Restart,
    ] {
        registry.task(OpTask {
            accounts: accounts.clone(),
            action,
        });
    }
}

/// A static target (`manifestName`, `location`) or a dynamic one, checked at save.
pub(super) fn check_target(stage: &Fields<'_>, report: &mut ValidationReport) {
    if stage
        .get("criteria")
        .is_some_and(|c| !c.is_null() && c != "")
    {
        super::target::check_dynamic(stage, report);
        return;
    }
    match stage.required_string("manifestName", "the resource to act on", report) {
        Some(text) if !text.contains("${") => {
            if let Err(why) = crate::manifest::ManifestName::parse(text) {
                report.push(Problem::error(stage.at("manifestName"), why));
            }
        }
        _ => {}
    }
    stage.string("location", report);
}

pub(super) fn check_delete(stage: &Fields<'_>, report: &mut ValidationReport) {
    if stage.has("labelSelectors") && !stage.has("manifestName") {
        match stage.array("kinds", report) {
            Some(kinds) if !kinds.is_empty() => {
                for (i, kind) in stage.strings("kinds", report) {
                    if known_kind(kind).is_none() && !kind.contains("${") {
                        report.push(Problem::error(
                            stage.at("kinds").index(i),
                            format!(
                                "'{kind}' is not a kind Gennaker knows ({})",
                                crate::manifest::known_kind_keys()
                            ),
                        ));
                    }
                }
            }
            _ => report.push(Problem::error(
                stage.at("kinds"),
                "a label-selector delete needs the kinds to delete (\"kinds\": [\"deployment\"])",
            )),
        }
        if let Some(selectors) = stage.object("labelSelectors", report) {
            for (_, selector) in selectors.objects("selectors", "a label selector", report) {
                selector.required_string("key", "the label key", report);
                selector.one_of(
                    "kind",
                    &[
                        "ANY",
                        "EQUALS",
                        "NOT_EQUALS",
                        "CONTAINS",
                        "NOT_CONTAINS",
                        "EXISTS",
                        "NOT_EXISTS",
                    ],
                    report,
                );
            }
        }
    } else {
        check_target(stage, report);
    }
    if let Some(options) = stage.object("options", report) {
        options.non_negative("gracePeriodSeconds", report);
    }
}

pub(super) fn check_scale(stage: &Fields<'_>, report: &mut ValidationReport) {
    check_target(stage, report);
    if !stage.has("replicas") {
        report.push(Problem::error(
            stage.at("replicas"),
            "a scale stage needs replicas",
        ));
    } else {
        stage.non_negative("replicas", report);
    }
}

pub(super) fn check_patch(stage: &Fields<'_>, report: &mut ValidationReport) {
    check_target(stage, report);
    let strategy = stage
        .object("options", report)
        .and_then(|o| o.one_of("mergeStrategy", &["strategic", "merge", "json"], report));
    // From an artifact: checked in `source`.
    if stage.get("source").and_then(Value::as_str) == Some("artifact") {
        return;
    }
    match stage.get("patchBody") {
        None => report.push(Problem::error(stage.at("patchBody"), "a patch stage needs patchBody")),
        Some(Value::Array(items)) if strategy == Some("json") => {
            if items.iter().any(|op| !op.is_object()) {
                report.push(Problem::error(
                    stage.at("patchBody"),
                    "a JSON patch is a list of operations ({\"op\": …, \"path\": …})",
                ));
            }
        }
        Some(Value::Array(items)) if items.len() != 1 || !items[0].is_object() => {
            report.push(Problem::error(
                stage.at("patchBody"),
                "a strategic or merge patch body is one object (Deck stores it as a one-element list)",
            ))
        }
        Some(Value::Array(_) | Value::Object(_)) => {}
        Some(Value::String(s)) if s.contains("${") => {}
        Some(_) => report.push(Problem::error(
            stage.at("patchBody"),
            "patchBody must be an object or a list",
        )),
    }
}

pub(super) fn check_undo(stage: &Fields<'_>, report: &mut ValidationReport) {
    check_target(stage, report);
    if stage.has("numRevisionsBack") {
        stage.non_negative("numRevisionsBack", report);
    }
    if stage.has("revision") {
        stage.non_negative("revision", report);
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Delete,
    Scale,
    Patch,
    ResolveUndo,
    Undo,
    Restart,
}

struct OpTask {
    accounts: Arc<KubernetesAccounts>,
    action: Action,
}

#[async_trait]
impl Task for OpTask {
    fn name(&self) -> &'static str {
        match self.action {
            Action::Delete => DELETE,
            Action::Scale => SCALE,
            Action::Patch => PATCH,
            Action::ResolveUndo => RESOLVE_UNDO,
            Action::Undo => UNDO,
            Action::Restart => RESTART,
        }
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let account = account(&self.accounts, ctx)?;
        if let Action::Delete = self.action
            && ctx.stage.context.get("labelSelectors").is_some()
            && ctx.str("manifestName").is_none()
        {
            return delete_selected(ctx, &account).await;
        }
        let target = static_target(&account, ctx).await?;
        let ns = target.namespace.as_deref();
        let live = account.get(&target.kind, ns, &target.name).await?;
        authorize(ctx, &account, ns, &target.full, live.as_ref()).await?;
        let names = names_by_namespace(ns, &target.full);
        let done = |result: TaskResult| {
            result
                .with_context("outputs.manifestNamesByNamespace", names.clone())
                .with_output("manifestNamesByNamespace", names.clone())
        };
        match self.action {
            Action::Delete => {
                let options = delete_options(ctx)?;
                let deleted = account
                    .delete(&target.kind, ns, &target.name, &options)
                    .await?;
                Ok(done(
                    TaskResult::succeeded().with_context("deleted", json!(deleted)),
                ))
            }
            Action::Scale => {
                let live = required(live, &target)?;
                let replicas = ctx
                    .stage
                    .context
                    .get("replicas")
                    .and_then(value_as_i64)
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| {
                        TaskError::Permanent(format!(
                            "stage '{}' field \"replicas\" must be a whole number of at least 0",
                            ctx.stage.name
                        ))
                    })?;
                if live.pointer("/spec/replicas").and_then(Value::as_i64) != Some(replicas) {
                    let body = json!({"spec": {"replicas": replicas}});
                    account
                        .patch(&target.kind, ns, &target.name, PatchBody::Merge(body))
                        .await?;
                }
                Ok(done(TaskResult::succeeded()))
            }
            Action::Patch => {
                let live = required(live, &target)?;
                let marker = format!(
                    "{}/{}/{}",
                    ctx.execution.id,
                    ctx.stage.id,
                    ctx.stage.start_time.unwrap_or_default()
                );
                let applied =
                    crate::manifest::annotation(&live, PATCHED_BY) == Some(marker.as_str());
                if from_artifact(&ctx.stage.context) && !ctx.stage.context.contains_key(RECORD) {
                    return Err(TaskError::Permanent(format!(
                        "stage '{}' reads its patch body from an artifact, but no {RESOLVE_PATCH} task read it: restart the stage",
                        ctx.stage.name
                    )));
                }
                if !applied {
                    let body = patch_body(ctx, &live, &marker)?;
                    account.patch(&target.kind, ns, &target.name, body).await?;
                }
                Ok(done(TaskResult::succeeded()))
            }
            Action::ResolveUndo => {
                let live = required(live, &target)?;
                resolve_undo(ctx, &account, &target, &live).await
            }
            Action::Undo => {
                let live = required(live, &target)?;
                undo(ctx, &account, &target, &live).await.map(done)
            }
            Action::Restart => {
                if !matches!(
                    target.kind.resource.kind.as_str(),
                    "Deployment" | "StatefulSet" | "DaemonSet"
                ) {
                    return Err(TaskError::Permanent(format!(
                        "{} cannot be restarted: only a Deployment, StatefulSet or DaemonSet can",
                        target.full
                    )));
                }
                let live = required(live, &target)?;
                // The stage's start time: a repeat writes the same stamp, so it does not
                // roll the pods a second time.
                let stamp =
                    jiff::Timestamp::from_millisecond(ctx.stage.start_time.unwrap_or(ctx.now))
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                let current = live
                    .pointer("/spec/template/metadata/annotations")
                    .and_then(|a| a.get(RESTARTED_AT))
                    .and_then(Value::as_str);
                if current != Some(stamp.as_str()) {
                    let body = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}});
                    account
                        .patch(&target.kind, ns, &target.name, PatchBody::Strategic(body))
                        .await?;
                }
                Ok(done(
                    TaskResult::succeeded().with_context("restartedAt", json!(stamp)),
                ))
            }
        }
    }
}

pub(super) fn required(live: Option<Value>, target: &Target) -> Result<Value, TaskError> {
    live.ok_or_else(|| {
        TaskError::Permanent(format!(
            "{} does not exist in namespace '{}'",
            target.full,
            target.namespace.as_deref().unwrap_or_default()
        ))
    })
}

/// `options{cascading, gracePeriodSeconds, orphanDependents}` as kubectl reads them.
fn delete_options(ctx: &TaskContext<'_>) -> Result<DeleteOptions, TaskError> {
    let options = ctx.stage.context.get("options");
    let get = |key: &str| options.and_then(|o| o.get(key));
    let cascade = if gennaker_engine::truthy(get("orphanDependents")) {
        Cascade::Orphan
    } else {
        match get("cascading") {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Cascade::Background,
            Some(Value::Bool(false)) => Cascade::Orphan,
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "background" => Cascade::Background,
                "false" | "orphan" => Cascade::Orphan,
                "foreground" => Cascade::Foreground,
                other => {
                    return Err(TaskError::Permanent(format!(
                        "options.cascading '{other}' is not one of true, false, background, foreground, orphan"
                    )));
                }
            },
            Some(other) => {
                return Err(TaskError::Permanent(format!(
                    "options.cascading must be true, false or a cascade mode, not {other}"
                )));
            }
        }
    };
    let grace_period_seconds = match get("gracePeriodSeconds") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value_as_i64(value)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    TaskError::Permanent(format!(
                        "options.gracePeriodSeconds must be a whole number of seconds, not {value}"
                    ))
                })?,
        ),
    };
    Ok(DeleteOptions {
        cascade,
        grace_period_seconds,
    })
}

/// Spinnaker's label selectors as a Kubernetes label selector string.
fn label_selector(selectors: &Value) -> Result<String, TaskError> {
    let mut parts = Vec::new();
    for selector in selectors
        .get("selectors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = selector
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if key.is_empty() {
            return Err(TaskError::Permanent(
                "labelSelectors.selectors[*].key is missing".into(),
            ));
        }
        let values: Vec<&str> = selector
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let kind = selector
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("ANY");
        let part = match kind {
            "EXISTS" | "ANY" if values.is_empty() => key.to_owned(),
            "NOT_EXISTS" => format!("!{key}"),
            "EQUALS" | "ANY" if values.len() == 1 => format!("{key}={}", values[0]),
            "NOT_EQUALS" if values.len() == 1 => format!("{key}!={}", values[0]),
            "CONTAINS" | "ANY" | "EQUALS" => format!("{key} in ({})", values.join(",")),
            "NOT_CONTAINS" | "NOT_EQUALS" => format!("{key} notin ({})", values.join(",")),
            "EXISTS" => key.to_owned(),
            other => {
                return Err(TaskError::Permanent(format!(
                    "labelSelectors kind '{other}' is not one of ANY, EQUALS, NOT_EQUALS, CONTAINS, NOT_CONTAINS, EXISTS, NOT_EXISTS"
                )));
            }
        };
        parts.push(part);
    }
    if parts.is_empty() {
        return Err(TaskError::Permanent(
            "labelSelectors has no selectors: deleting every object of a kind is refused; name them".into(),
        ));
    }
    Ok(parts.join(","))
}

/// `deleteManifest` by `kinds` + `labelSelectors` in `location`.
async fn delete_selected(
    ctx: &TaskContext<'_>,
    account: &Account,
) -> Result<TaskResult, TaskError> {
    let selector = label_selector(
        ctx.stage
            .context
            .get("labelSelectors")
            .unwrap_or(&Value::Null),
    )?;
    let options = delete_options(ctx)?;
    let location = ctx
        .str("location")
        .filter(|l| !l.is_empty())
        .unwrap_or("default");
    let kinds: Vec<&str> = ctx
        .stage
        .context
        .get("kinds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if kinds.is_empty() {
        return Err(TaskError::Permanent(format!(
            "stage '{}' deletes by label selector but names no \"kinds\"",
            ctx.stage.name
        )));
    }
    let mut names: Map<String, Value> = Map::new();
    let mut found = Vec::new();
    for key in kinds {
        let (api_version, kind) = known_kind(key).ok_or_else(|| {
            TaskError::Permanent(format!("kinds: '{key}' is not a kind Gennaker knows"))
        })?;
        let resolved = account.resolve(api_version, kind).await?;
        let ns = resolved.namespaced.then_some(location);
        account.check_namespace(ns).map_err(|why| {
            TaskError::Permanent(format!("stage '{}' may not delete: {why}", ctx.stage.name))
        })?;
        for object in account.list(&resolved, ns, &selector).await? {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            found.push((resolved.clone(), name, object));
        }
    }
    if found.len() > MAX_DELETE {
        return Err(TaskError::Permanent(format!(
            "the selector '{selector}' matches {} objects; at most {MAX_DELETE} are deleted by one stage",
            found.len()
        )));
    }
    // Every object is authorized before any is deleted: a refusal deletes nothing.
    for (kind, name, object) in &found {
        let full = format!("{} {name}", kind_key(&kind.resource.kind));
        let ns = kind.namespaced.then_some(location);
        authorize(ctx, account, ns, &full, Some(object)).await?;
    }
    for (kind, name, _) in &found {
        let ns = kind.namespaced.then_some(location);
        account.delete(kind, ns, name, &options).await?;
        if let Some(list) = names
            .entry(location.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
        {
            list.push(json!(format!("{} {name}", kind_key(&kind.resource.kind))));
        }
    }
    let names = Value::Object(names);
    Ok(TaskResult::succeeded()
        .with_context("outputs.manifestNamesByNamespace", names.clone())
        .with_output("manifestNamesByNamespace", names))
}

/// The patch body with the stage's marker annotation in it, so the API server applies
/// both in one request.
fn patch_body(ctx: &TaskContext<'_>, live: &Value, marker: &str) -> Result<PatchBody, TaskError> {
    let strategy = ctx
        .stage
        .context
        .get("options")
        .and_then(|o| o.get("mergeStrategy"))
        .and_then(Value::as_str)
        .unwrap_or("strategic");
    let body = ctx
        .stage
        .context
        .get("patchBody")
        .cloned()
        .unwrap_or(Value::Null);
    let field = |why: &str| {
        TaskError::Permanent(format!(
            "stage '{}' field \"patchBody\": {why}",
            ctx.stage.name
        ))
    };
    match strategy {
        "json" => {
            let Value::Array(mut ops) = body else {
                return Err(field("a JSON patch is a list of operations"));
            };
            let escaped = PATCHED_BY.replace('~', "~0").replace('/', "~1");
            if live.pointer("/metadata/annotations").is_some() {
                ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{escaped}"), "value": marker}));
            } else {
                ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {PATCHED_BY: marker}}));
            }
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                .map_err(|e| field(&format!("not a JSON patch: {e}")))?;
            Ok(PatchBody::Json(patch))
        }
        "strategic" | "merge" => {
            let mut body = match body {
                Value::Array(mut items) if items.len() == 1 => items.remove(0),
                Value::Object(map) => Value::Object(map),
                _ => return Err(field("a strategic or merge patch is one object")),
            };
            let Some(map) = body.as_object_mut() else {
                return Err(field("a strategic or merge patch is one object"));
            };
            let metadata = map.entry("metadata").or_insert_with(|| json!({}));
            let Some(metadata) = metadata.as_object_mut() else {
                return Err(field("metadata must be an object"));
            };
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            let Some(annotations) = annotations.as_object_mut() else {
                return Err(field("metadata.annotations must be an object"));
            };
            annotations.insert(PATCHED_BY.into(), json!(marker));
            Ok(if strategy == "merge" {
                PatchBody::Merge(body)
            } else {
                PatchBody::Strategic(body)
            })
        }
        other => Err(TaskError::Permanent(format!(
            "stage '{}' field \"options.mergeStrategy\": '{other}' is not one of strategic, merge, json",
            ctx.stage.name
        ))),
    }
}

/// Picks the ReplicaSet `numRevisionsBack` (default 1) revisions before the current
/// one, or of `revision`, and records its pod-template-hash: the undo itself makes a
/// new revision, so a repeat must not count again.
async fn resolve_undo(
    ctx: &TaskContext<'_>,
    account: &Account,
    target: &Target,
    live: &Value,
) -> Result<TaskResult, TaskError> {
    if ctx.stage.context.contains_key("undoTemplateHash") {
        return Ok(TaskResult::succeeded());
    }
    let sets = owned_replica_sets(account, target, live).await?;
    let mut revisions: Vec<i64> = sets.iter().map(revision).collect();
    revisions.sort_unstable();
    revisions.dedup();
    let wanted = match ctx.stage.context.get("revision").and_then(value_as_i64) {
        Some(r) if ctx.stage.context.get("numRevisionsBack").is_none() => r,
        _ => {
            let back = ctx
                .stage
                .context
                .get("numRevisionsBack")
                .and_then(value_as_i64)
                .unwrap_or(1);
            let index = i64::try_from(revisions.len()).unwrap_or(0) - back - 1;
            let Some(r) = usize::try_from(index).ok().and_then(|i| revisions.get(i)) else {
                return Err(TaskError::Permanent(format!(
                    "{} has {} revision(s) ({}); it cannot go back {back}",
                    target.full,
                    revisions.len(),
                    revisions
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            *r
        }
    };
    let Some(rs) = sets.iter().find(|rs| revision(rs) == wanted) else {
        return Err(TaskError::Permanent(format!(
            "{} has no revision {wanted}",
            target.full
        )));
    };
    let hash = rs
        .pointer("/metadata/labels/pod-template-hash")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(TaskResult::succeeded()
        .with_context("undoTemplateHash", json!(hash))
        .with_context("revision", json!(wanted))
        .with_output("revision", json!(wanted)))
}

/// Puts the recorded ReplicaSet's pod template back into the Deployment, as
/// `kubectl rollout undo` does. Writing the same template again changes nothing.
async fn undo(
    ctx: &TaskContext<'_>,
    account: &Account,
    target: &Target,
    live: &Value,
) -> Result<TaskResult, TaskError> {
    let hash = ctx.str("undoTemplateHash").unwrap_or_default();
    let sets = owned_replica_sets(account, target, live).await?;
    let Some(rs) = sets.iter().find(|rs| {
        rs.pointer("/metadata/labels/pod-template-hash")
            .and_then(Value::as_str)
            == Some(hash)
    }) else {
        return Err(TaskError::Permanent(format!(
            "the ReplicaSet of {} to go back to (pod-template-hash {hash}) no longer exists",
            target.full
        )));
    };
    let mut template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    if live.pointer("/spec/template") != Some(&template) {
        let ops: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/template", "value": template}
        ]))
        .map_err(|e| TaskError::Permanent(format!("cannot build the undo patch: {e}")))?;
        account
            .patch(
                &target.kind,
                target.namespace.as_deref(),
                &target.name,
                PatchBody::Json(ops),
            )
            .await?;
    }
    Ok(TaskResult::succeeded())
}

/// The ReplicaSets a Deployment owns.
async fn owned_replica_sets(
    account: &Account,
    target: &Target,
    live: &Value,
) -> Result<Vec<Value>, TaskError> {
    if target.kind.resource.kind != "Deployment" {
        return Err(TaskError::Unsupported(format!(
            "{}: undoing a rollout is supported for Deployments only (StatefulSets and DaemonSets are not yet)",
            target.full
        )));
    }
    let uid = live
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = account.resolve("apps/v1", "ReplicaSet").await?;
    Ok(account
        .list(&kind, target.namespace.as_deref(), &match_labels(live))
        .await?
        .into_iter()
        .filter(|rs| owned_by(rs, uid))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinnaker_label_selectors_become_kubernetes_ones() {
        let selectors = json!({"selectors": [
            {"kind": "EQUALS", "key": "app", "values": ["web"]},
            {"kind": "NOT_CONTAINS", "key": "tier", "values": ["db", "cache"]},
            {"kind": "EXISTS", "key": "team"},
            {"kind": "NOT_EXISTS", "key": "keep"}]});
        assert_eq!(
            label_selector(&selectors).unwrap(),
            "app=web,tier notin (db,cache),team,!keep"
        );
        assert!(label_selector(&json!({"selectors": []})).is_err());
        assert!(
            label_selector(&json!({"selectors": [{"kind": "LIKE", "key": "a", "values": ["b"]}]}))
                .is_err()
        );
    }
}
