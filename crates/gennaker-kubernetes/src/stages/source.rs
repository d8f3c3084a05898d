//! Manifests and patch bodies from artifacts: `deployManifest` with
//! `source: "artifact"` and `patchManifest` with `source: "artifact"` name the artifact
//! by `manifestArtifactId` (an expected artifact: bound when the execution started, or
//! produced by an upstream stage) or inline as `manifestArtifact`;
//! `manifestArtifactAccount` names the account it is read through.
//!
//! A task before the deploy (or patch) reads the artifact ([`crate::fetch`]) once and
//! records what it read in the stage's context: the manifests as parsed (multi-document
//! YAML, `kind: List` flattened) or the patch body, and the artifact's identity with
//! the content's sha256 (`resolvedManifestArtifact`, also an output). The engine
//! commits that with the task, so a retried or restarted deploy applies what was read,
//! never a second, different read; a recorded read is not repeated. Expressions in the
//! manifests are then evaluated by the deploy as inline ones are (unless
//! `skipExpressionEvaluation`); a patch body's here, before it is recorded.

use std::sync::Arc;

use async_trait::async_trait;
use gennaker_core::artifacts::{artifact_for_id, artifact_identity, summarize, unbound_message};
use gennaker_core::redact::redact_url_passwords;
use gennaker_core::{
    CheckContext, Fields, MAX_YAML_DOCUMENTS, Problem, Severity, ValidationReport,
    parse_yaml_documents,
};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult, ancestors, truthy};
use serde_json::{Map, Value, json};

use super::deploy::MAX_MANIFESTS;
use crate::fetch::{ArtifactAccounts, FetchError, READABLE_TYPES, decode_base64};

/// Reads a `deployManifest`'s manifests from its artifact (Orca's task name).
pub(super) const RESOLVE_DEPLOY: &str = "resolveDeploySourceManifest";
/// Reads a `patchManifest`'s patch body from its artifact (Orca's task name).
pub(super) const RESOLVE_PATCH: &str = "resolvePatchSourceManifest";

/// Where the read is recorded (context and outputs).
pub(super) const RECORD: &str = "resolvedManifestArtifact";

pub(super) fn register(registry: &mut StageRegistry, artifacts: &Arc<ArtifactAccounts>) {
    for purpose in [Purpose::Deploy, Purpose::Patch] {
        registry.task(ResolveSource {
            artifacts: artifacts.clone(),
            purpose,
        });
    }
}

/// Whether a stage's (evaluated) context reads from an artifact.
pub(super) fn from_artifact(context: &Map<String, Value>) -> bool {
    context.get("source").and_then(Value::as_str) == Some("artifact")
}

/// Save-time rules of `source: "artifact"` (deploy and patch): an artifact is named,
/// by an id the pipeline declares or inline with a readable type and a reference.
pub(super) fn check(stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
    if stage.get("source").and_then(Value::as_str) != Some("artifact") {
        return;
    }
    stage.string("manifestArtifactAccount", report);
    let id = stage
        .string("manifestArtifactId", report)
        .filter(|id| !id.is_empty());
    if let Some(id) = id {
        let at = stage.at("manifestArtifactId").to_string();
        if !id.contains("${") && !context.artifact_ids.contains(id) {
            // Stronger than the warning every stage type gets for an unknown id: this
            // stage has nothing to deploy without it.
            report
                .problems
                .retain(|p| !(p.path == at && p.severity == Severity::Warning));
            report.push(
                Problem::error(
                    at,
                    format!("manifestArtifactId '{id}' is not an expected artifact of the pipeline (its expectedArtifacts, or a stage's)"),
                )
                .with_hint("declare it in the pipeline's expectedArtifacts (or the stage producing it), or give the artifact inline as \"manifestArtifact\""),
            );
        }
        return;
    }
    let Some(inline) = stage.object("manifestArtifact", report) else {
        if !stage.has("manifestArtifact") {
            report.push(
                Problem::error(
                    stage.at("manifestArtifactId"),
                    "the manifests come from an artifact (\"source\": \"artifact\") but none is named",
                )
                .with_hint("set \"manifestArtifactId\" to an expected artifact's id, or \"manifestArtifact\" to an artifact ({\"type\": \"github/file\", \"reference\": …, \"version\": …})"),
            );
        }
        return;
    };
    if inline.map.values().any(|v| v.to_string().contains("${")) {
        return;
    }
    let kind = inline.string("type", report);
    match kind {
        Some(kind) if READABLE_TYPES.contains(&kind) => {}
        Some(kind) => report.push(Problem::error(
            inline.at("type"),
            format!(
                "artifacts of type '{kind}' cannot be read; use {}",
                READABLE_TYPES.join(", ")
            ),
        )),
        None => report.push(
            Problem::error(inline.at("type"), "the artifact has no type")
                .with_hint(format!("one of {}", READABLE_TYPES.join(", "))),
        ),
    }
    match inline.string("reference", report) {
        None | Some("") => report.push(Problem::error(
            inline.at("reference"),
            "the artifact has no reference (the content for embedded/base64, the URL for http/file and github/file)",
        )),
        Some(reference) if matches!(kind, Some("embedded/base64" | "remote/base64")) => {
            if let Err(err) = decode_base64(reference) {
                report.push(Problem::error(inline.at("reference"), err.to_string()));
            }
        }
        Some(_) => {}
    }
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Deploy,
    Patch,
}

