//! Executions: run a pipeline, read executions, and act on them (cancel, pause,
//! resume, restart, skip, judge, evaluate an expression).
//!
//! Running and acting need EXECUTE on the execution's application; reading and
//! evaluating need READ. Operations are queued for the engine and answered 202 at once;
//! follow their effect with `GET /executions/{id}` or the event stream.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gennaker_engine::{
    ALL_STATUSES, Actor, Execution, ExecutionStatus, Judgment, Requester, RunRequest,
};
use gennaker_store::ExecutionQuery;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::audit::AuditDetail;
use crate::auth::{Access, Caller, application_not_found};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query, RawBody};
use crate::routes::applications::authorize as authorize_application;
use crate::state::AppState;

/// Executions listed when the request names no limit.
const DEFAULT_LIMIT: i64 = 25;
/// The most executions one list returns.
const MAX_LIMIT: i64 = 1000;

/// A request to run a pipeline. Every field is optional; an empty body runs the
/// pipeline with its parameters' defaults.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunBody {
    /// Parameter values by name; declared parameters without a value get their default,
    /// and a required one without either is refused.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
    /// Artifacts handed to the execution (`type`, `name`, `version`, `reference`, …).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    artifacts: Vec<Value>,
    /// De-duplicates starts: a second run with the same id is refused with 409.
    #[serde(default)]
    correlation_id: Option<String>,
    /// Extra trigger fields (`type` defaults to `manual`; `user` is always the caller).
    #[serde(default)]
    #[schema(value_type = Object)]
    trigger: Map<String, Value>,
    /// Any other top-level key is a trigger field too, as in the body of Gate's
    /// `POST /pipelines/{app}/{name}`.
    #[serde(flatten)]
    #[schema(ignore)]
    extra: Map<String, Value>,
}

/// Filters for listing executions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ListParams {
    /// Only this application's executions (without it: every application you may read).
    application: Option<String>,
    /// Only executions of pipelines with this name.
    pipeline: Option<String>,
    /// Only these statuses, comma separated (e.g. `RUNNING,PAUSED`).
    status: Option<String>,
    /// At most this many, newest first (default 25, at most 1000).
    limit: Option<i64>,
}

/// The optional body of a cancel.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct CancelBody {
    /// Why, kept as the execution's `cancellationReason`.
    #[serde(default)]
    reason: Option<String>,
}

/// A judgment on a `manualJudgment` stage.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JudgmentBody {
    /// `continue` or `stop`.
    judgment_status: String,
    /// One of the stage's `judgmentInputs`, when it offers any.
    #[serde(default)]
    judgment_input: Option<String>,
}

/// An expression to evaluate against an execution.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EvaluateBody {
    /// An expression (`trigger.user`) or a template (`deploy ${trigger.user}`).
    expression: String,
    /// Evaluate as this stage sees it (id or top-level refId); default: the stage that
    /// started last.
    #[serde(default)]
    stage_id: Option<String>,
}

/// The outcome of an evaluation: `result` (with any `warnings`), or `error` with its
/// position.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EvaluateResponse {
    /// The value, when the expression evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    /// Why it did not: `kind`, `message`, `expression`, `offset`, `line`, `column`,
    /// `hint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    error: Option<gennaker_expr::ExprError>,
    /// Findings that did not stop the evaluation, e.g. a key that read as `null`, with
    /// its likely spelling in `hint`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    warnings: Vec<gennaker_expr::Warning>,
}

/// The answer to an operation the engine carries out asynchronously.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accepted {
    /// The execution.
    execution_id: String,
    /// `cancel`, `pause`, `resume`, `restart`, `skip` or `judgment`.
    operation: String,
    /// The stage, for stage operations (as given: an id or a refId).
    #[serde(skip_serializing_if = "Option::is_none")]
    stage_id: Option<String>,
}

/// Checks the caller's access to an application's executions. An execution whose
/// application was deleted is left to admins; to everyone else it does not exist.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    application: &str,
    access: Access,
) -> ApiResult<()> {
    if caller.admin {
        return Ok(());
    }
    match state.store.get_application(application).await? {
        Some(record) => caller.require(&record.name, &record.config, access),
        None => Err(application_not_found(application)),
    }
}

/// Reads an execution the caller may access, or answers 404/403.
pub(crate) async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    access: Access,
) -> ApiResult<Execution> {
    let not_found = || {
        ApiError::NotFound(format!(
            "execution '{id}' not found; `gennaker execution list` shows recent executions"
        ))
    };
    let execution = state.engine.execution(id).await?.ok_or_else(not_found)?;
    // Without any permission on its application, the execution does not exist for the
    // caller either.
    match authorize(state, caller, &execution.application, access).await {
        Err(ApiError::NotFound(_)) => Err(not_found()),
        Err(other) => Err(other),
        Ok(()) => Ok(execution),
    }
}

