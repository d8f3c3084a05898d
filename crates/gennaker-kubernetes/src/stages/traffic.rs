//! `deployManifest`'s `trafficManagement`: `{enabled, options: {enableTraffic,
//! services: ["service my-svc"], strategy: redblack|bluegreen|highlander|none,
//! previewServices: ["service my-svc-preview"]}}`.
//!
//! The deploy writes the Services into each ReplicaSet's
//! `traffic.spinnaker.io/load-balancers` annotation and, with `enableTraffic`, copies
//! their selectors into its pod template: the new pods join the Services' endpoints
//! one by one as each becomes Ready. Only after `waitForManifestToStabilize` (every
//! new pod Ready) does [`STRATEGY`] act on the older ReplicaSets of the same
//! application and cluster: red/black (and blue/green) disables them (a never-ready
//! one with nothing available is deleted instead), highlander disables and deletes
//! them. Which ReplicaSets and what to do is decided once and recorded
//! (`trafficPlan`), so a restart does not pick up a version deployed meanwhile.
//!
//! `previewServices` (a Gennaker extension, Argo Rollouts' `previewService`; only
//! with `bluegreen`) makes the new version join only those Services: they are
//! written into `traffic.gennaker.io/preview-load-balancers` and their selectors, not
//! the active ones, into its pod template, while the older versions keep serving the
//! active `services`. It is promoted ([`promote`]: active labels on, preview labels
//! off, in one patch per object, only once all its pods are Ready; then the older
//! versions are disabled as red/black does) by the strategy at once when
//! `enableTraffic` is true (Argo's `autoPromotionEnabled: true`), else by an
//! `enableManifest` of it (e.g. after a manual judgment); the strategy then only
//! takes the older versions out of the preview. A version with a failing pod is
//! never promoted: the task fails at once with the pod's reason and events.
//!
//! `scaleDownDelaySeconds` (Argo's; with `previewServices` only) is written into the
//! new version's `traffic.gennaker.io/scale-down-delay-seconds`; whichever task
//! promotes it then records when to scale the older versions it disabled to 0
//! (`scaleDownAt`, engine time) and waits for it, so a restart resumes the wait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{Fields, Problem, ValidationReport};
use gennaker_engine::{StageRegistry, Task, TaskContext, TaskError, TaskResult, truthy};
use serde_json::{Map, Value, json};

use super::wait::failing_pod;
use super::{account, authorize};
use crate::cluster::{Account, Cascade, DeleteOptions, KubernetesAccounts, PatchBody, Resolved};
use crate::error::KubeError;
use crate::manifest::{MONIKER_APPLICATION, MONIKER_CLUSTER, annotation, kind_key};
use crate::status::{Stability, stability};
use crate::traffic::{
    MAX_SCALE_DOWN_DELAY_SECONDS, MAX_SERVICES, Moved, TrafficError, attach, has_pods,
    load_balancers, preview_load_balancers, promotion, relabel, scale_down_delay, selectors,
    service_name, set_load_balancers, set_preview_load_balancers, set_scale_down_delay,
    set_traffic,
};

/// The task acting on the older versions after a deploy with a strategy.
pub(super) const STRATEGY: &str = "applyTrafficStrategy";

/// Where the decided actions are recorded.
const PLAN: &str = "trafficPlan";

/// How often a promotion looks again for the new version's pods to be Ready.
pub(super) const POLL: Duration = Duration::from_secs(2);

/// The strategies Spinnaker's Deck stores.
const STRATEGIES: &[&str] = &["redblack", "bluegreen", "highlander", "none"];

pub(super) fn register(registry: &mut StageRegistry, accounts: &Arc<KubernetesAccounts>) {
    registry.task(StrategyTask {
        accounts: accounts.clone(),
    });
}

/// Save-time rules of `trafficManagement`.
pub(super) fn check(stage: &Fields<'_>, report: &mut ValidationReport) {
    let Some(traffic) = stage.object("trafficManagement", report) else {
        return;
    };
    let enabled = traffic.boolean("enabled", report) == Some(true);
    let Some(options) = traffic.object("options", report) else {
        if enabled {
            report.push(Problem::error(
                traffic.at("options"),
                "traffic management is enabled but has no options: name the Services in options.services",
            ));
        }
        return;
    };
    // Deck stores unset options as null.
    let set = |key: &str| options.get(key).is_some_and(|v| !v.is_null());
    if set("enableTraffic") {
        options.boolean("enableTraffic", report);
    }
    if set("namespace") {
        options.string("namespace", report);
    }
    if set("strategy") {
        options.one_of("strategy", STRATEGIES, report);
    }
    let services = if set("services") {
        options.strings("services", report)
    } else {
        Vec::new()
    };
    for (i, text) in &services {
        if !text.contains("${")
            && let Err(why) = service_name(text)
        {
            report.push(Problem::error(options.at("services").index(*i), why));
        }
    }
    if enabled && services.is_empty() {
        report.push(
            Problem::error(
                options.at("services"),
                "traffic management is enabled but names no Service",
            )
            .with_hint("\"services\": [\"service my-svc\"]"),
        );
    }
    if services.len() > MAX_SERVICES {
        report.push(Problem::error(
            options.at("services"),
            format!("at most {MAX_SERVICES} Services"),
        ));
    }
    if set("previewServices") {
        let strategy = options.get("strategy").and_then(Value::as_str);
        check_preview(&options, enabled, strategy, &services, report);
    }
    if set("scaleDownDelaySeconds") {
        check_scale_down_delay(&options, report);
    }
}

