//! `monitorWebhook`: polls the status URL until `statusJsonPath` reports a final
//! status (success, terminal or canceled), recording progress on the way.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use super::request::{
    Class, classify, excerpt, idempotency_key, parse_url, request_headers, send, shown,
    status_codes,
};
use super::{stage_webhook, with_webhook};
use crate::task::{Task, TaskContext, TaskError, TaskResult, TaskStatus, exception};
use gennaker_core::execution::StageExecution;
use gennaker_core::lenient::value_as_i64;

/// Orca's MonitorWebhookTask: a remote job gets an hour unless `stageTimeoutMs` says
/// otherwise.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(3600);

/// Orca polls every second for the first minute, then every 15 seconds.
const FAST_POLL: Duration = Duration::from_secs(1);
const SLOW_POLL: Duration = Duration::from_secs(15);
const FAST_POLL_FOR_MS: i64 = 60_000;

/// A comma-separated status list, trimmed and upper-cased.
fn status_list(stage: &StageExecution, key: &str) -> Vec<String> {
    stage
        .context
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_uppercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A JSONPath as Spinnaker users write it: `$.status`, or Jayway's shorthand `status`.
pub(super) fn compile_path(field: &str, text: &str) -> Result<JsonPath, String> {
    let text = text.trim();
    let full = if text.starts_with('$') {
        text.to_owned()
    } else if text.starts_with('[') {
        format!("${text}")
    } else {
        format!("$.{text}")
    };
    JsonPath::parse(&full).map_err(|e| {
        format!("{field} '{text}' is not a valid JSONPath ({e}); write it like \"$.status\"")
    })
}

/// The one value `path` selects in `body`.
pub(super) fn select_one<'v>(
    field: &str,
    text: &str,
    path: &JsonPath,
    body: &'v Value,
) -> Result<&'v Value, String> {
    let nodes = path.query(body);
    match nodes.len() {
        1 => nodes
            .first()
            .ok_or_else(|| format!("{field} '{text}' matched nothing")),
        0 => Err(format!(
            "{field} '{text}' matched nothing in the response body; check the path against the body recorded in the stage"
        )),
        n => Err(format!(
            "{field} '{text}' matched {n} values, not one; make the path select a single value"
        )),
    }
}

/// Polls `statusEndpoint` until `statusJsonPath` reports a final status.
pub(super) struct MonitorWebhookTask;

/// How often to poll now: every second for a minute, then every 15 s (Orca), never
/// more often than the stage's `backoffPeriodMs`.
fn poll_interval(ctx: &TaskContext<'_>) -> Duration {
    let started = ctx.task.start_time.unwrap_or(ctx.now);
    let running_for = ctx.now - started - ctx.stage.paused_ms;
    let base = if running_for > FAST_POLL_FOR_MS {
        SLOW_POLL
    } else {
        FAST_POLL
    };
    let floor = ctx
        .stage
        .context
        .get("backoffPeriodMs")
        .and_then(value_as_i64)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
        .unwrap_or_default();
    base.max(floor)
}

fn wait_before_monitor_ms(stage: &StageExecution) -> i64 {
    stage
        .context
        .get("waitBeforeMonitor")
        .and_then(value_as_i64)
        .filter(|s| *s > 0)
        .map_or(0, |s| s.saturating_mul(1000))
}

