//! What Gennaker knows about stage types: the [`StageCatalog`] that the validator, the
//! engine and the API all read, and the list of every stage type Spinnaker ships.
//!
//! A runnable stage type is defined once, next to its code (the engine's generic stages,
//! the deploy crate's cloud stages, preconfigured webhooks), with its
//! [`StageTypeDescriptor`] and its [`StageRules`]; the binary assembles them into one
//! catalog. Every other type Spinnaker ships stays in the catalog as Spinnaker-only: a
//! pipeline that uses one is saved with a warning, and a run fails at that stage.
//!
//! Type strings are Orca's: the `StageDefinitionBuilder` class name without `Stage`,
//! first letter lowered, unless overridden (`PIPELINE_CONFIG_TYPE`, `@Aliases`). The
//! Spinnaker-only list covers orca-core, orca-clouddriver, orca-bakery, orca-igor,
//! orca-echo, orca-front50, orca-webhook, orca-kayenta, orca-mine, orca-keel,
//! orca-applications, orca-flex and the AWS Lambda plugin that moved into Orca.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::problems::ValidationReport;
use crate::suggest;
use crate::validate::{CheckContext, Fields};

/// Where a stage type comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Gennaker's own (no Spinnaker equivalent).
    Gennaker,
    /// Defined by this server's configuration (a preconfigured webhook stage).
    Preconfigured,
}

/// What the API and the validator know about one stage type:
/// `GET /api/v1/stageTypes` returns a list of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTypeDescriptor {
    /// The `type` string in pipeline JSON.
    #[serde(rename = "type")]
    pub stage_type: String,
    /// A short title ("Manual Judgment").
    pub label: String,
    /// What the stage does, in a sentence.
    pub description: String,
    /// Whether Gennaker runs it (false: Spinnaker-only, saved with a warning).
    pub runnable: bool,
    /// The cloud providers it acts through (`["local"]`); empty when it needs none.
    pub providers: Vec<String>,
    /// Older names Orca still accepts for it; a stage may use any of them.
    pub aliases: Vec<String>,
    /// Where it comes from.
    pub origin: Origin,
}

impl StageTypeDescriptor {
    /// A stage type Gennaker runs.
    pub fn runnable(
        stage_type: impl Into<String>,
        origin: Origin,
        label: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            stage_type: stage_type.into(),
            label: label.into(),
            description: description.into(),
            runnable: true,
            providers: Vec::new(),
            aliases: Vec::new(),
            origin,
        }
    }

    /// Adds older names the type is also known by.
    #[must_use]
    pub fn with_aliases(mut self, aliases: &[&str]) -> Self {
        self.aliases = aliases.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Names the cloud providers the type acts through.
    #[must_use]
    pub fn with_providers(mut self, providers: impl IntoIterator<Item = String>) -> Self {
        self.providers = providers.into_iter().collect();
        self.providers.sort();
        self
    }
}

/// The save-time checks of one stage type's own fields. Each problem carries the JSON
/// path of the field it is about.
pub trait StageRules: Send + Sync {
    /// Reports what is wrong with `stage` (an object of the pipeline's `stages`).
    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport);
}

/// One stage type in a [`StageCatalog`].
#[derive(Clone)]
pub struct CatalogEntry {
    /// What it is.
    pub descriptor: StageTypeDescriptor,
    rules: Option<Arc<dyn StageRules>>,
}

impl CatalogEntry {
    /// Its field checks, when it has any.
    pub fn rules(&self) -> Option<&dyn StageRules> {
        self.rules.as_deref()
    }
}

impl std::fmt::Debug for CatalogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogEntry")
            .field("descriptor", &self.descriptor)
            .field("rules", &self.rules.is_some())
            .finish()
    }
}