/// Parses a JSON body; an empty body is `T::default()`.
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes, shape: &str) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    required_body(body, shape)
}

/// Parses a JSON body that must be present.
fn required_body<T: DeserializeOwned>(body: &Bytes, shape: &str) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!(
            "the request body is not valid ({err}); send JSON like {shape}"
        ))
    })
}

fn accepted(
    execution: &Execution,
    operation: &str,
    stage_id: Option<String>,
    extra: Value,
) -> Response {
    let mut detail = json!({
        "executionId": execution.id,
        "application": execution.application,
        "pipeline": execution.name,
    });
    if let (Value::Object(detail), Value::Object(extra)) = (&mut detail, extra) {
        detail.extend(extra);
        if let Some(stage) = &stage_id {
            detail.insert("stageId".to_owned(), Value::String(stage.clone()));
        }
    }
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            execution_id: execution.id.clone(),
            operation: operation.to_owned(),
            stage_id,
        }),
    )
        .into_response();
    response.extensions_mut().insert(AuditDetail(detail));
    response
}

/// Where a run request came from, for the execution's `origin`.
fn origin(headers: &HeaderMap) -> &'static str {
    let agent = headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if agent.starts_with("gennaker-cli/") {
        "cli"
    } else if agent.starts_with(crate::ui::USER_AGENT) {
        "ui"
    } else {
        "api"
    }
}

/// Runs a stored pipeline. Answers 202 with the new execution (NOT_STARTED; the engine
/// starts it at once).
#[utoipa::path(post, path = "/api/v1/applications/{app}/pipelines/{name}/executions", tag = "executions",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name")),
    request_body(content = RunBody, description = "Parameters, artifacts, correlation id and trigger fields; may be empty"),
    responses(
        (status = 202, body = Object, description = "The new execution, in Spinnaker's execution JSON"),
        (status = 400, body = ErrorBody, description = "A required parameter is missing, a value is not one of its options, or the pipeline is disabled"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "An execution with this correlation id exists")))]
pub(crate) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    // The application and the pipeline in one query: a submission's reads are round
    // trips to a database that is busy committing (docs/PERFORMANCE.md).
    let (application, pipeline) = state
        .store
        .get_application_pipeline(&app, &name)
        .await?
        .ok_or_else(|| application_not_found(&app))?;
    caller.require(&application.name, &application.config, Access::Execute)?;
    let body: RunBody = optional_body(
        &body,
        r#"{"parameters": {"env": "prod"}, "artifacts": [], "correlationId": "…", "trigger": {}}"#,
    )?;
    let pipeline = pipeline.ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline '{name}' not found in application '{}' (by name or id); `gennaker pipeline list {}` shows its pipelines",
                application.name, application.name
            ))
        })?;
    let mut trigger = body.trigger;
    for (key, value) in body.extra {
        trigger.entry(key).or_insert(value);
    }
    let request = RunRequest {
        parameters: body.parameters,
        artifacts: body.artifacts,
        correlation_id: body.correlation_id,
        trigger,
    };
    let requester = Requester {
        user: caller.name.clone(),
        roles: caller.roles.clone(),
        origin: origin(&headers).to_owned(),
    };
    // Saved configs passed validation, which accepts only what the typed model loads.
    let config = gennaker_core::Pipeline::from_value(pipeline.config.clone()).map_err(|err| {
        ApiError::Conflict(format!(
            "pipeline '{}' revision {} cannot run: {err}; save it again to see what is wrong",
            pipeline.name, pipeline.revision
        ))
    })?;
    let execution = state
        .engine
        .run_pipeline(&application.name, &config, &request, &requester)
        .await?;
    let detail = AuditDetail(json!({
        "executionId": execution.id,
        "application": execution.application,
        "pipeline": execution.name,
        "pipelineId": pipeline.id,
        "revision": pipeline.revision,
    }));
    let mut response = (StatusCode::ACCEPTED, Json(execution)).into_response();
    response.extensions_mut().insert(detail);
    Ok(response)
}

