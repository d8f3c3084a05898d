//! The catalog of every stage type Spinnaker ships, and which of them Gennaker runs.
//!
//! Type strings are Orca's: the `StageDefinitionBuilder` class name without `Stage`,
//! first letter lowered, unless overridden (`PIPELINE_CONFIG_TYPE`, `@Aliases`). The list
//! covers orca-core, orca-clouddriver, orca-bakery, orca-igor, orca-echo, orca-front50,
//! orca-webhook, orca-kayenta, orca-mine, orca-keel, orca-applications, orca-flex and the
//! AWS Lambda plugin that moved into Orca.

use serde::Serialize;

use crate::suggest;

/// How far Gennaker supports a stage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Support {
    /// Gennaker runs it.
    Runnable,
    /// On the roadmap (the Kubernetes provider, CI integrations): saved, not yet run.
    Planned,
    /// A Spinnaker type Gennaker has no plan to run (cloud-specific or internal).
    NotSupported,
}

/// Which Spinnaker service defines the stage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Origin {
    /// Orca itself (generic stages).
    Orca,
    /// Orca on behalf of Clouddriver (cloud operations).
    Clouddriver,
    /// Rosco, via orca-bakery.
    Bakery,
    /// Igor CI integrations.
    Igor,
    /// Echo (notifications, judgment).
    Echo,
    /// Front50 (pipelines, applications).
    Front50,
    /// Kayenta canary analysis.
    Kayenta,
    /// A plugin that ships with Spinnaker.
    Plugin,
}

/// One known stage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageTypeInfo {
    /// The `type` string in pipeline JSON.
    pub name: &'static str,
    /// Whether Gennaker runs it.
    pub support: Support,
    /// Where Spinnaker defines it.
    pub origin: Origin,
    /// The canonical type when this is a legacy alias Orca still accepts.
    pub alias_of: Option<&'static str>,
    /// What the stage does, in a few words.
    pub summary: &'static str,
}

const fn entry(
    name: &'static str,
    support: Support,
    origin: Origin,
    summary: &'static str,
) -> StageTypeInfo {
    StageTypeInfo {
        name,
        support,
        origin,
        alias_of: None,
        summary,
    }
}

const fn alias(name: &'static str, of: &'static str, origin: Origin) -> StageTypeInfo {
    StageTypeInfo {
        name,
        support: Support::NotSupported,
        origin,
        alias_of: Some(of),
        summary: "legacy alias",
    }
}

use Origin::{Bakery, Clouddriver, Echo, Front50, Igor, Kayenta, Orca, Plugin};
use Support::{NotSupported as No, Planned, Runnable as Run};

