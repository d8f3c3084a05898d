//! `deployManifest`: inline `manifests` or those read from an artifact (`source`;
//! expressions evaluated unless `skipExpressionEvaluation`), `moniker`,
//! `namespaceOverride`; applied in Spinnaker's kind order with server-side apply
//! (field manager `gennaker`), versioned kinds
//! getting `-vNNN` (identical content reuses its version), references to versioned
//! ConfigMaps and Secrets rewritten, and the `strategy.spinnaker.io/*` annotations
//! honoured. Artifacts bind before content is hashed (`binding`: `docker/image` by
//! repository, ConfigMaps/Secrets by name; required ones must bind before anything is
//! applied), and `trafficManagement` puts ReplicaSets behind their Services by their
//! pods' labels (`traffic`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{Fields, Problem, ValidationReport};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult, truthy};
use serde_json::{Map, Value, json};

use super::source::{RECORD, RESOLVE_DEPLOY, from_artifact};
use super::traffic::TrafficOptions;
use super::{account, authorize, authorize_application, binding};
use crate::artifacts::bind;
use crate::cluster::{Cascade, DeleteOptions, KubernetesAccounts, Resolved};
use crate::manifest::{
    MONIKER_SEQUENCE, Moniker, annotate, artifact, deploy_priority, identity, kind_key,
    target_namespace,
};
use crate::settings::is_dns_label;
use crate::traffic::TrafficError;
use crate::versioning::{
    Binding, CONTENT_HASH, LiveVersion, Strategy, choose_version, content_hash, rewrite_references,
    versioned_name, versions_to_delete,
};

/// The deploy task's name.
pub(super) const DEPLOY: &str = "deployManifest";

/// The most manifests one stage may deploy.
pub(super) const MAX_MANIFESTS: usize = 200;

/// How soon a recreate looks again for the old object to be gone.
const RECREATE_POLL: Duration = Duration::from_secs(1);

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    registry.task(DeployTask {
        accounts: accounts.clone(),
    });
}

/// Save-time rules of `deployManifest`.
pub(super) fn check(stage: &Fields<'_>, report: &mut ValidationReport) {
    let source = stage.one_of("source", &["text", "artifact"], report);
    // From an artifact: checked in `source`.
    if source != Some("artifact") {
        match stage.array("manifests", report) {
            None if !stage.has("manifests") => report.push(
                Problem::error(
                    stage.at("manifests"),
                    "a deployManifest stage needs manifests",
                )
                .with_hint(
                    "\"manifests\": [{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", …}]",
                ),
            ),
            None => {}
            Some(items) if items.is_empty() => report.push(Problem::error(
                stage.at("manifests"),
                "manifests is empty: give at least one",
            )),
            Some(items) if items.len() > MAX_MANIFESTS => report.push(Problem::error(
                stage.at("manifests"),
                format!("at most {MAX_MANIFESTS} manifests may be deployed by one stage"),
            )),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = stage.at("manifests").index(i);
                    match item {
                        Value::Object(_) => {
                            if let Err(why) = identity(item)
                                && !item.to_string().contains("${")
                            {
                                report.push(Problem::error(at, why));
                            }
                        }
                        Value::String(s) if s.contains("${") => {}
                        _ => report.push(Problem::error(
                            at,
                            "each manifest must be an object (Kubernetes YAML as JSON)",
                        )),
                    }
                }
            }
        }
    }
    stage.boolean("skipExpressionEvaluation", report);
    if let Some(ns) = stage.string("namespaceOverride", report)
        && !ns.is_empty()
        && !ns.contains("${")
        && !is_dns_label(ns)
    {
        report.push(Problem::error(
            stage.at("namespaceOverride"),
            format!("'{ns}' is not a valid namespace name"),
        ));
    }
    if let Some(moniker) = stage.object("moniker", report) {
        moniker.string("app", report);
        moniker.string("cluster", report);
    }
    super::traffic::check(stage, report);
    crate::versioning::check_history_for_strategy(stage, report);
}

struct DeployTask {
    accounts: Arc<KubernetesAccounts>,
}