/// Parses `RUNNING,paused` into statuses.
fn parse_statuses(text: &str) -> ApiResult<Vec<ExecutionStatus>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            ExecutionStatus::parse(s).ok_or_else(|| {
                let known: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(format!(
                    "unknown status '{s}'; use one of {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// Lists executions, newest first: of one application, or of every application the
/// caller may read.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", params(ListParams),
    responses((status = 200, body = Vec<Object>, description = "Executions in Spinnaker's execution JSON"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Vec<Execution>>> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        )));
    }
    let query = ExecutionQuery {
        application: None,
        pipeline_config_id: None,
        pipeline_name: params.pipeline.filter(|p| !p.is_empty()),
        statuses: parse_statuses(params.status.as_deref().unwrap_or_default())?,
        limit,
        oldest_first: false,
        ..Default::default()
    };
    let applications = match params.application.filter(|a| !a.is_empty()) {
        Some(app) => {
            let application = authorize_application(&state, &caller, &app, Access::Read).await?;
            vec![application.name]
        }
        None if caller.admin => return Ok(Json(state.engine.executions(&query).await?)),
        None => state
            .store
            .list_applications()
            .await?
            .into_iter()
            .filter(|app| caller.require(&app.name, &app.config, Access::Read).is_ok())
            .map(|app| app.name)
            .collect(),
    };
    let mut executions = Vec::new();
    for application in applications {
        let query = ExecutionQuery {
            application: Some(application),
            ..query.clone()
        };
        executions.extend(state.engine.executions(&query).await?);
    }
    executions.sort_by(|a, b| (b.build_time, &b.id).cmp(&(a.build_time, &a.id)));
    executions.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(executions))
}

/// Reads an execution: its trigger, status, and every stage (synthetic ones included)
/// with its context, outputs and tasks.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, body = Object, description = "The execution, in Spinnaker's execution JSON"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Execution>> {
    Ok(Json(load(&state, &caller, &id, Access::Read).await?))
}

/// Cancels an execution: running stages stop and run their cancellation routines.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    request_body(content = CancelBody, description = "Optional: why"),
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The execution already ended")))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let execution = load(&state, &caller, &id, Access::Execute).await?;
    let body: CancelBody = optional_body(&body, r#"{"reason": "…"}"#)?;
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    state
        .engine
        .cancel(&execution.id, &caller.name, reason.clone())
        .await?;
    Ok(accepted(
        &execution,
        "cancel",
        None,
        json!({ "reason": reason }),
    ))
}

/// Pauses a running execution: no new task starts until it is resumed, and paused
/// time does not count against timeouts.
#[utoipa::path(post, path = "/api/v1/executions/{id}/pause", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The execution is not RUNNING")))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    control(&state, &caller, &id, Control::Pause).await
}

/// Resumes a paused execution.
#[utoipa::path(post, path = "/api/v1/executions/{id}/resume", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The execution is not PAUSED")))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    control(&state, &caller, &id, Control::Resume).await
}

/// Restarts a finished top-level stage and everything downstream of it.
#[utoipa::path(post, path = "/api/v1/executions/{id}/stages/{stageId}/restart", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("stageId" = String, Path, description = "Stage id or top-level refId")),
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The stage is synthetic or has not finished, or the execution is paused")))]
pub(crate) async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stage_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    control(&state, &caller, &id, Control::Restart(stage_id)).await
}

/// Skips a running stage: a `wait` ends its wait; other stages become SKIPPED.
#[utoipa::path(post, path = "/api/v1/executions/{id}/stages/{stageId}/skip", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("stageId" = String, Path, description = "Stage id or top-level refId")),
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The stage is not RUNNING")))]
pub(crate) async fn skip(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stage_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    control(&state, &caller, &id, Control::Skip(stage_id)).await
}

/// A control that takes no body: it needs EXECUTE and answers 202 with no extra detail.
enum Control {
    Pause,
    Resume,
    /// Restarts the stage (id or top-level refId).
    Restart(String),
    /// Skips the stage (id or top-level refId).
    Skip(String),
}

/// Loads the execution for EXECUTE, applies `control`, and answers 202.
async fn control(
    state: &AppState,
    caller: &Caller,
    id: &str,
    control: Control,
) -> ApiResult<Response> {
    let execution = load(state, caller, id, Access::Execute).await?;
    let (engine, id, user) = (&state.engine, &execution.id, &caller.name);
    let (operation, stage_id) = match control {
        Control::Pause => {
            engine.pause(id, user).await?;
            ("pause", None)
        }
        Control::Resume => {
            engine.resume(id, user).await?;
            ("resume", None)
        }
        Control::Restart(stage_id) => {
            engine.restart_stage(id, &stage_id, user).await?;
            ("restart", Some(stage_id))
        }
        Control::Skip(stage_id) => {
            engine.skip_stage(id, &stage_id, user).await?;
            ("skip", Some(stage_id))
        }
    };
    Ok(accepted(&execution, operation, stage_id, json!({})))
}