/// Save-time rules of `scaleDownDelaySeconds`: seconds, bounded, and only beside
/// preview Services (only a promotion scales the older versions down).
fn check_scale_down_delay(options: &Fields<'_>, report: &mut ValidationReport) {
    let at = options.at("scaleDownDelaySeconds");
    if let Some(seconds) = options.non_negative("scaleDownDelaySeconds", report)
        && seconds > MAX_SCALE_DOWN_DELAY_SECONDS
    {
        report.push(Problem::error(
            at.clone(),
            format!(
                "scaleDownDelaySeconds is {seconds}; at most {MAX_SCALE_DOWN_DELAY_SECONDS} (a day)"
            ),
        ));
    }
    let previewed = options
        .get("previewServices")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if !previewed {
        report.push(
            Problem::error(
                at,
                "scaleDownDelaySeconds scales down the older versions after a blue/green promotion, and there is none without previewServices",
            )
            .with_hint("add \"previewServices\": [\"service my-svc-preview\"] with strategy \"bluegreen\", or remove scaleDownDelaySeconds"),
        );
    }
}

/// Save-time rules of `previewServices`: Services, none of them active, only with
/// traffic management enabled and the `bluegreen` strategy.
fn check_preview(
    options: &Fields<'_>,
    enabled: bool,
    strategy: Option<&str>,
    services: &[(usize, &str)],
    report: &mut ValidationReport,
) {
    let preview = options.strings("previewServices", report);
    if preview.is_empty() {
        return;
    }
    if !enabled {
        report.push(
            Problem::error(
                options.at("previewServices"),
                "preview Services need traffic management: it is disabled",
            )
            .with_hint("set trafficManagement.enabled to true, or remove previewServices"),
        );
    }
    if strategy.is_none_or(|s| s != "bluegreen" && !s.contains("${")) {
        report.push(
            Problem::error(
                options.at("previewServices"),
                format!(
                    "preview Services are part of the blue/green strategy, not of '{}'",
                    strategy.unwrap_or("none")
                ),
            )
            .with_hint("set options.strategy to \"bluegreen\", or remove previewServices"),
        );
    }
    if preview.len() > MAX_SERVICES {
        report.push(Problem::error(
            options.at("previewServices"),
            format!("at most {MAX_SERVICES} preview Services"),
        ));
    }
    for (i, text) in &preview {
        if text.contains("${") {
            continue;
        }
        let at = options.at("previewServices").index(*i);
        match service_name(text) {
            Err(why) => report.push(Problem::error(at, why)),
            Ok(name) => {
                if services
                    .iter()
                    .any(|(_, s)| service_name(s).is_ok_and(|s| s == name))
                {
                    report.push(Problem::error(
                        at,
                        format!(
                            "service {name} is both an active and a preview Service: the preview shows the new version before the active Services move to it; name another Service"
                        ),
                    ));
                }
            }
        }
    }
}

/// Whether a deploy stage acts on older versions after it is stable.
pub(super) fn wants_strategy(context: &Map<String, Value>) -> bool {
    let traffic = context.get("trafficManagement");
    let strategy = traffic
        .and_then(|t| t.pointer("/options/strategy"))
        .and_then(Value::as_str);
    truthy(traffic.and_then(|t| t.get("enabled")))
        && strategy.is_some_and(|s| matches!(s, "redblack" | "bluegreen" | "highlander"))
        && (truthy(traffic.and_then(|t| t.pointer("/options/enableTraffic")))
            || (strategy == Some("bluegreen")
                && !stage_list(context, "previewServices").is_empty()))
}

