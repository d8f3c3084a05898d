//! Dynamic targets: `cluster` + `criteria` (`newest`, `second_newest`, `oldest`,
//! `largest`, `smallest`) resolved once, against the live objects of the cluster, and
//! recorded in the stage context (`resolvedManifestName`), so a task repeated after a
//! restart acts on what was chosen first, not on what is newest by then.

use std::cmp::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use gennaker_core::{Fields, Problem, ValidationReport};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult};
use serde_json::{Value, json};

use super::account;
use crate::cluster::KubernetesAccounts;
use crate::manifest::{
    MONIKER_APPLICATION, MONIKER_CLUSTER, MONIKER_SEQUENCE, annotation, kind_key, known_kind,
};

/// The resolve task's name (Orca's).
pub(super) const RESOLVE: &str = "resolveTargetManifest";

/// Where the resolved `"<kind> <name>"` is recorded.
pub(super) const RESOLVED: &str = "resolvedManifestName";

/// The criteria Spinnaker offers.
pub(super) const CRITERIA: &[&str] = &["newest", "second_newest", "oldest", "largest", "smallest"];

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    registry.task(ResolveTask {
        accounts: accounts.clone(),
    });
}

/// Whether the stage names a dynamic target (Orca resolves one iff `criteria` is set).
pub(super) fn is_dynamic(context: &serde_json::Map<String, Value>) -> bool {
    context
        .get("criteria")
        .is_some_and(|c| !c.is_null() && c != "")
}

/// Save-time rules of a dynamic target: a cluster, a known criterion, a kind.
pub(super) fn check_dynamic(stage: &Fields<'_>, report: &mut ValidationReport) {
    stage.one_of("criteria", CRITERIA, report);
    let cluster = stage.required_string(
        "cluster",
        "the cluster to pick from (\"replicaSet web\")",
        report,
    );
    let kind = stage
        .string("kind", report)
        .filter(|k| !k.is_empty())
        .or_else(|| cluster.and_then(|c| c.split_whitespace().next()));
    if let Some(kind) = kind
        && !kind.contains("${")
        && known_kind(kind).is_none()
    {
        report.push(
            Problem::error(
                stage.at("kind"),
                format!(
                    "'{kind}' is not a kind Gennaker knows ({})",
                    crate::manifest::known_kind_keys()
                ),
            )
            .with_hint("set \"kind\", or a cluster like \"replicaSet web\""),
        );
    }
    stage.string("location", report);
}

struct ResolveTask {
    accounts: Arc<KubernetesAccounts>,
}

#[async_trait]
impl Task for ResolveTask {
    fn name(&self) -> &'static str {
        RESOLVE
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let context = &ctx.stage.context;
        if !is_dynamic(context) || context.get(RESOLVED).is_some_and(Value::is_string) {
            return Ok(TaskResult::succeeded());
        }
        let stage = &ctx.stage.name;
        let field = |key: &str| {
            ctx.str(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                TaskError::Permanent(format!(
                    "stage '{stage}' has a dynamic target (criteria) but no \"{key}\": set it"
                ))
            })
        };
        let criteria = field("criteria")?;
        let cluster = field("cluster")?;
        let kind_text = ctx
            .str("kind")
            .filter(|k| !k.is_empty())
            .or_else(|| cluster.split_whitespace().next())
            .unwrap_or_default();
        let (api_version, kind) = known_kind(kind_text).ok_or_else(|| {
            TaskError::Permanent(format!(
                "stage '{stage}' field \"kind\": '{kind_text}' is not a kind Gennaker knows ({})",
                crate::manifest::known_kind_keys()
            ))
        })?;
        let application = ctx
            .str("app")
            .filter(|a| !a.is_empty())
            .unwrap_or(&ctx.execution.application);
        let account = account(&self.accounts, ctx)?;
        let resolved = account.resolve(api_version, kind).await?;
        let namespace = resolved.namespaced.then(|| {
            ctx.str("location")
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_owned()
        });
        account
            .check_namespace(namespace.as_deref())
            .map_err(|why| TaskError::Permanent(format!("stage '{stage}': {why}")))?;
        let live = account.list(&resolved, namespace.as_deref(), "").await?;
        let members: Vec<&Value> = live
            .iter()
            .filter(|o| o.pointer("/metadata/deletionTimestamp").is_none())
            .filter(|o| {
                annotation(o, MONIKER_CLUSTER) == Some(cluster)
                    && annotation(o, MONIKER_APPLICATION)
                        .is_some_and(|a| a.eq_ignore_ascii_case(application))
            })
            .collect();
        let chosen = pick(&members, criteria).map_err(|why| {
            TaskError::Permanent(format!(
                "stage '{stage}': cluster '{cluster}' of application '{application}' in namespace '{}' {why}",
                namespace.as_deref().unwrap_or_default()
            ))
        })?;
        let name = chosen
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let full = format!("{} {name}", kind_key(kind));
        Ok(TaskResult::succeeded()
            .with_context(RESOLVED, json!(full))
            .with_context("manifestName", json!(full))
            .with_output("manifestName", json!(full)))
    }
}

