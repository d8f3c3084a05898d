//! The context of one `runCanary` stage: Orca's `RunCanaryContext`, i.e. Kayenta's
//! execution request (which config, which accounts, the windows of every scope, the
//! thresholds). Planned by `runCanaryIntervals`, read by the `runCanary` task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::source::ScopeQuery;

/// One judgement's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunCanaryContext {
    /// The metrics account; the default account when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_account_name: Option<String>,
    /// Recorded as Orca records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_account_name: Option<String>,
    /// Recorded as Orca records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_name: Option<String>,
    /// The canary config's id, when the stage names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_config_id: Option<String>,
    /// The canary config's name, used when there is no id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_config_name: Option<String>,
    /// The windows of each scope, by scope name.
    pub scopes: BTreeMap<String, RequestScopes>,
    /// The thresholds; either may be absent.
    pub score_thresholds: Thresholds,
    /// Passed through (Orca's `siteLocal`).
    #[serde(default)]
    pub site_local: Value,
}

/// Control and experiment of one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestScopes {
    /// The baseline.
    pub control_scope: RequestScope,
    /// The canary.
    pub experiment_scope: RequestScope,
}

/// One side of a scope with its window (Kayenta's `CanaryScope`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestScope {
    /// The scope (a server group name, or what the queries expect in `${scope}`).
    pub scope: String,
    /// Its location.
    #[serde(default)]
    pub location: String,
    /// Start of the window.
    pub start: jiff::Timestamp,
    /// End of the window.
    pub end: jiff::Timestamp,
    /// Seconds between points.
    pub step: u64,
    /// Extra template variables.
    #[serde(default)]
    pub extended_scope_params: BTreeMap<String, String>,
}

impl RequestScope {
    /// The question a metric source answers.
    pub(crate) fn query(&self) -> ScopeQuery {
        ScopeQuery {
            scope: self.scope.clone(),
            location: self.location.clone(),
            start: self.start,
            end: self.end,
            step_seconds: self.step,
            extended_params: self.extended_scope_params.clone(),
        }
    }
}

/// `scoreThresholds`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Thresholds {
    /// Minimum final score to pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<f64>,
    /// A score at or below this stops the analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marginal: Option<f64>,
}