/// A list of Services of the stage's `trafficManagement.options`.
fn stage_list(context: &Map<String, Value>, key: &str) -> Vec<String> {
    context
        .get("trafficManagement")
        .and_then(|t| t.get("options"))
        .and_then(|o| o.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// What a deploy stage's `trafficManagement` asks of each manifest.
pub(super) struct TrafficOptions {
    /// The Services written into ReplicaSets' annotation (empty when disabled).
    services: Vec<String>,
    /// Whether the workloads' pods get the Services' selector labels.
    enable_traffic: bool,
    /// The blue/green preview Services: a new ReplicaSet joins only these.
    preview: Vec<String>,
    /// `scaleDownDelaySeconds`, written into a previewed ReplicaSet's annotation.
    scale_down_delay: Option<u64>,
}

impl TrafficOptions {
    /// Reads the stage's `trafficManagement` (disabled: Orca's `enableTraffic: true`,
    /// so a manifest's own annotation still puts it behind its Services);
    /// `has_replica_set` says whether the stage deploys one.
    pub(super) fn of(ctx: &TaskContext<'_>, has_replica_set: bool) -> Result<Self, TaskError> {
        let traffic = ctx.stage.context.get("trafficManagement");
        if !truthy(traffic.and_then(|t| t.get("enabled"))) {
            return Ok(Self {
                services: Vec::new(),
                enable_traffic: true,
                preview: Vec::new(),
                scale_down_delay: None,
            });
        }
        let options = traffic.and_then(|t| t.get("options"));
        let services = stage_list(&ctx.stage.context, "services");
        let preview = stage_list(&ctx.stage.context, "previewServices");
        let stage = &ctx.stage.name;
        let strategy = options
            .and_then(|o| o.get("strategy"))
            .and_then(Value::as_str);
        if !preview.is_empty() && strategy != Some("bluegreen") {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' field \"trafficManagement.options.previewServices\": preview Services are part of the blue/green strategy; set options.strategy to \"bluegreen\" or remove previewServices"
            )));
        }
        if services.is_empty() {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' field \"trafficManagement.options.services\": traffic management is enabled but names no Service; add \"service <name>\""
            )));
        }
        if !has_replica_set {
            return Err(TaskError::Permanent(format!(
                "stage '{stage}' field \"trafficManagement\": traffic management (services and strategies) applies to ReplicaSets, and the stage deploys none; deploy a ReplicaSet, or disable traffic management and let the Deployment's own rollout move traffic"
            )));
        }
        let scale_down_delay = match options.and_then(|o| o.get("scaleDownDelaySeconds")) {
            None | Some(Value::Null) => None,
            Some(value) => match gennaker_core::lenient::value_as_u64(value) {
                Some(seconds) if seconds <= MAX_SCALE_DOWN_DELAY_SECONDS && !preview.is_empty() => {
                    Some(seconds)
                }
                _ => {
                    return Err(TaskError::Permanent(format!(
                        "stage '{stage}' field \"trafficManagement.options.scaleDownDelaySeconds\" is {value}: it must be a whole number of seconds from 0 to {MAX_SCALE_DOWN_DELAY_SECONDS}, beside previewServices"
                    )));
                }
            },
        };
        Ok(Self {
            services,
            enable_traffic: truthy(options.and_then(|o| o.get("enableTraffic"))),
            preview,
            scale_down_delay,
        })
    }

    /// Writes the Services into a ReplicaSet's annotation and, with traffic enabled,
    /// the Services' selectors into the pod labels of any workload whose annotation
    /// names Services (the Services must exist: ones in this stage were applied
    /// before the workloads).
    pub(super) async fn attach(
        &self,
        account: &Account,
        manifest: &mut Value,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(), TrafficError> {
        if !has_pods(kind) {
            return Ok(());
        }
        if kind == "ReplicaSet" && !self.services.is_empty() {
            set_load_balancers(manifest, &self.services).map_err(TrafficError::Invalid)?;
        }
        if kind == "ReplicaSet" {
            set_preview_load_balancers(manifest, &self.preview).map_err(TrafficError::Invalid)?;
        }
        if kind == "ReplicaSet"
            && let Some(seconds) = self.scale_down_delay
        {
            set_scale_down_delay(manifest, seconds);
        }
        if kind == "ReplicaSet" && !self.preview.is_empty() {
            // Blue/green with a preview: the new pods join only the preview Services;
            // the active ones move at promotion.
            for (name, selector) in selectors(account, namespace, &self.preview).await? {
                attach(manifest, kind, &name, &selector).map_err(TrafficError::Invalid)?;
            }
            return Ok(());
        }
        let services = load_balancers(manifest).map_err(TrafficError::Invalid)?;
        if services.is_empty() || !self.enable_traffic {
            return Ok(());
        }
        for (name, selector) in selectors(account, namespace, &services).await? {
            attach(manifest, kind, &name, &selector).map_err(TrafficError::Invalid)?;
        }
        Ok(())
    }
}

struct StrategyTask {
    accounts: Arc<KubernetesAccounts>,
}

/// What is done to one version: a new one promoted, an older one taken out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Step {
    /// `replicaSet web-v001`.
    #[serde(rename = "manifestName")]
    manifest_name: String,
    /// Its namespace.
    location: String,
    /// Take it out of its Services.
    disable: bool,
    /// Delete it.
    delete: bool,
    /// Promote it (a new blue/green version): active Services on, preview off.
    #[serde(default)]
    promote: bool,
    /// Take it out of the stage's preview Services.
    #[serde(default, rename = "leavePreview")]
    leave_preview: bool,
}

#[async_trait]
impl Task for StrategyTask {
    fn name(&self) -> &'static str {
        STRATEGY
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let account = account(&self.accounts, ctx)?;
        let Some(recorded) = ctx.stage.context.get(PLAN) else {
            let plan = plan(ctx, &account).await?;
            // Recorded before anything is done, so a repeat acts on these versions.
            return Ok(TaskResult::running_after(Duration::ZERO).with_context(PLAN, json!(plan)));
        };
        let plan: Vec<Step> = serde_json::from_value(recorded.clone()).map_err(|err| {
            TaskError::Permanent(format!(
                "stage '{}' has an unreadable {PLAN}: {err}",
                ctx.stage.name
            ))
        })?;
        let kind = account.resolve("apps/v1", "ReplicaSet").await?;
        if let Some(result) = scaling_down(ctx, &account, &kind, &plan).await? {
            return Ok(result);
        }
        if let Some(waiting) = waiting_for_promotion(ctx, &account, &kind, &plan).await? {
            return Ok(TaskResult::running_after(POLL).with_context("waitingFor", json!([waiting])));
        }
        let context = &ctx.stage.context;
        let services = stage_list(context, "services");
        let preview = stage_list(context, "previewServices");
        let done = apply(ctx, &account, &kind, &plan, &services, &preview).await?;
        Ok(applied(ctx, done))
    }
}

