//! Spinnaker's manifest stage types, in its stored JSON: `deployManifest`,
//! `deleteManifest`, `scaleManifest`, `patchManifest`, `undoRolloutManifest`,
//! `rollingRestartManifest`, `enableManifest`, `disableManifest`,
//! `findArtifactsFromResource`, and the tasks they are made of. Deploys and patches
//! read their manifests or patch body inline, or from an artifact ([`source`]).
//!
//! Every task is idempotent (it looks for its own effect first: server-side apply,
//! content-hashed versions, a patch marker, a recorded undo target, a restart stamp
//! taken from the stage's start) and authorized before it acts: the account must
//! exist, the namespace must be in its allow-list, and a live resource whose moniker
//! names another application needs WRITE there ([`Services::authorize`]).
//!
//! [`Services::authorize`]: gennaker_engine::Services::authorize

mod binding;
mod deploy;
mod enable;
mod ops;
mod source;
mod target;
mod traffic;
mod wait;

pub(crate) use traffic::{SCALED_TO_ZERO, no_ready_pod, not_ready, promote, scaled_to_zero};
pub(crate) use wait::failing_pod;

use std::sync::Arc;

use gennaker_core::{
    Access, CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport,
};
use gennaker_engine::{
    StageDefinition, StageExecution, StageRegistry, StageTarget, TaskContext, TaskError, TaskSpec,
};
use serde_json::Value;

use crate::cluster::{Account, KubernetesAccounts, Resolved};
use crate::fetch::ArtifactAccounts;
use crate::manifest::{ManifestName, owner};

/// The cloud provider name the manifest stages act through.
pub const PROVIDER: &str = "kubernetes";

/// Registers the manifest stage types and their tasks, acting through `accounts`
/// (with no artifact account: manifests from `github/file` artifacts cannot be read;
/// see [`register_with_artifacts`]).
pub fn register(registry: &mut StageRegistry, accounts: KubernetesAccounts) {
    register_with_artifacts(registry, accounts, ArtifactAccounts::default());
}

/// Registers the manifest stage types and their tasks, acting through `accounts` and
/// reading manifests from artifacts through `artifacts`.
pub fn register_with_artifacts(
    registry: &mut StageRegistry,
    accounts: KubernetesAccounts,
    artifacts: ArtifactAccounts,
) {
    let accounts = Arc::new(accounts);
    for kind in STAGE_TYPES {
        registry.stage(ManifestStage { kind });
    }
    source::register(registry, &Arc::new(artifacts));
    deploy::register(registry, &accounts);
    wait::register(registry, &accounts);
    ops::register(registry, &accounts);
    target::register(registry, &accounts);
    traffic::register(registry, &accounts);
    enable::register(registry, &accounts);
}

/// One manifest stage type: its strings, its rules and its tasks.
struct StageKind {
    stage_type: &'static str,
    label: &'static str,
    description: &'static str,
    check: fn(&Fields<'_>, &mut ValidationReport),
    tasks: &'static [&'static str],
    deferred: &'static [&'static str],
}