/// One manifest, ready to go.
struct Planned {
    manifest: Value,
    kind: Resolved,
    namespace: Option<String>,
}

#[async_trait]
impl Task for DeployTask {
    fn name(&self) -> &'static str {
        DEPLOY
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let stage = &ctx.stage.name;
        if from_artifact(&ctx.stage.context) && !ctx.stage.context.contains_key(RECORD) {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' reads its manifests from an artifact, but no {RESOLVE_DEPLOY} task read it: restart the stage"
            )));
        }
        let account = account(&self.accounts, ctx)?;
        let manifests = manifests(ctx)?;
        let moniker =
            Moniker::from_stage(ctx.stage.context.get("moniker"), &ctx.execution.application);
        if !moniker.app.eq_ignore_ascii_case(&ctx.execution.application) {
            authorize_application(ctx, &format!("moniker.app '{}'", moniker.app), &moniker.app)
                .await?;
        }
        let over = ctx.str("namespaceOverride");
        let mut planned = Vec::with_capacity(manifests.len());
        for manifest in manifests {
            let (api_version, kind, _) = identity(&manifest).map_err(TaskError::Permanent)?;
            let resolved = account.resolve(api_version, kind).await?;
            let namespace = target_namespace(&manifest, resolved.namespaced, over);
            planned.push(Planned {
                manifest,
                kind: resolved,
                namespace,
            });
        }
        // A stable sort: manifests of one priority keep the order the stage gave.
        planned.sort_by_key(|p| deploy_priority(&p.kind.resource.kind));
        let candidates = binding::candidates(ctx)?;
        // Before anything is applied: every required artifact must bind somewhere.
        let mut would_bind = Vec::new();
        for p in &planned {
            let mut copy = p.manifest.clone();
            would_bind.extend(bind(
                &mut copy,
                &candidates,
                p.namespace.as_deref(),
                &account.name,
            ));
        }
        binding::unbound_required(stage, &candidates, &would_bind)?;
        let traffic = TrafficOptions::of(
            ctx,
            planned.iter().any(|p| p.kind.resource.kind == "ReplicaSet"),
        )?;

        let started_secs = ctx.task.start_time.unwrap_or(ctx.now) / 1000;
        let mut bindings: HashMap<Binding, String> = HashMap::new();
        let mut applied = Vec::new();
        let mut names_by_namespace: Map<String, Value> = Map::new();
        let mut artifacts = Vec::new();
        let mut bound: Vec<usize> = Vec::new();
        for Planned {
            mut manifest,
            kind,
            namespace,
        } in planned
        {
            let ns = namespace.as_deref();
            let kind_name = kind.resource.kind.clone();
            let base = identity(&manifest)
                .map(|(_, _, name)| name.to_owned())
                .map_err(TaskError::Permanent)?;
            let label = format!("{} {base}", kind_key(&kind_name));
            account.check_namespace(ns).map_err(|why| {
                TaskError::Permanent(format!("stage '{stage}' may not deploy {label}: {why}"))
            })?;
            let strategy = Strategy::of(&manifest, &kind_name)
                .map_err(|why| TaskError::Permanent(format!("manifest {label}: {why}")))?;
            set_namespace(&mut manifest, ns);
            rewrite_references(&mut manifest, ns, &bindings);
            for i in bind(&mut manifest, &candidates, ns, &account.name) {
                if !bound.contains(&i) {
                    bound.push(i);
                }
            }
            traffic
                .attach(&account, &mut manifest, &kind_name, ns)
                .await
                .map_err(|why| match why {
                    TrafficError::Kube(err) => TaskError::from(err),
                    TrafficError::Invalid(why) => {
                        TaskError::Permanent(format!("stage '{stage}' manifest {label}: {why}"))
                    }
                })?;

            let (name, version, source, live_versions) = if strategy.versioned {
                let live: Vec<Value> = account.list(&kind, ns, MONIKER_SEQUENCE).await?;
                let versions: Vec<(LiveVersion, &Value)> = live
                    .iter()
                    .filter_map(|o| LiveVersion::of(o, &base).map(|v| (v, o)))
                    .collect();
                let hash = content_hash(&manifest);
                let plain: Vec<LiveVersion> = versions.iter().map(|(v, _)| v.clone()).collect();
                let choice = choose_version(&plain, &hash);
                let newest = versions
                    .iter()
                    .max_by_key(|(v, _)| v.version)
                    .map(|(_, o)| (*o).clone());
                let name = versioned_name(&base, choice.version);
                if let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    metadata.insert("name".into(), Value::String(name.clone()));
                    let annotations = metadata
                        .entry("annotations")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(annotations) = annotations.as_object_mut() {
                        annotations.insert(CONTENT_HASH.into(), Value::String(hash));
                    }
                }
                (name, Some(choice.version), newest, plain)
            } else {
                let live = account.get(&kind, ns, &base).await?;
                (base.clone(), None, live, Vec::new())
            };
            let full = format!("{} {name}", kind_key(&kind_name));
            authorize(ctx, &account, ns, &full, source.as_ref()).await?;
            if strategy.use_source_capacity
                && let Some(replicas) = source.as_ref().and_then(|s| s.pointer("/spec/replicas"))
                && let Some(spec) = manifest.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.insert("replicas".into(), replicas.clone());
            }
            annotate(&mut manifest, &moniker, &base, ns, version);

            let result = if strategy.recreate {
                match account.get(&kind, ns, &name).await? {
                    Some(existing) if created_before(&existing, started_secs) => {
                        if existing.pointer("/metadata/deletionTimestamp").is_none() {
                            let options = DeleteOptions {
                                cascade: Cascade::Background,
                                grace_period_seconds: None,
                            };
                            account.delete(&kind, ns, &name, &options).await?;
                        }
                        return Ok(TaskResult::running_after(RECREATE_POLL).with_context(
                            "deployStatus",
                            json!(format!(
                                "waiting for {full} to be deleted before it is recreated"
                            )),
                        ));
                    }
                    Some(_) => account.apply(&kind, ns, &name, &manifest).await?,
                    None => account.create(&kind, ns, &manifest).await?,
                }
            } else if strategy.replace {
                account.replace(&kind, ns, &name, &manifest).await?
            } else {
                account.apply(&kind, ns, &name, &manifest).await?
            };
            tracing::info!(
                execution = %ctx.execution.id,
                stage = %stage,
                account = %account.name,
                namespace = ns.unwrap_or_default(),
                resource = %full,
                "manifest deployed"
            );
            if version.is_some() && matches!(kind_name.as_str(), "ConfigMap" | "Secret") {
                let kind_static = if kind_name == "ConfigMap" {
                    "ConfigMap"
                } else {
                    "Secret"
                };
                bindings.insert(
                    Binding {
                        kind: kind_static,
                        namespace: namespace.clone(),
                        base: base.clone(),
                    },
                    name.clone(),
                );
            }
            if let (Some(keep), Some(current)) = (strategy.max_version_history, version) {
                let mut all = live_versions.clone();
                if !all.iter().any(|v| v.version == current) {
                    all.push(LiveVersion {
                        version: current,
                        name: name.clone(),
                        hash: None,
                    });
                }
                let options = DeleteOptions {
                    cascade: Cascade::Background,
                    grace_period_seconds: None,
                };
                for old in versions_to_delete(&all, keep) {
                    account.delete(&kind, ns, &old, &options).await?;
                }
            }
            if let Some(list) = names_by_namespace
                .entry(ns.unwrap_or_default().to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
            {
                list.push(Value::String(full.clone()));
            }
            artifacts.push(artifact(
                &account.name,
                &kind_name,
                &base,
                &name,
                ns,
                version,
            ));
            applied.push(shown(result));
        }
        let names = Value::Object(names_by_namespace);
        bound.sort_unstable();
        let bound: Vec<Value> = bound
            .into_iter()
            .filter_map(|i| candidates.get(i).map(|c| c.artifact.clone()))
            .collect();
        Ok(TaskResult::succeeded()
            .with_context("outputs.boundArtifacts", Value::Array(bound.clone()))
            .with_output("boundArtifacts", Value::Array(bound))
            .with_context("outputs.manifestNamesByNamespace", names.clone())
            .with_context("outputs.manifests", Value::Array(applied.clone()))
            .with_context("outputs.createdArtifacts", Value::Array(artifacts.clone()))
            .with_context("deploy.account.name", json!(account.name))
            .with_output("manifestNamesByNamespace", names)
            .with_output("manifests", Value::Array(applied))
            .with_output("createdArtifacts", Value::Array(artifacts.clone()))
            .with_output("artifacts", Value::Array(artifacts)))
    }
}