/// Every stage type a server knows: the runnable ones registered by the crates that run
/// them, and Spinnaker's other types as Spinnaker-only.
#[derive(Debug, Clone, Default)]
pub struct StageCatalog {
    entries: BTreeMap<String, CatalogEntry>,
    /// Alias -> canonical type.
    aliases: HashMap<String, String>,
    /// The cloud providers this server deploys to; `None` when unknown (offline
    /// validation), so account and provider checks are skipped.
    cloud_providers: Option<BTreeSet<String>>,
    /// How many stages a pipeline may have; `None` is [`MAX_PIPELINE_STAGES`].
    max_stages: Option<usize>,
}

/// How many stages a pipeline may have unless the server sets its own limit: each stage
/// costs every step of every execution of the pipeline (the execution document holds
/// them all), so a pipeline of tens of thousands of stages would slow every user's
/// executions down. Real pipelines stay far below it; a pipeline of 1,000 stages is
/// refused. Split bigger flows into pipelines joined by `pipeline` stages.
pub const MAX_PIPELINE_STAGES: usize = 500;

impl StageCatalog {
    /// Spinnaker's stage types, none of them runnable yet: the base that runnable
    /// definitions are registered onto.
    pub fn spinnaker() -> Self {
        let mut catalog = Self::default();
        for (stage_type, origin, description) in SPINNAKER_STAGE_TYPES {
            let aliases: Vec<&str> = SPINNAKER_ALIASES
                .iter()
                .filter(|(_, canonical)| canonical == stage_type)
                .map(|(alias, _)| *alias)
                .collect();
            let descriptor = StageTypeDescriptor {
                runnable: false,
                ..StageTypeDescriptor::runnable(
                    *stage_type,
                    *origin,
                    label_of(stage_type),
                    *description,
                )
            }
            .with_aliases(&aliases);
            catalog.insert(descriptor, None);
        }
        catalog
    }

    /// Adds (or replaces) a stage type with its rules. A Spinnaker-only entry of the same
    /// name, or one named by its aliases, is replaced.
    pub fn register(
        &mut self,
        descriptor: StageTypeDescriptor,
        rules: Option<Arc<dyn StageRules>>,
    ) {
        for alias in &descriptor.aliases {
            self.entries.remove(alias);
        }
        if let Some(old) = self.entries.get(&descriptor.stage_type) {
            for alias in old.descriptor.aliases.clone() {
                self.aliases.remove(&alias);
            }
        }
        self.insert(descriptor, rules);
    }

    fn insert(&mut self, descriptor: StageTypeDescriptor, rules: Option<Arc<dyn StageRules>>) {
        for alias in &descriptor.aliases {
            self.aliases
                .insert(alias.clone(), descriptor.stage_type.clone());
        }
        self.entries.insert(
            descriptor.stage_type.clone(),
            CatalogEntry { descriptor, rules },
        );
    }

    /// The entry for a type or one of its aliases (case-sensitive, as in Orca).
    pub fn get(&self, stage_type: &str) -> Option<&CatalogEntry> {
        self.entries.get(stage_type).or_else(|| {
            self.aliases
                .get(stage_type)
                .and_then(|canonical| self.entries.get(canonical))
        })
    }

    /// The canonical name of a type or alias.
    pub fn canonical<'a>(&'a self, stage_type: &'a str) -> Option<&'a str> {
        self.get(stage_type)
            .map(|entry| entry.descriptor.stage_type.as_str())
    }

    /// Every type, sorted by name.
    pub fn descriptors(&self) -> impl Iterator<Item = &StageTypeDescriptor> {
        self.entries.values().map(|entry| &entry.descriptor)
    }

    /// The runnable types, sorted by name.
    pub fn runnable(&self) -> impl Iterator<Item = &StageTypeDescriptor> {
        self.descriptors().filter(|d| d.runnable)
    }

