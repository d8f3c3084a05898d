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

use gennaker_core::{CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use serde_json_path::JsonPath;

use crate::stage::{CancelOutcome, StageDefinition, StageRegistry, TaskSpec};
use crate::task::{Services, Task, TaskContext, TaskError, TaskResult, TaskStatus, exception};
use gennaker_core::execution::{Execution, StageExecution};
use gennaker_core::lenient::{truthy, value_as_i64};

/// Registers the `webhook` stage and its tasks.
pub(super) fn register(registry: &mut StageRegistry) {
    registry
        .stage(WebhookStage)
        .task(CreateWebhookTask)
        .task(MonitorWebhookTask);
}

/// The header that lets the remote side recognise a repeated request.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How long one request may take before it counts as a (retryable) failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body kept: the body is stored in the execution document.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Orca's MonitorWebhookTask: a remote job gets an hour unless `stageTimeoutMs` says
/// otherwise.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(3600);

/// Orca polls every second for the first minute, then every 15 seconds.
const FAST_POLL: Duration = Duration::from_secs(1);
const SLOW_POLL: Duration = Duration::from_secs(15);
const FAST_POLL_FOR_MS: i64 = 60_000;

/// Response headers never recorded: they carry session credentials.
const SECRET_RESPONSE_HEADERS: [&str; 1] = ["set-cookie"];

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
        check_webhook(stage, report);
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        let mut tasks = vec![TaskSpec::new("createWebhook")];
        if truthy(stage.context.get("waitForCompletion")) {
            tasks.push(TaskSpec::new("monitorWebhook"));
        }
        tasks
    }

    /// The cancel call usually names the remote job (`${webhook.body.id}`), which is
    /// only known once the webhook answered: these keys are evaluated when cancelling.
    fn deferred_context_keys(&self) -> &'static [&'static str] {
        &["cancelEndpoint", "cancelMethod", "cancelPayload"]
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
        cancel_webhook(execution, stage, services).await
    }
}

/// The key every request of this stage execution carries.
fn idempotency_key(execution: &Execution, stage: &StageExecution) -> String {
    format!("{}:{}:{}", execution.id, stage.id, stage.restarts)
}

// ----- request settings -----

/// An absolute http(s) URL from a context field.
fn parse_url(field: &str, value: Option<&Value>) -> Result<Url, String> {
    let text = match value {
        Some(Value::String(text)) if !text.trim().is_empty() => text.trim(),
        None | Some(Value::Null) => {
            return Err(format!(
                "the webhook has no {field}: set \"{field}\" to the http(s) URL to call"
            ));
        }
        Some(other) => return Err(format!("{field} must be a URL string, not {other}")),
    };
    if text.contains("${") {
        return Err(format!(
            "{field} '{text}' still holds an expression that could not be evaluated (see expressionEvaluationSummary); fix the expression"
        ));
    }
    let url = Url::parse(text).map_err(|e| {
        format!("{field} '{text}' is not a valid URL ({e}); write it like https://host/path")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{field} '{text}' is not an http:// or https:// URL; webhooks only call http and https"
        ));
    }
    Ok(url)
}

/// An HTTP method from a context field (any case), or `default`.
fn parse_method(field: &str, value: Option<&Value>, default: Method) -> Result<Method, String> {
    let text = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(default),
        Some(Value::String(text)) => text.trim().to_ascii_uppercase(),
        Some(other) => return Err(format!("{field} must be an HTTP method name, not {other}")),
    };
    const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    if !METHODS.contains(&text.as_str()) {
        return Err(format!(
            "{field} '{text}' is not an HTTP method; use one of {}",
            METHODS.join(", ")
        ));
    }
    Method::from_bytes(text.as_bytes()).map_err(|e| format!("{field} '{text}': {e}"))
}

/// `customHeaders` (a value may be a string, a number or a list of them) plus the
/// idempotency key, unless the user set one themselves.
fn request_headers(stage: &StageExecution, key: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    match stage.context.get("customHeaders") {
        None | Some(Value::Null) => {}
        Some(Value::Object(custom)) => {
            for (name, value) in custom {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    format!("customHeaders: '{name}' is not a valid HTTP header name")
                })?;
                let values = match value {
                    Value::Array(items) => items.iter().collect(),
                    Value::Null => Vec::new(),
                    single => vec![single],
                };
                for value in values {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let value = HeaderValue::from_str(&text).map_err(|_| {
                        format!("customHeaders['{name}'] is not a valid header value")
                    })?;
                    headers.append(header.clone(), value);
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "customHeaders must be an object of header names to values, not {other}"
            ));
        }
    }
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        let value = HeaderValue::from_str(key)
            .map_err(|_| format!("cannot send the idempotency key '{key}' as a header"))?;
        headers.insert(IDEMPOTENCY_KEY, value);
    }
    Ok(headers)
}

