//! The audit log: every mutating API call, who made it, and how it ended.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gennaker_core::redact::redact_value;
use gennaker_store::{AuditEntry, AuditQuery, NewAuditEntry};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::auth::{Actor, Caller};
use crate::error::{ApiError, ApiResult, ErrorText};
use crate::extract::Query;
use crate::state::AppState;

/// Extra detail a handler attaches to its response for the audit entry (ids, revisions…).
#[derive(Debug, Clone)]
pub(crate) struct AuditDetail(pub Value);

/// A handler's response with the detail its audit entry records.
pub(crate) fn audited(response: impl IntoResponse, detail: Value) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(AuditDetail(detail));
    response
}

/// Calls that change nothing even though they are POSTs.
const READ_ONLY_POSTS: &[&str] = &["/api/v1/pipelines/validate"];

/// Whether the path is `/api/v1/executions/{id}/evaluate`, a POST that only reads.
fn is_evaluation(path: &str) -> bool {
    path.strip_prefix("/api/v1/executions/")
        .and_then(|rest| rest.strip_suffix("/evaluate"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

fn is_mutation(method: &Method, path: &str) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && !READ_ONLY_POSTS.contains(&path)
        && !is_evaluation(path)
}

/// Middleware: after each mutating call, appends an audit entry. It runs outside
/// authentication, so refused attempts are recorded too.
///
/// The call and its audit write run in a task of their own. When a client hangs up,
/// hyper drops the request's future; were the write part of it, a change committed just
/// before would go unrecorded. As a task, the call runs to its end either way, and the
/// server waits for such tasks before it stops.
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if !is_mutation(&method, &path) {
        return next.run(request).await;
    }
    let tasks = state.tasks.clone();
    // The task keeps the request's span, so what the handler logs stays with the request.
    let call = tasks.spawn(
        async move {
            let response = next.run(request).await;
            write_entry(&state, entry_for(&method, &path, &response)).await;
            response
        }
        .instrument(tracing::Span::current()),
    );
    call.await.unwrap_or_else(|err| {
        ApiError::Internal(format!("a mutating call did not complete: {err}")).into_response()
    })
}

/// The audit entry for a finished call.
fn entry_for(method: &Method, path: &str, response: &Response) -> NewAuditEntry {
    let status = response.status();
    let outcome = if status.is_success() {
        "success"
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        "denied"
    } else {
        "failed"
    };
    let actor = response
        .extensions()
        .get::<Actor>()
        .map_or("anonymous", |actor| actor.0.as_str())
        .to_owned();
    let mut detail = response
        .extensions()
        .get::<AuditDetail>()
        .map_or_else(|| json!({}), |d| d.0.clone());
    if let (Some(error), Value::Object(map)) =
        (response.extensions().get::<ErrorText>(), &mut detail)
    {
        map.insert("error".to_owned(), Value::String(error.0.clone()));
    }
    // The log is kept for long and read by admins: no secret a call carried goes in.
    redact_value(&mut detail);
    NewAuditEntry {
        actor,
        action: format!("{method} {path}"),
        target: path.strip_prefix("/api/v1/").unwrap_or(path).to_owned(),
        outcome: outcome.to_owned(),
        status: i64::from(status.as_u16()),
        detail,
    }
}

/// Appends an audit entry. A failure cannot be reported to the caller any more (the
/// change is made), so it is logged and counted for alerting.
async fn write_entry(state: &AppState, entry: NewAuditEntry) {
    if let Err(err) = state.store.append_audit(&entry).await {
        state.metrics.audit_write_failed();
        tracing::error!(
            error = %err,
            action = %entry.action,
            actor = %entry.actor,
            status = entry.status,
            "could not write the audit log; the change itself was made"
        );
    }
}

/// Filters for reading the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct AuditParams {
    /// At most this many entries (default 100, at most 1000).
    limit: Option<i64>,
    /// Only entries older than this id.
    before: Option<i64>,
    /// Only this actor's entries.
    actor: Option<String>,
    /// Only entries whose target starts with this, e.g. `applications/shop`.
    target: Option<String>,
}

/// Reads the audit log, newest first (admins only).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    caller.require_admin()?;
    let query = AuditQuery {
        before_id: params.before,
        actor: params.actor,
        target_prefix: params.target,
        limit: params.limit.unwrap_or(100),
    };
    Ok(Json(state.store.list_audit(&query).await?))
}