const STAGE_TYPES: &[StageKind] = &[
    StageKind {
        stage_type: "deployManifest",
        label: "Deploy (Manifest)",
        description: "apply Kubernetes manifests (server-side apply, versioned ReplicaSets, ConfigMaps and Secrets) and wait until they are stable",
        check: deploy::check,
        tasks: &[deploy::DEPLOY, wait::WAIT],
        deferred: &["manifests"],
    },
    StageKind {
        stage_type: "deleteManifest",
        label: "Delete (Manifest)",
        description: "delete Kubernetes resources by name or label selector",
        check: ops::check_delete,
        tasks: &[target::RESOLVE, ops::DELETE],
        deferred: &[],
    },
    StageKind {
        stage_type: "scaleManifest",
        label: "Scale (Manifest)",
        description: "set a Kubernetes workload's replicas and wait until it is stable",
        check: ops::check_scale,
        tasks: &[target::RESOLVE, ops::SCALE, wait::WAIT],
        deferred: &[],
    },
    StageKind {
        stage_type: "patchManifest",
        label: "Patch (Manifest)",
        description: "patch a Kubernetes resource (strategic, merge or JSON patch) and wait until it is stable",
        check: ops::check_patch,
        tasks: &[target::RESOLVE, ops::PATCH, wait::WAIT],
        deferred: &[],
    },
    StageKind {
        stage_type: "undoRolloutManifest",
        label: "Undo Rollout (Manifest)",
        description: "roll a Deployment back a number of revisions and wait until it is stable",
        check: ops::check_undo,
        tasks: &[target::RESOLVE, ops::RESOLVE_UNDO, ops::UNDO, wait::WAIT],
        deferred: &[],
    },
    StageKind {
        stage_type: "rollingRestartManifest",
        label: "Rolling Restart (Manifest)",
        description: "restart a Deployment's, StatefulSet's or DaemonSet's pods by rolling them",
        check: ops::check_target,
        tasks: &[target::RESOLVE, ops::RESTART],
        deferred: &[],
    },
    StageKind {
        stage_type: "enableManifest",
        label: "Enable (Manifest)",
        description: "put a Kubernetes workload behind its Services (by its pods' labels) and wait until it is stable",
        check: enable::check,
        tasks: &[target::RESOLVE, enable::ENABLE, wait::WAIT],
        deferred: &[],
    },
    StageKind {
        stage_type: "disableManifest",
        label: "Disable (Manifest)",
        description: "take a Kubernetes workload out of its Services (by its pods' labels) and wait until it is stable",
        check: enable::check,
        tasks: &[target::RESOLVE, enable::DISABLE, wait::WAIT],
        deferred: &[],
    },
    StageKind {
        stage_type: "findArtifactsFromResource",
        label: "Find Artifacts From Resource (Manifest)",
        description: "read the images and ConfigMaps/Secrets a Kubernetes workload uses, as artifacts",
        check: ops::check_target,
        tasks: &[target::RESOLVE, enable::FIND],
        deferred: &[],
    },
];

struct ManifestStage {
    kind: &'static StageKind,
}

impl StageDefinition for ManifestStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            self.kind.stage_type,
            Origin::Clouddriver,
            self.kind.label,
            self.kind.description,
        )
        .with_providers([PROVIDER.to_owned()])
    }

    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
        check_common(stage, context, report);
        (self.kind.check)(stage, report);
        if matches!(self.kind.stage_type, "deployManifest" | "patchManifest") {
            source::check(stage, context, report);
        }
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        let mut tasks: Vec<TaskSpec> = self.kind.tasks.iter().map(|t| TaskSpec::new(t)).collect();
        // The artifact is read (once) before the task that uses it.
        let reader = match self.kind.stage_type {
            "deployManifest" => Some((deploy::DEPLOY, source::RESOLVE_DEPLOY)),
            "patchManifest" => Some((ops::PATCH, source::RESOLVE_PATCH)),
            _ => None,
        };
        if source::from_artifact(&stage.context)
            && let Some((user, reader)) = reader
            && let Some(at) = tasks.iter().position(|t| t.implementing_class == user)
        {
            tasks.insert(at, TaskSpec::new(reader));
        }
        // Older versions leave the Services only once the new one is stable.
        if self.kind.stage_type == "deployManifest" && traffic::wants_strategy(&stage.context) {
            tasks.push(TaskSpec::new(traffic::STRATEGY));
        }
        tasks
    }

    fn deferred_context_keys(&self) -> &'static [&'static str] {
        self.kind.deferred
    }
}

