//! Kayenta's "Real Time (Automatic)": a `kayentaCanary` stage with a `deployments`
//! block deploys its own control and experiment server groups, analyses them, and
//! removes them after success and after failure (Orca's `Deployments`):
//!
//! ```json
//! "deployments": {"baseline": {"cloudProvider": "local", "application": "shop", "account": "local", "cluster": "shop-prod"},
//!                 "serverGroupPairs": [{"control": {<deploy cluster>}, "experiment": {<deploy cluster>}}],
//!                 "delayBeforeCleanup": "PT1H"}
//! ```
//!
//! The deploying and removing stage types belong to the deployment layer; the canary
//! stage plans them by name ([`DEPLOY_CANARY_SERVER_GROUPS`],
//! [`CLEANUP_CANARY_CLUSTERS`]). Here: the save-time rules of the block, and how the
//! analysis takes its scopes from what was deployed.

use std::collections::BTreeSet;

use gennaker_core::naming::{Moniker, parse_name};
use gennaker_core::{Fields, JsonPath, Problem, ValidationReport, is_expression};
use serde_json::{Map, Value};

/// The stage type deploying the control and experiment groups (gennaker-deploy).
pub const DEPLOY_CANARY_SERVER_GROUPS: &str = "deployCanaryServerGroups";
/// The stage type removing them (gennaker-deploy).
pub const CLEANUP_CANARY_CLUSTERS: &str = "cleanupCanaryClusters";
/// The output of [`DEPLOY_CANARY_SERVER_GROUPS`] naming what was deployed, per pair.
pub(super) const DEPLOYED_SERVER_GROUPS: &str = "deployedServerGroups";
/// The key of `runCanaryIntervals`' context that receives that output (another name:
/// a context key would shadow the output of the same name in its own expression).
pub(super) const DEPLOYED_SCOPES: &str = "deployedServerGroupScopes";

/// Most pairs a stage may deploy (the deployment layer has the same bound).
const MAX_PAIRS: usize = 20;

/// Whether the stage deploys its own server groups.
pub(super) fn automatic(context: &Map<String, Value>) -> bool {
    context
        .get("deployments")
        .is_some_and(|v| !gennaker_core::is_blank(v))
}

/// A side's cluster, when its name is known at save time.
struct Side {
    cluster: String,
    account: String,
    path: JsonPath,
}

