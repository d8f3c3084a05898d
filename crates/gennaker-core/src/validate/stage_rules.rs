//! Required fields and field types of the stage types Gennaker runs.

use std::collections::HashSet;

use serde_json::Value;

use super::cluster::{check_capacity, check_cluster, require_account};
use super::fields::{Obj, type_name};
use crate::problems::{Problem, ValidationReport};
use crate::suggest;

const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const STATUS_URL_RESOLUTIONS: &[&str] = &["getMethod", "locationHeader", "webhookResponse"];
const PRECONDITION_TYPES: &[&str] = &["expression", "clusterSize", "stageStatus"];
const COMPARISONS: &[&str] = &["<", "<=", "==", "!=", ">=", ">"];
const TARGETS: &[&str] = &[
    "current_asg_dynamic",
    "ancestor_asg_dynamic",
    "oldest_asg_dynamic",
    "largest_asg_dynamic",
    "current_asg",
    "ancestor_asg",
    "oldest_asg",
    "largest_asg",
];
const RESIZE_ACTIONS: &[&str] = &[
    "scale_exact",
    "scale_up",
    "scale_down",
    "scale_to_cluster",
    "scale_to_server_group",
];
const ROLLBACK_TYPES: &[&str] = &["EXPLICIT", "PREVIOUS_IMAGE", "TEST"];
const ANALYSIS_TYPES: &[&str] = &["realTime", "realTimeAutomatic", "retrospective"];
/// Stage fields that name an expected artifact by id.
const ARTIFACT_ID_FIELDS: &[&str] = &["manifestArtifactId", "expectedArtifactId", "artifactId"];
const ARTIFACT_ID_LISTS: &[&str] = &["requiredArtifactIds", "expectedArtifactIds"];

/// Checks the type-specific fields of a runnable stage.
pub(super) fn check_stage_fields(
    stage_type: &str,
    stage: &Obj<'_>,
    artifact_ids: &HashSet<String>,
    report: &mut ValidationReport,
) {
    match stage_type {
        "wait" => check_wait(stage, report),
        "manualJudgment" => check_manual_judgment(stage, report),
        "checkPreconditions" => check_preconditions(stage, report),
        "evaluateVariables" => check_evaluate_variables(stage, report),
        "webhook" => check_webhook(stage, report),
        "pipeline" => check_pipeline_stage(stage, report),
        "deploy" => check_deploy(stage, report),
        "createServerGroup" => check_cluster(stage, report),
        "resizeServerGroup" => check_resize(stage, report),
        "enableServerGroup" | "disableServerGroup" | "destroyServerGroup" => {
            check_server_group_target(stage, report);
        }
        "rollbackServerGroup" => check_rollback(stage, report),
        "rollbackCluster" => check_cluster_target(stage, report),
        "shrinkCluster" => {
            check_cluster_target(stage, report);
            stage.non_negative("shrinkToSize", report);
            stage.boolean("allowDeleteActive", report);
            stage.boolean("retainLargerOverNewer", report);
        }
        "scaleDownCluster" => {
            check_cluster_target(stage, report);
            stage.non_negative("remainingFullSizeServerGroups", report);
            stage.boolean("preferLargerOverNewer", report);
        }
        "disableCluster" => {
            check_cluster_target(stage, report);
            stage.non_negative("remainingEnabledServerGroups", report);
            stage.boolean("preferLargerOverNewer", report);
        }
        "findArtifactFromExecution" => check_find_artifact(stage, report),
        "upsertLoadBalancer" => check_upsert_load_balancer(stage, report),
        "deleteLoadBalancer" => {
            stage.required_string("loadBalancerName", "the load balancer to delete", report);
            require_account(stage, report);
        }
        "upsertSecurityGroup" => check_upsert_security_group(stage, report),
        "kayentaCanary" => check_kayenta(stage, report),
        _ => {}
    }
    check_artifact_references(stage, artifact_ids, report);
}