/// Why a version `plan` promotes is not ready for it yet (`None`: all are). One
/// scaled to 0 is refused (it would never have a pod to serve). A version
/// with a failing pod (Failed, CrashLoopBackOff, ImagePullBackOff…) fails the task at
/// once with the pod's reason and events, as `waitForManifestToStabilize` does, and
/// nothing moves: the active Services stay on the current version.
pub(super) async fn waiting_for_promotion(
    ctx: &TaskContext<'_>,
    account: &Account,
    kind: &Resolved,
    plan: &[Step],
) -> Result<Option<String>, TaskError> {
    for step in plan.iter().filter(|s| s.promote) {
        let ns = Some(step.location.as_str());
        let Some(live) = account.get(kind, ns, step.name()).await? else {
            return Err(TaskError::Permanent(format!(
                "stage '{}' cannot promote {}: it is gone",
                ctx.stage.name, step.manifest_name
            )));
        };
        if scaled_to_zero(&live) {
            return Err(TaskError::Permanent(format!(
                "stage '{}' cannot promote {} in namespace '{}': {SCALED_TO_ZERO}; the active Services stay on the current version",
                ctx.stage.name, step.manifest_name, step.location
            )));
        }
        if let Some(failure) = failing_pod(account, "ReplicaSet", &live, ns).await? {
            return Err(TaskError::Permanent(format!(
                "stage '{}' cannot promote {} in namespace '{}': it will not become ready: {failure}; the active Services stay on the current version (fix the version and deploy again, or disable it)",
                ctx.stage.name, step.manifest_name, step.location
            )));
        }
        if let Some(waiting) = not_ready(&step.manifest_name, &live) {
            return Ok(Some(waiting));
        }
    }
    Ok(None)
}

/// What a plan did.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Applied {
    promoted: Vec<String>,
    disabled: Vec<String>,
    deleted: Vec<String>,
    #[serde(rename = "relabelledPods")]
    relabelled_pods: Vec<String>,
    #[serde(default, rename = "scaledDown")]
    scaled_down: Vec<String>,
    /// The promoted version's `scaleDownDelaySeconds`.
    #[serde(skip)]
    scale_down_delay: Option<u64>,
}

/// Where a promotion waiting to scale the older versions down records when (engine
/// time, milliseconds), so a restart resumes the wait rather than starting it again.
const SCALE_DOWN_AT: &str = "scaleDownAt";

/// Where that promotion records its delay (the task's timeout grows by it).
const SCALE_DOWN_DELAY_SECONDS: &str = "scaleDownDelaySeconds";

/// Where that promotion records what it did before the wait.
const APPLIED: &str = "trafficApplied";

/// How much longer than its own timeout a promotion task may run: the scale-down
/// delay it recorded.
pub(super) fn scale_down_wait(stage: &gennaker_engine::StageExecution) -> Duration {
    Duration::from_secs(
        stage
            .context
            .get(SCALE_DOWN_DELAY_SECONDS)
            .and_then(Value::as_u64)
            .unwrap_or(0),
    )
}

/// The task's result once `done` is applied: its success, or, when the promoted
/// version has a scale-down delay and older versions were disabled, the recorded
/// time to scale them to 0 and a wait for it ([`scaling_down`] goes on from there).
pub(super) fn applied(ctx: &TaskContext<'_>, done: Applied) -> TaskResult {
    let Some(seconds) = done.scale_down_delay.filter(|_| !done.disabled.is_empty()) else {
        return done.result();
    };
    let millis = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    TaskResult::running_after(Duration::from_secs(seconds))
        .with_context(APPLIED, json!(done))
        .with_context(SCALE_DOWN_DELAY_SECONDS, json!(seconds))
        .with_context(SCALE_DOWN_AT, json!(ctx.now.saturating_add(millis)))
}

/// `None` unless the promotion already applied its plan and waits to scale down;
/// then: still waiting, or the older versions the plan disabled scaled to 0 (each
/// only when it is not already) and the task's success.
pub(super) async fn scaling_down(
    ctx: &TaskContext<'_>,
    account: &Account,
    kind: &Resolved,
    plan: &[Step],
) -> Result<Option<TaskResult>, TaskError> {
    let Some(at) = ctx.stage.context.get(SCALE_DOWN_AT).and_then(Value::as_i64) else {
        return Ok(None);
    };
    if ctx.now < at {
        let left = u64::try_from(at - ctx.now).unwrap_or(0);
        return Ok(Some(TaskResult::running_after(Duration::from_millis(left))));
    }
    let recorded = ctx.stage.context.get(APPLIED).cloned().unwrap_or_default();
    let mut done: Applied = serde_json::from_value(recorded).map_err(|err| {
        TaskError::Permanent(format!(
            "stage '{}' has an unreadable {APPLIED}: {err}",
            ctx.stage.name
        ))
    })?;
    for step in plan.iter().filter(|s| s.disable) {
        let ns = Some(step.location.as_str());
        let Some(live) = account.get(kind, ns, step.name()).await? else {
            continue;
        };
        authorize(ctx, account, ns, &step.manifest_name, Some(&live)).await?;
        if live.pointer("/spec/replicas").and_then(Value::as_i64) != Some(0) {
            let body = PatchBody::Merge(json!({"spec": {"replicas": 0}}));
            match account.patch(kind, ns, step.name(), body).await {
                // Deleted meanwhile: nothing left to scale down.
                Err(KubeError::Refused { code: 404, .. }) | Ok(_) => {}
                Err(err) => return Err(err.into()),
            }
        }
        tracing::info!(
            execution = %ctx.execution.id,
            stage = %ctx.stage.name,
            resource = %step.manifest_name,
            "older blue/green version scaled down"
        );
        done.scaled_down.push(step.manifest_name.clone());
    }
    Ok(Some(done.result()))
}