/// Every stage type, in catalog order (generic first).
pub static STAGE_TYPES: &[StageTypeInfo] = &[
    // Generic (orca-core, orca-echo, orca-webhook, orca-front50).
    entry("wait", Run, Orca, "wait a number of seconds"),
    entry("waitUntil", No, Orca, "wait until an epoch time"),
    entry(
        "manualJudgment",
        Run,
        Echo,
        "wait for a person to continue or stop",
    ),
    entry(
        "checkPreconditions",
        Run,
        Orca,
        "fail unless expressions, cluster sizes or stage statuses hold",
    ),
    entry(
        "evaluateVariables",
        Run,
        Orca,
        "evaluate expressions into named outputs",
    ),
    entry(
        "webhook",
        Run,
        Orca,
        "call an HTTP endpoint, optionally poll for completion",
    ),
    entry("pipeline", Run, Front50, "run another pipeline"),
    entry(
        "dependsOnExecution",
        No,
        Orca,
        "wait for another execution to finish",
    ),
    entry(
        "restrictExecutionDuringTimeWindow",
        No,
        Orca,
        "internal: hold a stage until its execution window",
    ),
    entry("noop", No, Orca, "do nothing (testing)"),
    entry(
        "pageApplicationOwner",
        No,
        Echo,
        "page the application's owner",
    ),
    entry("savePipeline", No, Front50, "save a pipeline config"),
    entry(
        "savePipelinesFromArtifact",
        No,
        Front50,
        "save pipeline configs read from an artifact",
    ),
    entry(
        "upsertApplication",
        No,
        Front50,
        "create or update an application",
    ),
    entry("createApplication", No, Front50, "create an application"),
    entry("updateApplication", No, Front50, "update an application"),
    entry("deleteApplication", No, Front50, "delete an application"),
    entry("upsertProject", No, Front50, "create or update a project"),
    entry("deleteProject", No, Front50, "delete a project"),
    entry(
        "importDeliveryConfig",
        No,
        Front50,
        "import a Managed Delivery config",
    ),
    // CI (orca-igor).
    entry("jenkins", Planned, Igor, "run a Jenkins job"),
    entry("travis", No, Igor, "run a Travis job"),
    entry("wercker", No, Igor, "run a Wercker pipeline"),
    entry("concourse", No, Igor, "wait for a Concourse job"),
    entry("script", No, Igor, "run a script through Jenkins"),
    entry("googleCloudBuild", No, Igor, "run a Google Cloud Build"),
    entry("awsCodeBuild", No, Igor, "run an AWS CodeBuild project"),
    // Bakery.
    entry("bake", No, Bakery, "bake a machine image with Packer"),
    entry(
        "bakeManifest",
        Planned,
        Bakery,
        "render Helm or Kustomize into manifests",
    ),
    entry(
        "bakeCloudFoundryManifest",
        No,
        Bakery,
        "render a Cloud Foundry manifest",
    ),
    // Server groups and clusters (orca-clouddriver).
    entry(
        "deploy",
        Run,
        Clouddriver,
        "deploy new server groups with a strategy",
    ),
    entry(
        "createServerGroup",
        Run,
        Clouddriver,
        "create one server group",
    ),
    entry(
        "cloneServerGroup",
        Planned,
        Clouddriver,
        "copy a server group with changes",
    ),
    entry(
        "resizeServerGroup",
        Run,
        Clouddriver,
        "change a server group's capacity",
    ),
    entry(
        "enableServerGroup",
        Run,
        Clouddriver,
        "send traffic to a server group",
    ),
    entry(
        "disableServerGroup",
        Run,
        Clouddriver,
        "take a server group out of traffic",
    ),
    entry(
        "destroyServerGroup",
        Run,
        Clouddriver,
        "delete a server group",
    ),
    entry(
        "rollbackServerGroup",
        Run,
        Clouddriver,
        "roll back to a previous server group",
    ),
    entry(
        "rollbackCluster",
        Run,
        Clouddriver,
        "roll a cluster back to its previous server group",
    ),
    entry(
        "shrinkCluster",
        Run,
        Clouddriver,
        "delete all but the newest server groups",
    ),
    entry(
        "scaleDownCluster",
        Run,
        Clouddriver,
        "scale down all but the newest server groups",
    ),
    entry(
        "disableCluster",
        Run,
        Clouddriver,
        "disable all but the newest server groups",
    ),
    entry(
        "bulkDestroyServerGroup",
        No,
        Clouddriver,
        "delete several server groups",
    ),
    entry(
        "pinServerGroup",
        No,
        Clouddriver,
        "pin a server group's min capacity",
    ),
    entry(
        "upsertServerGroupTags",
        No,
        Clouddriver,
        "tag a server group",
    ),
    entry(
        "updateLaunchConfig",
        No,
        Clouddriver,
        "change an AWS launch configuration",
    ),
    entry(
        "deleteLaunchConfiguration",
        No,
        Clouddriver,
        "delete an AWS launch configuration",
    ),
    entry(
        "upsertDisruptionBudget",
        No,
        Clouddriver,
        "set a Titus disruption budget",
    ),
    entry(
        "updateJobProcesses",
        No,
        Clouddriver,
        "change Titus job processes",
    ),
    entry(
        "serverGroupForceCacheRefresh",
        No,
        Clouddriver,
        "internal: refresh the server group cache",
    ),
    entry(
        "determineTargetServerGroup",
        No,
        Clouddriver,
        "internal: resolve a dynamic target",
    ),
    entry(
        "captureSourceServerGroupCapacity",
        No,
        Clouddriver,
        "internal: remember a source capacity",
    ),
    entry(
        "applySourceServerGroupCapacity",
        No,
        Clouddriver,
        "internal: restore a source capacity",
    ),
    entry(
        "modifyAwsScalingProcess",
        No,
        Clouddriver,
        "suspend or resume AWS scaling processes",
    ),
    entry(
        "modifyScalingProcess",
        No,
        Clouddriver,
        "suspend or resume scaling processes",
    ),
    entry(
        "upsertScalingPolicy",
        No,
        Clouddriver,
        "create or update a scaling policy",
    ),
    entry(
        "deleteScalingPolicy",
        No,
        Clouddriver,
        "delete a scaling policy",
    ),
    entry(
        "upsertAlarm",
        No,
        Clouddriver,
        "create or update a CloudWatch alarm",
    ),
    entry("deleteAlarm", No, Clouddriver, "delete a CloudWatch alarm"),
    entry(
        "evaluateDeploymentHealth",
        No,
        Clouddriver,
        "internal: monitored deploy health check",
    ),
    entry(
        "notifyDeployStarting",
        No,
        Clouddriver,
        "internal: monitored deploy start",
    ),
    entry(
        "notifyDeployCompleted",
        No,
        Clouddriver,
        "internal: monitored deploy end",
    ),
    entry(
        "waitForCondition",
        No,
        Clouddriver,
        "internal: wait for deploy conditions",
    ),
    entry(
        "findImage",
        No,
        Clouddriver,
        "find the image a cluster runs",
    ),
    entry(
        "findImageFromTags",
        No,
        Clouddriver,
        "find an image by tags",
    ),
    entry("upsertImageTags", No, Clouddriver, "tag an image"),
    entry("deleteImage", No, Clouddriver, "delete images"),
    entry("upsertEntityTags", No, Clouddriver, "tag an entity"),
    entry(
        "bulkUpsertEntityTags",
        No,
        Clouddriver,
        "tag several entities",
    ),
    entry("deleteEntityTags", No, Clouddriver, "remove entity tags"),
    entry(
        "findArtifactFromExecution",
        Run,
        Clouddriver,
        "take an artifact from another pipeline's run",
    ),
    entry(
        "findArtifactsFromResource",
        Planned,
        Clouddriver,
        "take artifacts from a Kubernetes resource",
    ),
    entry(
        "injectArtifact",
        No,
        Clouddriver,
        "internal: inject an artifact",
    ),
    entry(
        "clouddriverClearAltTablespace",
        No,
        Clouddriver,
        "internal: clear a Clouddriver tablespace",
    ),
    // Load balancers and firewalls.
    entry(
        "upsertLoadBalancer",
        Run,
        Clouddriver,
        "create or update a load balancer",
    ),
    entry(
        "upsertLoadBalancers",
        No,
        Clouddriver,
        "create or update several load balancers",
    ),
    entry(
        "deleteLoadBalancer",
        Run,
        Clouddriver,
        "delete a load balancer",
    ),
    entry(
        "upsertSecurityGroup",
        Run,
        Clouddriver,
        "create or update a firewall",
    ),
    entry("deleteSecurityGroup", No, Clouddriver, "delete a firewall"),
    // Instances.
    entry("rebootInstances", No, Clouddriver, "reboot instances"),
    entry("terminateInstances", No, Clouddriver, "terminate instances"),
    entry(
        "terminateInstanceAndDecrementServerGroup",
        No,
        Clouddriver,
        "terminate an instance and shrink its group",
    ),
    entry(
        "registerInstancesWithLoadBalancer",
        No,
        Clouddriver,
        "add instances to a load balancer",
    ),
    entry(
        "deregisterInstancesFromLoadBalancer",
        No,
        Clouddriver,
        "remove instances from a load balancer",
    ),
    // Jobs.
    entry(
        "runJob",
        No,
        Clouddriver,
        "run a container job (Titus, Kubernetes v1)",
    ),
    entry(
        "runJobManifest",
        Planned,
        Clouddriver,
        "run a Kubernetes Job manifest",
    ),
    entry(
        "preconfiguredJob",
        No,
        Clouddriver,
        "run an operator-configured job",
    ),
    entry("destroyJob", No, Clouddriver, "delete a job"),
    // Kubernetes manifests.
    entry(
        "deployManifest",
        Planned,
        Clouddriver,
        "apply Kubernetes manifests",
    ),
    entry(
        "deleteManifest",
        Planned,
        Clouddriver,
        "delete Kubernetes resources",
    ),
    entry(
        "scaleManifest",
        Planned,
        Clouddriver,
        "scale a Kubernetes workload",
    ),
    entry(
        "patchManifest",
        Planned,
        Clouddriver,
        "patch a Kubernetes resource",
    ),
    entry(
        "undoRolloutManifest",
        Planned,
        Clouddriver,
        "roll a Kubernetes workload back",
    ),
    entry(
        "enableManifest",
        Planned,
        Clouddriver,
        "route traffic to a Kubernetes workload",
    ),
    entry(
        "disableManifest",
        Planned,
        Clouddriver,
        "stop traffic to a Kubernetes workload",
    ),
    entry(
        "pauseRolloutManifest",
        No,
        Clouddriver,
        "pause a Kubernetes rollout",
    ),
    entry(
        "resumeRolloutManifest",
        No,
        Clouddriver,
        "resume a Kubernetes rollout",
    ),
    entry(
        "rollingRestartManifest",
        Planned,
        Clouddriver,
        "restart a Kubernetes workload's pods",
    ),
    // AWS CloudFormation and Lambda.
    entry(
        "deployCloudFormation",
        No,
        Clouddriver,
        "deploy a CloudFormation stack",
    ),
    entry(
        "deleteCloudFormationChangeSet",
        No,
        Clouddriver,
        "delete a CloudFormation change set",
    ),
    entry(
        "evaluateCloudFormationChangeSetExecution",
        No,
        Clouddriver,
        "decide on a CloudFormation change set",
    ),
    entry(
        "executeCloudFormationChangeSet",
        No,
        Clouddriver,
        "execute a CloudFormation change set",
    ),
    entry(
        "lambdaFunction",
        No,
        Clouddriver,
        "create or update a Lambda function",
    ),
    entry("updateLambda", No, Clouddriver, "update a Lambda function"),
    entry(
        "updateLambdaFunction",
        No,
        Clouddriver,
        "update a Lambda function",
    ),
    entry("invokeLambda", No, Clouddriver, "invoke a Lambda function"),
    entry(
        "Aws.LambdaDeploymentStage",
        No,
        Plugin,
        "deploy an AWS Lambda function",
    ),
    entry(
        "Aws.LambdaUpdateCodeStage",
        No,
        Plugin,
        "update a Lambda function's code",
    ),
    entry(
        "Aws.LambdaTrafficRoutingStage",
        No,
        Plugin,
        "shift traffic between Lambda versions",
    ),
    entry(
        "Aws.LambdaInvokeStage",
        No,
        Plugin,
        "invoke a Lambda function",
    ),
    entry(
        "Aws.LambdaDeleteStage",
        No,
        Plugin,
        "delete a Lambda function",
    ),
    // Google.
    entry(
        "setStatefulDisk",
        No,
        Clouddriver,
        "mark a GCE disk stateful",
    ),
    entry(
        "statefullyUpdateBootImage",
        No,
        Clouddriver,
        "update a stateful GCE boot image",
    ),
    entry(
        "modifyGceAutoscalingPolicy",
        No,
        Clouddriver,
        "change a GCE autoscaling policy",
    ),
    entry(
        "deployAppEngineConfiguration",
        No,
        Clouddriver,
        "deploy App Engine configuration files",
    ),
    entry(
        "startAppEngineServerGroup",
        No,
        Clouddriver,
        "start an App Engine version",
    ),
    entry(
        "stopAppEngineServerGroup",
        No,
        Clouddriver,
        "stop an App Engine version",
    ),
    entry(
        "upsertAppEngineLoadBalancers",
        No,
        Clouddriver,
        "split App Engine traffic",
    ),
    // Cloud Foundry.
    entry(
        "deployService",
        No,
        Clouddriver,
        "create a Cloud Foundry service",
    ),
    entry(
        "destroyService",
        No,
        Clouddriver,
        "delete a Cloud Foundry service",
    ),
    entry(
        "shareService",
        No,
        Clouddriver,
        "share a Cloud Foundry service",
    ),
    entry(
        "unshareService",
        No,
        Clouddriver,
        "unshare a Cloud Foundry service",
    ),
    entry(
        "createServiceKey",
        No,
        Clouddriver,
        "create a Cloud Foundry service key",
    ),
    entry(
        "deleteServiceKey",
        No,
        Clouddriver,
        "delete a Cloud Foundry service key",
    ),
    entry(
        "createServiceBindings",
        No,
        Clouddriver,
        "bind Cloud Foundry services",
    ),
    entry(
        "deleteServiceBindings",
        No,
        Clouddriver,
        "unbind Cloud Foundry services",
    ),
    entry(
        "createCloudFoundryManifest",
        No,
        Clouddriver,
        "create a Cloud Foundry manifest",
    ),
    entry(
        "mapLoadBalancers",
        No,
        Clouddriver,
        "map Cloud Foundry routes",
    ),
    entry(
        "unmapLoadBalancers",
        No,
        Clouddriver,
        "unmap Cloud Foundry routes",
    ),
    // Tencent.
    entry(
        "upsertTencentScheduledActions",
        No,
        Clouddriver,
        "set Tencent scheduled actions",
    ),
    entry(
        "deleteTencentScheduledAction",
        No,
        Clouddriver,
        "delete a Tencent scheduled action",
    ),
    // Canary: Kayenta and the older orca-mine canary.
    entry("kayentaCanary", Run, Kayenta, "automated canary analysis"),
    entry(
        "runCanary",
        No,
        Kayenta,
        "internal: one canary analysis interval",
    ),
    entry(
        "deployCanaryServerGroups",
        No,
        Kayenta,
        "deploy baseline and canary server groups",
    ),
    entry(
        "cleanupCanaryClusters",
        No,
        Kayenta,
        "delete canary server groups",
    ),
    entry("canary", No, Kayenta, "legacy (orca-mine) canary"),
    entry("deployCanary", No, Kayenta, "legacy canary deploy"),
    entry("monitorCanary", No, Kayenta, "legacy canary monitor"),
    entry("acaTask", No, Kayenta, "legacy canary analysis task"),
    // Legacy aliases Orca still resolves.
    alias("resizeAsg", "resizeServerGroup", Clouddriver),
    alias("enableAsg", "enableServerGroup", Clouddriver),
    alias("disableAsg", "disableServerGroup", Clouddriver),
    alias("destroyAsg", "destroyServerGroup", Clouddriver),
    alias("copyLastAsg", "cloneServerGroup", Clouddriver),
    alias("upsertAsgTags", "upsertServerGroupTags", Clouddriver),
    alias(
        "upsertAmazonLoadBalancer",
        "upsertLoadBalancer",
        Clouddriver,
    ),
    alias(
        "deleteAmazonLoadBalancer",
        "deleteLoadBalancer",
        Clouddriver,
    ),
    alias("upsertAmiTags", "upsertImageTags", Clouddriver),
    alias("findAmi", "findImage", Clouddriver),
];

