//! Cluster definitions (`deploy.clusters[*]`, `createServerGroup`): moniker parts,
//! account, strategy and capacity.

use super::fields::Obj;
use crate::naming::{NamePart, validate_name_part};
use crate::problems::{Problem, ValidationReport};

/// Orca's deploy strategies (`Strategy.java`), plus the Cloud Foundry one.
pub(super) const STRATEGIES: &[&str] = &[
    "redblack",
    "rollingredblack",
    "highlander",
    "rollingpush",
    "monitored",
    "custom",
    "none",
    "cfrollingredblack",
];

/// Checks one cluster object.
pub(super) fn check_cluster(cluster: &Obj<'_>, report: &mut ValidationReport) {
    match cluster.string("application", report) {
        Some(app) => {
            if let Err(err) = validate_name_part(NamePart::App, app) {
                report.push(Problem::error(cluster.at("application"), err.to_string()));
            }
        }
        None if !cluster.has("application") => report.push(
            Problem::error(cluster.at("application"), "the cluster has no application")
                .with_hint("set \"application\" to the application that owns the server groups"),
        ),
        None => {}
    }
    for (key, part) in [
        ("stack", NamePart::Stack),
        ("freeFormDetails", NamePart::Detail),
    ] {
        if let Some(value) = cluster.string(key, report)
            && !value.contains("${")
            && let Err(err) = validate_name_part(part, value)
        {
            report
                .push(Problem::error(cluster.at(key), err.to_string()).with_hint(
                    "cluster names are app-stack-detail; the stack may not contain '-'",
                ));
        }
    }
    require_account(cluster, report);
    cluster.string("cloudProvider", report);
    cluster.string("provider", report);
    // Absent and "" both mean "none" (Deck writes "" for the canary clusters).
    cluster.one_of("strategy", STRATEGIES, report);
    check_capacity(cluster, report);
    for key in [
        "maxRemainingAsgs",
        "delayBeforeDisableSec",
        "delayBeforeScaleDownSec",
    ] {
        cluster.non_negative(key, report);
    }
    for key in ["scaleDown", "useSourceCapacity"] {
        cluster.boolean(key, report);
    }
}

/// `account` or its older name `credentials`.
pub(super) fn require_account(obj: &Obj<'_>, report: &mut ValidationReport) {
    if obj.has("account") {
        obj.string("account", report);
    } else if obj.has("credentials") {
        obj.string("credentials", report);
    } else {
        report.push(
            Problem::error(
                obj.at("account"),
                "no account to deploy to ('account' or 'credentials')",
            )
            .with_hint("e.g. \"account\": \"local\" or the name of a Kubernetes account"),
        );
    }
}

/// `capacity{min,max,desired}`: whole numbers or expressions, `min <= desired <= max`.
pub(super) fn check_capacity(obj: &Obj<'_>, report: &mut ValidationReport) {
    let Some(capacity) = obj.object("capacity", report) else {
        return;
    };
    let min = capacity.non_negative("min", report);
    let max = capacity.non_negative("max", report);
    let desired = capacity.non_negative("desired", report);
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        report.push(Problem::error(
            capacity.at("min"),
            format!("capacity min ({min}) is greater than max ({max})"),
        ));
    }
    if let Some(desired) = desired {
        if let Some(min) = min
            && desired < min
        {
            report.push(Problem::error(
                capacity.at("desired"),
                format!("capacity desired ({desired}) is below min ({min})"),
            ));
        }
        if let Some(max) = max
            && desired > max
        {
            report.push(Problem::error(
                capacity.at("desired"),
                format!("capacity desired ({desired}) is above max ({max})"),
            ));
        }
    }
}