struct ResolveSource {
    artifacts: Arc<ArtifactAccounts>,
    purpose: Purpose,
}

#[async_trait]
impl Task for ResolveSource {
    fn name(&self) -> &'static str {
        match self.purpose {
            Purpose::Deploy => RESOLVE_DEPLOY,
            Purpose::Patch => RESOLVE_PATCH,
        }
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        // Read once: what was recorded is what the stage deploys.
        if ctx.stage.context.contains_key(RECORD) {
            return Ok(TaskResult::succeeded());
        }
        let stage = &ctx.stage.name;
        let (field, artifact) = manifest_artifact(ctx)?;
        let about = || {
            format!(
                "stage '{stage}' field \"{field}\": artifact {}",
                redact_url_passwords(&summarize(&artifact))
            )
        };
        let fetched = self
            .artifacts
            .fetch(&artifact, &ctx.services.http, &ctx.services.outbound)
            .await
            .map_err(|err: FetchError| {
                let message = format!("{}: {err}", about());
                if err.is_transient() {
                    TaskError::Transient(message)
                } else {
                    TaskError::Permanent(message)
                }
            })?;
        let text = std::str::from_utf8(&fetched.bytes).map_err(|err| {
            TaskError::Permanent(format!(
                "{}: the content is not UTF-8 text ({err}); manifests are YAML or JSON",
                about()
            ))
        })?;
        let mut record = Map::new();
        record.insert("artifact".into(), artifact_identity(&artifact));
        record.insert("sha256".into(), json!(fetched.sha256));
        record.insert("bytes".into(), json!(fetched.bytes.len()));
        if let Some(account) = &fetched.account {
            record.insert("account".into(), json!(account));
        }
        let (key, value) = match self.purpose {
            Purpose::Deploy => {
                let manifests = parse_manifests(text)
                    .map_err(|why| TaskError::Permanent(format!("{}: {why}", about())))?;
                record.insert("manifests".into(), json!(manifests.len()));
                ("manifests", Value::Array(manifests))
            }
            Purpose::Patch => ("patchBody", patch_body(ctx, text, &about)?),
        };
        tracing::info!(
            execution = %ctx.execution.id,
            stage = %stage,
            artifact = %redact_url_passwords(&summarize(&artifact)),
            sha256 = %fetched.sha256,
            bytes = fetched.bytes.len(),
            "manifest artifact read"
        );
        let record = Value::Object(record);
        Ok(TaskResult::succeeded()
            .with_context(key, value)
            .with_context(RECORD, record.clone())
            .with_output(RECORD, record))
    }
}

/// The artifact the stage names, and the field naming it: `manifestArtifactId`
/// first (as Orca), else the inline `manifestArtifact`; `manifestArtifactAccount`
/// replaces its `artifactAccount`.
fn manifest_artifact(ctx: &TaskContext<'_>) -> Result<(&'static str, Value), TaskError> {
    let stage = &ctx.stage.name;
    let (field, mut artifact) = if let Some(id) =
        ctx.str("manifestArtifactId").filter(|id| !id.is_empty())
    {
        let upstream = ancestors(ctx.execution, ctx.stage);
        let found = artifact_for_id(&ctx.execution.trigger, &upstream, id).ok_or_else(|| {
            TaskError::Permanent(format!(
                "stage '{stage}' field \"manifestArtifactId\": {}; no upstream stage produced it either",
                unbound_message(&ctx.execution.trigger, id)
            ))
        })?;
        ("manifestArtifactId", found)
    } else {
        match ctx.stage.context.get("manifestArtifact") {
            Some(inline @ Value::Object(_)) => ("manifestArtifact", inline.clone()),
            _ => {
                return Err(TaskError::Permanent(format!(
                    "stage '{stage}' reads its manifests from an artifact (\"source\": \"artifact\") but names none: set \"manifestArtifactId\" to an expected artifact's id, or \"manifestArtifact\" to an artifact"
                )));
            }
        }
    };
    if let Some(account) = ctx.str("manifestArtifactAccount").filter(|a| !a.is_empty())
        && let Some(map) = artifact.as_object_mut()
    {
        map.insert("artifactAccount".into(), json!(account));
    }
    Ok((field, artifact))
}