#[async_trait]
impl Task for MonitorWebhookTask {
    fn name(&self) -> &'static str {
        "monitorWebhook"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let Some(status_text) = ctx.str("statusJsonPath").filter(|t| !t.trim().is_empty()) else {
            return Err(TaskError::Permanent(
                "waitForCompletion is on but statusJsonPath is missing: set it to where the status is in the status response, e.g. \"$.status\"".into(),
            ));
        };
        let status_path =
            compile_path("statusJsonPath", status_text).map_err(TaskError::Permanent)?;
        let progress = match ctx.str("progressJsonPath").filter(|t| !t.trim().is_empty()) {
            Some(text) => Some((
                text,
                compile_path("progressJsonPath", text).map_err(TaskError::Permanent)?,
            )),
            None => None,
        };
        let endpoint = parse_url("statusEndpoint", ctx.stage.context.get("statusEndpoint"))
            .map_err(|e| {
                TaskError::Permanent(format!(
                    "{e} (createWebhook records it; restart the stage if it is missing)"
                ))
            })?;
        let shown_endpoint = shown(&endpoint);
        // waitBeforeMonitor: the first poll waits, counted from the task's start.
        let started = ctx.task.start_time.unwrap_or(ctx.now);
        let first_poll = started + wait_before_monitor_ms(ctx.stage) + ctx.stage.paused_ms;
        if ctx.now < first_poll {
            let wait = u64::try_from(first_poll - ctx.now).unwrap_or(0);
            return Ok(TaskResult::running_after(Duration::from_millis(wait)));
        }
        let interval = poll_interval(ctx);
        let mut webhook = stage_webhook(ctx.stage);
        let keep_polling = |webhook: &mut Map<String, Value>, error: String| {
            let mut monitor = Map::new();
            monitor.insert("error".into(), Value::String(error));
            webhook.insert("monitor".into(), Value::Object(monitor));
            Ok(with_webhook(
                TaskResult::running_after(interval),
                std::mem::take(webhook),
            ))
        };
        let key = idempotency_key(ctx.execution, ctx.stage);
        let headers = request_headers(ctx.stage, &key).map_err(TaskError::Permanent)?;
        let reply = match send(ctx.services, Method::GET, &endpoint, headers, None).await {
            Ok(reply) => reply,
            Err(error) if error.is_transient() => {
                return keep_polling(
                    &mut webhook,
                    format!(
                        "polling: {}; will retry",
                        error.describe("statusEndpoint", &Method::GET, &endpoint)
                    ),
                );
            }
            Err(error) => {
                return Err(TaskError::Permanent(error.describe(
                    "statusEndpoint",
                    &Method::GET,
                    &endpoint,
                )));
            }
        };
        let retry = status_codes(ctx.stage.context.get("retryStatusCodes"));
        let mut monitor = reply.record();
        match classify(reply.status, &[], &retry) {
            Class::Success => {}
            Class::Retry => {
                return keep_polling(
                    &mut webhook,
                    format!(
                        "status endpoint {shown_endpoint} answered {}; will retry",
                        reply.status
                    ),
                );
            }
            Class::Fail | Class::FailFast => {
                let error = format!(
                    "status endpoint {shown_endpoint} answered {}{}; check statusEndpoint and customHeaders",
                    reply.status,
                    excerpt(&reply.body)
                );
                return Ok(fail(webhook, monitor, error));
            }
        }
        let status = match select_one("statusJsonPath", status_text, &status_path, &reply.body) {
            Ok(value) => value.clone(),
            Err(error) => {
                let error = format!("status response from {shown_endpoint}: {error}");
                return Ok(fail(webhook, monitor, error));
            }
        };
        if let Some((text, path)) = &progress {
            match select_one("progressJsonPath", text, path, &reply.body) {
                Ok(Value::String(message)) => {
                    monitor.insert("progressMessage".into(), Value::String(message.clone()));
                }
                Ok(other) => {
                    let error = format!(
                        "progressJsonPath '{text}' selected {other}, not a text message; point it at a string"
                    );
                    return Ok(fail(webhook, monitor, error));
                }
                Err(error) => {
                    let error = format!("status response from {shown_endpoint}: {error}");
                    return Ok(fail(webhook, monitor, error));
                }
            }
        }
        // A number is a percentage: 100 means done (Orca).
        if let Value::Number(percent) = &status {
            monitor.insert("percentComplete".into(), status.clone());
            let done = percent
                .as_f64()
                .is_some_and(|p| (p - 100.0).abs() < f64::EPSILON);
            let result = if done {
                TaskResult::succeeded()
            } else {
                TaskResult::running_after(interval)
            };
            return Ok(finish(webhook, monitor, result, None));
        }
        let reported = match &status {
            Value::String(s) => s.trim().to_uppercase(),
            Value::Bool(b) => b.to_string().to_uppercase(),
            other => {
                let error = format!(
                    "statusJsonPath '{status_text}' selected {other} in the response from {shown_endpoint}, not a status; point it at a string or number"
                );
                return Ok(fail(webhook, monitor, error));
            }
        };
        monitor.insert("status".into(), Value::String(reported.clone()));
        let success = status_list(ctx.stage, "successStatuses");
        let canceled = status_list(ctx.stage, "canceledStatuses");
        let terminal = status_list(ctx.stage, "terminalStatuses");
        // Orca's precedence when lists overlap: terminal, then canceled, then success.
        let result = if terminal.contains(&reported) {
            TaskResult::terminal(format!(
                "the remote job at {shown_endpoint} reported '{reported}', one of terminalStatuses ({})",
                terminal.join(", ")
            ))
        } else if canceled.contains(&reported) {
            TaskResult::status(TaskStatus::Canceled).with_context(
                "exception",
                exception(format!(
                    "the remote job at {shown_endpoint} reported '{reported}', one of canceledStatuses ({})",
                    canceled.join(", ")
                )),
            )
        } else if success.contains(&reported) {
            TaskResult::succeeded()
        } else if success.is_empty() && canceled.is_empty() && terminal.is_empty() {
            return Err(TaskError::Permanent(format!(
                "the remote job reported '{reported}' but none of successStatuses, canceledStatuses and terminalStatuses is set, so the stage could never end; set successStatuses (e.g. \"SUCCESS\") and terminalStatuses"
            )));
        } else {
            TaskResult::running_after(interval)
        };
        Ok(finish(webhook, monitor, result, None))
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        FAST_POLL
    }

    fn timeout(&self, stage: &StageExecution) -> Option<Duration> {
        // Orca's OverridableTimeoutRetryableTask: stageTimeoutMs replaces the hour.
        if stage.context.contains_key("stageTimeoutMs") {
            return None;
        }
        let wait = u64::try_from(wait_before_monitor_ms(stage)).unwrap_or(0);
        Some(MONITOR_TIMEOUT + Duration::from_millis(wait))
    }
}