/// The save-time rules of `deployments`: what Orca reads to deploy, analyse and clean
/// up, each problem at its path. `providers`: the cloud providers this server deploys
/// through (`None`: not known here, not checked).
pub(super) fn check(
    stage: &Fields<'_>,
    providers: Option<&BTreeSet<String>>,
    report: &mut ValidationReport,
) {
    let Some(deployments) = stage.object("deployments", report) else {
        return;
    };
    let check_provider = |fields: &Fields<'_>, report: &mut ValidationReport| {
        if let (Some(provider), Some(known)) = (fields.string("cloudProvider", report), providers)
            && !provider.contains("${")
            && !known.contains(provider)
        {
            report.push(
                Problem::error(
                    fields.at("cloudProvider"),
                    format!(
                        "cloud provider '{provider}' is not configured on this server; configured: {}",
                        known.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_hint("deploy through a configured provider"),
            );
        }
    };
    let mut baseline_side = None;
    match deployments.object("baseline", report) {
        Some(baseline) => {
            let application =
                baseline.required_string("application", "the production application", report);
            let cluster = baseline.required_string(
                "cluster",
                "the production cluster the control copies",
                report,
            );
            baseline.require_account(report);
            check_provider(&baseline, report);
            if let (Some(application), Some(cluster)) = (application, cluster)
                && !application.contains("${")
                && !cluster.contains("${")
            {
                if !parse_name(cluster).app.eq_ignore_ascii_case(application) {
                    report.push(
                        Problem::error(
                            baseline.at("cluster"),
                            format!(
                                "cluster '{cluster}' is not a cluster of application '{application}'"
                            ),
                        )
                        .with_hint("a cluster is named app-stack-detail after its application"),
                    );
                }
                let account = baseline
                    .get("account")
                    .or_else(|| baseline.get("credentials"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                baseline_side = Some(Side {
                    cluster: cluster.to_owned(),
                    account: account.to_owned(),
                    path: baseline.at("cluster"),
                });
            }
        }
        None if !deployments.has("baseline") => report.push(
            Problem::error(
                deployments.at("baseline"),
                "deployments needs the production cluster the control server groups copy",
            )
            .with_hint("e.g. \"baseline\": {\"cloudProvider\": \"local\", \"application\": \"shop\", \"account\": \"local\", \"cluster\": \"shop-prod\"}"),
        ),
        None => {}
    }
    let pairs = deployments.objects("serverGroupPairs", "a server group pair", report);
    if pairs.is_empty() && !deployments.has("serverGroupPairs") {
        report.push(
            Problem::error(
                deployments.at("serverGroupPairs"),
                "deployments needs at least one {control, experiment} pair of deploy clusters",
            )
            .with_hint("the control runs production's version, the experiment the new one, both at the same size"),
        );
    }
    if pairs.len() > MAX_PAIRS {
        report.push(Problem::error(
            deployments.at("serverGroupPairs"),
            format!(
                "at most {MAX_PAIRS} server group pairs, not {}",
                pairs.len()
            ),
        ));
    }
    let mut sides: Vec<Side> = Vec::new();
    for (_, pair) in &pairs {
        for key in ["control", "experiment"] {
            match pair.object(key, report) {
                Some(cluster) => {
                    check_provider(&cluster, report);
                    if let Some(side) = check_side(&cluster, key, report) {
                        sides.push(side);
                    }
                }
                None if !pair.has(key) => report.push(
                    Problem::error(
                        pair.at(key),
                        format!("the pair has no {key} deploy cluster"),
                    )
                    .with_hint("Deck writes one server group command into both, with -baseline / -canary details"),
                ),
                None => {}
            }
        }
    }
    for (i, side) in sides.iter().enumerate() {
        let same = |other: &Side| other.cluster == side.cluster && other.account == side.account;
        if let Some(baseline) = &baseline_side
            && same(baseline)
        {
            report.push(
                Problem::error(
                    &side.path,
                    format!(
                        "this is the production cluster '{}' ({}): deploying here with highlander and cleaning up would destroy production",
                        side.cluster, baseline.path
                    ),
                )
                .with_hint("give the control and experiment their own clusters, e.g. freeFormDetails \"baseline\" and \"canary\""),
            );
        } else if let Some(first) = sides[..i].iter().find(|o| same(o)) {
            report.push(Problem::error(
                &side.path,
                format!(
                    "cluster '{}' is also deployed at {}: every control and experiment needs its own cluster",
                    side.cluster, first.path
                ),
            ));
        }
    }
    if let Some(delay) = deployments.get("delayBeforeCleanup") {
        let ok = match delay {
            Value::String(s) => {
                s.contains("${")
                    || super::settings::iso_duration_secs(s).is_some_and(|secs| secs >= 0.0)
            }
            other => is_expression(other),
        };
        if !ok {
            report.push(
                Problem::error(
                    deployments.at("delayBeforeCleanup"),
                    format!("delayBeforeCleanup must be an ISO-8601 duration, not {delay}"),
                )
                .with_hint("how long the disabled groups are kept for inspection, e.g. \"PT1H\" or \"PT0S\""),
            );
        }
    }
}

/// One control or experiment deploy cluster: named (application or moniker), placed
/// (account), sized (capacity). Its cluster when the name is known.
fn check_side(cluster: &Fields<'_>, which: &str, report: &mut ValidationReport) -> Option<Side> {
    cluster.require_account(report);
    let moniker = cluster.object("moniker", report);
    let from_moniker = |key: &str| {
        moniker
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
    };
    let application = cluster
        .string("application", report)
        .or_else(|| from_moniker("app"));
    let Some(application) = application else {
        report.push(
            Problem::error(
                cluster.at("application"),
                format!(
                    "the {which} cluster has no application, so its server groups cannot be named"
                ),
            )
            .with_hint(
                "set \"application\" (with \"stack\" and \"freeFormDetails\") or \"moniker\"",
            ),
        );
        return None;
    };
    if !cluster.has("capacity") {
        report.push(
            Problem::error(
                cluster.at("capacity"),
                format!("the {which} cluster has no capacity"),
            )
            .with_hint("control and experiment get the same size, e.g. {\"min\": 1, \"max\": 1, \"desired\": 1}"),
        );
    } else if let Some(capacity) = cluster.object("capacity", report) {
        for key in ["min", "max", "desired"] {
            capacity.non_negative(key, report);
        }
    }
    let stack = cluster
        .string("stack", report)
        .or_else(|| from_moniker("stack"));
    let detail = cluster
        .string("freeFormDetails", report)
        .or_else(|| from_moniker("detail"));
    let parts = [Some(application), stack, detail];
    if parts.iter().flatten().any(|p| p.contains("${")) {
        return None;
    }
    let name = match Moniker::new(application, stack, detail) {
        Ok(moniker) => moniker.cluster(),
        Err(e) => {
            report.push(Problem::error(
                cluster.at("application"),
                format!("the {which} cluster's name is not valid: {e}"),
            ));
            return None;
        }
    };
    let account = cluster
        .get("account")
        .or_else(|| cluster.get("credentials"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(Side {
        cluster: name,
        account: account.to_owned(),
        path: cluster.path.clone(),
    })
}

/// Orca's `RunCanaryIntervalsStage` with deployments: every scope of `canaryConfig`
/// gets the first pair's groups and locations, `extendedScopeParams.type` `asg` and
/// `dataset` `regional` unless set. Later pairs are deployed but not analysed. (Orca
/// also adds each side's AWS account number as `accountId`; a scope here has one set
/// of parameters for both sides, and no provider has account numbers.)
pub(super) fn apply_deployed_scopes(context: &mut Map<String, Value>) -> Result<(), String> {
    let Some(deployed) = context.get(DEPLOYED_SCOPES) else {
        return Ok(());
    };
    let first = deployed
        .as_array()
        .and_then(|pairs| pairs.first())
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            format!("{DEPLOYED_SERVER_GROUPS} names no deployed control and experiment: {deployed}")
        })?;
    let field = |key: &str| first.get(key).and_then(Value::as_str).map(str::to_owned);
    let Some(scopes) = context
        .get_mut("canaryConfig")
        .and_then(|c| c.get_mut("scopes"))
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for scope in scopes.iter_mut().filter_map(Value::as_object_mut) {
        for side in ["control", "experiment"] {
            scope.insert(
                format!("{side}Scope"),
                Value::String(field(&format!("{side}Scope")).unwrap_or_default()),
            );
            scope.insert(
                format!("{side}Location"),
                Value::String(field(&format!("{side}Location")).unwrap_or_default()),
            );
        }
        let params = scope
            .entry("extendedScopeParams")
            .or_insert_with(|| Value::Object(Map::new()));
        if !params.is_object() {
            *params = Value::Object(Map::new());
        }
        if let Value::Object(params) = params {
            params
                .entry("dataset")
                .or_insert_with(|| Value::String("regional".into()));
            params.insert("type".into(), Value::String("asg".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_scope_takes_the_first_pairs_groups() {
        let mut context = json!({
            "canaryConfig": {"scopes": [
                {"scopeName": "default", "extendedScopeParams": {"dataset": "global"}},
                {"scopeName": "other", "controlScope": "x", "controlLocation": "y"}
            ]},
            "deployedServerGroupScopes": [
                {"controlScope": "shop-prod-baseline-v001", "controlLocation": "local", "controlAccountId": "local",
                 "experimentScope": "shop-prod-canary-v001", "experimentLocation": "local", "experimentAccountId": "local"},
                {"controlScope": "later", "experimentScope": "later"}
            ]
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        apply_deployed_scopes(&mut context).unwrap_or_else(|e| panic!("{e}"));
        let scopes = &context["canaryConfig"]["scopes"];
        for scope in scopes.as_array().into_iter().flatten() {
            assert_eq!(scope["controlScope"], "shop-prod-baseline-v001");
            assert_eq!(scope["experimentScope"], "shop-prod-canary-v001");
            assert_eq!(scope["controlLocation"], "local");
            assert_eq!(scope["extendedScopeParams"]["type"], "asg");
        }
        assert_eq!(scopes[0]["extendedScopeParams"]["dataset"], "global");
        assert_eq!(scopes[1]["extendedScopeParams"]["dataset"], "regional");
    }
}