/// The manifests of an artifact's text: its YAML (or JSON) documents, each a
/// Kubernetes object, the items of a `kind: List` taken one by one.
pub(super) fn parse_manifests(text: &str) -> Result<Vec<Value>, String> {
    let documents = parse_yaml_documents(text, MAX_YAML_DOCUMENTS)
        .map_err(|err| format!("the content is not YAML: {err}"))?;
    let mut manifests = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let is_list = document.get("kind").and_then(Value::as_str) == Some("List");
        match document {
            Value::Object(mut list) if is_list => match list.remove("items") {
                Some(Value::Array(items)) => {
                    for (j, item) in items.into_iter().enumerate() {
                        if !item.is_object() {
                            return Err(format!(
                                "document {} (a List) item {j} is not a Kubernetes object",
                                i + 1
                            ));
                        }
                        manifests.push(item);
                    }
                }
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(format!(
                        "document {} is a List whose items is not a list",
                        i + 1
                    ));
                }
            },
            object @ Value::Object(_) => manifests.push(object),
            _ => {
                return Err(format!(
                    "document {} is not a Kubernetes object (a mapping with apiVersion, kind and metadata)",
                    i + 1
                ));
            }
        }
        if manifests.len() > MAX_MANIFESTS {
            return Err(format!(
                "it holds more than {MAX_MANIFESTS} manifests, the most one stage deploys"
            ));
        }
    }
    if manifests.is_empty() {
        return Err("it holds no manifests".to_owned());
    }
    Ok(manifests)
}

/// The patch body of an artifact's text (one document: an object for a strategic or
/// merge patch, a list of operations for a JSON patch), expressions evaluated unless
/// `skipExpressionEvaluation`.
fn patch_body(
    ctx: &TaskContext<'_>,
    text: &str,
    about: &dyn Fn() -> String,
) -> Result<Value, TaskError> {
    let fail = |why: String| TaskError::Permanent(format!("{}: {why}", about()));
    let json_patch = ctx
        .stage
        .context
        .get("options")
        .and_then(|o| o.get("mergeStrategy"))
        .and_then(Value::as_str)
        == Some("json");
    let mut documents = parse_yaml_documents(text, 1)
        .map_err(|err| fail(format!("the content is not YAML: {err}")))?;
    let body = match documents.pop() {
        Some(body @ Value::Array(_)) if json_patch => body,
        Some(body @ Value::Object(_)) if !json_patch => body,
        Some(_) if json_patch => {
            return Err(fail(
                "a JSON patch is a list of operations ([{\"op\": …, \"path\": …}])".to_owned(),
            ));
        }
        Some(_) => {
            return Err(fail(
                "a strategic or merge patch body is one object".to_owned(),
            ));
        }
        None => return Err(fail("it holds no patch body".to_owned())),
    };
    if truthy(ctx.stage.context.get("skipExpressionEvaluation")) {
        return Ok(body);
    }
    let transformed = ctx
        .services
        .expressions
        .transform(&body, &ctx.expression_root());
    if let Some(failure) = transformed.failures.first() {
        return Err(fail(format!(
            "the patch body at {}: {} (set \"skipExpressionEvaluation\": true if it holds ${{…}} meant for another tool)",
            failure.path, failure.message
        )));
    }
    Ok(transformed.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_becomes_manifests_with_lists_flattened() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# nothing\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: c}}\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"d\"}}\n";
        let manifests = parse_manifests(text).unwrap();
        let names: Vec<&str> = manifests
            .iter()
            .map(|m| m["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn what_is_not_manifests_is_refused_saying_where() {
        let err = parse_manifests("a: 1\n---\n- x\n").unwrap_err();
        assert!(
            err.starts_with("document 2 is not a Kubernetes object"),
            "{err}"
        );
        let err = parse_manifests("kind: List\nitems: [1]\n").unwrap_err();
        assert!(err.contains("item 0"), "{err}");
        let err = parse_manifests("kind: List\nitems: {}\n").unwrap_err();
        assert!(err.contains("items is not a list"), "{err}");
        assert_eq!(
            parse_manifests("---\n").unwrap_err(),
            "it holds no manifests"
        );
        let err = parse_manifests("kind: [unclosed\n").unwrap_err();
        assert!(err.starts_with("the content is not YAML: line"), "{err}");
    }

    #[test]
    fn manifests_are_bounded_in_number() {
        let one = "{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n";
        let at_limit = vec![one; MAX_MANIFESTS].join("---\n");
        assert_eq!(parse_manifests(&at_limit).unwrap().len(), MAX_MANIFESTS);
        let over = vec![one; MAX_MANIFESTS + 1].join("---\n");
        assert!(
            parse_manifests(&over)
                .unwrap_err()
                .contains("more than 200")
        );
        let items = vec![one.trim(); MAX_MANIFESTS + 1].join(", ");
        let list = format!("kind: List\nitems: [{items}]\n");
        assert!(
            parse_manifests(&list)
                .unwrap_err()
                .contains("more than 200")
        );
    }
}
