//! Triggers over HTTP: the webhook endpoints senders call (unauthenticated, as in
//! Spinnaker: a request is identified by its source and proven by a secret or a
//! signature the trigger checks), the per-application trigger log, and firing a
//! trigger by hand.
//!
//! A webhook endpoint starts nothing itself: it hands the request to
//! [`gennaker_triggers::Triggers`], which fires matching pipelines as the configured
//! service identity (`[triggers] user`), only where that identity may EXECUTE.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gennaker_engine::Requester;
use gennaker_triggers::{Event, GIT_PROVIDERS, Signatures, TriggerError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::extract::{JsonBody, Path, Query};
use crate::routes::applications::authorize as authorize_application;
use crate::routes::pipelines::find as find_pipeline;
use crate::state::AppState;

/// Log entries returned when the request names no limit.
const DEFAULT_LOG_LIMIT: i64 = 50;

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The sender's delivery id, bounded (it becomes part of a key).
fn delivery(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| header_text(headers, name))
        .map(|id| id.chars().take(200).collect())
}

fn body_or_400(body: Result<Bytes, BytesRejection>, limit: usize) -> ApiResult<String> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the webhook body is larger than the {limit} bytes this server accepts ([triggers] max_payload_bytes)"
            ))
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the webhook body is not UTF-8 JSON"))
}

fn too_many(state: &AppState, source: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "rate_limited".to_owned(),
            message: format!(
                "too many webhook requests for '{source}'; at most {} a minute are accepted per source ([triggers] webhooks_per_minute)",
                state.triggers.settings().webhooks_per_minute
            ),
            problems: Vec::new(),
        },
    };
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let seconds = state.triggers.retry_after().as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn receipt_or_error(
    result: Result<gennaker_triggers::Receipt, TriggerError>,
) -> ApiResult<Response> {
    match result {
        Ok(receipt) => {
            Ok(Json(json!({"eventProcessed": true, "eventId": receipt.event_id})).into_response())
        }
        Err(TriggerError::BadPayload(message)) => Err(ApiError::bad_request(message)),
        Err(TriggerError::NotFired(message)) => Err(ApiError::bad_request(message)),
        Err(TriggerError::Store(err)) => Err(err.into()),
        Err(TriggerError::Engine(err)) => Err(err.into()),
    }
}

fn signatures(headers: &HeaderMap, token_headers: &[&str]) -> Signatures {
    Signatures::new(
        header_text(headers, "x-hub-signature-256"),
        header_text(headers, "x-hub-signature"),
        token_headers
            .iter()
            .find_map(|name| header_text(headers, name)),
    )
}

/// `POST /webhooks/webhook/{source}`: a generic webhook; the body (a JSON object) is
/// the trigger's `payload`, its `parameters` and `artifacts` the execution's.
pub(crate) async fn webhook(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if !state.triggers.allow(&format!("webhook/{source}")) {
        return Ok(too_many(&state, &source));
    }
    let body = body_or_400(body, state.triggers.settings().max_payload_bytes)?;
    let event = Event::Webhook {
        source: source.chars().take(200).collect(),
        body,
        signatures: signatures(&headers, &["x-webhook-token"]),
        delivery: delivery(&headers, &["x-event-id", "idempotency-key"]),
    };
    receipt_or_error(state.triggers.receive(event).await)
}

