//! "Is this manifest stable?": Spinnaker's rules per kind (clouddriver's
//! `*Handler.status`), and the pod states that fail a wait at once instead of waiting
//! out the timeout. Pure: no I/O.

use serde_json::Value;

/// A resource's rollout state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stability {
    /// Done.
    Stable,
    /// Not yet: why.
    Unstable(String),
    /// A paused rollout (a Deployment with `spec.paused`): Spinnaker counts it as done,
    /// since nothing will move until someone resumes it.
    Paused,
    /// It will not get there: why.
    Failed(String),
}

fn int(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

fn count(value: &Value, pointer: &str) -> i64 {
    int(value, pointer).unwrap_or(0)
}

fn condition<'a>(resource: &'a Value, kind: &str) -> Option<&'a Value> {
    resource
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The generation check every controller-managed kind starts or ends with.
fn generation_matches(resource: &Value) -> Option<Stability> {
    let observed = int(resource, "/status/observedGeneration");
    let generation = int(resource, "/metadata/generation");
    match (observed, generation) {
        (Some(o), Some(g)) if o >= g => None,
        (_, None) => None,
        _ => Some(Stability::Unstable(
            "waiting for status generation to match updated object generation".into(),
        )),
    }
}

/// The stability of a live resource of `kind`.
pub fn stability(kind: &str, resource: &Value) -> Stability {
    let has_status = resource
        .get("status")
        .is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty()));
    match kind {
        "Deployment" => deployment(resource, has_status),
        "ReplicaSet" => replica_set(resource, has_status),
        "StatefulSet" => stateful_set(resource, has_status),
        "DaemonSet" => daemon_set(resource, has_status),
        "Pod" => pod(resource),
        "Job" => job(resource),
        "HorizontalPodAutoscaler" => {
            if count(resource, "/status/currentReplicas")
                == count(resource, "/status/desiredReplicas")
            {
                Stability::Stable
            } else {
                Stability::Unstable(
                    "waiting for the autoscaler to reach its desired replicas".into(),
                )
            }
        }
        _ => Stability::Stable,
    }
}

fn deployment(d: &Value, has_status: bool) -> Stability {
    if !has_status {
        return Stability::Unstable("no status reported yet".into());
    }
    if let Some(waiting) = generation_matches(d) {
        return waiting;
    }
    if d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Stability::Paused;
    }
    if let Some(progressing) = condition(d, "Progressing")
        && field(progressing, "reason") == "ProgressDeadlineExceeded"
    {
        return Stability::Failed(format!(
            "deployment exceeded its progress deadline: {}",
            field(progressing, "message")
        ));
    }
    if let Some(available) = condition(d, "Available")
        && field(available, "status") == "False"
    {
        return Stability::Unstable(format!(
            "deployment is not available: {}",
            field(available, "message")
        ));
    }
    let desired = int(d, "/spec/replicas").unwrap_or(1);
    let updated = count(d, "/status/updatedReplicas");
    if updated < desired {
        return Stability::Unstable(format!(
            "waiting for all replicas to be updated ({updated} of {desired})"
        ));
    }
    let total = count(d, "/status/replicas");
    if total > updated {
        return Stability::Unstable(format!(
            "waiting for old replicas to finish termination ({} old)",
            total - updated
        ));
    }
    let available = count(d, "/status/availableReplicas");
    if available < desired {
        return Stability::Unstable(format!(
            "waiting for all replicas to be available ({available} of {desired})"
        ));
    }
    let ready = count(d, "/status/readyReplicas");
    if ready < desired {
        return Stability::Unstable(format!(
            "waiting for all replicas to be ready ({ready} of {desired})"
        ));
    }
    Stability::Stable
}

fn replica_set(rs: &Value, has_status: bool) -> Stability {
    let desired = int(rs, "/spec/replicas").unwrap_or(1);
    if !has_status && desired > 0 {
        return Stability::Unstable("no status reported yet".into());
    }
    for (pointer, what) in [
        ("/status/fullyLabeledReplicas", "fully labeled"),
        ("/status/readyReplicas", "ready"),
        ("/status/availableReplicas", "available"),
    ] {
        let n = count(rs, pointer);
        if n < desired {
            return Stability::Unstable(format!(
                "waiting for all replicas to be {what} ({n} of {desired})"
            ));
        }
    }
    generation_matches(rs).unwrap_or(Stability::Stable)
}

