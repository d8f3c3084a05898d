//! One bad document per validation rule, each asserting the exact path, severity and a
//! message fragment; plus a document with many problems reported at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use gennaker_core::{
    Pipeline, Severity, ValidationReport, validate_pipeline_for_application,
    validate_pipeline_value,
};
use serde_json::{Value, json};
use support::local_server_catalog;

const E: Severity = Severity::Error;
const W: Severity = Severity::Warning;

fn base() -> Value {
    json!({
        "application": "shop",
        "name": "Deploy",
        "stages": [{"refId": "1", "type": "wait", "waitTime": 5, "requisiteStageRefIds": []}],
        "triggers": []
    })
}

/// The base pipeline with one top-level key replaced.
fn with(key: &str, value: Value) -> Value {
    let mut doc = base();
    doc[key] = value;
    doc
}

/// The base pipeline with one key removed.
fn without(key: &str) -> Value {
    let mut doc = base();
    doc.as_object_mut().unwrap().shift_remove(key);
    doc
}

/// The base pipeline with these stages.
fn stages(list: Value) -> Value {
    with("stages", list)
}

/// The base pipeline with one stage of `type` and these extra fields.
fn stage(kind: &str, fields: Value) -> Value {
    let mut s = json!({"refId": "1", "type": kind, "requisiteStageRefIds": []});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    stages(json!([s]))
}

/// A deploy stage with one cluster, the given fields overriding a valid cluster.
fn cluster(fields: Value) -> Value {
    let mut c = json!({"application": "shop", "account": "local", "stack": "prod",
        "strategy": "redblack", "capacity": {"min": 1, "max": 1, "desired": 1}});
    for (k, v) in fields.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().shift_remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    stage("deploy", json!({"clusters": [c]}))
}

fn trigger(t: Value) -> Value {
    with("triggers", json!([t]))
}

fn assert_has(
    report: &ValidationReport,
    severity: Severity,
    path: &str,
    fragment: &str,
    case: &str,
) {
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.severity == severity && p.path == path && p.message.contains(fragment)),
        "case {case:?}: no {severity} at {path} containing {fragment:?}; got:\n{report}"
    );
}

#[test]
fn base_document_is_clean() {
    let report = validate_pipeline_value(&base(), &local_server_catalog());
    assert!(report.problems.is_empty(), "{report}");
}