    /// The known type closest to `name`, for "did you mean" messages.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        suggest::closest(name, self.entries.keys().map(String::as_str))
    }

    /// Records the cloud providers this server deploys to, so stages naming another
    /// one are reported at save time.
    pub fn set_cloud_providers(&mut self, providers: impl IntoIterator<Item = String>) {
        self.cloud_providers = Some(providers.into_iter().collect());
    }

    /// The cloud providers this server deploys to, when known.
    pub fn cloud_providers(&self) -> Option<&BTreeSet<String>> {
        self.cloud_providers.as_ref()
    }

    /// Sets how many stages a pipeline may have (at save and at run).
    pub fn set_max_stages(&mut self, max: usize) {
        self.max_stages = Some(max);
    }

    /// How many stages a pipeline may have: [`MAX_PIPELINE_STAGES`] unless set.
    pub fn max_stages(&self) -> usize {
        self.max_stages.unwrap_or(MAX_PIPELINE_STAGES)
    }
}

/// "manualJudgment" -> "Manual Judgment".
fn label_of(stage_type: &str) -> String {
    let mut label = String::with_capacity(stage_type.len() + 4);
    for (i, c) in stage_type.chars().enumerate() {
        if i == 0 {
            label.extend(c.to_uppercase());
        } else {
            if c.is_uppercase() {
                label.push(' ');
            }
            label.push(c);
        }
    }
    label
}

use Origin::{Bakery, Clouddriver, Echo, Front50, Igor, Kayenta, Orca, Plugin};