fn stateful_set(s: &Value, has_status: bool) -> Stability {
    if s.pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        == Some("OnDelete")
    {
        return Stability::Stable;
    }
    if !has_status {
        return Stability::Unstable("no status reported yet".into());
    }
    if let Some(waiting) = generation_matches(s) {
        return waiting;
    }
    let desired = int(s, "/spec/replicas").unwrap_or(1);
    let replicas = count(s, "/status/replicas");
    if replicas < desired {
        return Stability::Unstable(format!(
            "waiting for at least the desired replica count to be met ({replicas} of {desired})"
        ));
    }
    let ready = count(s, "/status/readyReplicas");
    if ready < desired {
        return Stability::Unstable(format!(
            "waiting for all replicas to be ready ({ready} of {desired})"
        ));
    }
    if let Some(partition) = int(s, "/spec/updateStrategy/rollingUpdate/partition") {
        let updated = count(s, "/status/updatedReplicas");
        return if updated >= replicas - partition {
            Stability::Stable
        } else {
            Stability::Unstable(format!(
                "waiting for the partitioned roll out to finish ({updated} of {} updated)",
                replicas - partition
            ))
        };
    }
    let current = count(s, "/status/currentReplicas");
    if current < desired {
        return Stability::Unstable(format!(
            "waiting for all updated replicas to be scheduled ({current} of {desired})"
        ));
    }
    let current_revision = s.pointer("/status/currentRevision");
    if current_revision != s.pointer("/status/updateRevision") {
        return Stability::Unstable("waiting for the updated revision to match the current".into());
    }
    Stability::Stable
}

fn daemon_set(d: &Value, has_status: bool) -> Stability {
    if !has_status {
        return Stability::Unstable("no status reported yet".into());
    }
    if let Some(waiting) = generation_matches(d) {
        return waiting;
    }
    if d.pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("RollingUpdate")
    {
        return Stability::Stable;
    }
    let desired = count(d, "/status/desiredNumberScheduled");
    for (pointer, what) in [
        ("/status/currentNumberScheduled", "scheduled"),
        ("/status/updatedNumberScheduled", "updated"),
        ("/status/numberAvailable", "available"),
        ("/status/numberReady", "ready"),
    ] {
        let n = count(d, pointer);
        if n < desired {
            return Stability::Unstable(format!(
                "waiting for all daemon pods to be {what} ({n} of {desired})"
            ));
        }
    }
    Stability::Stable
}

fn pod(p: &Value) -> Stability {
    if let Some(failure) = pod_failure(p) {
        return Stability::Failed(failure);
    }
    match p.pointer("/status/phase").and_then(Value::as_str) {
        Some("Running") | Some("Succeeded") => Stability::Stable,
        Some(phase) => Stability::Unstable(format!("pod is {phase}")),
        None => Stability::Unstable("no status reported yet".into()),
    }
}

fn job(j: &Value) -> Stability {
    if let Some(failed) = condition(j, "Failed")
        && field(failed, "status") == "True"
    {
        return Stability::Failed(format!(
            "job failed: {} {}",
            field(failed, "reason"),
            field(failed, "message")
        ));
    }
    let completions = int(j, "/spec/completions").unwrap_or(1);
    if count(j, "/status/succeeded") >= completions {
        Stability::Stable
    } else {
        Stability::Unstable("waiting for jobs to finish".into())
    }
}

