//! `webhook`: calls an HTTP endpoint and, with `waitForCompletion`, polls a status URL
//! until the remote job reports success, cancellation or failure (Orca's orca-webhook).
//!
//! Fields, as in Spinnaker: `url`, `method` (POST), `payload`, `customHeaders`,
//! `failFastStatusCodes`, `retryStatusCodes`, `waitForCompletion`,
//! `statusUrlResolution` (`getMethod` | `locationHeader` | `webhookResponse`),
//! `statusUrlJsonPath`, `statusJsonPath`, `progressJsonPath`, `successStatuses` /
//! `canceledStatuses` / `terminalStatuses` (comma-separated, compared upper-cased),
//! `waitBeforeMonitor` (seconds) and `cancelEndpoint` / `cancelMethod` /
//! `cancelPayload`. What happened is recorded as
//! `webhook{statusCode, statusCodeValue, headers, body, error, statusEndpoint,
//! monitor{…}, cancel{…}}` in the stage's context and outputs.
//!
//! Every request carries an `Idempotency-Key` of `<executionId>:<stageId>:<restarts>`:
//! a task that runs again after a crash sends the same key (so a server that honours it
//! does the work once), while a user's restart of the stage sends a new one.
//!
//! [`preconfigured`] makes the server's `[[webhooks.preconfigured]]` entries stage types
//! of their own that run these same tasks.

mod cancel;
mod create;
mod monitor;
mod preconfigured;
mod request;
mod rules;

use async_trait::async_trait;
use gennaker_core::execution::{Execution, StageExecution};
use gennaker_core::lenient::{truthy, value_as_i64};
use gennaker_core::{CheckContext, Fields, Origin, StageTypeDescriptor, ValidationReport};
use serde_json::{Map, Value};

use crate::stage::{CancelOutcome, StageDefinition, StageRegistry, TaskSpec};
use crate::task::{Services, TaskError, TaskResult};

pub use preconfigured::{
    PreconfiguredWebhook, PreconfiguredWebhookStage, WebhookConfigError, WebhookParameter,
    preconfigured_webhook_stages, register_preconfigured,
};

/// Registers the `webhook` stage and its tasks (which preconfigured webhooks run too).
pub(in crate::stages) fn register(registry: &mut StageRegistry) {
    registry
        .stage(WebhookStage)
        .task(create::CreateWebhookTask)
        .task(monitor::MonitorWebhookTask);
}

/// The cancel call usually names the remote job (`${webhook.body.id}`), which is only
/// known once the webhook answered: these keys are evaluated when cancelling.
const DEFERRED_KEYS: &[&str] = &["cancelEndpoint", "cancelMethod", "cancelPayload"];

struct WebhookStage;

#[async_trait]
impl StageDefinition for WebhookStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            "webhook",
            Origin::Orca,
            "Webhook",
            "call an HTTP endpoint and optionally poll it until the work it started is done",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        rules::check_webhook(stage, report);
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        webhook_tasks(stage)
    }

    fn deferred_context_keys(&self) -> &'static [&'static str] {
        DEFERRED_KEYS
    }

    fn has_cancel_routine(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        services: &Services,
    ) -> Result<CancelOutcome, TaskError> {
        cancel::cancel_webhook(execution, stage, services).await
    }
}

/// The call, then the polling when the stage waits for completion.
fn webhook_tasks(stage: &StageExecution) -> Vec<TaskSpec> {
    let mut tasks = vec![TaskSpec::new("createWebhook")];
    if truthy(stage.context.get("waitForCompletion")) {
        tasks.push(TaskSpec::new("monitorWebhook"));
    }
    tasks
}

/// What the stage recorded so far under `webhook`.
fn stage_webhook(stage: &StageExecution) -> Map<String, Value> {
    match stage.context.get("webhook") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// The status code a `webhook` (or `monitor`, `cancel`) record holds.
fn recorded_code(record: &Map<String, Value>) -> Option<u16> {
    record
        .get("statusCode")
        .and_then(value_as_i64)
        .and_then(|n| u16::try_from(n).ok())
}

/// Records `webhook` in the stage's context and outputs.
fn with_webhook(result: TaskResult, webhook: Map<String, Value>) -> TaskResult {
    let webhook = Value::Object(webhook);
    result
        .with_context("webhook", webhook.clone())
        .with_output("webhook", webhook)
}