/// The stage's manifests, expressions evaluated unless `skipExpressionEvaluation`,
/// `kind: List` items flattened.
fn manifests(ctx: &TaskContext<'_>) -> Result<Vec<Value>, TaskError> {
    let stage = &ctx.stage.name;
    let raw = match ctx.stage.context.get("manifests") {
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(items.clone()),
        _ => {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' has no manifests: set \"manifests\" to a list of Kubernetes objects"
            )));
        }
    };
    let evaluated = if truthy(ctx.stage.context.get("skipExpressionEvaluation")) {
        raw
    } else {
        let transformed = ctx
            .services
            .expressions
            .transform(&raw, &ctx.expression_root());
        if let Some(failure) = transformed.failures.first() {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' field \"manifests{}\": {} (set \"skipExpressionEvaluation\": true if the manifests hold ${{…}} meant for another tool)",
                failure.path, failure.message
            )));
        }
        transformed.value
    };
    let mut flat = Vec::new();
    for item in evaluated.as_array().into_iter().flatten() {
        if item.get("kind").and_then(Value::as_str) == Some("List") {
            flat.extend(
                item.get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        } else {
            flat.push(item.clone());
        }
    }
    if flat.len() > MAX_MANIFESTS {
        return Err(TaskError::Permanent(format!(
            "stage '{stage}' deploys {} manifests; at most {MAX_MANIFESTS} are allowed",
            flat.len()
        )));
    }
    for (i, item) in flat.iter().enumerate() {
        identity(item).map_err(|why| {
            TaskError::Permanent(format!("stage '{stage}' manifests[{i}]: {why}"))
        })?;
    }
    Ok(flat)
}