/// Every Spinnaker stage type Gennaker does not run, in catalog order (generic first):
/// type, origin, what it does.
static SPINNAKER_STAGE_TYPES: &[(&str, Origin, &str)] = &[
    // Generic (orca-core, orca-echo, orca-webhook, orca-front50).
    ("waitUntil", Orca, "wait until an epoch time"),
    (
        "findArtifactFromExecution",
        Orca,
        "find an artifact in another pipeline's execution",
    ),
    (
        "dependsOnExecution",
        Orca,
        "wait for another execution to finish",
    ),
    (
        "restrictExecutionDuringTimeWindow",
        Orca,
        "internal: hold a stage until its execution window",
    ),
    ("noop", Orca, "do nothing (testing)"),
    ("pageApplicationOwner", Echo, "page the application's owner"),
    ("savePipeline", Front50, "save a pipeline config"),
    (
        "savePipelinesFromArtifact",
        Front50,
        "save pipeline configs read from an artifact",
    ),
    (
        "upsertApplication",
        Front50,
        "create or update an application",
    ),
    ("createApplication", Front50, "create an application"),
    ("updateApplication", Front50, "update an application"),
    ("deleteApplication", Front50, "delete an application"),
    ("upsertProject", Front50, "create or update a project"),
    ("deleteProject", Front50, "delete a project"),
    (
        "importDeliveryConfig",
        Front50,
        "import a Managed Delivery config",
    ),
    // CI (orca-igor).
    ("jenkins", Igor, "run a Jenkins job"),
    ("travis", Igor, "run a Travis job"),
    ("wercker", Igor, "run a Wercker pipeline"),
    ("concourse", Igor, "wait for a Concourse job"),
    ("script", Igor, "run a script through Jenkins"),
    ("googleCloudBuild", Igor, "run a Google Cloud Build"),
    ("awsCodeBuild", Igor, "run an AWS CodeBuild project"),
    // Bakery.
    ("bake", Bakery, "bake a machine image with Packer"),
    (
        "bakeManifest",
        Bakery,
        "render Helm or Kustomize into manifests",
    ),
    (
        "bakeCloudFoundryManifest",
        Bakery,
        "render a Cloud Foundry manifest",
    ),
    // Server groups and clusters (orca-clouddriver).
    (
        "cloneServerGroup",
        Clouddriver,
        "copy a server group with changes",
    ),
    (
        "bulkDestroyServerGroup",
        Clouddriver,
        "delete several server groups",
    ),
    (
        "pinServerGroup",
        Clouddriver,
        "pin a server group's min capacity",
    ),
    ("upsertServerGroupTags", Clouddriver, "tag a server group"),
    (
        "updateLaunchConfig",
        Clouddriver,
        "change an AWS launch configuration",
    ),
    (
        "deleteLaunchConfiguration",
        Clouddriver,
        "delete an AWS launch configuration",
    ),
    (
        "upsertDisruptionBudget",
        Clouddriver,
        "set a Titus disruption budget",
    ),
    (
        "updateJobProcesses",
        Clouddriver,
        "change Titus job processes",
    ),
    (
        "serverGroupForceCacheRefresh",
        Clouddriver,
        "internal: refresh the server group cache",
    ),
    (
        "determineTargetServerGroup",
        Clouddriver,
        "internal: resolve a dynamic target",
    ),
    (
        "captureSourceServerGroupCapacity",
        Clouddriver,
        "internal: remember a source capacity",
    ),
    (
        "applySourceServerGroupCapacity",
        Clouddriver,
        "internal: restore a source capacity",
    ),
    (
        "modifyAwsScalingProcess",
        Clouddriver,
        "suspend or resume AWS scaling processes",
    ),
    (
        "modifyScalingProcess",
        Clouddriver,
        "suspend or resume scaling processes",
    ),
    (
        "upsertScalingPolicy",
        Clouddriver,
        "create or update a scaling policy",
    ),
    (
        "deleteScalingPolicy",
        Clouddriver,
        "delete a scaling policy",
    ),
    (
        "upsertAlarm",
        Clouddriver,
        "create or update a CloudWatch alarm",
    ),
    ("deleteAlarm", Clouddriver, "delete a CloudWatch alarm"),
    (
        "evaluateDeploymentHealth",
        Clouddriver,
        "internal: monitored deploy health check",
    ),
    (
        "notifyDeployStarting",
        Clouddriver,
        "internal: monitored deploy start",
    ),
    (
        "notifyDeployCompleted",
        Clouddriver,
        "internal: monitored deploy end",
    ),
    (
        "waitForCondition",
        Clouddriver,
        "internal: wait for deploy conditions",
    ),
    ("findImage", Clouddriver, "find the image a cluster runs"),
    ("findImageFromTags", Clouddriver, "find an image by tags"),
    ("upsertImageTags", Clouddriver, "tag an image"),
    ("deleteImage", Clouddriver, "delete images"),
    ("upsertEntityTags", Clouddriver, "tag an entity"),
    ("bulkUpsertEntityTags", Clouddriver, "tag several entities"),
    ("deleteEntityTags", Clouddriver, "remove entity tags"),
    (
        "findArtifactsFromResource",
        Clouddriver,
        "take artifacts from a Kubernetes resource",
    ),
    (
        "injectArtifact",
        Clouddriver,
        "internal: inject an artifact",
    ),
    (
        "clouddriverClearAltTablespace",
        Clouddriver,
        "internal: clear a Clouddriver tablespace",
    ),
    // Load balancers and firewalls.
    (
        "upsertLoadBalancers",
        Clouddriver,
        "create or update several load balancers",
    ),
    ("deleteSecurityGroup", Clouddriver, "delete a firewall"),
    // Instances.
    ("rebootInstances", Clouddriver, "reboot instances"),
    ("terminateInstances", Clouddriver, "terminate instances"),
    (
        "terminateInstanceAndDecrementServerGroup",
        Clouddriver,
        "terminate an instance and shrink its group",
    ),
    (
        "registerInstancesWithLoadBalancer",
        Clouddriver,
        "add instances to a load balancer",
    ),
    (
        "deregisterInstancesFromLoadBalancer",
        Clouddriver,
        "remove instances from a load balancer",
    ),
    // Jobs.
    (
        "runJob",
        Clouddriver,
        "run a container job (Titus, Kubernetes v1)",
    ),
    (
        "runJobManifest",
        Clouddriver,
        "run a Kubernetes Job manifest",
    ),
    (
        "preconfiguredJob",
        Clouddriver,
        "run an operator-configured job",
    ),
    ("destroyJob", Clouddriver, "delete a job"),
    // Kubernetes manifests.
    ("deployManifest", Clouddriver, "apply Kubernetes manifests"),
    ("deleteManifest", Clouddriver, "delete Kubernetes resources"),
    ("scaleManifest", Clouddriver, "scale a Kubernetes workload"),
    ("patchManifest", Clouddriver, "patch a Kubernetes resource"),
    (
        "undoRolloutManifest",
        Clouddriver,
        "roll a Kubernetes workload back",
    ),
    (
        "enableManifest",
        Clouddriver,
        "route traffic to a Kubernetes workload",
    ),
    (
        "disableManifest",
        Clouddriver,
        "stop traffic to a Kubernetes workload",
    ),
    (
        "pauseRolloutManifest",
        Clouddriver,
        "pause a Kubernetes rollout",
    ),
    (
        "resumeRolloutManifest",
        Clouddriver,
        "resume a Kubernetes rollout",
    ),
    (
        "rollingRestartManifest",
        Clouddriver,
        "restart a Kubernetes workload's pods",
    ),
    // AWS CloudFormation and Lambda.
    (
        "deployCloudFormation",
        Clouddriver,
        "deploy a CloudFormation stack",
    ),
    (
        "deleteCloudFormationChangeSet",
        Clouddriver,
        "delete a CloudFormation change set",
    ),
    (
        "evaluateCloudFormationChangeSetExecution",
        Clouddriver,
        "decide on a CloudFormation change set",
    ),
    (
        "executeCloudFormationChangeSet",
        Clouddriver,
        "execute a CloudFormation change set",
    ),
    (
        "lambdaFunction",
        Clouddriver,
        "create or update a Lambda function",
    ),
    ("updateLambda", Clouddriver, "update a Lambda function"),
    (
        "updateLambdaFunction",
        Clouddriver,
        "update a Lambda function",
    ),
    ("invokeLambda", Clouddriver, "invoke a Lambda function"),
    (
        "Aws.LambdaDeploymentStage",
        Plugin,
        "deploy an AWS Lambda function",
    ),
    (
        "Aws.LambdaUpdateCodeStage",
        Plugin,
        "update a Lambda function's code",
    ),
    (
        "Aws.LambdaTrafficRoutingStage",
        Plugin,
        "shift traffic between Lambda versions",
    ),
    ("Aws.LambdaInvokeStage", Plugin, "invoke a Lambda function"),
    ("Aws.LambdaDeleteStage", Plugin, "delete a Lambda function"),
    // Google.
    ("setStatefulDisk", Clouddriver, "mark a GCE disk stateful"),
    (
        "statefullyUpdateBootImage",
        Clouddriver,
        "update a stateful GCE boot image",
    ),
    (
        "modifyGceAutoscalingPolicy",
        Clouddriver,
        "change a GCE autoscaling policy",
    ),
    (
        "deployAppEngineConfiguration",
        Clouddriver,
        "deploy App Engine configuration files",
    ),
    (
        "startAppEngineServerGroup",
        Clouddriver,
        "start an App Engine version",
    ),
    (
        "stopAppEngineServerGroup",
        Clouddriver,
        "stop an App Engine version",
    ),
    (
        "upsertAppEngineLoadBalancers",
        Clouddriver,
        "split App Engine traffic",
    ),
    // Cloud Foundry.
    (
        "deployService",
        Clouddriver,
        "create a Cloud Foundry service",
    ),
    (
        "destroyService",
        Clouddriver,
        "delete a Cloud Foundry service",
    ),
    ("shareService", Clouddriver, "share a Cloud Foundry service"),
    (
        "unshareService",
        Clouddriver,
        "unshare a Cloud Foundry service",
    ),
    (
        "createServiceKey",
        Clouddriver,
        "create a Cloud Foundry service key",
    ),
    (
        "deleteServiceKey",
        Clouddriver,
        "delete a Cloud Foundry service key",
    ),
    (
        "createServiceBindings",
        Clouddriver,
        "bind Cloud Foundry services",
    ),
    (
        "deleteServiceBindings",
        Clouddriver,
        "unbind Cloud Foundry services",
    ),
    (
        "createCloudFoundryManifest",
        Clouddriver,
        "create a Cloud Foundry manifest",
    ),
    ("mapLoadBalancers", Clouddriver, "map Cloud Foundry routes"),
    (
        "unmapLoadBalancers",
        Clouddriver,
        "unmap Cloud Foundry routes",
    ),
    // Tencent.
    (
        "upsertTencentScheduledActions",
        Clouddriver,
        "set Tencent scheduled actions",
    ),
    (
        "deleteTencentScheduledAction",
        Clouddriver,
        "delete a Tencent scheduled action",
    ),
    // Canary: Kayenta and the older orca-mine canary.
    (
        "runCanary",
        Kayenta,
        "internal: one canary analysis interval",
    ),
    (
        "deployCanaryServerGroups",
        Kayenta,
        "deploy baseline and canary server groups",
    ),
    (
        "kayentaCanary",
        Kayenta,
        "automated canary analysis with Kayenta",
    ),
    (
        "cleanupCanaryClusters",
        Kayenta,
        "delete canary server groups",
    ),
    ("canary", Kayenta, "legacy (orca-mine) canary"),
    ("deployCanary", Kayenta, "legacy canary deploy"),
    ("monitorCanary", Kayenta, "legacy canary monitor"),
    ("acaTask", Kayenta, "legacy canary analysis task"),
];