impl Applied {
    /// The task's success, with what was promoted, disabled and deleted.
    pub(super) fn result(self) -> TaskResult {
        let mut result = TaskResult::succeeded();
        if !self.promoted.is_empty() {
            result = result
                .with_context("outputs.promotedManifests", json!(self.promoted))
                .with_output("promotedManifests", json!(self.promoted))
                .with_context("relabelledPods", json!(self.relabelled_pods));
        }
        if !self.scaled_down.is_empty() {
            result = result
                .with_context("outputs.scaledDownManifests", json!(self.scaled_down))
                .with_output("scaledDownManifests", json!(self.scaled_down));
        }
        result
            .with_context("outputs.disabledManifests", json!(self.disabled))
            .with_context("outputs.deletedManifests", json!(self.deleted))
            .with_output("disabledManifests", json!(self.disabled))
            .with_output("deletedManifests", json!(self.deleted))
    }
}

impl Step {
    /// `web-v001` of `replicaSet web-v001`.
    fn name(&self) -> &str {
        self.manifest_name
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
    }
}

/// Why no traffic may move to a workload scaled to 0: "every pod Ready" holds at 0
/// pods, and the active Services would then select none.
pub(crate) const SCALED_TO_ZERO: &str = "it is scaled to 0 replicas, so the active Services would select no pod; scale it up first (scaleManifest, or resize the server group), then enable it once its pods are Ready";

/// Whether the workload `live` wants no pod at all (`spec.replicas: 0`).
pub(crate) fn scaled_to_zero(live: &Value) -> bool {
    live.pointer("/spec/replicas").and_then(Value::as_i64) == Some(0)
}

/// `Some(why)` when enabling the workload `live` of `kind` would put its Services
/// on no Ready pod of it: it is scaled to 0 ([`SCALED_TO_ZERO`]), or none of its
/// pods is Ready. A rollback enables the old version and then disables the new
/// one, so such an enable would leave the Services with nothing to serve. Kinds
/// without `spec.replicas` (DaemonSets, Pods) are not judged.
pub(crate) fn no_ready_pod(kind: &str, live: &Value) -> Option<String> {
    if !matches!(kind, "ReplicaSet" | "Deployment" | "StatefulSet") {
        return None;
    }
    if scaled_to_zero(live) {
        return Some(SCALED_TO_ZERO.to_owned());
    }
    let desired = live
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = live
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (ready == 0).then(|| {
        format!(
            "none of its {desired} pods is Ready, so the Services would select no pod of it; wait until they are (e.g. waitForManifestToStabilize after scaling it up), then enable it"
        )
    })
}

/// `Some(why)` while a blue/green version is not ready to be promoted: the active
/// Services move to it only once every pod it wants is Ready and available. Counted
/// from its status rather than by [`stability`], which also wants every pod to carry
/// the template's labels: a promotion that crashed between relabelling the template
/// and its pods must still go on.
pub(crate) fn not_ready(name: &str, live: &Value) -> Option<String> {
    let count = |p: &str| live.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let desired = live
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = count("/status/readyReplicas");
    let available = count("/status/availableReplicas");
    (ready < desired || available < desired).then(|| {
        format!(
            "{name}: {ready} of {desired} pods Ready, {available} available (the active Services move to it once all are)"
        )
    })
}

