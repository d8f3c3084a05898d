//! Reading Spinnaker's stage fields: accounts, clusters, capacities, and turning
//! provider errors into task errors.

use gennaker_core::lenient::value_as_i64;
use gennaker_core::naming::{Moniker, cluster_name, parse_name};
use gennaker_engine::TaskError;
use serde_json::{Map, Value};

use crate::model::Capacity;
use crate::provider::{DeployError, Providers};

/// A provider failure as a task failure: only an unavailable provider is worth a retry,
/// and an unconfigured one ends the execution whatever the stage's `failPipeline`.
pub(crate) fn task_error(error: DeployError) -> TaskError {
    match error {
        DeployError::Unavailable(message) => TaskError::Transient(message),
        DeployError::Unsupported(message) => TaskError::Unsupported(message),
        other => TaskError::Permanent(other.to_string()),
    }
}

/// A non-empty string field.
pub(crate) fn text<'a>(context: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    context
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A whole number field (numbers or numeric strings, as Deck and expressions give them).
pub(crate) fn whole(context: &Map<String, Value>, key: &str) -> Option<i64> {
    context.get(key).and_then(value_as_i64)
}

/// The `cloudProvider` field (`None`: the default provider).
pub(crate) fn cloud_provider(context: &Map<String, Value>) -> Option<&str> {
    text(context, "cloudProvider").or_else(|| text(context, "provider"))
}

/// The account: Spinnaker's `credentials`, or `account`; the default provider's name
/// when neither is given (the local provider has one account, `local`).
pub(crate) fn account(context: &Map<String, Value>) -> String {
    text(context, "credentials")
        .or_else(|| text(context, "account"))
        .or_else(|| cloud_provider(context))
        .unwrap_or(Providers::DEFAULT)
        .to_owned()
}

/// Where a cluster-wide or server-group stage acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterRef {
    /// `cloudProvider`, when named.
    pub(crate) cloud_provider: Option<String>,
    /// The account.
    pub(crate) account: String,
    /// `app-stack-detail`.
    pub(crate) cluster: String,
    /// The application owning the cluster.
    pub(crate) application: String,
}

impl ClusterRef {
    /// The cluster a stage names: `cluster`, `moniker.cluster`, the moniker's parts, or
    /// the cluster of its `serverGroupName`.
    pub(crate) fn from_context(context: &Map<String, Value>) -> Result<Self, TaskError> {
        let moniker = context.get("moniker").and_then(Value::as_object);
        let from_moniker = moniker.and_then(|m| {
            text(m, "cluster").map(str::to_owned).or_else(|| {
                text(m, "app").map(|app| cluster_name(app, text(m, "stack"), text(m, "detail")))
            })
        });
        let cluster = text(context, "cluster")
            .map(str::to_owned)
            .or(from_moniker)
            .or_else(|| server_group_name(context).map(|name| parse_name(name).cluster()))
            .ok_or_else(|| {
                TaskError::Permanent(
                    "the stage names no cluster: set \"cluster\" (or \"moniker\", or \"serverGroupName\")".into(),
                )
            })?;
        let application = moniker
            .and_then(|m| text(m, "app"))
            .map(str::to_owned)
            .unwrap_or_else(|| parse_name(&cluster).app);
        Ok(Self {
            cloud_provider: cloud_provider(context).map(str::to_owned),
            account: account(context),
            cluster,
            application,
        })
    }

    /// The moniker fields Spinnaker stages carry.
    pub(crate) fn moniker_json(&self) -> Value {
        let parsed = parse_name(&self.cluster);
        serde_json::json!({
            "app": self.application,
            "cluster": self.cluster,
            "stack": parsed.stack,
            "detail": parsed.detail,
        })
    }

    /// The generic fields every cluster or server-group stage planned for this cluster
    /// gets: `cluster`, `credentials`, `account`, `cloudProvider`, `moniker`.
    pub(crate) fn stage_context(&self) -> Map<String, Value> {
        let mut context = Map::new();
        context.insert("cluster".into(), Value::String(self.cluster.clone()));
        context.insert("credentials".into(), Value::String(self.account.clone()));
        context.insert("account".into(), Value::String(self.account.clone()));
        context.insert(
            "cloudProvider".into(),
            Value::String(
                self.cloud_provider
                    .clone()
                    .unwrap_or_else(|| Providers::DEFAULT.to_owned()),
            ),
        );
        context.insert("moniker".into(), self.moniker_json());
        context
    }
}

/// The server group a stage names outright: `serverGroupName` or Orca's `asgName`.
pub(crate) fn server_group_name(context: &Map<String, Value>) -> Option<&str> {
    text(context, "serverGroupName").or_else(|| text(context, "asgName"))
}

