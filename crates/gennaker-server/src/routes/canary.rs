//! The canary report of a `kayentaCanary` stage: `GET
//! /api/v1/executions/{id}/stages/{stageId}/canary` as JSON (or `?format=html`), and
//! `…/canary.html` as a standalone page. READ on the execution's application, as for
//! the execution itself; the execution is read through the engine's redacted reads.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use gennaker_canary::report::{self, CanaryReport};
use serde::Deserialize;

use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::executions::load;
use crate::state::AppState;

/// How to answer.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct ReportParams {
    /// `json` (the default) or `html` (the standalone page).
    format: Option<String>,
}

/// The report of `stage` (id or name) in execution `id`, or 404.
async fn assemble(
    state: &AppState,
    caller: &Caller,
    id: &str,
    stage: &str,
) -> ApiResult<CanaryReport> {
    let execution = load(state, caller, id, Access::Read).await?;
    report::assemble(&execution, Some(stage)).map_err(|err| ApiError::NotFound(err.to_string()))
}

/// The page, with a policy that lets no script run and nothing load.
fn html(report: &CanaryReport) -> Response {
    let mut response = report::render_html(report).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The canary report of a `kayentaCanary` stage (or of one of its `Run Canary #i`
/// judgements): per interval the score, verdict, windows and warnings; per metric the
/// classification with the numbers behind it, both series and the exact queries; the
/// overall score and message.
#[utoipa::path(get, path = "/api/v1/executions/{id}/stages/{stageId}/canary", tag = "executions",
    params(("id" = String, Path, description = "Execution id"),
        ("stageId" = String, Path, description = "The kayentaCanary stage (or a runCanary stage): its id or name"),
        ReportParams),
    responses((status = 200, body = Object, description = "The CanaryReport (JSON), or the HTML page with format=html"),
        (status = 400, body = ErrorBody, description = "An unknown format"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such execution or stage, or the stage is not a canary analysis")))]
pub(crate) async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stage)): Path<(String, String)>,
    Query(params): Query<ReportParams>,
) -> ApiResult<Response> {
    let html_wanted = match params.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown format '{other}'; use format=json or format=html"
            )));
        }
    };
    let report = assemble(&state, &caller, &id, &stage).await?;
    Ok(if html_wanted {
        html(&report)
    } else {
        Json(report).into_response()
    })
}

/// The canary report as a standalone HTML page (inline CSS and SVG charts, no script).
#[utoipa::path(get, path = "/api/v1/executions/{id}/stages/{stageId}/canary.html", tag = "executions",
    params(("id" = String, Path, description = "Execution id"),
        ("stageId" = String, Path, description = "The kayentaCanary stage (or a runCanary stage): its id or name")),
    responses((status = 200, content_type = "text/html", body = String, description = "The page"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such execution or stage, or the stage is not a canary analysis")))]
pub(crate) async fn report_html(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, stage)): Path<(String, String)>,
) -> ApiResult<Response> {
    let report = assemble(&state, &caller, &id, &stage).await?;
    Ok(html(&report))
}
