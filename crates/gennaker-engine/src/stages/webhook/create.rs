//! `createWebhook`: the call itself, and where to poll afterwards.

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde_json::{Map, Value};

use super::monitor::{compile_path, select_one};
use super::request::{
    Class, Reply, classify, excerpt, idempotency_key, parse_method, parse_url, request_headers,
    send, shown, status_codes,
};
use super::{recorded_code, stage_webhook, with_webhook};
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::lenient::truthy;

/// Sends the request; with `waitForCompletion`, also resolves the status URL.
pub(super) struct CreateWebhookTask;

#[async_trait]
impl Task for CreateWebhookTask {
    fn name(&self) -> &'static str {
        "createWebhook"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let wait = truthy(ctx.stage.context.get("waitForCompletion"));
        // Our own effect first: an answered call is not made again.
        let previous = stage_webhook(ctx.stage);
        if recorded_code(&previous).is_some_and(|c| (200..400).contains(&c))
            && (!wait || ctx.str("statusEndpoint").is_some())
        {
            return Ok(TaskResult::succeeded());
        }
        let context = &ctx.stage.context;
        let url = parse_url("url", context.get("url")).map_err(TaskError::Permanent)?;
        let shown_url = shown(&url);
        let method = parse_method("method", context.get("method"), Method::POST)
            .map_err(TaskError::Permanent)?;
        let key = idempotency_key(ctx.execution, ctx.stage);
        let headers = request_headers(ctx.stage, &key).map_err(TaskError::Permanent)?;
        let payload = context.get("payload").filter(|p| !p.is_null());
        let reply = match send(ctx.services, method.clone(), &url, headers, payload).await {
            Ok(reply) => reply,
            Err(error) if error.is_transient() => {
                return Err(TaskError::Transient(format!(
                    "{}; retrying",
                    error.describe("url", &method, &url)
                )));
            }
            Err(error) => {
                return Err(TaskError::Permanent(error.describe("url", &method, &url)));
            }
        };
        let mut webhook = reply.record();
        let fail_fast = status_codes(context.get("failFastStatusCodes"));
        let retry = status_codes(context.get("retryStatusCodes"));
        let failed = |webhook: &mut Map<String, Value>, error: String| {
            webhook.insert("error".into(), Value::String(error.clone()));
            Ok(with_webhook(
                TaskResult::terminal(error),
                std::mem::take(webhook),
            ))
        };
        match classify(reply.status, &fail_fast, &retry) {
            Class::FailFast => {
                return failed(
                    &mut webhook,
                    format!(
                        "webhook {method} {shown_url} answered {}, which failFastStatusCodes lists: the stage fails without retrying{}",
                        reply.status,
                        excerpt(&reply.body)
                    ),
                );
            }
            Class::Retry => {
                // The engine retries with backoff; the key makes the repeat safe.
                return Err(TaskError::Transient(format!(
                    "webhook {method} {shown_url} answered {}{}; retrying",
                    reply.status,
                    excerpt(&reply.body)
                )));
            }
            Class::Fail => {
                return failed(
                    &mut webhook,
                    format!(
                        "webhook {method} {shown_url} answered {}{}; check the url, method, payload and customHeaders (add the code to retryStatusCodes if it is worth retrying)",
                        reply.status,
                        excerpt(&reply.body)
                    ),
                );
            }
            Class::Success => {}
        }
        if !wait {
            return Ok(with_webhook(TaskResult::succeeded(), webhook));
        }
        match status_url(ctx, &url, &reply) {
            Ok(endpoint) => {
                webhook.insert("statusEndpoint".into(), Value::String(endpoint.clone()));
                Ok(with_webhook(TaskResult::succeeded(), webhook)
                    .with_context("statusEndpoint", Value::String(endpoint)))
            }
            Err(error) => failed(
                &mut webhook,
                format!(
                    "webhook {method} {shown_url} succeeded but its status URL could not be resolved: {error}"
                ),
            ),
        }
    }

    fn max_retries(&self) -> u32 {
        // 1 s doubling to the engine's 60 s cap: about three minutes of a flaky remote.
        8
    }
}

/// Where to poll, per `statusUrlResolution` (Orca's default: the webhook's own URL).
fn status_url(ctx: &TaskContext<'_>, url: &Url, reply: &Reply) -> Result<String, String> {
    let resolution = ctx.str("statusUrlResolution").unwrap_or("getMethod");
    let resolved = if resolution.eq_ignore_ascii_case("getMethod") {
        return Ok(url.to_string());
    } else if resolution.eq_ignore_ascii_case("locationHeader") {
        reply.location.clone().ok_or_else(|| {
            format!(
                "statusUrlResolution is locationHeader but the response ({}) has no Location header; use getMethod or webhookResponse instead",
                reply.status
            )
        })?
    } else if resolution.eq_ignore_ascii_case("webhookResponse") {
        let Some(text) = ctx
            .str("statusUrlJsonPath")
            .filter(|t| !t.trim().is_empty())
        else {
            return Err(
                "statusUrlResolution is webhookResponse but statusUrlJsonPath is missing; set it to where the status URL is in the response, e.g. \"$.links.status\"".into(),
            );
        };
        let path = compile_path("statusUrlJsonPath", text)?;
        match select_one("statusUrlJsonPath", text, &path, &reply.body)? {
            Value::String(found) => found.clone(),
            other => {
                return Err(format!(
                    "statusUrlJsonPath '{text}' selected {other}, not a URL string"
                ));
            }
        }
    } else {
        return Err(format!(
            "statusUrlResolution '{resolution}' is not one of getMethod, locationHeader, webhookResponse"
        ));
    };
    // A relative Location (`/jobs/7`) is relative to the webhook's URL.
    url.join(&resolved)
        .map(|u| u.to_string())
        .map_err(|e| format!("status URL '{resolved}' is not a valid URL ({e})"))
}