/// Stage fields that name expected artifacts must name one the pipeline (or a stage)
/// declares; Orca fails the stage at run time otherwise.
pub(super) fn check_artifact_references(
    stage: &Obj<'_>,
    artifact_ids: &HashSet<String>,
    report: &mut ValidationReport,
) {
    let mut check = |id: &str, path: crate::problems::JsonPath| {
        if !id.contains("${") && !artifact_ids.contains(id) {
            report.push(Problem::warning(
                path,
                format!(
                    "artifact id '{id}' is not declared in the pipeline's expectedArtifacts or any stage's expectedArtifacts{}",
                    suggest::did_you_mean(id, artifact_ids.iter().map(String::as_str))
                ),
            ));
        }
    };
    for key in ARTIFACT_ID_FIELDS {
        if let Some(Value::String(id)) = stage.get(key) {
            check(id, stage.at(key));
        }
    }
    for key in ARTIFACT_ID_LISTS {
        if let Some(Value::Array(ids)) = stage.get(key) {
            for (i, id) in ids.iter().enumerate() {
                if let Value::String(id) = id {
                    check(id, stage.at(key).index(i));
                }
            }
        }
    }
}

fn check_wait(stage: &Obj<'_>, report: &mut ValidationReport) {
    match stage.get("waitTime") {
        None => report.push(
            Problem::error(
                stage.at("waitTime"),
                "a wait stage needs waitTime (seconds)",
            )
            .with_hint("e.g. \"waitTime\": 30, or an expression like \"${parameters.delay}\""),
        ),
        Some(_) => {
            stage.non_negative("waitTime", report);
        }
    }
    stage.string("skipWaitText", report);
}

fn check_manual_judgment(stage: &Obj<'_>, report: &mut ValidationReport) {
    stage.string("instructions", report);
    stage.boolean("propagateAuthenticationContext", report);
    stage.strings("selectedStageRoles", report);
    for (_, input) in stage.objects("judgmentInputs", "a judgment input", report) {
        input.required_string("value", "the judgment choice", report);
    }
}

fn check_preconditions(stage: &Obj<'_>, report: &mut ValidationReport) {
    if !stage.has("preconditions") {
        report.push(
            Problem::error(stage.at("preconditions"), "checkPreconditions has no preconditions")
                .with_hint("add e.g. {\"type\": \"expression\", \"context\": {\"expression\": \"${trigger.user != 'anonymous'}\"}}"),
        );
        return;
    }
    for (_, precondition) in stage.objects("preconditions", "a precondition", report) {
        precondition.boolean("failPipeline", report);
        if precondition
            .required_string("type", "the precondition type", report)
            .is_none()
        {
            continue;
        }
        let Some(kind) = precondition.one_of("type", PRECONDITION_TYPES, report) else {
            continue;
        };
        let Some(context) = precondition.object("context", report) else {
            report.push(Problem::error(
                precondition.at("context"),
                format!("a {kind} precondition needs a context"),
            ));
            continue;
        };
        match kind {
            "expression" => match context.get("expression") {
                Some(Value::String(_) | Value::Bool(_)) => {}
                Some(other) => report.push(Problem::error(
                    context.at("expression"),
                    format!("expression must be a string, not {}", type_name(other)),
                )),
                None => report.push(Problem::error(
                    context.at("expression"),
                    "an expression precondition needs context.expression",
                )),
            },
            "clusterSize" => {
                context.required_string("cluster", "the cluster to count", report);
                if !context.has("credentials") && !context.has("account") {
                    require_account(&context, report);
                }
                context.one_of("comparison", COMPARISONS, report);
                context.non_negative("expected", report);
                context.strings("regions", report);
            }
            "stageStatus" => {
                context.required_string("stageName", "the stage whose status is checked", report);
                context.required_string("stageStatus", "the expected status", report);
            }
            _ => {}
        }
    }
}

