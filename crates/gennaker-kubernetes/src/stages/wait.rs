//! `waitForManifestToStabilize`: polls every resource the stage deployed or changed
//! (`outputs.manifestNamesByNamespace`) through the engine's retry until each is
//! stable by Spinnaker's rules, and fails at once, with the pod's reason and events,
//! when a pod of a workload is Failed, in CrashLoopBackOff, ImagePullBackOff or alike.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_engine::{StageExecution, StageRegistry, Task, TaskContext, TaskError, TaskResult};
use serde_json::{Value, json};

use super::account;
use crate::cluster::{Account, KubernetesAccounts, Resolved};
use crate::manifest::ManifestName;
use crate::status::{Stability, pod_failure, stability};
pub(super) use crate::traffic::{match_labels, owned_by};

/// The wait task's name (Orca's).
pub(super) const WAIT: &str = "waitForManifestToStabilize";

/// How often stability is polled.
const POLL: Duration = Duration::from_secs(2);

/// How long a wait may last (Orca's default).
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The most resources one wait follows.
const MAX_RESOURCES: usize = 200;

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    registry.task(WaitTask {
        accounts: accounts.clone(),
    });
}

struct WaitTask {
    accounts: Arc<KubernetesAccounts>,
}

#[async_trait]
impl Task for WaitTask {
    fn name(&self) -> &'static str {
        WAIT
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        POLL
    }

    fn timeout(&self, _stage: &StageExecution) -> Option<Duration> {
        Some(TIMEOUT)
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let account = account(&self.accounts, ctx)?;
        let targets = targets(ctx)?;
        let mut waiting = Vec::new();
        for (namespace, full) in &targets {
            let name = ManifestName::parse(full)
                .map_err(|e| TaskError::Permanent(format!("cannot follow {full}: {e}")))?;
            let kind = account.resolve(&name.api_version, &name.kind).await?;
            let ns = kind.namespaced.then_some(namespace.as_str());
            let Some(live) = account.get(&kind, ns, &name.name).await? else {
                waiting.push(format!("{full}: not found yet"));
                continue;
            };
            if let Some(failure) = failing_pod(&account, &name.kind, &live, ns).await? {
                return Ok(TaskResult::terminal(format!(
                    "{full} in namespace '{namespace}' will not become stable: {failure}"
                )));
            }
            match stability(&name.kind, &live) {
                Stability::Stable | Stability::Paused => {}
                Stability::Unstable(why) => waiting.push(format!("{full}: {why}")),
                Stability::Failed(why) => {
                    return Ok(TaskResult::terminal(format!(
                        "{full} in namespace '{namespace}' failed: {why}"
                    )));
                }
            }
        }
        if waiting.is_empty() {
            Ok(TaskResult::succeeded().with_context("stableManifests", json!(targets.len())))
        } else {
            Ok(TaskResult::running_after(POLL).with_context("waitingFor", json!(waiting)))
        }
    }
}

/// `(namespace, "kind name")` of what the stage's earlier task recorded.
fn targets(ctx: &TaskContext<'_>) -> Result<Vec<(String, String)>, TaskError> {
    let Some(Value::Object(by_namespace)) =
        ctx.stage.context.get("outputs.manifestNamesByNamespace")
    else {
        return Err(TaskError::Permanent(format!(
            "stage '{}' recorded no manifests to wait for (outputs.manifestNamesByNamespace)",
            ctx.stage.name
        )));
    };
    let mut targets = Vec::new();
    for (namespace, names) in by_namespace {
        for name in names
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            targets.push((namespace.clone(), name.to_owned()));
        }
    }
    if targets.len() > MAX_RESOURCES {
        return Err(TaskError::Permanent(format!(
            "stage '{}' would wait for {} resources; at most {MAX_RESOURCES}",
            ctx.stage.name,
            targets.len()
        )));
    }
    Ok(targets)
}

/// The pods a workload runs now: a ReplicaSet's own, a Deployment's newest
/// ReplicaSet's (old pods going away may crash without failing the rollout), a
/// StatefulSet's or DaemonSet's own; the first failing one's reason and events.
/// Also what stops a blue/green promotion waiting on a version that will never be
/// ready.
pub(crate) async fn failing_pod(
    account: &Account,
    kind: &str,
    live: &Value,
    namespace: Option<&str>,
) -> Result<Option<String>, TaskError> {
    let Some(ns) = namespace else {
        return Ok(None);
    };
    let owner = match kind {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" => live.clone(),
        "Deployment" => match newest_replica_set(account, live, ns).await? {
            Some(rs) => rs,
            None => return Ok(None),
        },
        "Pod" => {
            return Ok(match pod_failure(live) {
                Some(why) => Some(with_events(account, ns, live, why).await),
                None => None,
            });
        }
        _ => return Ok(None),
    };
    let Some(uid) = owner.pointer("/metadata/uid").and_then(Value::as_str) else {
        return Ok(None);
    };
    let pods_kind = account.resolve("v1", "Pod").await?;
    let selector = match_labels(&owner);
    for pod in account.list(&pods_kind, Some(ns), &selector).await? {
        if !owned_by(&pod, uid) {
            continue;
        }
        if let Some(why) = pod_failure(&pod) {
            return Ok(Some(with_events(account, ns, &pod, why).await));
        }
    }
    Ok(None)
}

/// `why`, with the pod's latest events when they can be read (reading them is a nice
/// to have: a refusal does not hide the failure).
async fn with_events(account: &Account, namespace: &str, pod: &Value, why: String) -> String {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match account.events(namespace, name).await {
        Ok(events) if !events.is_empty() => format!("{why}; events: {}", events.join("; ")),
        _ => why,
    }
}

/// A Deployment's ReplicaSet of its current revision.
async fn newest_replica_set(
    account: &Account,
    deployment: &Value,
    namespace: &str,
) -> Result<Option<Value>, TaskError> {
    let Some(uid) = deployment.pointer("/metadata/uid").and_then(Value::as_str) else {
        return Ok(None);
    };
    let kind: Resolved = account.resolve("apps/v1", "ReplicaSet").await?;
    let sets = account
        .list(&kind, Some(namespace), &match_labels(deployment))
        .await?;
    Ok(sets
        .into_iter()
        .filter(|rs| owned_by(rs, uid))
        .max_by_key(revision))
}

/// A ReplicaSet's `deployment.kubernetes.io/revision`.
pub(super) fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}