/// Records a poll's `monitor` (and its error) under `webhook`.
/// Ends the monitor TERMINAL with `error`, recorded in the stage's `monitor` record too.
fn fail(webhook: Map<String, Value>, monitor: Map<String, Value>, error: String) -> TaskResult {
    finish(
        webhook,
        monitor,
        TaskResult::terminal(error.clone()),
        Some(error),
    )
}

fn finish(
    mut webhook: Map<String, Value>,
    mut monitor: Map<String, Value>,
    result: TaskResult,
    error: Option<String>,
) -> TaskResult {
    if let Some(error) = error {
        monitor.insert("error".into(), Value::String(error));
    }
    webhook.insert("monitor".into(), Value::Object(monitor));
    with_webhook(result, webhook)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_paths_accept_jayway_shorthand() {
        let body = json!({"status": "RUNNING", "jobs": [{"id": 1}, {"id": 2}]});
        for text in ["$.status", "status", "$['status']"] {
            let path = compile_path("statusJsonPath", text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                select_one("statusJsonPath", text, &path, &body).ok(),
                Some(&json!("RUNNING"))
            );
        }
        let many = compile_path("p", "$.jobs[*].id").unwrap_or_else(|e| panic!("{e}"));
        let err = select_one("p", "$.jobs[*].id", &many, &body).unwrap_err();
        assert!(err.contains("matched 2 values"), "{err}");
        let none = compile_path("p", "$.nope").unwrap_or_else(|e| panic!("{e}"));
        assert!(select_one("p", "$.nope", &none, &body).is_err());
        assert!(compile_path("p", "$[").is_err());
    }
}