fn check_evaluate_variables(stage: &Obj<'_>, report: &mut ValidationReport) {
    if !stage.has("variables") {
        report.push(
            Problem::error(stage.at("variables"), "evaluateVariables has no variables")
                .with_hint("add e.g. [{\"key\": \"version\", \"value\": \"${trigger.tag}\"}]"),
        );
        return;
    }
    let mut seen = HashSet::new();
    for (_, variable) in stage.objects("variables", "a variable", report) {
        if let Some(key) = variable.required_string("key", "the variable name", report)
            && !seen.insert(key.to_owned())
        {
            report.push(Problem::warning(
                variable.at("key"),
                format!("variable '{key}' is defined twice; the later value wins"),
            ));
        }
        if !variable.map.contains_key("value") {
            report.push(Problem::error(
                variable.at("value"),
                "the variable has no value",
            ));
        }
    }
}

fn check_webhook(stage: &Obj<'_>, report: &mut ValidationReport) {
    if let Some(url) = stage.required_string("url", "the URL to call", report)
        && !url.contains("${")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        report.push(
            Problem::error(
                stage.at("url"),
                format!("url '{url}' is not an http:// or https:// URL"),
            )
            .with_hint("webhooks only call http and https URLs"),
        );
    }
    if let Some(method) = stage.string("method", report)
        && !method.contains("${")
        && !HTTP_METHODS.contains(&method.to_ascii_uppercase().as_str())
    {
        report.push(Problem::error(
            stage.at("method"),
            format!(
                "method '{method}' is not an HTTP method ({})",
                HTTP_METHODS.join(", ")
            ),
        ));
    }
    stage.object("customHeaders", report);
    for key in [
        "statusUrlJsonPath",
        "statusJsonPath",
        "progressJsonPath",
        "successStatuses",
        "canceledStatuses",
        "terminalStatuses",
        "cancelEndpoint",
        "cancelMethod",
    ] {
        stage.string(key, report);
    }
    for key in ["failFastStatusCodes", "retryStatusCodes"] {
        if let Some(codes) = stage.array(key, report) {
            for (i, code) in codes.iter().enumerate() {
                let ok =
                    crate::lenient::value_as_u64(code).is_some_and(|c| (100..=599).contains(&c));
                if !ok {
                    report.push(Problem::error(
                        stage.at(key).index(i),
                        format!("{code} is not an HTTP status code"),
                    ));
                }
            }
        }
    }
    if stage.boolean("waitForCompletion", report) == Some(true) {
        match stage.one_of("statusUrlResolution", STATUS_URL_RESOLUTIONS, report) {
            None if !stage.has("statusUrlResolution") => report.push(
                Problem::error(
                    stage.at("statusUrlResolution"),
                    "waitForCompletion is on but statusUrlResolution is missing",
                )
                .with_hint("use getMethod (poll the same URL), locationHeader or webhookResponse"),
            ),
            Some("webhookResponse") if !stage.has("statusUrlJsonPath") => report.push(Problem::error(
                stage.at("statusUrlJsonPath"),
                "statusUrlResolution webhookResponse needs statusUrlJsonPath (where the status URL is in the response)",
            )),
            _ => {}
        }
        if !stage.has("statusJsonPath") {
            report.push(
                Problem::error(
                    stage.at("statusJsonPath"),
                    "waitForCompletion is on but statusJsonPath is missing",
                )
                .with_hint("the JSON path of the status in the polled response, e.g. \"$.status\""),
            );
        }
    }
}

fn check_pipeline_stage(stage: &Obj<'_>, report: &mut ValidationReport) {
    stage.required_string(
        "application",
        "the application of the pipeline to run",
        report,
    );
    stage.required_string("pipeline", "the id of the pipeline to run", report);
    stage.object("pipelineParameters", report);
    stage.boolean("waitForCompletion", report);
}

fn check_deploy(stage: &Obj<'_>, report: &mut ValidationReport) {
    if !stage.has("clusters") {
        report.push(
            Problem::error(
                stage.at("clusters"),
                "a deploy stage needs at least one cluster",
            )
            .with_hint("add a cluster with application, account, stack, strategy and capacity"),
        );
        return;
    }
    for (_, cluster) in stage.objects("clusters", "a cluster", report) {
        check_cluster(&cluster, report);
    }
}