/// `POST /webhooks/git/{provider}`: a push (or pull request) from GitHub, GitLab or
/// Bitbucket.
pub(crate) async fn git(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let provider = provider.to_ascii_lowercase();
    if !GIT_PROVIDERS.contains(&provider.as_str()) {
        return Err(ApiError::NotFound(format!(
            "no git provider '{provider}'; use one of {}",
            GIT_PROVIDERS.join(", ")
        )));
    }
    if !state.triggers.allow(&format!("git/{provider}")) {
        return Ok(too_many(&state, &provider));
    }
    let body = body_or_400(body, state.triggers.settings().max_payload_bytes)?;
    let event_name = ["x-github-event", "x-event-key", "x-gitlab-event"]
        .iter()
        .find_map(|name| header_text(&headers, name))
        .map(|name| name.chars().take(100).collect());
    let event = Event::Git {
        provider,
        body,
        event_name,
        signatures: signatures(&headers, &["x-gitlab-token"]),
        delivery: delivery(
            &headers,
            &[
                "x-github-delivery",
                "x-gitlab-event-uuid",
                "x-request-uuid",
                "x-event-id",
            ],
        ),
    };
    receipt_or_error(state.triggers.receive(event).await)
}

/// How many log entries to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct LogParams {
    /// At most this many, newest first (default 50, at most the retained 500).
    limit: Option<i64>,
}

/// An application's trigger log: each event that concerned its triggers, which fired
/// (with the execution) and why the others did not.
#[utoipa::path(get, path = "/api/v1/applications/{app}/triggerEvents", tag = "triggers",
    params(("app" = String, Path, description = "Application name"), LogParams),
    responses((status = 200, body = Vec<Object>, description = "Log entries, newest first: eventId, receivedAt, event, pipelines[{pipeline, pipelineId, trigger, fired, executionId | reason}]"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn log(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(params): Query<LogParams>,
) -> ApiResult<Json<Vec<Value>>> {
    let application = authorize_application(&state, &caller, &app, Access::Read).await?;
    let limit = params
        .limit
        .unwrap_or(DEFAULT_LOG_LIMIT)
        .clamp(1, state.triggers.settings().log_keep.max(1));
    let entries = state
        .triggers
        .events(&application.name, limit)
        .await
        .map_err(|err| match err {
            TriggerError::Store(err) => ApiError::from(err),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(Json(entries))
}

/// A trigger to fire by hand.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct FireBody {
    /// The trigger type to fire (the pipeline's first trigger of it); default: its
    /// first trigger.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    /// What the event would carry: a webhook or git body, `{"tag", "digest"}` for
    /// docker, `{"status"}` for pipeline.
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Value,
}

/// Fires one of a pipeline's triggers by hand, to test it: the trigger is matched
/// against the payload (its secret is not needed) and, if it matches, the pipeline
/// runs as the caller with the trigger object it would get.
#[utoipa::path(post, path = "/api/v1/applications/{app}/pipelines/{name}/trigger", tag = "triggers",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name")),
    request_body(content = FireBody),
    responses((status = 202, body = Object, description = "The trigger fired: pipeline, trigger index, executionId"),
        (status = 400, body = ErrorBody, description = "No such trigger, or it did not match the payload (the reason says why)"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn fire(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<FireBody>,
) -> ApiResult<Response> {
    let application = authorize_application(&state, &caller, &app, Access::Execute).await?;
    let pipeline = find_pipeline(&state, &application.name, &name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "pipeline '{name}' not found in application '{}'; `gennaker pipeline list {}` shows its pipelines",
            application.name, application.name
        ))
    })?;
    let requester = Requester {
        user: caller.name.clone(),
        roles: caller.roles.clone(),
        origin: "trigger".to_owned(),
    };
    match state
        .triggers
        .fire_by_hand(
            &application,
            &pipeline,
            body.kind.as_deref(),
            body.payload,
            &requester,
        )
        .await
    {
        Ok(entry) if entry.get("fired") == Some(&Value::Bool(true)) => {
            Ok((StatusCode::ACCEPTED, Json(entry)).into_response())
        }
        Ok(entry) => Err(ApiError::bad_request(
            entry
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("the trigger did not fire")
                .to_owned(),
        )),
        Err(TriggerError::Store(err)) => Err(err.into()),
        Err(TriggerError::Engine(err)) => Err(err.into()),
        Err(TriggerError::BadPayload(message) | TriggerError::NotFired(message)) => {
            Err(ApiError::bad_request(message))
        }
    }
}