/// Puts the target namespace into the manifest (or removes one from a cluster-scoped
/// manifest), so what is applied says where it lives.
fn set_namespace(manifest: &mut Value, namespace: Option<&str>) {
    if let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        match namespace {
            Some(ns) => {
                metadata.insert("namespace".into(), Value::String(ns.to_owned()));
            }
            None => {
                metadata.remove("namespace");
            }
        }
    }
}

/// Whether a live object was created before this task started (so it is not the one
/// a previous run of this task created).
fn created_before(object: &Value, started_secs: i64) -> bool {
    object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|created| created.as_second() < started_secs)
}

/// An applied object as the stage records it: Secret values and managed fields left
/// out (the execution is stored and shown).
pub(super) fn shown(mut object: Value) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    if object.get("kind").and_then(Value::as_str) == Some("Secret")
        && let Some(map) = object.as_object_mut()
    {
        for key in ["data", "stringData"] {
            if let Some(Value::Object(values)) = map.get_mut(key) {
                for value in values.values_mut() {
                    *value = Value::String("<redacted>".into());
                }
            }
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_secrets_keep_their_keys_but_not_their_values() {
        let secret = json!({"kind": "Secret", "metadata": {"name": "s", "managedFields": []},
                            "data": {"password": "aHVudGVyMg=="}});
        let shown = shown(secret);
        assert_eq!(shown["data"]["password"], "<redacted>");
        assert!(shown["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn only_objects_older_than_the_task_are_recreated() {
        let object = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:10Z"}});
        let at = "2024-01-01T00:00:10Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second();
        assert!(created_before(&object, at + 1));
        assert!(!created_before(&object, at));
    }
}