#[test]
#[rustfmt::skip]
fn each_rule_reports_its_path_and_message() {
    let cases: Vec<(&str, Value, Severity, &str, &str)> = vec![
        // Identity.
        ("no application", without("application"), E, "$.application", "the owning application is missing"),
        ("blank application", with("application", json!("")), E, "$.application", "missing"),
        ("application chars", with("application", json!("my shop")), E, "$.application", "contains ' '"),
        ("application hyphen", with("application", json!("my-shop")), W, "$.application", "contains '-'"),
        ("application type", with("application", json!(7)), E, "$.application", "must be a string"),
        ("no name", without("name"), E, "$.name", "the pipeline name is missing"),
        ("name slash", with("name", json!("a/b")), E, "$.name", "contains '/'"),
        ("name type", with("name", json!(["x"])), E, "$.name", "name must be a string, not an array"),
        ("id type", with("id", json!(12)), E, "$.id", "id must be a string"),
        // Top-level fields.
        ("limitConcurrent", with("limitConcurrent", json!("yes")), E, "$.limitConcurrent", "must be true or false"),
        ("keepWaiting", with("keepWaitingPipelines", json!(3)), E, "$.keepWaitingPipelines", "must be true or false"),
        ("maxConcurrent", with("maxConcurrentExecutions", json!(-1)), E, "$.maxConcurrentExecutions", "non-negative whole number"),
        ("spelEvaluator", with("spelEvaluator", json!("v9")), W, "$.spelEvaluator", "unknown spelEvaluator 'v9'"),
        ("roles", with("roles", json!(["ok", 1])), E, "$.roles[1]", "expected a string"),
        ("description type", with("description", json!({"text": "x"})), E, "$.description", "must be a string"),
        ("templated", with("type", json!("templatedPipeline")), W, "$.type", "templated pipelines"),
        // Stages: shape and DAG.
        ("no stages", stages(json!([])), W, "$.stages", "has no stages"),
        ("stages not array", stages(json!({"a": 1})), E, "$.stages", "stages must be an array, not an object"),
        ("stage not object", stages(json!(["wait"])), E, "$.stages[0]", "a stage must be an object, not a string"),
        ("no refId", stages(json!([{"type": "wait", "waitTime": 1}])), E, "$.stages[0].refId", "has no refId"),
        ("refId bool", stages(json!([{"refId": true, "type": "wait", "waitTime": 1}])), E, "$.stages[0].refId", "refId must be a string or a number"),
        ("blank refId", stages(json!([{"refId": " ", "type": "wait", "waitTime": 1}])), E, "$.stages[0].refId", "refId is empty"),
        ("duplicate refId", stages(json!([
            {"refId": "1", "type": "wait", "waitTime": 1},
            {"refId": "2", "type": "wait", "waitTime": 1},
            {"refId": "1", "type": "wait", "waitTime": 1}])), E, "$.stages[2].refId", "duplicate refId '1': used by stages[0], stages[2]"),
        ("number and string refId collide", stages(json!([
            {"refId": 1, "type": "wait", "waitTime": 1},
            {"refId": "1", "type": "wait", "waitTime": 1}])), E, "$.stages[1].refId", "duplicate refId '1'"),
        ("missing requisite", stages(json!([
            {"refId": "1", "type": "wait", "waitTime": 1},
            {"refId": "2", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1", "11"]}])),
            E, "$.stages[1].requisiteStageRefIds[1]", "names stage '11', but no stage has that refId; did you mean '1'?"),
        ("self dependency", stages(json!([{"refId": "a", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["a"]}])),
            E, "$.stages[0].requisiteStageRefIds[0]", "stage 'a' depends on itself"),
        ("cycle", stages(json!([
            {"refId": "1", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["2"]},
            {"refId": "2", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["3"]},
            {"refId": "3", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]}])),
            E, "$.stages[0].requisiteStageRefIds", "the stages form a cycle: 1 -> 3 -> 2 -> 1"),
        ("two-stage cycle with numeric ids", stages(json!([
            {"refId": 1, "type": "wait", "waitTime": 1, "requisiteStageRefIds": [2]},
            {"refId": 2, "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]}])),
            E, "$.stages[0].requisiteStageRefIds", "cycle: 1 -> 2 -> 1"),
        ("requisites not array", stage("wait", json!({"waitTime": 1, "requisiteStageRefIds": "1"})), E, "$.stages[0].requisiteStageRefIds", "must be an array of refIds"),
        ("requisite null", stages(json!([{"refId": "1", "type": "wait", "waitTime": 1, "requisiteStageRefIds": [null]}])), E, "$.stages[0].requisiteStageRefIds[0]", "a refId must be a string or a number, not null"),
        // Stage types.
        ("no type", stages(json!([{"refId": "1"}])), E, "$.stages[0].type", "the stage type is missing"),
        ("unknown type", stage("wiat", json!({})), W, "$.stages[0].type", "unknown stage type 'wiat'; did you mean 'wait'?: the pipeline is accepted, but a run stops (TERMINAL)"),
        ("unknown type no suggestion", stage("frobnicateEverything", json!({})), W, "$.stages[0].type", "unknown stage type 'frobnicateEverything'"),
        ("not runnable", stage("bake", json!({})), W, "$.stages[0].type", "stage type 'bake' is a Spinnaker stage Gennaker cannot run yet: the pipeline is accepted, but a run stops (TERMINAL) at this stage"),
        ("alias", stage("copyLastAsg", json!({})), W, "$.stages[0].type", "'copyLastAsg' is a Spinnaker stage"),
        ("runnable alias", stage("resizeAsg", json!({})), E, "$.stages[0].target", "no target server group"),
        // Common stage fields.
        ("timeout negative", stage("wait", json!({"waitTime": 1, "stageTimeoutMs": -5})), E, "$.stages[0].stageTimeoutMs", "non-negative whole number"),
        ("timeout text", stage("wait", json!({"waitTime": 1, "stageTimeoutMs": "an hour"})), E, "$.stages[0].stageTimeoutMs", "non-negative whole number"),
        ("failPipeline", stage("wait", json!({"waitTime": 1, "failPipeline": "yes"})), E, "$.stages[0].failPipeline", "must be true or false"),
        ("fail and continue", stage("wait", json!({"waitTime": 1, "failPipeline": true, "continuePipeline": true})), W, "$.stages[0].continuePipeline", "continuePipeline wins"),
        ("stage name type", stage("wait", json!({"waitTime": 1, "name": 3})), E, "$.stages[0].name", "name must be a string"),
        ("stageEnabled shape", stage("wait", json!({"waitTime": 1, "stageEnabled": "true"})), E, "$.stages[0].stageEnabled", "stageEnabled must be an object"),
        ("stageEnabled expression", stage("wait", json!({"waitTime": 1, "stageEnabled": {"type": "expression", "expression": 5}})), E, "$.stages[0].stageEnabled.expression", "must be a string"),
        ("window hour", stage("wait", json!({"waitTime": 1, "restrictExecutionDuringTimeWindow": true, "restrictedExecutionWindow": {"whitelist": [{"startHour": 25, "startMin": 0, "endHour": 3, "endMin": 0}]}})), E, "$.stages[0].restrictedExecutionWindow.whitelist[0].startHour", "between 0 and 23"),
        ("window days", stage("wait", json!({"waitTime": 1, "restrictedExecutionWindow": {"days": [1, 8]}})), E, "$.stages[0].restrictedExecutionWindow.days[1]", "1 (Sunday) to 7 (Saturday)"),
        ("window missing", stage("wait", json!({"waitTime": 1, "restrictExecutionDuringTimeWindow": true})), W, "$.stages[0].restrictedExecutionWindow", "no restrictedExecutionWindow"),
        // wait
        ("wait no time", stage("wait", json!({})), E, "$.stages[0].waitTime", "a wait stage needs waitTime"),
        ("wait bad time", stage("wait", json!({"waitTime": "abc"})), E, "$.stages[0].waitTime", "waitTime must be a non-negative whole number, not \"abc\""),
        ("wait negative", stage("wait", json!({"waitTime": -1})), E, "$.stages[0].waitTime", "non-negative"),
        // manualJudgment
        ("judgment input", stage("manualJudgment", json!({"judgmentInputs": [{}]})), E, "$.stages[0].judgmentInputs[0].value", "the judgment choice is missing"),
        ("judgment roles", stage("manualJudgment", json!({"selectedStageRoles": "ops"})), E, "$.stages[0].selectedStageRoles", "must be an array"),
        // checkPreconditions
        ("no preconditions", stage("checkPreconditions", json!({})), E, "$.stages[0].preconditions", "has no preconditions"),
        ("precondition type", stage("checkPreconditions", json!({"preconditions": [{"type": "expresion", "context": {"expression": "true"}}]})), E, "$.stages[0].preconditions[0].type", "did you mean 'expression'?"),
        ("precondition no context", stage("checkPreconditions", json!({"preconditions": [{"type": "expression"}]})), E, "$.stages[0].preconditions[0].context", "needs a context"),
        ("precondition expression", stage("checkPreconditions", json!({"preconditions": [{"type": "expression", "context": {"foo": 1}}]})), E, "$.stages[0].preconditions[0].context.expression", "needs context.expression"),
        ("cluster size", stage("checkPreconditions", json!({"preconditions": [{"type": "clusterSize", "context": {"credentials": "local", "comparison": "=~", "expected": 1}}]})), E, "$.stages[0].preconditions[0].context.cluster", "the cluster to count is missing"),
        ("cluster size comparison", stage("checkPreconditions", json!({"preconditions": [{"type": "clusterSize", "context": {"cluster": "shop-prod", "credentials": "local", "comparison": "=~", "expected": 1}}]})), E, "$.stages[0].preconditions[0].context.comparison", "comparison '=~' is not one of"),
        ("cluster size no !=", stage("checkPreconditions", json!({"preconditions": [{"type": "clusterSize", "context": {"cluster": "shop-prod", "credentials": "local", "comparison": "!="}}]})), E, "$.stages[0].preconditions[0].context.comparison", "comparison '!=' is not one of <, <=, ==, >=, >"),
        ("cluster size region", stage("checkPreconditions", json!({"preconditions": [{"type": "clusterSize", "context": {"cluster": "shop-prod", "credentials": "local", "regions": ["local", "us-east-1"]}}]})), W, "$.stages[0].preconditions[0].context.regions[1]", "region 'us-east-1' is not a region of cloud provider 'local'"),
        ("cluster size provider", stage("checkPreconditions", json!({"preconditions": [{"type": "clusterSize", "context": {"cluster": "shop-prod", "credentials": "prod", "cloudProvider": "aws"}}]})), W, "$.stages[0].preconditions[0].context.cloudProvider", "cloud provider 'aws' is not configured on this server"),
        ("cluster size enabled", stage("checkPreconditions", json!({"preconditions": [{"type": "clusterSize", "context": {"cluster": "shop-prod", "credentials": "local", "onlyEnabledServerGroups": 3}}]})), E, "$.stages[0].preconditions[0].context.onlyEnabledServerGroups", "must be true or false"),
        ("stage status", stage("checkPreconditions", json!({"preconditions": [{"type": "stageStatus", "context": {"stageName": "Deploy"}}]})), E, "$.stages[0].preconditions[0].context.stageStatus", "missing"),
        // evaluateVariables
        ("no variables", stage("evaluateVariables", json!({})), E, "$.stages[0].variables", "has no variables"),
        ("variable key", stage("evaluateVariables", json!({"variables": [{"value": 1}]})), E, "$.stages[0].variables[0].key", "the variable name is missing"),
        ("variable value", stage("evaluateVariables", json!({"variables": [{"key": "a"}]})), E, "$.stages[0].variables[0].value", "has no value"),
        ("variable twice", stage("evaluateVariables", json!({"variables": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]})), W, "$.stages[0].variables[1].key", "defined twice"),
        // webhook
        ("webhook url", stage("webhook", json!({})), E, "$.stages[0].url", "the URL to call is missing"),
        ("webhook scheme", stage("webhook", json!({"url": "ftp://x.example.com"})), E, "$.stages[0].url", "not an http:// or https:// URL"),
        ("webhook method", stage("webhook", json!({"url": "https://x.example.com", "method": "FETCH"})), E, "$.stages[0].method", "method 'FETCH' is not an HTTP method"),
        ("webhook resolution", stage("webhook", json!({"url": "https://x.example.com", "waitForCompletion": true, "statusJsonPath": "$.s"})), E, "$.stages[0].statusUrlResolution", "statusUrlResolution is missing"),
        ("webhook resolution value", stage("webhook", json!({"url": "https://x.example.com", "waitForCompletion": true, "statusJsonPath": "$.s", "statusUrlResolution": "getmethod"})), E, "$.stages[0].statusUrlResolution", "did you mean 'getMethod'?"),
        ("webhook status url path", stage("webhook", json!({"url": "https://x.example.com", "waitForCompletion": true, "statusJsonPath": "$.s", "statusUrlResolution": "webhookResponse"})), E, "$.stages[0].statusUrlJsonPath", "needs statusUrlJsonPath"),
        ("webhook status path", stage("webhook", json!({"url": "https://x.example.com", "waitForCompletion": "true", "statusUrlResolution": "getMethod"})), E, "$.stages[0].statusJsonPath", "statusJsonPath is missing"),
        ("webhook codes", stage("webhook", json!({"url": "https://x.example.com", "failFastStatusCodes": [503, 999]})), E, "$.stages[0].failFastStatusCodes[1]", "999 is not an HTTP status code"),
        ("webhook headers", stage("webhook", json!({"url": "https://x.example.com", "customHeaders": ["a"]})), E, "$.stages[0].customHeaders", "must be an object"),
        // pipeline
        ("child app", stage("pipeline", json!({"pipeline": "abc", "application": 7})), E, "$.stages[0].application", "must be a string"),
        ("child id", stage("pipeline", json!({"application": "shop"})), E, "$.stages[0].pipeline", "the id of the pipeline to run is missing"),
        ("child params", stage("pipeline", json!({"application": "shop", "pipeline": "x", "pipelineParameters": "a=b"})), E, "$.stages[0].pipelineParameters", "must be an object"),
        // deploy and clusters
        ("deploy clusters", stage("deploy", json!({})), E, "$.stages[0].clusters", "needs at least one cluster"),
        ("deploy cluster artifact", cluster(json!({"artifactId": "nope"})), E, "$.stages[0].clusters[0].artifactId", "deploys expected artifact 'nope' but the pipeline's expectedArtifacts has no such id"),
        ("deploy cluster object", stage("deploy", json!({"clusters": ["shop-prod"]})), E, "$.stages[0].clusters[0]", "a cluster must be an object"),
        ("cluster stack", cluster(json!({"stack": "blue-green"})), E, "$.stages[0].clusters[0].stack", "stack 'blue-green' contains '-'"),
        ("cluster detail", cluster(json!({"freeFormDetails": "a/b"})), E, "$.stages[0].clusters[0].freeFormDetails", "detail 'a/b' contains '/'"),
        ("cluster application", cluster(json!({"application": "my shop"})), E, "$.stages[0].clusters[0].application", "application 'my shop' contains ' '"),
        ("cluster no application", { let mut d = cluster(json!({"application": null})); d["application"] = Value::Null; d }, E, "$.stages[0].clusters[0].application", "the cluster has no application, and neither has the pipeline"),
        ("cluster account", cluster(json!({"account": null})), E, "$.stages[0].clusters[0].account", "no account to deploy to"),
        ("cluster strategy", cluster(json!({"strategy": "redblak"})), E, "$.stages[0].clusters[0].strategy", "did you mean 'redblack'?"),
        ("cluster capacity order", cluster(json!({"capacity": {"min": 3, "max": 1, "desired": 2}})), E, "$.stages[0].clusters[0].capacity.min", "min (3) is greater than max (1)"),
        ("cluster desired", cluster(json!({"capacity": {"min": 2, "max": 4, "desired": 5}})), E, "$.stages[0].clusters[0].capacity.desired", "desired (5) is above max (4)"),
        ("cluster capacity type", cluster(json!({"capacity": {"min": "two", "max": 4, "desired": 4}})), E, "$.stages[0].clusters[0].capacity.min", "non-negative whole number"),
        ("createServerGroup", stage("createServerGroup", json!({"application": "shop", "stack": "a-b", "account": "local"})), E, "$.stages[0].stack", "contains '-'"),
        // server group and cluster stages
        ("resize nothing", stage("resizeServerGroup", json!({"cluster": "shop-prod", "credentials": "local", "target": "current_asg_dynamic"})), E, "$.stages[0].capacity", "needs a capacity, scalePct or scaleNum"),
        ("resize action", stage("resizeServerGroup", json!({"cluster": "shop-prod", "credentials": "local", "target": "current_asg_dynamic", "action": "grow", "scalePct": 10})), E, "$.stages[0].action", "action 'grow' is not one of"),
        ("resize action amount", stage("resizeServerGroup", json!({"cluster": "shop-prod", "credentials": "local", "target": "current_asg_dynamic", "action": "scale_up"})), E, "$.stages[0].capacity", "action 'scale_up' needs a capacity"),
        ("enable no cluster", stage("enableServerGroup", json!({"credentials": "local", "target": "current_asg_dynamic"})), E, "$.stages[0].cluster", "no cluster given"),
        ("disable no target", stage("disableServerGroup", json!({"cluster": "shop-prod", "credentials": "local"})), E, "$.stages[0].target", "no target server group"),
        ("destroy bad target", stage("destroyServerGroup", json!({"cluster": "shop-prod", "credentials": "local", "target": "newest"})), E, "$.stages[0].target", "target 'newest' is not one of"),
        ("disable no account", stage("disableServerGroup", json!({"cluster": "shop-prod", "target": "current_asg_dynamic"})), E, "$.stages[0].account", "no account"),
        ("rollback type", stage("rollbackServerGroup", json!({"credentials": "local"})), E, "$.stages[0].rollbackType", "needs a rollbackType"),
        ("rollback explicit", stage("rollbackServerGroup", json!({"credentials": "local", "rollbackType": "EXPLICIT"})), E, "$.stages[0].rollbackContext", "needs rollbackContext"),
        ("rollback names", stage("rollbackServerGroup", json!({"credentials": "local", "rollbackType": "EXPLICIT", "rollbackContext": {"rollbackServerGroupName": "shop-prod-v002"}})), E, "$.stages[0].rollbackContext.restoreServerGroupName", "missing"),
        ("rollbackCluster", stage("rollbackCluster", json!({"credentials": "local"})), E, "$.stages[0].cluster", "no cluster given"),
        ("shrink size", stage("shrinkCluster", json!({"cluster": "shop-prod", "credentials": "local", "shrinkToSize": -1})), E, "$.stages[0].shrinkToSize", "non-negative"),
        ("scaleDown remaining", stage("scaleDownCluster", json!({"cluster": "shop-prod", "credentials": "local", "remainingFullSizeServerGroups": "one"})), E, "$.stages[0].remainingFullSizeServerGroups", "non-negative"),
        ("disableCluster flag", stage("disableCluster", json!({"cluster": "shop-prod", "credentials": "local", "preferLargerOverNewer": "sometimes"})), E, "$.stages[0].preferLargerOverNewer", "true or false"),
        ("upsertLoadBalancer", stage("upsertLoadBalancer", json!({"credentials": "local"})), E, "$.stages[0].name", "the load balancer name is missing"),
        ("deleteLoadBalancer", stage("deleteLoadBalancer", json!({"credentials": "local"})), E, "$.stages[0].loadBalancerName", "the load balancer to delete is missing"),
        ("upsertSecurityGroup", stage("upsertSecurityGroup", json!({"credentials": "local"})), E, "$.stages[0].name", "the firewall has no name"),
        // kayentaCanary
        ("canary config", stage("kayentaCanary", json!({})), E, "$.stages[0].canaryConfig", "needs a canaryConfig"),
        ("canary id", stage("kayentaCanary", json!({"canaryConfig": {"scoreThresholds": {"marginal": 50, "pass": 75}, "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].canaryConfig.canaryConfigId", "no canary config named"),
        ("canary thresholds order", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "scoreThresholds": {"marginal": "90", "pass": "75"}, "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].canaryConfig.scoreThresholds.pass", "pass score (75) is below the marginal score (90)"),
        ("canary threshold range", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "scoreThresholds": {"marginal": 50, "pass": 175}, "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].canaryConfig.scoreThresholds.pass", "between 0 and 100"),
        ("canary threshold type", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "scoreThresholds": {"marginal": 50, "pass": "high"}, "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].canaryConfig.scoreThresholds.pass", "pass must be a number"),
        ("canary lifetime missing", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].canaryConfig.lifetimeDuration", "needs lifetimeDuration"),
        ("canary duration", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "lifetimeDuration": "1h", "scoreThresholds": {"pass": 75}, "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].canaryConfig.lifetimeDuration", "not an ISO-8601 duration"),
        ("canary scopes", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "scoreThresholds": {"pass": 75}}})), E, "$.stages[0].canaryConfig.scopes", "needs at least one scope"),
        ("canary scope", stage("kayentaCanary", json!({"canaryConfig": {"canaryConfigId": "c", "scoreThresholds": {"pass": 75}, "scopes": [{"controlScope": "a"}]}})), E, "$.stages[0].canaryConfig.scopes[0].experimentScope", "missing"),
        ("canary analysis type", stage("kayentaCanary", json!({"analysisType": "realtime", "canaryConfig": {"canaryConfigId": "c", "scoreThresholds": {"pass": 75}, "scopes": [{"controlScope": "a", "experimentScope": "b"}]}})), E, "$.stages[0].analysisType", "did you mean 'realTime'?"),
        // Triggers.
        ("trigger not object", trigger(json!("cron")), E, "$.triggers[0]", "a trigger must be an object"),
        ("trigger no type", trigger(json!({"enabled": true})), E, "$.triggers[0].type", "the trigger type is missing"),
        ("trigger unknown", trigger(json!({"type": "dockr"})), E, "$.triggers[0].type", "unknown trigger type 'dockr'; did you mean 'docker'?"),
        ("trigger enabled", trigger(json!({"type": "manual", "enabled": "maybe"})), E, "$.triggers[0].enabled", "true or false"),
        ("cron missing", trigger(json!({"type": "cron"})), E, "$.triggers[0].cronExpression", "the cron expression is missing"),
        ("cron unix", trigger(json!({"type": "cron", "cronExpression": "*/5 * * * *"})), E, "$.triggers[0].cronExpression", "has 5 fields (Unix cron)"),
        ("cron short", trigger(json!({"type": "cron", "cronExpression": "0 0 *"})), E, "$.triggers[0].cronExpression", "has 3 fields; Quartz expects 6 or 7"),
        ("webhook source", trigger(json!({"type": "webhook"})), W, "$.triggers[0].source", "no source"),
        ("git slug", trigger(json!({"type": "git", "source": "github", "project": "shop"})), E, "$.triggers[0].slug", "the repository name is missing"),
        ("git source", trigger(json!({"type": "git", "source": "gitub", "project": "shop", "slug": "x"})), E, "$.triggers[0].source", "did you mean 'github'?"),
        ("docker repository", trigger(json!({"type": "docker", "account": "hub"})), E, "$.triggers[0].repository", "the image repository is missing"),
        ("jenkins job", trigger(json!({"type": "jenkins", "master": "ci"})), E, "$.triggers[0].job", "the CI job is missing"),
        ("pipeline trigger status", trigger(json!({"type": "pipeline", "application": "shop", "pipeline": "x", "status": ["succesful"]})), E, "$.triggers[0].status[0]", "did you mean 'successful'?"),
        ("pipeline trigger id", trigger(json!({"type": "pipeline", "application": "shop"})), E, "$.triggers[0].pipeline", "the id of the upstream pipeline is missing"),
        ("pubsub", trigger(json!({"type": "pubsub", "pubsubSystem": "google"})), E, "$.triggers[0].subscriptionName", "missing"),
        ("trigger artifact", trigger(json!({"type": "manual", "expectedArtifactIds": ["nope"]})), E, "$.triggers[0].expectedArtifactIds[0]", "expects artifact 'nope' but expectedArtifacts has no such id"),
        ("trigger artifact type", trigger(json!({"type": "manual", "expectedArtifactIds": [3]})), E, "$.triggers[0].expectedArtifactIds[0]", "expected a string"),
        // parameterConfig
        ("parameter name", with("parameterConfig", json!([{"label": "x"}])), E, "$.parameterConfig[0].name", "the parameter name is missing"),
        ("parameter duplicate", with("parameterConfig", json!([{"name": "env"}, {"name": "region"}, {"name": "env"}])), E, "$.parameterConfig[2].name", "parameter 'env' is already defined at parameterConfig[0]"),
        ("parameter no options", with("parameterConfig", json!([{"name": "env", "hasOptions": true, "options": []}])), W, "$.parameterConfig[0].options", "hasOptions is on but there are no options"),
        ("parameter default", with("parameterConfig", json!([{"name": "env", "hasOptions": true, "default": "qa", "options": [{"value": "staging"}, {"value": "prod"}]}])), W, "$.parameterConfig[0].default", "default 'qa' is not one of the options (staging, prod)"),
        ("parameter option", with("parameterConfig", json!([{"name": "env", "hasOptions": true, "options": [{"label": "x"}]}])), E, "$.parameterConfig[0].options[0].value", "the option has no value"),
        ("parameter label", with("parameterConfig", json!([{"name": "env", "label": 5}])), E, "$.parameterConfig[0].label", "label must be a string"),
        ("parameter not object", with("parameterConfig", json!(["env"])), E, "$.parameterConfig[0]", "a parameter must be an object"),
        // notifications
        ("notification type", with("notifications", json!([{"type": "slak", "address": "#x", "when": ["pipeline.failed"]}])), E, "$.notifications[0].type", "unknown notification type 'slak'; did you mean 'slack'?"),
        ("notification address", with("notifications", json!([{"type": "email", "when": ["pipeline.failed"]}])), E, "$.notifications[0].address", "missing"),
        ("notification when", with("notifications", json!([{"type": "slack", "address": "#x", "when": ["pipeline.faild"]}])), E, "$.notifications[0].when[0]", "did you mean 'pipeline.failed'?"),
        ("notification no when", with("notifications", json!([{"type": "slack", "address": "#x"}])), W, "$.notifications[0].when", "never sent"),
        ("hipchat", with("notifications", json!([{"type": "hipchat", "address": "room", "when": ["pipeline.failed"]}])), W, "$.notifications[0].type", "HipChat no longer exists"),
        ("stage notification", stage("wait", json!({"waitTime": 1, "notifications": [{"type": "email", "address": "a@example.com", "when": ["stage.faild"]}]})), E, "$.stages[0].notifications[0].when[0]", "did you mean 'stage.failed'?"),
        // expectedArtifacts
        ("artifact id", with("expectedArtifacts", json!([{"matchArtifact": {"type": "docker/image"}}])), E, "$.expectedArtifacts[0].id", "the artifact id is missing"),
        ("artifact duplicate", with("expectedArtifacts", json!([{"id": "a", "matchArtifact": {"type": "docker/image"}}, {"id": "a", "matchArtifact": {"type": "docker/image"}}])), E, "$.expectedArtifacts[1].id", "already used by expectedArtifacts[0]"),
        ("artifact default", with("expectedArtifacts", json!([{"id": "a", "matchArtifact": {"type": "docker/image"}, "useDefaultArtifact": true}])), E, "$.expectedArtifacts[0].defaultArtifact", "there is no defaultArtifact"),
        ("artifact match type", with("expectedArtifacts", json!([{"id": "a", "matchArtifact": "docker/image"}])), E, "$.expectedArtifacts[0].matchArtifact", "matchArtifact must be an object"),
        ("artifact regex", with("expectedArtifacts", json!([{"id": "a", "matchArtifact": {"type": "git/repo", "name": "acme/(web"}}])), E, "$.expectedArtifacts[0].matchArtifact.name", "'acme/(web' is not a valid regular expression"),
        ("artifact no match", with("expectedArtifacts", json!([{"id": "a"}])), W, "$.expectedArtifacts[0].matchArtifact", "no matchArtifact"),
        ("stage artifact ref", stage("deployManifest", json!({"account": "k8s", "manifestArtifactId": "missing"})), W, "$.stages[0].manifestArtifactId", "artifact id 'missing' is not declared"),
    ];
    for (case, doc, severity, path, fragment) in &cases {
        let report = validate_pipeline_value(doc, &local_server_catalog());
        assert_has(&report, *severity, path, fragment, case);
        // Whatever validates without errors must load into the typed model and write
        // back unchanged; whatever the model rejects must have been an error.
        match Pipeline::from_value(doc.clone()) {
            Ok(pipeline) => assert_eq!(&pipeline.to_value(), doc, "case {case:?}: round trip"),
            Err(err) => assert!(!report.is_valid(), "case {case:?}: valid but the model rejects it: {err}"),
        }
    }
}

#[test]
fn what_spinnaker_accepts_is_accepted() {
    // Deck saves `"stageEnabled": {}`; without an expression the stage is enabled (Orca).
    for enabled in [json!({}), json!({"type": "expression"})] {
        let doc = stage("wait", json!({"waitTime": 1, "stageEnabled": enabled}));
        let report = validate_pipeline_value(&doc, &local_server_catalog());
        assert!(report.problems.is_empty(), "{enabled}: {report}");
    }
    // The older singular `expectedArtifact` declares an artifact too.
    let mut doc = stage(
        "wait",
        json!({"waitTime": 1, "expectedArtifact": {"id": "built"}}),
    );
    doc["stages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"refId": "2", "type": "wait", "waitTime": 1, "expectedArtifactId": "built"}));
    let report = validate_pipeline_value(&doc, &local_server_catalog());
    assert!(report.problems.is_empty(), "{report}");
    // A pipeline stage without an application runs a pipeline of this one's.
    let doc = stage("pipeline", json!({"pipeline": "abc"}));
    let report = validate_pipeline_value(&doc, &local_server_catalog());
    assert!(report.problems.is_empty(), "{report}");
    // A deploy cluster without an application deploys into the pipeline's.
    let doc = stage(
        "deploy",
        json!({"clusters": [{"account": "local", "stack": "web", "capacity": {"min": 1, "max": 1, "desired": 1}}]}),
    );
    let report = validate_pipeline_value(&doc, &local_server_catalog());
    assert!(report.problems.is_empty(), "{report}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let doc = json!({
        "application": "shop app",
        "stages": [
            {"refId": "1", "type": "wiat", "requisiteStageRefIds": ["3"]},
            {"refId": "2", "type": "wait", "waitTime": "soon", "requisiteStageRefIds": ["1"]},
            {"refId": "3", "type": "webhook", "requisiteStageRefIds": ["2", "7"]},
            {"refId": "3", "type": "bake"},
            {"refId": "4", "type": "deploy", "clusters": [{"application": "shop", "account": "local", "stack": "a-b"}]}
        ],
        "triggers": [{"type": "cron", "cronExpression": "0 * * * *"}, {"type": "dockr"}],
        "parameterConfig": [{"name": "env"}, {"name": "env"}],
        "notifications": [{"type": "slack", "address": "#x", "when": ["pipeline.faild"]}]
    });
    let report = validate_pipeline_value(&doc, &local_server_catalog());
    let expected = [
        (E, "$.application", "contains ' '"),
        (E, "$.name", "missing"),
        (W, "$.stages[0].type", "did you mean 'wait'?"),
        (E, "$.stages[1].waitTime", "non-negative whole number"),
        (E, "$.stages[2].url", "missing"),
        (W, "$.stages[3].type", "cannot run yet"),
        (E, "$.stages[4].clusters[0].stack", "contains '-'"),
        (
            E,
            "$.stages[3].refId",
            "duplicate refId '3': used by stages[2], stages[3]",
        ),
        (E, "$.stages[2].requisiteStageRefIds[1]", "'7'"),
        (
            E,
            "$.stages[0].requisiteStageRefIds",
            "cycle: 1 -> 2 -> 3 -> 1",
        ),
        (E, "$.triggers[0].cronExpression", "5 fields"),
        (E, "$.triggers[1].type", "did you mean 'docker'?"),
        (E, "$.parameterConfig[1].name", "already defined"),
        (
            E,
            "$.notifications[0].when[0]",
            "did you mean 'pipeline.failed'?",
        ),
    ];
    for (severity, path, fragment) in expected {
        assert_has(&report, severity, path, fragment, "many problems");
    }
    assert_eq!(report.problems.len(), expected.len(), "{report}");
    assert!(!report.is_valid());
    assert_eq!(report.warnings().count(), 2);
}

#[test]
fn pipeline_must_belong_to_the_application_it_is_saved_under() {
    let report = validate_pipeline_for_application(&base(), "billing", &local_server_catalog());
    assert_has(
        &report,
        E,
        "$.application",
        "belongs to application 'shop' but is being saved under 'billing'",
        "mismatch",
    );
    assert!(validate_pipeline_for_application(&base(), "shop", &local_server_catalog()).is_valid());
}

#[test]
fn expressions_are_accepted_where_numbers_and_booleans_go() {
    let doc = stages(json!([
        {"refId": "1", "type": "wait", "waitTime": "${parameters.delay}", "stageTimeoutMs": "${ 60 * 1000 }",
         "failPipeline": "${parameters.strict}"},
        {"refId": 2, "type": "wait", "waitTime": "30", "stageTimeoutMs": "3600000", "requisiteStageRefIds": [1],
         "continuePipeline": "false"}
    ]));
    let report = validate_pipeline_value(&doc, &local_server_catalog());
    assert!(report.problems.is_empty(), "{report}");
}

#[test]
fn report_serializes_for_the_api() {
    let report = validate_pipeline_value(&stage("wiat", json!({})), &local_server_catalog());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["problems"][0]["severity"], "warning");
    assert_eq!(json["problems"][0]["path"], "$.stages[0].type");
    assert_eq!(json["problems"][0]["hint"], "set \"type\": \"wait\"");
}