/// HTTP status codes from a list (numbers or numeric strings) or a CSV string.
fn status_codes(value: Option<&Value>) -> Vec<u16> {
    let as_code = |v: &Value| value_as_i64(v).and_then(|n| u16::try_from(n).ok());
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(as_code).collect(),
        Some(Value::String(csv)) => csv
            .split(',')
            .filter_map(|s| s.trim().parse::<u16>().ok())
            .collect(),
        Some(single @ Value::Number(_)) => as_code(single).into_iter().collect(),
        _ => Vec::new(),
    }
}

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
fn compile_path(field: &str, text: &str) -> Result<JsonPath, String> {
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
fn select_one<'v>(
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

// ----- sending -----

/// A response, as recorded.
struct Reply {
    status: u16,
    headers: Map<String, Value>,
    location: Option<String>,
    body: Value,
}

impl Reply {
    /// Orca's `webhook` (or `monitor`, `cancel`) record of a response.
    fn record(&self) -> Map<String, Value> {
        let mut record = Map::new();
        record.insert("statusCode".into(), json!(self.status));
        // Orca's name for the numeric code; expressions written for Spinnaker use it.
        record.insert("statusCodeValue".into(), json!(self.status));
        record.insert("headers".into(), Value::Object(self.headers.clone()));
        if !self.body.is_null() {
            record.insert("body".into(), self.body.clone());
        }
        record
    }
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &Url,
    headers: HeaderMap,
    payload: Option<&Value>,
) -> Result<Reply, reqwest::Error> {
    let mut request = http
        .request(method, url.clone())
        .timeout(REQUEST_TIMEOUT)
        .headers(headers.clone());
    if let Some(payload) = payload {
        let declared = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        request = match (payload, declared) {
            // A text payload with a non-JSON content type goes as written.
            (Value::String(text), Some(kind)) if !kind.contains("json") => {
                request.body(text.clone())
            }
            (payload, declared) => {
                let body = serde_json::to_vec(payload).unwrap_or_default();
                let request = request.body(body);
                if declared.is_none() {
                    request.header(CONTENT_TYPE, "application/json")
                } else {
                    request
                }
            }
        };
    }
    let mut response = request.send().await?;
    let status = response.status().as_u16();
    let mut recorded = Map::new();
    for name in response.headers().keys() {
        if SECRET_RESPONSE_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let values: Vec<&str> = response
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        recorded.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = if bytes.is_empty() {
        Value::Null
    } else if truncated {
        Value::String(format!(
            "{}… (truncated at {MAX_BODY_BYTES} bytes)",
            String::from_utf8_lossy(&bytes)
        ))
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Reply {
        status,
        headers: recorded,
        location,
        body,
    })
}

/// A request error with its causes: reqwest's own text ("error sending request for
/// url …") leaves out the refused connection or the DNS failure behind it.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a failed request is worth repeating: the server could not be reached or
/// did not answer in time. (A repeated POST is safe enough: it carries the same
/// idempotency key.)
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_body() || error.is_request()
}

/// What a status code means for a request.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Success,
    Retry,
    FailFast,
    Fail,
}

fn classify(status: u16, fail_fast: &[u16], retry: &[u16]) -> Class {
    if fail_fast.contains(&status) {
        Class::FailFast
    } else if (200..400).contains(&status) {
        Class::Success
    } else if status >= 500 || status == 429 || retry.contains(&status) {
        Class::Retry
    } else {
        Class::Fail
    }
}

