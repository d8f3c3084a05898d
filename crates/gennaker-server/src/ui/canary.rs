//! The canary report of a `kayentaCanary` stage inside the UI's layout: the very report
//! `GET /api/v1/executions/{id}/stages/{stageId}/canary` answers, rendered by
//! gennaker-canary's HTML renderer (per-interval scores, per-metric classification, both
//! series and their distributions as SVG), with its style sheet served beside the UI's.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use gennaker_canary::report;

use super::format::url_component;
use super::pages::Layout;
use super::{UiState, Viewer, error_page, render};
use crate::auth::Access;
use crate::error::{ApiError, ApiResult};

#[derive(Template)]
#[template(path = "ui/canary.html")]
struct CanaryPage {
    layout: Layout,
    execution_url: String,
    execution_name: String,
    stage_url: String,
    stage_name: String,
    json_url: String,
    /// The renderer's HTML: every text from the execution is escaped by it.
    body: String,
}

/// `/executions/{id}/stages/{stage}/canary`: the report of a canary stage (its id or
/// name), for those who may READ the execution.
pub(crate) async fn report_page(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((id, stage)): Path<(String, String)>,
) -> Response {
    match canary_page(&state, &viewer, &id, &stage).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn canary_page(
    state: &UiState,
    viewer: &Viewer,
    id: &str,
    stage: &str,
) -> ApiResult<CanaryPage> {
    let execution =
        crate::routes::executions::load(&state.app, &viewer.caller, id, Access::Read).await?;
    let report = report::assemble(&execution, Some(stage))
        .map_err(|err| ApiError::NotFound(err.to_string()))?;
    let id_url = url_component(&execution.id);
    let found = report::find_stage(&execution, Some(stage)).ok();
    let stage_id = found.map_or_else(|| stage.to_owned(), |s| s.id.clone());
    Ok(CanaryPage {
        layout: Layout::new(
            viewer,
            format!("Canary report: {} · {}", report.stage_name, execution.name),
            Some(&execution.application),
            "executions",
        ),
        execution_url: format!("/executions/{id_url}"),
        execution_name: execution.name.clone(),
        stage_url: format!(
            "/executions/{id_url}?stage={}#stage-detail",
            url_component(&stage_id)
        ),
        stage_name: report.stage_name.clone(),
        json_url: format!(
            "/api/v1/executions/{id_url}/stages/{}/canary",
            url_component(&stage_id)
        ),
        body: report::render_html_body(&report),
    })
}