/// A cluster stage names its cluster (or moniker) and account.
fn check_cluster_target(stage: &Obj<'_>, report: &mut ValidationReport) {
    if !stage.has("cluster") && !stage.has("moniker") {
        report.push(
            Problem::error(stage.at("cluster"), "no cluster given ('cluster')")
                .with_hint("e.g. \"cluster\": \"myapp-prod\""),
        );
    }
    stage.string("cluster", report);
    stage.object("moniker", report);
    require_account(stage, report);
}

/// Server-group stages name a server group, or a cluster plus a dynamic target.
fn check_server_group_target(stage: &Obj<'_>, report: &mut ValidationReport) {
    if stage.has("serverGroupName") || stage.has("asgName") {
        stage.string("serverGroupName", report);
        require_account(stage, report);
        return;
    }
    check_cluster_target(stage, report);
    if !stage.has("target") {
        report.push(
            Problem::error(stage.at("target"), "no target server group ('target')")
                .with_hint("e.g. \"target\": \"current_asg_dynamic\" (newest), \"ancestor_asg_dynamic\" (previous)"),
        );
    }
    stage.one_of("target", TARGETS, report);
}

fn check_resize(stage: &Obj<'_>, report: &mut ValidationReport) {
    check_server_group_target(stage, report);
    let action = stage.one_of("action", RESIZE_ACTIONS, report);
    check_capacity(stage, report);
    stage.number("scalePct", report);
    stage.number("scaleNum", report);
    let amount = stage.has("capacity") || stage.has("scalePct") || stage.has("scaleNum");
    let needs_amount = !matches!(action, Some("scale_to_cluster" | "scale_to_server_group"));
    if !amount && needs_amount && !stage.has("action") {
        report.push(
            Problem::error(stage.at("capacity"), "resizeServerGroup needs a capacity, scalePct or scaleNum")
                .with_hint("e.g. \"action\": \"scale_exact\", \"capacity\": {\"min\": 2, \"max\": 2, \"desired\": 2}"),
        );
    } else if !amount && needs_amount {
        report.push(Problem::error(
            stage.at("capacity"),
            format!(
                "action '{}' needs a capacity, scalePct or scaleNum",
                action.unwrap_or("?")
            ),
        ));
    }
}

fn check_rollback(stage: &Obj<'_>, report: &mut ValidationReport) {
    let kind = stage.one_of("rollbackType", ROLLBACK_TYPES, report);
    let context = stage.object("rollbackContext", report);
    if kind == Some("EXPLICIT") {
        match context {
            Some(context) => {
                context.required_string("rollbackServerGroupName", "the server group to roll back", report);
                context.required_string("restoreServerGroupName", "the server group to restore", report);
            }
            None => report.push(Problem::error(
                stage.at("rollbackContext"),
                "an EXPLICIT rollback needs rollbackContext with rollbackServerGroupName and restoreServerGroupName",
            )),
        }
    }
    if !stage.has("rollbackType") {
        report.push(
            Problem::error(
                stage.at("rollbackType"),
                "rollbackServerGroup needs a rollbackType",
            )
            .with_hint("EXPLICIT (name both server groups) or PREVIOUS_IMAGE"),
        );
    }
    require_account(stage, report);
}

fn check_find_artifact(stage: &Obj<'_>, report: &mut ValidationReport) {
    stage.required_string(
        "application",
        "the application of the pipeline to search",
        report,
    );
    stage.required_string("pipeline", "the id of the pipeline to search", report);
    stage.object("executionOptions", report);
    if !stage.has("expectedArtifact") && !stage.has("expectedArtifacts") {
        report.push(Problem::error(
            stage.at("expectedArtifacts"),
            "findArtifactFromExecution needs the artifact to look for ('expectedArtifacts')",
        ));
    }
}