/// Does the recorded `plan`: promotions first (traffic moves before anything is
/// taken out of it), then the older versions, in order; every step is idempotent.
/// `services` are the Services an older version leaves when it lists none itself,
/// `preview` the ones `leavePreview` steps leave.
pub(super) async fn apply(
    ctx: &TaskContext<'_>,
    account: &Account,
    kind: &Resolved,
    plan: &[Step],
    services: &[String],
    preview: &[String],
) -> Result<Applied, TaskError> {
    let mut done = Applied::default();
    let ordered = plan
        .iter()
        .filter(|s| s.promote)
        .chain(plan.iter().filter(|s| !s.promote));
    for step in ordered {
        let ns = Some(step.location.as_str());
        let Some(live) = account.get(kind, ns, step.name()).await? else {
            continue;
        };
        authorize(ctx, account, ns, &step.manifest_name, Some(&live)).await?;
        let error = |err| traffic_error(ctx, &step.manifest_name, err);
        if step.promote {
            let moved = promote(account, kind, ns, &live, services)
                .await
                .map_err(error)?;
            done.relabelled_pods.extend(moved.pods);
            done.promoted.push(step.manifest_name.clone());
            let delay = scale_down_delay(&live).map_err(|why| {
                traffic_error(ctx, &step.manifest_name, TrafficError::Invalid(why))
            })?;
            done.scale_down_delay = done.scale_down_delay.max(delay);
        }
        if step.leave_preview && !preview.is_empty() {
            let found = selectors(account, ns, preview).await.map_err(error)?;
            set_traffic(account, kind, ns, &live, &found, false)
                .await
                .map_err(error)?;
        }
        if step.disable {
            let mut listed = load_balancers(&live).unwrap_or_default();
            if listed.is_empty() {
                listed = services.to_vec();
            }
            let found = selectors(account, ns, &listed).await.map_err(error)?;
            set_traffic(account, kind, ns, &live, &found, false)
                .await
                .map_err(error)?;
            done.disabled.push(step.manifest_name.clone());
        }
        if step.delete {
            let options = DeleteOptions {
                cascade: Cascade::Background,
                grace_period_seconds: None,
            };
            account.delete(kind, ns, step.name(), &options).await?;
            done.deleted.push(step.manifest_name.clone());
        }
        tracing::info!(
            execution = %ctx.execution.id,
            stage = %ctx.stage.name,
            resource = %step.manifest_name,
            promote = step.promote,
            leave_preview = step.leave_preview,
            disable = step.disable,
            delete = step.delete,
            "traffic strategy step done"
        );
    }
    Ok(done)
}

/// Promotes a blue/green version (live): into the active Services (`services`, else
/// the ones its annotation lists) and out of its preview ones, in one patch of its
/// template and one of each of its pods.
pub(crate) async fn promote(
    account: &Account,
    kind: &Resolved,
    namespace: Option<&str>,
    live: &Value,
    services: &[String],
) -> Result<Moved, TrafficError> {
    let active = if services.is_empty() {
        load_balancers(live).map_err(TrafficError::Invalid)?
    } else {
        services.to_vec()
    };
    let preview = preview_load_balancers(live).map_err(TrafficError::Invalid)?;
    let active = selectors(account, namespace, &active).await?;
    let preview = selectors(account, namespace, &preview).await?;
    relabel(
        account,
        kind,
        namespace,
        live,
        &promotion(&active, &preview),
    )
    .await
}

fn traffic_error(ctx: &TaskContext<'_>, target: &str, err: TrafficError) -> TaskError {
    match err {
        TrafficError::Kube(err) => err.into(),
        TrafficError::Invalid(why) => TaskError::Permanent(format!(
            "stage '{}' cannot take {target} out of traffic: {why}",
            ctx.stage.name
        )),
    }
}

/// What a plan does to the older versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Older {
    /// Disable them (one that never served is deleted): red/black, blue/green.
    Disable,
    /// Disable and delete them: highlander.
    DisableAndDelete,
    /// Take them out of the preview Services only: a new blue/green version waiting
    /// for its promotion.
    LeavePreview,
}