/// The catalog entry of a stage type (exact, case-sensitive as in Orca).
pub fn stage_type(name: &str) -> Option<&'static StageTypeInfo> {
    STAGE_TYPES.iter().find(|info| info.name == name)
}

/// The known stage type closest to `name`, for "did you mean" messages.
pub fn suggest_stage_type(name: &str) -> Option<&'static str> {
    suggest::closest(name, STAGE_TYPES.iter().map(|info| info.name))
}

/// The types Gennaker runs.
pub fn runnable_stage_types() -> impl Iterator<Item = &'static StageTypeInfo> {
    STAGE_TYPES
        .iter()
        .filter(|info| info.support == Support::Runnable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalog_is_large_and_unique() {
        let names: HashSet<_> = STAGE_TYPES.iter().map(|i| i.name).collect();
        assert_eq!(names.len(), STAGE_TYPES.len(), "duplicate entries");
        assert!(STAGE_TYPES.len() >= 100, "{} types", STAGE_TYPES.len());
        for info in STAGE_TYPES {
            if let Some(of) = info.alias_of {
                assert!(
                    stage_type(of).is_some(),
                    "{} aliases unknown {of}",
                    info.name
                );
            }
        }
    }

    #[test]
    fn runnable_set_is_the_promised_one() {
        let runnable: HashSet<_> = runnable_stage_types().map(|i| i.name).collect();
        for name in [
            "wait",
            "manualJudgment",
            "checkPreconditions",
            "evaluateVariables",
            "webhook",
            "pipeline",
            "deploy",
            "createServerGroup",
            "resizeServerGroup",
            "enableServerGroup",
            "disableServerGroup",
            "destroyServerGroup",
            "rollbackServerGroup",
            "rollbackCluster",
            "shrinkCluster",
            "scaleDownCluster",
            "disableCluster",
            "findArtifactFromExecution",
            "upsertLoadBalancer",
            "deleteLoadBalancer",
            "upsertSecurityGroup",
            "kayentaCanary",
        ] {
            assert!(runnable.contains(name), "{name}");
        }
        assert_eq!(runnable.len(), 22);
    }

    #[test]
    fn suggests() {
        assert_eq!(suggest_stage_type("wiat"), Some("wait"));
        assert_eq!(
            suggest_stage_type("deployManifests"),
            Some("deployManifest")
        );
    }
}
