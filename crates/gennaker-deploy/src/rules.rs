//! Save-time rules shared by the deployment stages: clusters, capacities, targets, and
//! the cloud provider a stage names.

use gennaker_core::naming::{NamePart, validate_name_part};
use gennaker_core::{CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport};

use crate::provider::Providers;

/// Orca's deploy strategies (`Strategy.java`), plus the Cloud Foundry one.
const STRATEGIES: &[&str] = &[
    "redblack",
    "rollingredblack",
    "highlander",
    "rollingpush",
    "monitored",
    "custom",
    "none",
    "cfrollingredblack",
    "canary",
];

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

/// Checks one cluster object (a `deploy` stage's `clusters[*]`, a `createServerGroup`).
pub(crate) fn check_cluster(
    cluster: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    match cluster.string("application", report) {
        Some(app) => {
            if let Err(err) = validate_name_part(NamePart::App, app) {
                report.push(Problem::error(cluster.at("application"), err.to_string()));
            }
        }
        // Without one, the cluster belongs to the pipeline's application (as in Orca).
        None if !cluster.has("application")
            && !cluster.has("moniker")
            && context.application.is_none() =>
        {
            report.push(
                Problem::error(
                    cluster.at("application"),
                    "the cluster has no application, and neither has the pipeline",
                )
                .with_hint("set \"application\" to the application that owns the server groups"),
            )
        }
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
    cluster.require_account(report);
    check_cloud_provider(cluster, context, report);
    // Absent and "" both mean "none" (Deck writes "" for the canary clusters).
    if cluster.one_of("strategy", STRATEGIES, report) == Some("canary") {
        crate::canary::check_canary(cluster, report);
    }
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

/// `cloudProvider` (or `provider`) must name a provider this server deploys through; a
/// stage naming another one is saved with a warning and stops the run TERMINAL.
pub(crate) fn check_cloud_provider(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    let key = if stage.has("cloudProvider") {
        "cloudProvider"
    } else {
        "provider"
    };
    let Some(name) = stage.string(key, report) else {
        return;
    };
    if let Some(known) = context.cloud_providers
        && !name.contains("${")
        && !known.contains(name)
    {
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        report.push(
            Problem::warning(
                stage.at(key),
                format!(
                    "cloud provider '{name}' is not configured on this server (it deploys through: {}): the pipeline is accepted, but a run stops (TERMINAL) at this stage",
                    known.join(", ")
                ),
            )
            .with_hint("deploy through a configured provider, or configure this one on the server"),
        );
    }
}

/// `capacity{min,max,desired}`: whole numbers or expressions, `min <= desired <= max`.
pub(crate) fn check_capacity(obj: &Fields<'_>, report: &mut ValidationReport) {
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

/// A cluster stage names its cluster (or moniker) and account.
pub(crate) fn check_cluster_target(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    if !stage.has("cluster") && !stage.has("moniker") {
        report.push(
            Problem::error(stage.at("cluster"), "no cluster given ('cluster')")
                .with_hint("e.g. \"cluster\": \"myapp-prod\""),
        );
    }
    stage.string("cluster", report);
    stage.object("moniker", report);
    stage.require_account(report);
    check_cloud_provider(stage, context, report);
}

/// Server-group stages name a server group, or a cluster plus a dynamic target.
pub(crate) fn check_server_group_target(
    stage: &Fields<'_>,
    context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    if stage.has("serverGroupName") || stage.has("asgName") {
        stage.string("serverGroupName", report);
        stage.require_account(report);
        check_cloud_provider(stage, context, report);
        return;
    }
    check_cluster_target(stage, context, report);
    if !stage.has("target") {
        report.push(
            Problem::error(stage.at("target"), "no target server group ('target')")
                .with_hint("e.g. \"target\": \"current_asg_dynamic\" (newest), \"ancestor_asg_dynamic\" (previous)"),
        );
    }
    stage.one_of("target", TARGETS, report);
}

/// A stage type's field checks.
pub(crate) type Rules = fn(&Fields<'_>, &CheckContext<'_>, &mut ValidationReport);

/// What a deployment stage type is — name, aliases, label, description, the providers it
/// acts through — and how its fields are checked: its one definition.
#[derive(Debug, Clone)]
pub(crate) struct CloudStageType {
    /// The `type` string.
    pub(crate) stage_type: &'static str,
    label: &'static str,
    description: &'static str,
    aliases: &'static [&'static str],
    rules: Rules,
    providers: Vec<String>,
}

impl CloudStageType {
    /// A type acting through `providers`.
    pub(crate) fn new(
        stage_type: &'static str,
        label: &'static str,
        description: &'static str,
        rules: Rules,
        providers: &Providers,
    ) -> Self {
        Self {
            stage_type,
            label,
            description,
            aliases: &[],
            rules,
            providers: providers.names(),
        }
    }

    /// Older names Orca still accepts for it.
    pub(crate) fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// Its descriptor, for the catalog.
    pub(crate) fn descriptor(&self) -> StageTypeDescriptor {
        let origin = if GENNAKER_TYPES.contains(&self.stage_type) {
            Origin::Gennaker
        } else if KAYENTA_TYPES.contains(&self.stage_type) {
            Origin::Kayenta
        } else {
            Origin::Clouddriver
        };
        StageTypeDescriptor::runnable(self.stage_type, origin, self.label, self.description)
            .with_aliases(self.aliases)
            .with_providers(self.providers.iter().cloned())
    }

    /// Runs its rules.
    pub(crate) fn check(
        &self,
        stage: &Fields<'_>,
        context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        (self.rules)(stage, context, report);
    }
}

/// Deployment stage types Gennaker has and Spinnaker has not.
const GENNAKER_TYPES: &[&str] = &["shiftTraffic"];

/// Deployment stage types orca-kayenta defines (the canary stage's deployments).
const KAYENTA_TYPES: &[&str] = &[
    crate::canary_deployments::DEPLOY_CANARY_SERVER_GROUPS,
    crate::canary_deployments::CLEANUP_CANARY_CLUSTERS,
];

/// Implements [`gennaker_engine::StageDefinition::descriptor`] and `check` from the
/// stage's `kind: CloudStageType` field.
macro_rules! described_by_kind {
    () => {
        fn descriptor(&self) -> gennaker_core::StageTypeDescriptor {
            self.kind.descriptor()
        }

        fn check(
            &self,
            stage: &gennaker_core::Fields<'_>,
            context: &gennaker_core::CheckContext<'_>,
            report: &mut gennaker_core::ValidationReport,
        ) {
            self.kind.check(stage, context, report);
        }
    };
}
pub(crate) use described_by_kind;