/// A short, readable excerpt of a response body for an error message.
fn excerpt(body: &Value) -> String {
    let text = match body {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!(": {short}")
}

fn stage_webhook(stage: &StageExecution) -> Map<String, Value> {
    match stage.context.get("webhook") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

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

// ----- createWebhook -----

/// Sends the request; with `waitForCompletion`, also resolves the status URL.
struct CreateWebhookTask;

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
        let method = parse_method("method", context.get("method"), Method::POST)
            .map_err(TaskError::Permanent)?;
        let key = idempotency_key(ctx.execution, ctx.stage);
        let headers = request_headers(ctx.stage, &key).map_err(TaskError::Permanent)?;
        let payload = context.get("payload").filter(|p| !p.is_null());
        let reply = match send(&ctx.services.http, method.clone(), &url, headers, payload).await {
            Ok(reply) => reply,
            Err(error) if is_transient(&error) => {
                return Err(TaskError::Transient(format!(
                    "webhook {method} {url} failed: {}; retrying",
                    describe(&error)
                )));
            }
            Err(error) => {
                return Err(TaskError::Permanent(format!(
                    "webhook {method} {url} failed: {}",
                    describe(&error)
                )));
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
                        "webhook {method} {url} answered {}, which failFastStatusCodes lists: the stage fails without retrying{}",
                        reply.status,
                        excerpt(&reply.body)
                    ),
                );
            }
            Class::Retry => {
                // The engine retries with backoff; the key makes the repeat safe.
                return Err(TaskError::Transient(format!(
                    "webhook {method} {url} answered {}{}; retrying",
                    reply.status,
                    excerpt(&reply.body)
                )));
            }
            Class::Fail => {
                return failed(
                    &mut webhook,
                    format!(
                        "webhook {method} {url} answered {}{}; check the url, method, payload and customHeaders (add the code to retryStatusCodes if it is worth retrying)",
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
                    "webhook {method} {url} succeeded but its status URL could not be resolved: {error}"
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

// ----- monitorWebhook -----

/// Polls `statusEndpoint` until `statusJsonPath` reports a final status.
struct MonitorWebhookTask;

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
        let reply = match send(&ctx.services.http, Method::GET, &endpoint, headers, None).await {
            Ok(reply) => reply,
            Err(error) if is_transient(&error) => {
                return keep_polling(
                    &mut webhook,
                    format!(
                        "polling {endpoint} failed: {}; will retry",
                        describe(&error)
                    ),
                );
            }
            Err(error) => {
                return Err(TaskError::Permanent(format!(
                    "polling {endpoint} failed: {}",
                    describe(&error)
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
                        "status endpoint {endpoint} answered {}; will retry",
                        reply.status
                    ),
                );
            }
            Class::Fail | Class::FailFast => {
                let error = format!(
                    "status endpoint {endpoint} answered {}{}; check statusEndpoint and customHeaders",
                    reply.status,
                    excerpt(&reply.body)
                );
                return Ok(finish(
                    webhook,
                    monitor,
                    TaskResult::terminal(error.clone()),
                    Some(error),
                ));
            }
        }
        let status = match select_one("statusJsonPath", status_text, &status_path, &reply.body) {
            Ok(value) => value.clone(),
            Err(error) => {
                let error = format!("status response from {endpoint}: {error}");
                return Ok(finish(
                    webhook,
                    monitor,
                    TaskResult::terminal(error.clone()),
                    Some(error),
                ));
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
                    return Ok(finish(
                        webhook,
                        monitor,
                        TaskResult::terminal(error.clone()),
                        Some(error),
                    ));
                }
                Err(error) => {
                    let error = format!("status response from {endpoint}: {error}");
                    return Ok(finish(
                        webhook,
                        monitor,
                        TaskResult::terminal(error.clone()),
                        Some(error),
                    ));
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
                    "statusJsonPath '{status_text}' selected {other} in the response from {endpoint}, not a status; point it at a string or number"
                );
                return Ok(finish(
                    webhook,
                    monitor,
                    TaskResult::terminal(error.clone()),
                    Some(error),
                ));
            }
        };
        monitor.insert("status".into(), Value::String(reported.clone()));
        let success = status_list(ctx.stage, "successStatuses");
        let canceled = status_list(ctx.stage, "canceledStatuses");
        let terminal = status_list(ctx.stage, "terminalStatuses");
        // Orca's precedence when lists overlap: terminal, then canceled, then success.
        let result = if terminal.contains(&reported) {
            TaskResult::terminal(format!(
                "the remote job at {endpoint} reported '{reported}', one of terminalStatuses ({})",
                terminal.join(", ")
            ))
        } else if canceled.contains(&reported) {
            TaskResult::status(TaskStatus::Canceled).with_context(
                "exception",
                exception(format!(
                    "the remote job at {endpoint} reported '{reported}', one of canceledStatuses ({})",
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

// ----- cancellation -----

/// Calls `cancelEndpoint` when the webhook was called (Orca: only then is there a
/// remote job to stop). Runs again after a crash, so an answered cancel is not sent
/// twice.
async fn cancel_webhook(
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
    let method = parse_method("cancelMethod", fields.get("cancelMethod"), Method::POST)
        .map_err(TaskError::Permanent)?;
    // Its own key: reusing the create call's key would make a server that honours
    // idempotency keys answer with the create call's stored response.
    let key = format!("{}:cancel", idempotency_key(execution, stage));
    let headers = request_headers(stage, &key).map_err(TaskError::Permanent)?;
    let payload = fields.get("cancelPayload").filter(|p| !p.is_null());
    let reply = send(&services.http, method.clone(), &url, headers, payload)
        .await
        .map_err(|e| {
            TaskError::Transient(format!(
                "webhook cancel {method} {url} failed: {}",
                describe(&e)
            ))
        })?;
    let mut record = reply.record();
    if !(200..400).contains(&reply.status) {
        record.insert(
            "error".into(),
            Value::String(format!(
                "cancel {method} {url} answered {}{}",
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

const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const STATUS_URL_RESOLUTIONS: &[&str] = &["getMethod", "locationHeader", "webhookResponse"];

fn check_webhook(stage: &Fields<'_>, report: &mut ValidationReport) {
    if let Some(url) = stage.required_string("url", "the URL to call", report)
        && !url.contains("${")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        report.push(
            Problem::error(
                stage.at("url"),
                format!("url '{url}' is not an http:// or https:// URL"),
            )
            .with_hint("webhooks only call http and https URLs"),
        );
    }
    if let Some(method) = stage.string("method", report)
        && !method.contains("${")
        && !HTTP_METHODS.contains(&method.to_ascii_uppercase().as_str())
    {
        report.push(Problem::error(
            stage.at("method"),
            format!(
                "method '{method}' is not an HTTP method ({})",
                HTTP_METHODS.join(", ")
            ),
        ));
    }
    stage.object("customHeaders", report);
    for key in [
        "statusUrlJsonPath",
        "statusJsonPath",
        "progressJsonPath",
        "successStatuses",
        "canceledStatuses",
        "terminalStatuses",
        "cancelEndpoint",
        "cancelMethod",
    ] {
        stage.string(key, report);
    }
    for key in ["failFastStatusCodes", "retryStatusCodes"] {
        if let Some(codes) = stage.array(key, report) {
            for (i, code) in codes.iter().enumerate() {
                let ok = gennaker_core::lenient::value_as_u64(code)
                    .is_some_and(|c| (100..=599).contains(&c));
                if !ok {
                    report.push(Problem::error(
                        stage.at(key).index(i),
                        format!("{code} is not an HTTP status code"),
                    ));
                }
            }
        }
    }
    if stage.boolean("waitForCompletion", report) == Some(true) {
        match stage.one_of("statusUrlResolution", STATUS_URL_RESOLUTIONS, report) {
            None if !stage.has("statusUrlResolution") => report.push(
                Problem::error(
                    stage.at("statusUrlResolution"),
                    "waitForCompletion is on but statusUrlResolution is missing",
                )
                .with_hint("use getMethod (poll the same URL), locationHeader or webhookResponse"),
            ),
            Some("webhookResponse") if !stage.has("statusUrlJsonPath") => report.push(Problem::error(
                stage.at("statusUrlJsonPath"),
                "statusUrlResolution webhookResponse needs statusUrlJsonPath (where the status URL is in the response)",
            )),
            _ => {}
        }
        if !stage.has("statusJsonPath") {
            report.push(
                Problem::error(
                    stage.at("statusJsonPath"),
                    "waitForCompletion is on but statusJsonPath is missing",
                )
                .with_hint("the JSON path of the status in the polled response, e.g. \"$.status\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_classify_like_orca() {
        assert_eq!(classify(200, &[], &[]), Class::Success);
        assert_eq!(classify(302, &[], &[]), Class::Success);
        assert_eq!(classify(503, &[], &[]), Class::Retry);
        assert_eq!(classify(429, &[], &[]), Class::Retry);
        assert_eq!(classify(409, &[], &[409]), Class::Retry);
        assert_eq!(classify(400, &[], &[]), Class::Fail);
        assert_eq!(classify(504, &[504], &[]), Class::FailFast);
    }

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

    #[test]
    fn codes_and_lists_are_lenient() {
        assert_eq!(status_codes(Some(&json!([500, "502"]))), vec![500, 502]);
        assert_eq!(status_codes(Some(&json!("409, 423"))), vec![409, 423]);
        assert!(parse_method("method", Some(&json!("fetch")), Method::POST).is_err());
        assert_eq!(
            parse_method("method", Some(&json!("put")), Method::POST).ok(),
            Some(Method::PUT)
        );
        assert!(parse_url("url", Some(&json!("ftp://x.example.com"))).is_err());
        assert!(parse_url("url", Some(&json!("https://x/${nope}"))).is_err());
    }
}