/// Judges a waiting `manualJudgment` stage. When the stage names
/// `selectedStageRoles`, only users with one of them (or admins) may judge.
#[utoipa::path(post, path = "/api/v1/executions/{id}/stages/{stageId}/judgment", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("stageId" = String, Path, description = "Stage id or top-level refId")),
    request_body(content = JudgmentBody),
    responses((status = 202, body = Accepted),
        (status = 400, body = ErrorBody, description = "judgmentStatus is not continue/stop, or the input is not one of the stage's judgmentInputs"),
        (status = 403, body = ErrorBody, description = "No EXECUTE permission, or none of the stage's selectedStageRoles"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The stage is not a manualJudgment waiting for a judgment")))]
pub(crate) async fn judgment(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stage_id)): Path<(String, String)>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let execution = load(&state, &caller, &id, Access::Execute).await?;
    let body: JudgmentBody = required_body(
        &body,
        r#"{"judgmentStatus": "continue", "judgmentInput": "…"}"#,
    )?;
    let judgment = Judgment {
        judgment_status: body.judgment_status,
        judgment_input: body.judgment_input,
    };
    let actor = Actor {
        user: caller.name.clone(),
        roles: caller.roles.clone(),
        admin: caller.admin,
    };
    state
        .engine
        .judge(&execution.id, &stage_id, &actor, &judgment)
        .await?;
    Ok(accepted(
        &execution,
        "judgment",
        Some(stage_id),
        json!({ "judgmentStatus": judgment.judgment_status, "judgmentInput": judgment.judgment_input }),
    ))
}

/// Evaluates an expression against an execution, as one of its stages sees it (like
/// Gate's `evaluateExpression`). A failing expression is answered 200 with `error`,
/// which names the position and the cause.
#[utoipa::path(post, path = "/api/v1/executions/{id}/evaluate", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    request_body(content = EvaluateBody),
    responses((status = 200, body = EvaluateResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn evaluate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Json<EvaluateResponse>> {
    let execution = load(&state, &caller, &id, Access::Read).await?;
    let body: EvaluateBody = required_body(
        &body,
        r#"{"expression": "${ trigger.user }", "stageId": "1"}"#,
    )?;
    let outcome = state
        .engine
        .evaluate(&execution.id, &body.expression, body.stage_id.as_deref())
        .await?;
    Ok(Json(match outcome {
        Ok(evaluation) => EvaluateResponse {
            result: Some(evaluation.value),
            error: None,
            warnings: evaluation.warnings,
        },
        Err(error) => EvaluateResponse {
            result: None,
            error: Some(error),
            warnings: Vec::new(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_parsed_case_insensitively_and_unknown_ones_named() {
        assert_eq!(
            parse_statuses("running, Paused,,").unwrap_or_default(),
            vec![ExecutionStatus::Running, ExecutionStatus::Paused]
        );
        assert!(parse_statuses("").unwrap_or_default().is_empty());
        let err = parse_statuses("RUNNING,DONE").err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("'DONE'") && e.contains("SUCCEEDED")),
            "{err:?}"
        );
    }

    #[test]
    fn run_bodies_accept_gate_style_trigger_fields() {
        let body: RunBody = optional_body(
            &Bytes::from_static(br#"{"type": "webhook", "parameters": {"a": 1}}"#),
            "",
        )
        .unwrap_or_default();
        assert_eq!(body.extra.get("type"), Some(&json!("webhook")));
        assert_eq!(body.parameters.get("a"), Some(&json!(1)));
        let empty: RunBody = optional_body(&Bytes::from_static(b"  \n"), "").unwrap_or_default();
        assert!(empty.parameters.is_empty());
        let err = optional_body::<RunBody>(&Bytes::from_static(b"{"), "{...}")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("send JSON like {...}")));
    }
}

/// Lists the notifications an execution queued (pipeline- and stage-level), oldest
/// first, with what became of each: `PENDING` (with the last error while retrying),
/// `DELIVERED`, `FAILED` (with the reason) or `SKIPPED` (a type Gennaker does not send).
/// Secrets in them are redacted.
#[utoipa::path(get, path = "/api/v1/executions/{id}/notifications", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, body = Object, description = "The execution's notifications"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let execution = load(&state, &caller, &id, Access::Read).await?;
    let listed = state
        .notifications
        .execution_notifications(&execution.id)
        .await?
        .into_iter()
        .map(|n| {
            let mut document: Value = serde_json::from_str(&n.document).unwrap_or(Value::Null);
            gennaker_core::redact::redact_value(&mut document);
            let pending = n.status == gennaker_store::NotificationStatus::Pending;
            json!({
                "id": n.id,
                "type": n.kind,
                "event": n.event,
                "stageId": n.stage_id,
                "address": document.get("address").cloned().unwrap_or(Value::Null),
                "status": n.status,
                "attempts": n.attempts,
                "nextAttemptAt": if pending { Some(n.next_attempt_at) } else { None },
                "lastError": n.last_error,
                "createdAt": n.created_at,
                "finishedAt": n.finished_at,
                "message": document.get("message").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(listed))
}
