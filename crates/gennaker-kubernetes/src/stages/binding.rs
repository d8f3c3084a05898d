//! Which artifacts a `deployManifest` binds into its manifests: the stage's
//! `requiredArtifactIds` / `requiredArtifacts` (bound when the execution started;
//! each must bind something or the stage fails before applying anything) and, unless
//! `enableArtifactBinding` is false, every artifact of the trigger and of the stages
//! upstream (`outputs.artifacts`).

use gennaker_core::artifacts::{bound_artifact, unbound_message};
use gennaker_engine::{TaskContext, TaskError, ancestors};
use serde_json::Value;

use crate::artifacts::{Candidate, dedupe};

/// The most artifacts a deploy considers (a trigger may bring many).
const MAX_CANDIDATES: usize = 500;

/// The artifacts that may bind, optional first and required last (so [`dedupe`]
/// keeps a required one over an optional one of the same identity).
pub(super) fn candidates(ctx: &TaskContext<'_>) -> Result<Vec<Candidate>, TaskError> {
    let stage = &ctx.stage.name;
    let context = &ctx.stage.context;
    let trigger = &ctx.execution.trigger;
    let mut found: Vec<Candidate> = Vec::new();
    if context.get("enableArtifactBinding") != Some(&Value::Bool(false)) {
        let optional = |list: Option<&Value>| {
            list.and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|a| a.is_object())
                .cloned()
                .map(|artifact| Candidate {
                    artifact,
                    required: false,
                })
                .collect::<Vec<_>>()
        };
        found.extend(optional(trigger.get("artifacts")));
        // Farthest first, so a nearer stage's artifact of the same identity wins.
        for upstream in ancestors(ctx.execution, ctx.stage).into_iter().rev() {
            found.extend(optional(upstream.outputs.get("artifacts")));
        }
    }
    for id in context
        .get("requiredArtifactIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let artifact = bound_artifact(trigger, id).ok_or_else(|| {
            TaskError::Permanent(format!(
                "stage '{stage}' field \"requiredArtifactIds\": {}",
                unbound_message(trigger, id)
            ))
        })?;
        found.push(Candidate {
            artifact,
            required: true,
        });
    }
    for (i, entry) in context
        .get("requiredArtifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let inline = entry.get("artifact").filter(|a| a.is_object()).cloned();
        let by_id = || {
            let id = entry.get("expectedArtifactId").and_then(Value::as_str)?;
            Some(bound_artifact(trigger, id).ok_or_else(|| {
                TaskError::Permanent(format!(
                    "stage '{stage}' field \"requiredArtifacts[{i}]\": {}",
                    unbound_message(trigger, id)
                ))
            }))
        };
        let artifact = match inline {
            Some(artifact) => artifact,
            None => by_id().ok_or_else(|| {
                TaskError::Permanent(format!(
                    "stage '{stage}' field \"requiredArtifacts[{i}]\" names no artifact: give \"expectedArtifactId\" or \"artifact\""
                ))
            })??,
        };
        found.push(Candidate {
            artifact,
            required: true,
        });
    }
    if found.len() > MAX_CANDIDATES {
        return Err(TaskError::Permanent(format!(
            "stage '{stage}' would consider {} artifacts for binding; at most {MAX_CANDIDATES} (set \"enableArtifactBinding\": false and name what you need in \"requiredArtifactIds\")",
            found.len()
        )));
    }
    Ok(dedupe(found))
}

/// The required artifacts none of the manifests bound, as an error naming them.
pub(super) fn unbound_required(
    stage: &str,
    candidates: &[Candidate],
    bound: &[usize],
) -> Result<(), TaskError> {
    let missing: Vec<String> = candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| c.required && !bound.contains(i))
        .map(|(_, c)| format!("{} '{}'", c.kind(), c.name()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(TaskError::Permanent(format!(
        "stage '{stage}': required artifact(s) {} bound nothing in the manifests: a docker/image artifact replaces images of the same repository (its \"name\", e.g. gcr.io/p/app), a kubernetes/configMap or kubernetes/secret artifact references to its name in its namespace; fix the manifests or the artifact",
        missing.join(", ")
    )))
}