/// The cluster moniker of a deploy cluster: `application` (or `moniker.app`), `stack`,
/// `freeFormDetails` (or `moniker.detail`).
pub(crate) fn deploy_moniker(
    cluster: &Map<String, Value>,
    default_application: &str,
) -> Result<Moniker, TaskError> {
    let moniker = cluster.get("moniker").and_then(Value::as_object);
    let from_moniker = |key: &str| moniker.and_then(|m| text(m, key));
    let application = text(cluster, "application")
        .or_else(|| from_moniker("app"))
        .unwrap_or(default_application);
    let stack = text(cluster, "stack").or_else(|| from_moniker("stack"));
    let detail = text(cluster, "freeFormDetails").or_else(|| from_moniker("detail"));
    Moniker::new(application, stack, detail)
        .map_err(|e| TaskError::Permanent(format!("the cluster's name is not valid: {e}")))
}

/// A `capacity {min, max, desired}` object; missing parts follow `desired` (or `min`).
pub(crate) fn capacity(value: Option<&Value>) -> Result<Option<Capacity>, TaskError> {
    let Some(object) = value.and_then(Value::as_object) else {
        return match value {
            None | Some(Value::Null) => Ok(None),
            Some(other) => Err(TaskError::Permanent(format!(
                "capacity must be an object {{min, max, desired}}, not {other}"
            ))),
        };
    };
    let part = |key: &str| -> Result<Option<u32>, TaskError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value_as_i64(value)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    TaskError::Permanent(format!(
                        "capacity.{key} must be a whole number ≥ 0, not {value}"
                    ))
                }),
        }
    };
    let (min, max, desired) = (part("min")?, part("max")?, part("desired")?);
    let desired = desired.or(min).or(max).unwrap_or(0);
    let capacity = Capacity {
        min: min.unwrap_or(desired).min(desired),
        max: max.unwrap_or(desired).max(desired),
        desired,
    };
    if min.is_some_and(|m| m > desired) || max.is_some_and(|m| m < desired) {
        return Err(TaskError::Permanent(format!(
            "capacity must satisfy min ≤ desired ≤ max, got {}",
            Value::Object(object.clone())
        )));
    }
    Ok(Some(capacity))
}

/// A capacity as Spinnaker writes it.
pub(crate) fn capacity_json(capacity: Capacity) -> Value {
    serde_json::json!({"min": capacity.min, "max": capacity.max, "desired": capacity.desired})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn clusters_come_from_any_of_spinnakers_fields() {
        let by_name =
            ClusterRef::from_context(&map(json!({"cluster": "shop-prod", "credentials": "east"})))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (by_name.application.as_str(), by_name.account.as_str()),
            ("shop", "east")
        );
        let by_moniker = ClusterRef::from_context(&map(
            json!({"moniker": {"app": "shop", "stack": "prod", "detail": "a-b"}}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(by_moniker.cluster, "shop-prod-a-b");
        assert_eq!(by_moniker.account, "local");
        let by_group = ClusterRef::from_context(&map(json!({"serverGroupName": "shop-prod-v003"})))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(by_group.cluster, "shop-prod");
        assert!(ClusterRef::from_context(&Map::new()).is_err());
    }

    #[test]
    fn only_an_unavailable_provider_is_retried_and_an_unconfigured_one_is_unsupported() {
        let unconfigured = Providers::new().provider(Some("aws")).err().map(task_error);
        assert!(
            matches!(&unconfigured, Some(TaskError::Unsupported(m)) if m.contains("cloudProvider 'aws' is not configured")),
            "{unconfigured:?}"
        );
        assert!(matches!(
            task_error(DeployError::Unavailable("busy".into())),
            TaskError::Transient(_)
        ));
        assert!(matches!(
            task_error(DeployError::Invalid("bad".into())),
            TaskError::Permanent(_)
        ));
    }

    #[test]
    fn capacities_are_checked_and_completed() {
        assert_eq!(
            capacity(Some(&json!({"desired": "3"}))).ok().flatten(),
            Some(Capacity::fixed(3))
        );
        assert_eq!(
            capacity(Some(&json!({"min": 1, "max": 5, "desired": 2})))
                .ok()
                .flatten(),
            Some(Capacity {
                min: 1,
                max: 5,
                desired: 2
            })
        );
        assert!(capacity(Some(&json!({"min": 4, "desired": 2}))).is_err());
        assert!(capacity(Some(&json!({"desired": -1}))).is_err());
        assert_eq!(capacity(None).ok().flatten(), None);
    }
}