/// The object `criteria` picks among a cluster's `members`: by creation time (newest,
/// second newest, oldest; ties broken by the moniker sequence, then the name) or by
/// `spec.replicas` (largest, smallest; none counts as −1).
pub(super) fn pick<'a>(members: &[&'a Value], criteria: &str) -> Result<&'a Value, String> {
    let created = |o: &Value| {
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let sequence = |o: &Value| {
        annotation(o, MONIKER_SEQUENCE)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let name = |o: &Value| {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let replicas = |o: &Value| {
        o.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(-1)
    };
    let by_age = |a: &&Value, b: &&Value| -> Ordering {
        created(a)
            .cmp(&created(b))
            .then(sequence(a).cmp(&sequence(b)))
            .then(name(a).cmp(&name(b)))
    };
    let mut sorted: Vec<&Value> = members.to_vec();
    let index = match criteria {
        "newest" | "second_newest" | "oldest" => {
            sorted.sort_by(|a, b| by_age(b, a));
            match criteria {
                "newest" => 0,
                "second_newest" => 1,
                _ => sorted.len().saturating_sub(1),
            }
        }
        "largest" | "smallest" => {
            let largest = criteria == "largest";
            sorted.sort_by(|a, b| {
                let size = if largest {
                    replicas(b).cmp(&replicas(a))
                } else {
                    replicas(a).cmp(&replicas(b))
                };
                size.then(by_age(b, a))
            });
            0
        }
        other => {
            return Err(format!(
                "cannot be picked from by criteria '{other}': use one of {}",
                CRITERIA.join(", ")
            ));
        }
    };
    sorted.get(index).copied().ok_or_else(|| {
        format!(
            "has {} live object(s), so there is no {criteria} one",
            members.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, created: &str, sequence: &str, replicas: i64) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
                            "annotations": {MONIKER_SEQUENCE: sequence}},
               "spec": {"replicas": replicas}})
    }

    #[test]
    fn criteria_pick_by_creation_time_then_sequence_or_by_size() {
        let a = rs("web-v000", "2024-01-01T00:00:00Z", "0", 3);
        let b = rs("web-v001", "2024-01-01T00:00:05Z", "1", 1);
        let c = rs("web-v002", "2024-01-01T00:00:05Z", "2", 2);
        let members = [&a, &b, &c];
        let name = |criteria: &str| {
            pick(&members, criteria).unwrap()["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            name("newest"),
            "web-v002",
            "same second: the higher sequence"
        );
        assert_eq!(name("second_newest"), "web-v001");
        assert_eq!(name("oldest"), "web-v000");
        assert_eq!(name("largest"), "web-v000");
        assert_eq!(name("smallest"), "web-v001");
        let why = pick(&[&a], "second_newest").unwrap_err();
        assert!(why.contains("1 live object"), "{why}");
        assert!(pick(&[], "newest").is_err());
        assert!(pick(&members, "biggest").unwrap_err().contains("newest"));
    }
}