fn check_upsert_load_balancer(stage: &Obj<'_>, report: &mut ValidationReport) {
    if stage.has("loadBalancers") {
        for (_, lb) in stage.objects("loadBalancers", "a load balancer", report) {
            lb.required_string("name", "the load balancer name", report);
            require_account(&lb, report);
        }
        return;
    }
    stage.required_string("name", "the load balancer name", report);
    require_account(stage, report);
}

fn check_upsert_security_group(stage: &Obj<'_>, report: &mut ValidationReport) {
    if !stage.has("name") && !stage.has("securityGroupName") {
        report.push(Problem::error(
            stage.at("name"),
            "the firewall has no name ('name')",
        ));
    }
    stage.string("name", report);
    stage.string("securityGroupName", report);
    require_account(stage, report);
}

fn check_kayenta(stage: &Obj<'_>, report: &mut ValidationReport) {
    stage.one_of("analysisType", ANALYSIS_TYPES, report);
    let Some(config) = stage.object("canaryConfig", report) else {
        report.push(
            Problem::error(
                stage.at("canaryConfig"),
                "kayentaCanary needs a canaryConfig",
            )
            .with_hint("at least canaryConfigId, scopes and scoreThresholds"),
        );
        return;
    };
    config.required_string("canaryConfigId", "the canary config id", report);
    for key in [
        "metricsAccountName",
        "storageAccountName",
        "lifetimeDuration",
    ] {
        config.string(key, report);
    }
    if let Some(duration) = config.get("lifetimeDuration").and_then(Value::as_str)
        && !duration.contains("${")
        && !looks_like_iso_duration(duration)
    {
        report.push(
            Problem::error(
                config.at("lifetimeDuration"),
                format!("lifetimeDuration '{duration}' is not an ISO-8601 duration"),
            )
            .with_hint("e.g. \"PT1H\" or \"PT30M\""),
        );
    }
    for key in [
        "beginCanaryAnalysisAfterMins",
        "lookbackMins",
        "canaryAnalysisIntervalMins",
        "lifetimeHours",
    ] {
        config.number(key, report);
    }
    match config.object("scoreThresholds", report) {
        Some(thresholds) => {
            let marginal = thresholds.number("marginal", report);
            let pass = thresholds.number("pass", report);
            for (key, value) in [("marginal", marginal), ("pass", pass)] {
                if let Some(v) = value
                    && !(0.0..=100.0).contains(&v)
                {
                    report.push(Problem::error(
                        thresholds.at(key),
                        format!("{key} must be between 0 and 100, not {v}"),
                    ));
                }
            }
            if !thresholds.has("pass") {
                report.push(Problem::error(
                    thresholds.at("pass"),
                    "scoreThresholds needs a pass score",
                ));
            }
            if let (Some(m), Some(p)) = (marginal, pass)
                && m > p
            {
                report.push(Problem::error(
                    thresholds.at("marginal"),
                    format!("the marginal score ({m}) is above the pass score ({p})"),
                ));
            }
        }
        None => report.push(
            Problem::error(
                config.at("scoreThresholds"),
                "canaryConfig needs scoreThresholds",
            )
            .with_hint("e.g. {\"marginal\": 50, \"pass\": 75}"),
        ),
    }
    let scopes = config.objects("scopes", "a canary scope", report);
    if scopes.is_empty() && !config.has("scopes") {
        report.push(Problem::error(
            config.at("scopes"),
            "canaryConfig needs scopes naming the control and experiment",
        ));
    }
    for (_, scope) in scopes {
        scope.required_string("controlScope", "the control (baseline) scope", report);
        scope.required_string("experimentScope", "the experiment (canary) scope", report);
        for key in [
            "scopeName",
            "controlLocation",
            "experimentLocation",
            "startTimeIso",
            "endTimeIso",
        ] {
            scope.string(key, report);
        }
    }
}

/// `P[nD][T[nH][nM][nS]]`, enough to catch "1h" or "60".
fn looks_like_iso_duration(s: &str) -> bool {
    static ISO: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$").ok()
    });
    s.len() > 1 && s != "PT" && ISO.as_ref().is_some_and(|re| re.is_match(s))
}