/// The fields every manifest stage has: `account`, `cloudProvider`.
fn check_common(stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
    stage.require_account(report);
    let key = if stage.has("credentials") && !stage.has("account") {
        "credentials"
    } else {
        "account"
    };
    if let Some(provider) = stage.string("cloudProvider", report)
        && !provider.contains("${")
        && provider != PROVIDER
    {
        report.push(
            Problem::error(
                stage.at("cloudProvider"),
                format!("a manifest stage deploys through 'kubernetes', not '{provider}'"),
            )
            .with_hint("set \"cloudProvider\": \"kubernetes\" or leave it out"),
        );
    }
    if let Some(known) = context.cloud_providers
        && !known.contains(PROVIDER)
    {
        report.push(
            Problem::warning(
                stage.at(key),
                "no Kubernetes account is configured on this server: the pipeline is accepted, but a run stops (TERMINAL) at this stage",
            )
            .with_hint("add a [[kubernetes.accounts]] entry to the server's gennaker.toml"),
        );
    }
}

/// The account a stage names (`account`, or Spinnaker's older `credentials`).
fn account(
    accounts: &KubernetesAccounts,
    ctx: &TaskContext<'_>,
) -> Result<Arc<Account>, TaskError> {
    let name = ctx
        .str("account")
        .or_else(|| ctx.str("credentials"))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            TaskError::Permanent(format!(
                "stage '{}' names no Kubernetes account: set \"account\"",
                ctx.stage.name
            ))
        })?;
    accounts.get(name).cloned().ok_or_else(|| {
        let known = accounts.names();
        TaskError::Unsupported(format!(
            "stage '{}' field \"account\": no Kubernetes account '{name}' is configured on this server (it has: {})",
            ctx.stage.name,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// A resource a stage acts on, resolved.
struct Target {
    kind: Resolved,
    namespace: Option<String>,
    name: String,
    /// `deployment web`.
    full: String,
}

/// The target of a non-deploy stage: `manifestName` in `location`, or the one a
/// dynamic target (`cluster` + `criteria`) was resolved to.
async fn static_target(account: &Account, ctx: &TaskContext<'_>) -> Result<Target, TaskError> {
    let text = if target::is_dynamic(&ctx.stage.context) {
        ctx.str(target::RESOLVED).ok_or_else(|| {
            TaskError::Permanent(format!(
                "stage '{}' has a dynamic target (cluster + criteria) that was not resolved",
                ctx.stage.name
            ))
        })?
    } else {
        ctx.str("manifestName").ok_or_else(|| {
            TaskError::Permanent(format!(
                "stage '{}' names no resource: set \"manifestName\" to \"<kind> <name>\"",
                ctx.stage.name
            ))
        })?
    };
    let name = ManifestName::parse(text)
        .map_err(|e| TaskError::Permanent(format!("field \"manifestName\": {e}")))?;
    let kind = account.resolve(&name.api_version, &name.kind).await?;
    let namespace = kind.namespaced.then(|| {
        ctx.str("location")
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default")
            .to_owned()
    });
    Ok(Target {
        full: name.full(),
        kind,
        namespace,
        name: name.name,
    })
}

/// Refuses a namespace outside the account's allow-list, then a live resource that
/// another application owns unless the execution may WRITE there.
async fn authorize(
    ctx: &TaskContext<'_>,
    account: &Account,
    namespace: Option<&str>,
    full_name: &str,
    live: Option<&Value>,
) -> Result<(), TaskError> {
    account.check_namespace(namespace).map_err(|why| {
        TaskError::Permanent(format!(
            "stage '{}' may not act on {full_name}: {why}",
            ctx.stage.name
        ))
    })?;
    if let Some(application) = live.and_then(owner) {
        authorize_application(ctx, full_name, application).await?;
    }
    Ok(())
}

/// Needs WRITE on `application` unless it is the execution's own.
async fn authorize_application(
    ctx: &TaskContext<'_>,
    full_name: &str,
    application: &str,
) -> Result<(), TaskError> {
    ctx.authorize(
        StageTarget {
            kind: "Kubernetes resource",
            name: full_name,
            application,
        },
        Access::Write,
    )
    .await
}

/// `{namespace: ["deployment web"]}` for one resource.
fn names_by_namespace(namespace: Option<&str>, full: &str) -> Value {
    serde_json::json!({ namespace.unwrap_or_default(): [full] })
}
