//! The webhook's cancellation routine: `cancelEndpoint`, called when an execution is
//! canceled after the webhook started a remote job.

use reqwest::Method;
use serde_json::{Map, Value};

use super::request::{
    excerpt, idempotency_key, parse_method, parse_url, request_headers, send, shown,
};
use super::{recorded_code, stage_webhook};
use crate::stage::CancelOutcome;
use crate::task::{Services, TaskError};
use gennaker_core::execution::{Execution, StageExecution};

/// Calls `cancelEndpoint` when the webhook was called (Orca: only then is there a
/// remote job to stop). Runs again after a crash, so an answered cancel is not sent
/// twice.
pub(super) async fn cancel_webhook(
    execution: &Execution,
    stage: &StageExecution,
    services: &Services,
) -> Result<CancelOutcome, TaskError> {
    let configured = stage
        .context
        .get("cancelEndpoint")
        .and_then(Value::as_str)
        .is_some_and(|e| !e.trim().is_empty());
    let mut webhook = stage_webhook(stage);
    if !configured || recorded_code(&webhook).is_none() {
        return Ok(CancelOutcome::default());
    }
    let done = webhook
        .get("cancel")
        .and_then(Value::as_object)
        .and_then(recorded_code)
        .is_some_and(|c| (200..400).contains(&c));
    if done {
        return Ok(CancelOutcome::default());
    }
    // The cancel fields were left as written (deferred): evaluate them now that the
    // webhook's response is in the context.
    let mut fields = Map::new();
    for key in ["cancelEndpoint", "cancelMethod", "cancelPayload"] {
        if let Some(value) = stage.context.get(key) {
            fields.insert(key.to_owned(), value.clone());
        }
    }
    let root = services.expressions.stage_root(execution, stage, None);
    let transformed = services
        .expressions
        .transform(&Value::Object(fields), &root);
    if let Some(failure) = transformed.failures.iter().find(|f| f.error.is_some()) {
        return Err(TaskError::Permanent(format!(
            "the webhook's {} could not be evaluated ({}), so the remote job was not canceled",
            failure.path.trim_start_matches("$."),
            failure.message
        )));
    }
    let fields = transformed.value;
    let url =
        parse_url("cancelEndpoint", fields.get("cancelEndpoint")).map_err(TaskError::Permanent)?;
    let shown_url = shown(&url);
    let method = parse_method("cancelMethod", fields.get("cancelMethod"), Method::POST)
        .map_err(TaskError::Permanent)?;
    // Its own key: reusing the create call's key would make a server that honours
    // idempotency keys answer with the create call's stored response.
    let key = format!("{}:cancel", idempotency_key(execution, stage));
    let headers = request_headers(stage, &key).map_err(TaskError::Permanent)?;
    let payload = fields.get("cancelPayload").filter(|p| !p.is_null());
    let reply = send(services, method.clone(), &url, headers, payload)
        .await
        .map_err(|error| {
            let text = format!(
                "cancelling the remote job: {}",
                error.describe("cancelEndpoint", &method, &url)
            );
            if error.is_transient() {
                TaskError::Transient(text)
            } else {
                TaskError::Permanent(text)
            }
        })?;
    let mut record = reply.record();
    if !(200..400).contains(&reply.status) {
        record.insert(
            "error".into(),
            Value::String(format!(
                "cancel {method} {shown_url} answered {}{}",
                reply.status,
                excerpt(&reply.body)
            )),
        );
    }
    webhook.insert("cancel".into(), Value::Object(record));
    let mut context = Map::new();
    context.insert("webhook".into(), Value::Object(webhook));
    Ok(CancelOutcome {
        context,
        messages: Vec::new(),
    })
}