/// Container waiting reasons that mean the pod will not become ready by waiting.
const FATAL_WAITING: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Why a pod will not become ready, if it will not: phase `Failed`, or a container
/// waiting in CrashLoopBackOff, ImagePullBackOff and the like. Names the pod, the
/// container, the reason and the kubelet's message.
pub fn pod_failure(pod: &Value) -> Option<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let status = pod.get("status")?;
    if field(status, "phase") == "Failed" {
        let reason = field(status, "reason");
        let message = field(status, "message");
        return Some(
            format!("pod {name} failed: {reason} {message}")
                .trim_end()
                .to_owned(),
        );
    }
    for list in ["initContainerStatuses", "containerStatuses"] {
        for container in status
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(waiting) = container.pointer("/state/waiting") else {
                continue;
            };
            let reason = field(waiting, "reason");
            if FATAL_WAITING.contains(&reason) {
                let message = field(waiting, "message");
                let restarts = container
                    .get("restartCount")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let mut text = format!(
                    "pod {name} container {} is in {reason}",
                    field(container, "name")
                );
                if restarts > 0 {
                    text.push_str(&format!(" after {restarts} restarts"));
                }
                if !message.is_empty() {
                    text.push_str(&format!(": {message}"));
                }
                if let Some(last) = container.pointer("/lastState/terminated") {
                    text.push_str(&format!(
                        " (last exit code {}, {})",
                        last.get("exitCode").and_then(Value::as_i64).unwrap_or(0),
                        field(last, "reason")
                    ));
                }
                return Some(text);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: Value) -> Value {
        json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployments_follow_spinnakers_order_of_checks() {
        assert!(
            matches!(stability("Deployment", &json!({"spec": {}})), Stability::Unstable(m) if m.contains("no status"))
        );
        let stale = deployment(json!({"observedGeneration": 1, "replicas": 3}));
        assert!(
            matches!(stability("Deployment", &stale), Stability::Unstable(m) if m.contains("generation"))
        );
        let deadline = deployment(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-1\" has timed out progressing."}]}));
        assert!(
            matches!(stability("Deployment", &deadline), Stability::Failed(m) if m.contains("timed out progressing"))
        );
        let surging = deployment(json!({"observedGeneration": 2, "replicas": 4,
            "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3}));
        assert!(
            matches!(stability("Deployment", &surging), Stability::Unstable(m) if m.contains("old replicas"))
        );
        let updating =
            deployment(json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}));
        assert!(
            matches!(stability("Deployment", &updating), Stability::Unstable(m) if m.contains("(1 of 3)"))
        );
        let unready = deployment(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 2}));
        assert!(
            matches!(stability("Deployment", &unready), Stability::Unstable(m) if m.contains("ready (2 of 3)"))
        );
        let done = deployment(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3}));
        assert_eq!(stability("Deployment", &done), Stability::Stable);
        let mut paused = deployment(json!({"observedGeneration": 2}));
        paused["spec"]["paused"] = json!(true);
        assert_eq!(stability("Deployment", &paused), Stability::Paused);
    }

    #[test]
    fn replica_sets_stateful_sets_daemon_sets_and_jobs() {
        let rs = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "fullyLabeledReplicas": 2, "readyReplicas": 1}});
        assert!(
            matches!(stability("ReplicaSet", &rs), Stability::Unstable(m) if m.contains("ready (1 of 2)"))
        );
        let empty = json!({"spec": {"replicas": 0}});
        assert_eq!(stability("ReplicaSet", &empty), Stability::Stable);

        let on_delete = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        assert_eq!(stability("StatefulSet", &on_delete), Stability::Stable);
        let partitioned = json!({"metadata": {"generation": 1},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}},
            "status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1}});
        assert_eq!(stability("StatefulSet", &partitioned), Stability::Stable);
        let rolling = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "currentReplicas": 2,
                       "currentRevision": "a", "updateRevision": "b"}});
        assert!(matches!(
            stability("StatefulSet", &rolling),
            Stability::Unstable(_)
        ));

        let ds = json!({"metadata": {"generation": 1}, "spec": {"updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 2, "numberReady": 1}});
        assert!(
            matches!(stability("DaemonSet", &ds), Stability::Unstable(m) if m.contains("ready (1 of 2)"))
        );

        let failed_job = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        assert!(
            matches!(stability("Job", &failed_job), Stability::Failed(m) if m.contains("BackoffLimitExceeded"))
        );
        let done_job = json!({"spec": {"completions": 2}, "status": {"succeeded": 2}});
        assert_eq!(stability("Job", &done_job), Stability::Stable);
        assert_eq!(stability("Service", &json!({})), Stability::Stable);
    }

    #[test]
    fn crashing_pods_fail_at_once_with_their_reason() {
        let crashing = json!({"metadata": {"name": "web-abc"}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "web", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}});
        let why = pod_failure(&crashing).unwrap();
        assert_eq!(
            why,
            "pod web-abc container web is in CrashLoopBackOff after 4 restarts: back-off 40s restarting failed container (last exit code 1, Error)"
        );
        assert!(matches!(stability("Pod", &crashing), Stability::Failed(_)));
        let failed = json!({"metadata": {"name": "p"}, "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}});
        assert_eq!(
            pod_failure(&failed).unwrap(),
            "pod p failed: Evicted low on memory"
        );
        let pulling = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(pod_failure(&pulling), None);
        assert!(
            matches!(stability("Pod", &pulling), Stability::Unstable(m) if m == "pod is Pending")
        );
    }
}