/// Legacy names Orca still resolves, for the Spinnaker-only types (a runnable type
/// declares its own aliases).
static SPINNAKER_ALIASES: &[(&str, &str)] = &[
    ("copyLastAsg", "cloneServerGroup"),
    ("upsertAsgTags", "upsertServerGroupTags"),
    ("upsertAmiTags", "upsertImageTags"),
    ("findAmi", "findImage"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn spinnaker_list_is_large_and_unique() {
        let names: HashSet<_> = SPINNAKER_STAGE_TYPES.iter().map(|t| t.0).collect();
        assert_eq!(
            names.len(),
            SPINNAKER_STAGE_TYPES.len(),
            "duplicate entries"
        );
        assert!(names.len() >= 100, "{} types", names.len());
        for (alias, canonical) in SPINNAKER_ALIASES {
            assert!(
                names.contains(canonical),
                "{alias} aliases unknown {canonical}"
            );
            assert!(
                !names.contains(alias),
                "{alias} is both a type and an alias"
            );
        }
        assert!(StageCatalog::spinnaker().runnable().next().is_none());
    }

    #[test]
    fn registering_replaces_spinnaker_only_entries_and_their_aliases() {
        let mut catalog = StageCatalog::spinnaker();
        assert_eq!(catalog.canonical("copyLastAsg"), Some("cloneServerGroup"));
        let descriptor =
            StageTypeDescriptor::runnable("cloneServerGroup", Clouddriver, "Clone", "copy")
                .with_aliases(&["copyLastAsg"]);
        catalog.register(descriptor, None);
        let entry = catalog.get("copyLastAsg").map(|e| &e.descriptor);
        assert_eq!(entry.map(|d| d.runnable), Some(true));
        assert_eq!(
            catalog
                .descriptors()
                .filter(|d| d.stage_type == "copyLastAsg")
                .count(),
            0
        );
    }

    #[test]
    fn suggests_and_labels() {
        let catalog = StageCatalog::spinnaker();
        assert_eq!(catalog.suggest("deployManifests"), Some("deployManifest"));
        assert_eq!(label_of("manualJudgment"), "Manual Judgment");
        assert_eq!(
            catalog.get("jenkins").map(|e| e.descriptor.label.as_str()),
            Some("Jenkins")
        );
    }
}