/// The deploy's plan: for every ReplicaSet it applied, what its strategy does.
async fn plan(ctx: &TaskContext<'_>, account: &Account) -> Result<Vec<Step>, TaskError> {
    let context = &ctx.stage.context;
    let strategy = context
        .get("trafficManagement")
        .and_then(|t| t.pointer("/options/strategy"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let preview = strategy == "bluegreen" && !stage_list(context, "previewServices").is_empty();
    let automatic = truthy(
        context
            .get("trafficManagement")
            .and_then(|t| t.pointer("/options/enableTraffic")),
    );
    let deployed: Vec<&Value> = context
        .get("outputs.manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("kind").and_then(Value::as_str) == Some("ReplicaSet"))
        .collect();
    let older = match strategy {
        "highlander" => Older::DisableAndDelete,
        _ if preview && !automatic => Older::LeavePreview,
        _ => Older::Disable,
    };
    versions_plan(account, &deployed, preview && automatic, older).await
}

/// For the ReplicaSets `new` (promoted first when `promote`), the other live
/// ReplicaSets of their application and cluster, and what is done to each.
pub(super) async fn versions_plan(
    account: &Account,
    new: &[&Value],
    promote: bool,
    older: Older,
) -> Result<Vec<Step>, TaskError> {
    let name_of = |o: &Value| {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let namespace_of = |o: &Value| {
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let new_names: Vec<(String, String)> =
        new.iter().map(|m| (namespace_of(m), name_of(m))).collect();
    let kind = account.resolve("apps/v1", "ReplicaSet").await?;
    let mut steps: Vec<Step> = Vec::new();
    for new in new {
        let namespace = namespace_of(new);
        let (Some(application), Some(cluster)) = (
            annotation(new, MONIKER_APPLICATION),
            annotation(new, MONIKER_CLUSTER),
        ) else {
            continue;
        };
        for old in account.list(&kind, Some(&namespace), "").await? {
            let name = name_of(&old);
            if new_names.contains(&(namespace.clone(), name.clone()))
                || old.pointer("/metadata/deletionTimestamp").is_some()
                || annotation(&old, MONIKER_APPLICATION) != Some(application)
                || annotation(&old, MONIKER_CLUSTER) != Some(cluster)
            {
                continue;
            }
            let manifest_name = format!("{} {name}", kind_key("ReplicaSet"));
            if steps
                .iter()
                .any(|s| s.manifest_name == manifest_name && s.location == namespace)
            {
                continue;
            }
            let (disable, delete, leave_preview) = match older {
                Older::DisableAndDelete => (true, true, false),
                Older::LeavePreview => (false, false, true),
                Older::Disable if never_ready(&old) => (false, true, false),
                Older::Disable => (true, false, false),
            };
            steps.push(Step {
                manifest_name,
                location: namespace.clone(),
                disable,
                delete,
                promote: false,
                leave_preview,
            });
        }
    }
    steps.sort_by(|a, b| a.manifest_name.cmp(&b.manifest_name));
    if promote {
        let promoted = new.iter().map(|m| Step {
            manifest_name: format!("{} {}", kind_key("ReplicaSet"), name_of(m)),
            location: namespace_of(m),
            disable: false,
            delete: false,
            promote: true,
            leave_preview: false,
        });
        steps.splice(0..0, promoted);
    }
    Ok(steps)
}

/// Orca's rule for red/black: an older ReplicaSet neither stable nor failed with no
/// ready or available replica never served; it is deleted, not kept disabled.
fn never_ready(rs: &Value) -> bool {
    let unsettled = matches!(stability("ReplicaSet", rs), Stability::Unstable(_));
    let count = |p: &str| rs.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    unsettled && count("/status/readyReplicas") == 0 && count("/status/availableReplicas") == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_runs_only_when_traffic_is_enabled_and_moved() {
        let context = |enabled: bool, enable_traffic: bool, strategy: &str| {
            json!({"trafficManagement": {"enabled": enabled, "options": {
                "enableTraffic": enable_traffic, "services": ["service web"], "strategy": strategy}}})
            .as_object()
            .unwrap()
            .clone()
        };
        assert!(wants_strategy(&context(true, true, "redblack")));
        assert!(wants_strategy(&context(true, true, "highlander")));
        assert!(!wants_strategy(&context(true, true, "none")));
        assert!(!wants_strategy(&context(false, true, "redblack")));
        assert!(
            !wants_strategy(&context(true, false, "redblack")),
            "a dark deploy does not take traffic from the old version"
        );
    }

    #[test]
    fn decks_defaults_save_cleanly_and_enabled_traffic_needs_services() {
        let report = |traffic: Value| {
            let stage = json!({"trafficManagement": traffic});
            let mut report = ValidationReport::default();
            check(
                &Fields::new(stage.as_object().unwrap(), gennaker_core::JsonPath::root()),
                &mut report,
            );
            report
        };
        let defaults = report(json!({"enabled": false, "options": {
            "namespace": null, "services": [], "enableTraffic": false, "strategy": null}}));
        assert!(defaults.problems.is_empty(), "{:?}", defaults.problems);
        let empty =
            report(json!({"enabled": true, "options": {"services": [], "strategy": "redblack"}}));
        assert!(
            empty
                .problems
                .iter()
                .any(|p| p.message.contains("names no Service")),
            "{:?}",
            empty.problems
        );
        let bad = report(json!({"enabled": true, "options": {
            "services": ["deployment web"], "strategy": "canary"}}));
        assert_eq!(bad.problems.len(), 2, "{:?}", bad.problems);
    }

    fn problems(traffic: Value) -> Vec<(String, String)> {
        let stage = json!({"trafficManagement": traffic});
        let mut report = ValidationReport::default();
        check(
            &Fields::new(stage.as_object().unwrap(), gennaker_core::JsonPath::root()),
            &mut report,
        );
        report
            .problems
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    fn blue_green(enabled: bool, strategy: &str, services: Value, preview: Value) -> Value {
        json!({"enabled": enabled, "options": {"enableTraffic": false, "services": services,
            "strategy": strategy, "previewServices": preview}})
    }

    #[test]
    fn a_scale_down_delay_is_bounded_and_needs_preview_services_at_save_time() {
        let with_delay = |preview: Value, delay: Value| {
            let mut traffic = blue_green(true, "bluegreen", json!(["service web"]), preview);
            traffic["options"]["scaleDownDelaySeconds"] = delay;
            problems(traffic)
        };
        let preview = json!(["service web-preview"]);
        assert_eq!(with_delay(preview.clone(), json!(30)), []);
        assert_eq!(with_delay(preview.clone(), json!("${delay}")), []);
        assert_eq!(with_delay(json!([]), json!(null)), [], "Deck's unset value");
        let at = "$.trafficManagement.options.scaleDownDelaySeconds";
        for bad in [
            json!(-1),
            json!("soon"),
            json!(MAX_SCALE_DOWN_DELAY_SECONDS + 1),
        ] {
            let found = with_delay(preview.clone(), bad.clone());
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].0, at, "{bad}");
        }
        let alone = with_delay(json!([]), json!(30));
        assert_eq!(alone.len(), 1, "{alone:?}");
        assert_eq!(alone[0].0, at);
        assert!(alone[0].1.contains("previewServices"), "{alone:?}");
    }

    #[test]
    fn preview_services_are_checked_at_save_time_with_their_json_paths() {
        let web = json!(["service web"]);
        assert_eq!(
            problems(blue_green(
                true,
                "bluegreen",
                web.clone(),
                json!(["service web-preview"])
            )),
            [],
        );
        assert_eq!(
            problems(blue_green(true, "bluegreen", web.clone(), json!([]))),
            [],
            "an empty preview is no preview"
        );
        let at = "$.trafficManagement.options.previewServices";
        let wrong = problems(blue_green(
            true,
            "redblack",
            web.clone(),
            json!(["service p"]),
        ));
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert_eq!(wrong[0].0, at);
        assert!(wrong[0].1.contains("blue/green"), "{wrong:?}");
        let off = problems(blue_green(
            false,
            "bluegreen",
            json!([]),
            json!(["service p"]),
        ));
        assert_eq!(off.len(), 1, "{off:?}");
        assert_eq!(off[0].0, at);
        assert!(off[0].1.contains("disabled"), "{off:?}");
        let bad = problems(blue_green(
            true,
            "bluegreen",
            web,
            json!(["service web-preview", "deployment web", "service web", 3]),
        ));
        let paths: Vec<&str> = bad.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.trafficManagement.options.previewServices[3]",
                "$.trafficManagement.options.previewServices[1]",
                "$.trafficManagement.options.previewServices[2]",
            ],
            "{bad:?}"
        );
        assert!(bad[2].1.contains("both an active and a preview"), "{bad:?}");
        let many: Vec<String> = (0..=MAX_SERVICES)
            .map(|i| format!("service p{i}"))
            .collect();
        let too_many = problems(blue_green(
            true,
            "bluegreen",
            json!(["service web"]),
            json!(many),
        ));
        assert_eq!(too_many.len(), 1, "{too_many:?}");
        assert_eq!(too_many[0].0, at);
    }

    #[test]
    fn a_preview_runs_the_strategy_even_without_enable_traffic() {
        let context = |strategy: &str, preview: Value| {
            blue_green(true, strategy, json!(["service web"]), preview)
        };
        let wants = |traffic: Value| {
            wants_strategy(json!({"trafficManagement": traffic}).as_object().unwrap())
        };
        assert!(wants(context("bluegreen", json!(["service web-preview"]))));
        assert!(
            !wants(context("bluegreen", json!([]))),
            "blue/green without a preview is red/black: a dark deploy moves nothing"
        );
        assert!(!wants(context("redblack", json!(["service web-preview"]))));
    }

    #[test]
    fn a_version_is_promoted_only_once_all_its_pods_are_ready_and_available() {
        let rs = |ready: i64, available: i64| {
            json!({"spec": {"replicas": 2}, "status": {"replicas": 2,
                "readyReplicas": ready, "availableReplicas": available}})
        };
        assert_eq!(not_ready("replicaSet web-v001", &rs(2, 2)), None);
        let why = not_ready("replicaSet web-v001", &rs(1, 2)).unwrap();
        assert!(why.contains("1 of 2 pods Ready"), "{why}");
        assert!(not_ready("replicaSet web-v001", &rs(2, 1)).is_some());
    }

    #[test]
    fn traffic_never_moves_to_a_version_scaled_to_0_or_with_no_ready_pod() {
        let rs = |replicas: i64, ready: i64| {
            json!({"spec": {"replicas": replicas}, "status": {"replicas": replicas,
                "readyReplicas": ready, "availableReplicas": ready}})
        };
        let zero = rs(0, 0);
        assert_eq!(
            not_ready("replicaSet web-v000", &zero),
            None,
            "all of 0 pods are Ready: why a promotion must check"
        );
        assert!(scaled_to_zero(&zero));
        assert!(!scaled_to_zero(&rs(2, 0)));
        assert!(!scaled_to_zero(&json!({"spec": {}})), "unset is 1");
        let why = no_ready_pod("ReplicaSet", &zero).unwrap();
        assert!(
            why.contains("scaled to 0") && why.contains("scale it up first"),
            "{why}"
        );
        let why = no_ready_pod("Deployment", &rs(2, 0)).unwrap();
        assert!(why.contains("none of its 2 pods is Ready"), "{why}");
        assert_eq!(no_ready_pod("StatefulSet", &rs(2, 1)), None);
        assert_eq!(no_ready_pod("DaemonSet", &json!({"status": {}})), None);
    }

    #[test]
    fn plans_recorded_before_blue_green_read_back_unchanged() {
        let stored = json!([{"manifestName": "replicaSet web-v000", "location": "shop",
                             "disable": true, "delete": false}]);
        let plan: Vec<Step> = serde_json::from_value(stored).unwrap();
        assert!(!plan[0].promote && !plan[0].leave_preview && plan[0].disable);
    }

    #[test]
    fn only_an_older_version_that_never_served_is_deleted_by_red_black() {
        let never = json!({"spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 0}});
        let serving = json!({"spec": {"replicas": 2}, "metadata": {"generation": 1},
            "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                       "availableReplicas": 2, "observedGeneration": 1}});
        let scaled_down = json!({"spec": {"replicas": 0}, "status": {"replicas": 0}});
        assert!(never_ready(&never));
        assert!(!never_ready(&serving));
        assert!(!never_ready(&scaled_down));
    }
}
