//! The UI's pages (GET): what each shows, read from the store and the engine with the
//! API's permission checks.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gennaker_core::execution::{Execution, ExecutionStatus, StageExecution};
use gennaker_core::redact::redact_value;
use gennaker_deploy::{HealthState, ServerGroup};
use gennaker_store::{ApplicationRecord, ExecutionQuery, PipelineRecord, now_millis};
use serde::Deserialize;
use serde_json::Value;

use super::format::{self, elapsed, failure_reason, stage_error, url_component};
use super::graph::{self, Graph};
use super::{Flash, UiState, Viewer, error_page, redirect, render};
use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult};
use crate::routes::applications::authorize;

/// Executions per page of an application's list.
pub(crate) const PAGE_SIZE: usize = 25;
/// Pages of executions one can page through (the API lists at most 1,000).
pub(crate) const MAX_PAGES: usize = 40;
/// Applications per page of the applications list.
const APPS_PER_PAGE: usize = 50;
/// Recent executions shown per application in the applications list.
const RECENT: i64 = 5;
/// The most of a stage's context or outputs shown as JSON.
const MAX_DETAIL_JSON: usize = 48 * 1024;

/// What every page's frame shows.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The page's title.
    pub title: String,
    /// The signed-in user.
    pub user: String,
    /// Their session's CSRF token, for the forms.
    pub csrf: String,
    /// A message left by the last action.
    pub flash: Option<Flash>,
    /// The application the page belongs to (its navigation is shown).
    pub app: Option<String>,
    /// Which of the application's sections is shown (`executions`, `pipelines`,
    /// `clusters`).
    pub section: &'static str,
    /// Whether the user is an admin (the audit log is linked).
    pub admin: bool,
}

impl Layout {
    pub(crate) fn new(
        viewer: &Viewer,
        title: String,
        app: Option<&str>,
        section: &'static str,
    ) -> Self {
        Layout {
            title,
            user: viewer.caller.name.clone(),
            csrf: viewer.session.csrf.clone(),
            flash: None,
            app: app.map(str::to_owned),
            section,
            admin: viewer.caller.admin,
        }
    }

    pub(crate) fn with_flash(mut self, state: &UiState, viewer: &Viewer) -> Self {
        self.flash = state.take_flash(viewer);
        self
    }

    /// The application's name, URL-encoded for links.
    pub(crate) fn app_url(&self) -> String {
        self.app.as_deref().map(url_component).unwrap_or_default()
    }
}

/// An error within the page frame.
#[derive(Template)]
#[template(path = "ui/error.html")]
pub(crate) struct ErrorPage {
    pub layout: Layout,
    pub message: String,
}

/// An error without the frame (no signed-in user).
#[derive(Template)]
#[template(path = "ui/plain_error.html")]
pub(crate) struct PlainError {
    pub title: String,
    pub message: String,
}

/// Whether the caller may do `access` on the application.
pub(crate) fn may(caller: &Caller, application: &ApplicationRecord, access: Access) -> bool {
    caller
        .require(&application.name, &application.config, access)
        .is_ok()
}

/// `/`: the applications list, or the sign-in form.
pub(crate) async fn home() -> Response {
    redirect("/applications")
}

/// `/applications/{app}`: its executions.
pub(crate) async fn application(Path(app): Path<String>) -> Response {
    redirect(&format!("/applications/{}/executions", url_component(&app)))
}

/// A status square or segment.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// Where it links.
    pub href: String,
    /// Its tooltip and accessible name.
    pub title: String,
    /// Its status (the CSS class).
    pub status: &'static str,
    /// Text shown on it (a duration), or empty.
    pub text: String,
}

/// One application in the list.
#[derive(Debug)]
pub(crate) struct AppRow {
    name: String,
    url: String,
    description: String,
    owner: String,
    recent: Vec<Segment>,
}

#[derive(Template)]
#[template(path = "ui/applications.html")]
struct ApplicationsPage {
    layout: Layout,
    query: String,
    rows: Vec<AppRow>,
    total: usize,
    page: usize,
    page_links: PageLinks,
}

/// Previous and next page links.
#[derive(Debug, Default)]
pub(crate) struct PageLinks {
    prev: Option<String>,
    next: Option<String>,
}

/// The applications list's filters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AppsParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

fn text_of(config: &Value, key: &str) -> String {
    config
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `/applications`: the applications the user may READ, with a search and their recent
/// executions' status.
pub(crate) async fn applications(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(params): Query<AppsParams>,
) -> Response {
    match applications_page(&state, &viewer, params).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn applications_page(
    state: &UiState,
    viewer: &Viewer,
    params: AppsParams,
) -> ApiResult<ApplicationsPage> {
    let query = params.q.trim().to_lowercase();
    let matching: Vec<ApplicationRecord> = state
        .app
        .store
        .list_applications()
        .await?
        .into_iter()
        .filter(|app| may(&viewer.caller, app, Access::Read))
        .filter(|app| {
            query.is_empty()
                || app.name.to_lowercase().contains(&query)
                || text_of(&app.config, "description")
                    .to_lowercase()
                    .contains(&query)
        })
        .collect();
    let total = matching.len();
    let pages = total.div_ceil(APPS_PER_PAGE).max(1);
    let page = params.page.unwrap_or(1).clamp(1, pages);
    let mut rows = Vec::new();
    for app in matching
        .into_iter()
        .skip((page - 1) * APPS_PER_PAGE)
        .take(APPS_PER_PAGE)
    {
        let recent = state
            .app
            .engine
            .executions(&ExecutionQuery {
                application: Some(app.name.clone()),
                pipeline_config_id: None,
                pipeline_name: None,
                statuses: Vec::new(),
                limit: RECENT,
                oldest_first: false,
                ..Default::default()
            })
            .await?;
        rows.push(AppRow {
            url: url_component(&app.name),
            description: text_of(&app.config, "description"),
            owner: text_of(&app.config, "email"),
            recent: recent
                .iter()
                .map(|e| Segment {
                    href: format!("/executions/{}", url_component(&e.id)),
                    title: format!("{} {}: {}", e.name, format::time(e.build_time), e.status),
                    status: e.status.as_str(),
                    text: String::new(),
                })
                .collect(),
            name: app.name,
        });
    }
    let q = url_component(params.q.trim());
    let link = |p: usize| format!("/applications?q={q}&page={p}");
    Ok(ApplicationsPage {
        layout: Layout::new(viewer, "Applications".to_owned(), None, "").with_flash(state, viewer),
        query: params.q.trim().to_owned(),
        rows,
        total,
        page,
        page_links: PageLinks {
            prev: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
        },
    })
}

/// One execution in a list.
#[derive(Debug)]
pub(crate) struct ExecutionRow {
    url: String,
    name: String,
    status: &'static str,
    trigger: String,
    started: String,
    duration: String,
    stages: Vec<Segment>,
}

fn trigger_summary(execution: &Execution) -> String {
    let kind = execution
        .trigger
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("manual");
    let user = execution
        .trigger
        .get("user")
        .and_then(Value::as_str)
        .unwrap_or(&execution.authentication.user);
    format!("{kind} by {user}")
}

fn stage_duration(stage: &StageExecution, now: i64) -> String {
    elapsed(stage.start_time, stage.end_time, now)
}

fn execution_row(execution: &Execution, now: i64) -> ExecutionRow {
    let url = format!("/executions/{}", url_component(&execution.id));
    ExecutionRow {
        stages: execution
            .top_level_stages()
            .map(|stage| {
                let duration = stage_duration(stage, now);
                Segment {
                    href: format!("{url}?stage={}#stage-detail", url_component(&stage.id)),
                    title: format!("{}: {} {duration}", stage.name, stage.status),
                    status: stage.status.as_str(),
                    text: duration,
                }
            })
            .collect(),
        url,
        name: execution.name.clone(),
        status: execution.status.as_str(),
        trigger: trigger_summary(execution),
        started: format::time(execution.start_time.unwrap_or(execution.build_time)),
        duration: elapsed(
            execution.start_time,
            execution.end_time,
            now.max(execution.start_time.unwrap_or(now)),
        ),
    }
}

#[derive(Template)]
#[template(path = "ui/executions.html")]
struct ExecutionsPage {
    layout: Layout,
    pipelines: Vec<String>,
    pipeline: String,
    statuses: Vec<&'static str>,
    status: String,
    /// Trigger type and time filters.
    more: super::filters::FiltersView,
    rows: Vec<ExecutionRow>,
    page: usize,
    page_links: PageLinks,
}

/// The executions list's filters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExecutionsParams {
    #[serde(default)]
    pipeline: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: Option<usize>,
    /// Trigger type and time.
    #[serde(flatten)]
    more: super::filters::MoreFilters,
}

/// `/applications/{app}/executions`: newest first, filtered by pipeline and status,
/// 25 a page; every filter and page is in the URL.
pub(crate) async fn executions(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(app): Path<String>,
    Query(params): Query<ExecutionsParams>,
) -> Response {
    match executions_page(&state, &viewer, &app, params).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn executions_page(
    state: &UiState,
    viewer: &Viewer,
    app: &str,
    params: ExecutionsParams,
) -> ApiResult<ExecutionsPage> {
    let application = authorize(&state.app, &viewer.caller, app, Access::Read).await?;
    let status = params.status.trim().to_uppercase();
    let statuses = if status.is_empty() {
        Vec::new()
    } else {
        vec![ExecutionStatus::parse(&status).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status '{status}'; choose one from the list"
            ))
        })?]
    };
    let page = params.page.unwrap_or(1).clamp(1, MAX_PAGES);
    let pipeline = params.pipeline.trim().to_owned();
    let now = now_millis();
    let mut query = ExecutionQuery {
        application: Some(application.name.clone()),
        pipeline_config_id: None,
        pipeline_name: (!pipeline.is_empty()).then(|| pipeline.clone()),
        statuses,
        limit: i64::try_from(page * PAGE_SIZE + 1).unwrap_or(i64::MAX),
        oldest_first: false,
        ..Default::default()
    };
    let (more, more_url) = params.more.apply(&mut query, now)?;
    let found = state.app.engine.executions(&query).await?;
    let has_next = found.len() > page * PAGE_SIZE && page < MAX_PAGES;
    let rows = found
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|e| execution_row(e, now))
        .collect();
    let mut pipelines: Vec<String> = state
        .app
        .store
        .list_pipelines(&application.name)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    pipelines.sort();
    let base = format!(
        "/applications/{}/executions?pipeline={}&status={}{more_url}",
        url_component(&application.name),
        url_component(&pipeline),
        url_component(&status)
    );
    Ok(ExecutionsPage {
        layout: Layout::new(
            viewer,
            format!("Executions · {}", application.name),
            Some(&application.name),
            "executions",
        )
        .with_flash(state, viewer),
        pipelines,
        pipeline,
        statuses: gennaker_core::execution::ALL_STATUSES
            .iter()
            .map(|s| s.as_str())
            .collect(),
        status,
        more,
        rows,
        page,
        page_links: PageLinks {
            prev: (page > 1).then(|| format!("{base}&page={}", page - 1)),
            next: has_next.then(|| format!("{base}&page={}", page + 1)),
        },
    })
}

/// A stage in the execution page's list.
#[derive(Debug)]
pub(crate) struct StageRow {
    id: String,
    href: String,
    name: String,
    stage_type: String,
    status: &'static str,
    duration: String,
    current_task: String,
    error: String,
    /// Nesting below its top-level stage (0 for top-level stages).
    depth: usize,
    /// Its synthetic stages, in order, nested ones flattened with their depth.
    children: Vec<StageRow>,
}

/// A manual judgment waiting for the viewer.
#[derive(Debug)]
pub(crate) struct JudgmentView {
    stage_id: String,
    url: String,
    name: String,
    instructions: String,
    inputs: Vec<String>,
    continue_label: String,
    stop_label: String,
    /// Roles that may judge, when the viewer has none of them.
    refused_roles: String,
}

/// A task of the selected stage.
#[derive(Debug)]
pub(crate) struct TaskRow {
    name: String,
    status: &'static str,
    duration: String,
}

/// The selected stage's details.
#[derive(Debug)]
pub(crate) struct StageDetail {
    name: String,
    stage_type: String,
    status: &'static str,
    started: String,
    duration: String,
    error: String,
    tasks: Vec<TaskRow>,
    context: String,
    outputs: String,
}

/// The part of the execution page that follows the execution live.
#[derive(Template)]
#[template(path = "ui/live.html")]
pub(crate) struct LivePart {
    id_url: String,
    csrf: String,
    status: &'static str,
    complete: bool,
    duration: String,
    failure: String,
    graph: Graph,
    stages: Vec<StageRow>,
    judgments: Vec<JudgmentView>,
    can_execute: bool,
    detail: Option<StageDetail>,
    /// Pause/resume, restart and skip buttons (EXECUTE only).
    controls: super::controls::Controls,
}

#[derive(Template)]
#[template(path = "ui/execution.html")]
struct ExecutionPage {
    layout: Layout,
    id: String,
    name: String,
    kind: &'static str,
    trigger: String,
    started: String,
    parameters: Vec<(String, String)>,
    complete: bool,
    live_url: String,
    events_url: String,
    live: String,
}

/// Which stage's details to show.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StageParams {
    #[serde(default)]
    stage: Option<String>,
}

fn current_task(stage: &StageExecution) -> String {
    stage
        .tasks
        .iter()
        .find(|t| t.status == ExecutionStatus::Running)
        .map(|t| t.name.clone())
        .unwrap_or_default()
}

fn stage_row(execution: &Execution, stage: &StageExecution, depth: usize, now: i64) -> StageRow {
    let mut children = Vec::new();
    if depth == 0 {
        collect_children(execution, &stage.id, 1, now, &mut children);
    }
    StageRow {
        id: stage.id.clone(),
        href: format!(
            "/executions/{}?stage={}#stage-detail",
            url_component(&execution.id),
            url_component(&stage.id)
        ),
        name: stage.name.clone(),
        stage_type: stage.stage_type.clone(),
        status: stage.status.as_str(),
        duration: stage_duration(stage, now),
        current_task: current_task(stage),
        error: stage_error(stage).unwrap_or_default(),
        depth,
        children,
    }
}

/// Synthetic stages under `parent`, depth first (bounded by the stage count, since a
/// stage cannot be its own ancestor in a valid execution).
fn collect_children(
    execution: &Execution,
    parent: &str,
    depth: usize,
    now: i64,
    into: &mut Vec<StageRow>,
) {
    if depth > 8 {
        return;
    }
    for stage in execution
        .stages
        .iter()
        .filter(|s| s.parent_stage_id.as_deref() == Some(parent))
    {
        into.push(stage_row(execution, stage, depth, now));
        collect_children(execution, &stage.id, depth + 1, now, into);
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("value").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn judgment_view(execution: &Execution, stage: &StageExecution, caller: &Caller) -> JudgmentView {
    let text = |key: &str| {
        stage
            .context
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let roles = strings(stage.context.get("selectedStageRoles"));
    let allowed = caller.admin
        || roles.is_empty()
        || roles
            .iter()
            .any(|r| caller.roles.iter().any(|c| c.eq_ignore_ascii_case(r)));
    let label = |key: &str, fallback: &str| {
        let custom = text(key);
        if custom.trim().is_empty() {
            fallback.to_owned()
        } else {
            custom
        }
    };
    JudgmentView {
        url: format!(
            "/executions/{}/stages/{}/judgment",
            url_component(&execution.id),
            url_component(&stage.id)
        ),
        stage_id: stage.id.clone(),
        name: stage.name.clone(),
        instructions: text("instructions"),
        inputs: strings(stage.context.get("judgmentInputs")),
        continue_label: label("continueButtonLabel", "Continue"),
        stop_label: label("stopButtonLabel", "Stop"),
        refused_roles: if allowed {
            String::new()
        } else {
            roles.join(", ")
        },
    }
}

fn pretty_json(map: &serde_json::Map<String, Value>) -> String {
    let text = serde_json::to_string_pretty(map).unwrap_or_default();
    if text.len() <= MAX_DETAIL_JSON {
        return text;
    }
    let mut cut = MAX_DETAIL_JSON;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n… (cut at {} KiB; `gennaker execution get` shows all of it)",
        &text[..cut],
        MAX_DETAIL_JSON / 1024
    )
}

fn stage_detail(stage: &StageExecution, now: i64) -> StageDetail {
    StageDetail {
        name: stage.name.clone(),
        stage_type: stage.stage_type.clone(),
        status: stage.status.as_str(),
        started: stage.start_time.map(format::time).unwrap_or_default(),
        duration: stage_duration(stage, now),
        error: stage_error(stage).unwrap_or_default(),
        tasks: stage
            .tasks
            .iter()
            .map(|t| TaskRow {
                name: t.name.clone(),
                status: t.status.as_str(),
                duration: elapsed(t.start_time, t.end_time, now),
            })
            .collect(),
        context: pretty_json(&stage.context),
        outputs: pretty_json(&stage.outputs),
    }
}

/// Renders the live part of an execution page. The execution comes from the engine's
/// public reads, which are redacted.
pub(crate) fn live_part(
    execution: &Execution,
    viewer: &Viewer,
    can_execute: bool,
    selected: Option<&str>,
    now: i64,
) -> LivePart {
    let graph = graph::layout(execution, |stage| stage_duration(stage, now));
    let stages = execution
        .top_level_stages()
        .map(|stage| stage_row(execution, stage, 0, now))
        .collect();
    let judgments = if can_execute {
        execution
            .stages
            .iter()
            .filter(|s| {
                s.stage_type == "manualJudgment"
                    && s.status == ExecutionStatus::Running
                    && !s.context.contains_key("judgmentStatus")
            })
            .map(|s| judgment_view(execution, s, &viewer.caller))
            .collect()
    } else {
        Vec::new()
    };
    let detail = selected
        .and_then(|id| {
            execution
                .stage(id)
                .or_else(|| execution.stages.iter().find(|s| s.ref_id == id))
        })
        .map(|stage| stage_detail(stage, now));
    LivePart {
        id_url: url_component(&execution.id),
        csrf: viewer.session.csrf.clone(),
        status: execution.status.as_str(),
        complete: execution.status.is_complete(),
        duration: elapsed(execution.start_time, execution.end_time, now),
        failure: failure_reason(execution).unwrap_or_default(),
        graph,
        stages,
        judgments,
        controls: super::controls::controls(execution, can_execute),
        can_execute,
        detail,
    }
}

/// Reads an execution for the viewer, and whether they may act on it.
async fn readable_execution(
    state: &UiState,
    viewer: &Viewer,
    id: &str,
) -> ApiResult<(Execution, bool)> {
    let execution =
        crate::routes::executions::load(&state.app, &viewer.caller, id, Access::Read).await?;
    let can_execute = crate::routes::executions::authorize(
        &state.app,
        &viewer.caller,
        &execution.application,
        Access::Execute,
    )
    .await
    .is_ok();
    Ok((execution, can_execute))
}

/// `/executions/{id}`: the execution page (a permalink).
pub(crate) async fn execution(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Query<StageParams>,
) -> Response {
    let (execution, can_execute) = match readable_execution(&state, &viewer, &id).await {
        Ok(found) => found,
        Err(err) => return error_page(Some(&viewer), &err),
    };
    let page = execution_page(
        &state,
        &viewer,
        &execution,
        can_execute,
        params,
        now_millis(),
    );
    render(StatusCode::OK, &page)
}

fn execution_page(
    state: &UiState,
    viewer: &Viewer,
    execution: &Execution,
    can_execute: bool,
    params: StageParams,
    now: i64,
) -> impl Template {
    let live = live_part(execution, viewer, can_execute, params.stage.as_deref(), now);
    let live = live.render().unwrap_or_else(|err| {
        tracing::error!(error = %err, "the execution page's live part failed to render");
        String::new()
    });
    let id_url = url_component(&execution.id);
    let stage_query = params
        .stage
        .as_deref()
        .map(|s| format!("?stage={}", url_component(s)))
        .unwrap_or_default();
    let mut parameters: Vec<(String, String)> = execution
        .parameters()
        .into_iter()
        .map(|(name, value)| {
            let shown = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (name, shown)
        })
        .collect();
    parameters.sort();
    ExecutionPage {
        layout: Layout::new(
            viewer,
            format!("{} · {}", execution.name, execution.application),
            Some(&execution.application),
            "executions",
        )
        .with_flash(state, viewer),
        id: execution.id.clone(),
        name: execution.name.clone(),
        kind: match execution.execution_type {
            gennaker_core::execution::ExecutionType::Pipeline => "Pipeline",
            gennaker_core::execution::ExecutionType::Orchestration => "Task",
        },
        trigger: trigger_summary(execution),
        started: format::time(execution.start_time.unwrap_or(execution.build_time)),
        parameters,
        complete: execution.status.is_complete(),
        live_url: format!("/executions/{id_url}/live{stage_query}"),
        events_url: format!("/executions/{id_url}/events"),
        live,
    }
}

/// `/executions/{id}/live`: the live part alone, fetched by the page's script when an
/// event says the execution changed.
pub(crate) async fn execution_live(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Query<StageParams>,
) -> Response {
    match readable_execution(&state, &viewer, &id).await {
        Ok((execution, can_execute)) => render(
            StatusCode::OK,
            &live_part(
                &execution,
                &viewer,
                can_execute,
                params.stage.as_deref(),
                now_millis(),
            ),
        ),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

/// One pipeline in the list.
#[derive(Debug)]
pub(crate) struct PipelineRow {
    name: String,
    run_url: String,
    edit_url: String,
    history_url: String,
    executions_url: String,
    stages: usize,
    parameters: usize,
    disabled: bool,
    last: Option<Segment>,
}

#[derive(Template)]
#[template(path = "ui/pipelines.html")]
struct PipelinesPage {
    layout: Layout,
    rows: Vec<PipelineRow>,
    can_execute: bool,
    can_write: bool,
}

/// `/applications/{app}/pipelines`: its pipelines, their last run, and a run button
/// for those who may EXECUTE.
pub(crate) async fn pipelines(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(app): Path<String>,
) -> Response {
    match pipelines_page(&state, &viewer, &app).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn pipelines_page(state: &UiState, viewer: &Viewer, app: &str) -> ApiResult<PipelinesPage> {
    let application = authorize(&state.app, &viewer.caller, app, Access::Read).await?;
    let can_execute = may(&viewer.caller, &application, Access::Execute);
    let can_write = may(&viewer.caller, &application, Access::Write);
    let app_url = url_component(&application.name);
    let mut rows = Vec::new();
    for pipeline in state.app.store.list_pipelines(&application.name).await? {
        let last = state
            .app
            .engine
            .executions(&ExecutionQuery {
                application: Some(application.name.clone()),
                pipeline_config_id: None,
                pipeline_name: Some(pipeline.name.clone()),
                statuses: Vec::new(),
                limit: 1,
                oldest_first: false,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next();
        let count = |key: &str| pipeline.config[key].as_array().map_or(0, Vec::len);
        let name_url = url_component(&pipeline.name);
        rows.push(PipelineRow {
            run_url: format!("/applications/{app_url}/pipelines/{name_url}/run"),
            edit_url: format!("/applications/{app_url}/pipelines/{name_url}/edit"),
            history_url: format!("/applications/{app_url}/pipelines/{name_url}/history"),
            executions_url: format!("/applications/{app_url}/executions?pipeline={name_url}"),
            stages: count("stages"),
            parameters: count("parameterConfig"),
            disabled: gennaker_core::truthy(pipeline.config.get("disabled")),
            last: last.map(|e| Segment {
                href: format!("/executions/{}", url_component(&e.id)),
                title: format!("{}: {}", format::time(e.build_time), e.status),
                status: e.status.as_str(),
                text: format::time(e.build_time),
            }),
            name: pipeline.name,
        });
    }
    Ok(PipelinesPage {
        layout: Layout::new(
            viewer,
            format!("Pipelines · {}", application.name),
            Some(&application.name),
            "pipelines",
        )
        .with_flash(state, viewer),
        rows,
        can_execute,
        can_write,
    })
}

/// What the pipeline form pages (edit, run) share: the pipeline and its application,
/// the page's layout and the form's action.
struct PipelineForm {
    application: ApplicationRecord,
    pipeline: PipelineRecord,
    layout: Layout,
    action: String,
}

/// Finds pipeline `name` (or id) of `app` for a viewer with `access` there; the page is
/// titled "`{verb}` pipeline · application" and its form posts to
/// `/applications/{app}/pipelines/{pipeline}/{path}`.
async fn pipeline_form(
    state: &UiState,
    viewer: &Viewer,
    app: &str,
    name: &str,
    access: Access,
    verb: &str,
    path: &str,
) -> ApiResult<PipelineForm> {
    let application = authorize(&state.app, &viewer.caller, app, access).await?;
    let pipeline = crate::routes::pipelines::find(&state.app, &application.name, name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline '{name}' not found in application '{}'",
                application.name
            ))
        })?;
    let layout = Layout::new(
        viewer,
        format!("{verb} {} · {}", pipeline.name, application.name),
        Some(&application.name),
        "pipelines",
    )
    .with_flash(state, viewer);
    let action = format!(
        "/applications/{}/pipelines/{}/{path}",
        url_component(&application.name),
        url_component(&pipeline.name)
    );
    Ok(PipelineForm {
        application,
        pipeline,
        layout,
        action,
    })
}

#[derive(Template)]
#[template(path = "ui/edit.html")]
pub(crate) struct EditPage {
    pub layout: Layout,
    pub pipeline: String,
    pub action: String,
    pub text: String,
    /// Whether the text is YAML (else JSON).
    pub yaml: bool,
    pub error: String,
    pub problems: Vec<super::ProblemView>,
}

/// `?format=yaml` on the editor.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EditParams {
    format: Option<String>,
}

/// Whether a `format` value asks for YAML.
pub(crate) fn wants_yaml(format: Option<&str>) -> bool {
    format.is_some_and(|f| f.eq_ignore_ascii_case("yaml"))
}

/// The JSON or YAML editor of a pipeline (WRITE only; editors see its secrets, as in
/// the API).
pub(crate) async fn edit_page(
    state: &UiState,
    viewer: &Viewer,
    app: &str,
    name: &str,
    yaml: bool,
) -> ApiResult<EditPage> {
    let PipelineForm {
        pipeline,
        layout,
        action,
        ..
    } = pipeline_form(state, viewer, app, name, Access::Write, "Edit", "edit").await?;
    Ok(EditPage {
        layout,
        action,
        text: if yaml {
            gennaker_core::to_yaml_string(&pipeline.config).unwrap_or_default()
        } else {
            serde_json::to_string_pretty(&pipeline.config).unwrap_or_default()
        },
        yaml,
        pipeline: pipeline.name,
        error: String::new(),
        problems: Vec::new(),
    })
}

/// `/applications/{app}/pipelines/{name}/edit[?format=yaml]`: the pipeline as JSON (or
/// YAML), to edit.
pub(crate) async fn edit_form(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<EditParams>,
) -> Response {
    let yaml = wants_yaml(params.format.as_deref());
    match edit_page(&state, &viewer, &app, &name, yaml).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

/// One parameter of the run form.
#[derive(Debug, Clone)]
pub(crate) struct ParamField {
    /// The parameter's name (the form field is `p.<name>`).
    pub name: String,
    /// Its label.
    pub label: String,
    /// Its help text.
    pub description: String,
    /// Whether a run needs a value (and it has no default).
    pub required: bool,
    /// Its choices, when it is restricted to them.
    pub options: Vec<String>,
    /// Its default, as shown (redacted for those who may not edit the pipeline).
    pub default: String,
    /// The value entered (after a refused run).
    pub value: String,
}

#[derive(Template)]
#[template(path = "ui/run.html")]
pub(crate) struct RunPage {
    pub layout: Layout,
    pub pipeline: String,
    pub description: String,
    pub action: String,
    pub fields: Vec<ParamField>,
    pub error: String,
}

/// The run form's fields for a pipeline document, as `caller` may see them.
pub(crate) fn parameter_fields(
    config: &Value,
    caller: &Caller,
    application: &ApplicationRecord,
) -> Vec<ParamField> {
    let mut config = config.clone();
    if !may(caller, application, Access::Write) {
        redact_value(&mut config);
    }
    let Ok(pipeline) = gennaker_core::Pipeline::from_value(config) else {
        return Vec::new();
    };
    pipeline
        .parameter_config
        .iter()
        .map(|p| {
            let default = match &p.default {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let restricted = p
                .has_options
                .as_ref()
                .and_then(|o| o.as_bool())
                .unwrap_or(false);
            ParamField {
                name: p.name.clone(),
                label: p
                    .label
                    .clone()
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| p.name.clone()),
                description: p.description.clone().unwrap_or_default(),
                required: p
                    .required
                    .as_ref()
                    .and_then(|r| r.as_bool())
                    .unwrap_or(false)
                    && default.is_empty(),
                options: if restricted {
                    p.option_values()
                } else {
                    Vec::new()
                },
                value: String::new(),
                default,
            }
        })
        .collect()
}

/// The run form page.
pub(crate) async fn run_page(
    state: &UiState,
    viewer: &Viewer,
    app: &str,
    name: &str,
) -> ApiResult<RunPage> {
    let PipelineForm {
        application,
        pipeline,
        layout,
        action,
    } = pipeline_form(state, viewer, app, name, Access::Execute, "Run", "run").await?;
    Ok(RunPage {
        layout,
        description: text_of(&pipeline.config, "description"),
        action,
        fields: parameter_fields(&pipeline.config, &viewer.caller, &application),
        pipeline: pipeline.name,
        error: String::new(),
    })
}

/// `/applications/{app}/pipelines/{name}/run`: a form generated from the pipeline's
/// parameters (choices, defaults, required ones marked).
pub(crate) async fn run_form(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((app, name)): Path<(String, String)>,
) -> Response {
    match run_page(&state, &viewer, &app, &name).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

/// An instance's health square.
#[derive(Debug)]
pub(crate) struct InstanceView {
    health: &'static str,
    title: String,
}

/// A server group's card.
#[derive(Debug)]
pub(crate) struct GroupView {
    name: String,
    version: String,
    artifact: String,
    created: String,
    min: u32,
    desired: u32,
    max: u32,
    disabled: bool,
    up: usize,
    load_balancers: String,
    /// Its traffic share behind each load balancer: (load balancer, percent).
    traffic: Vec<(String, u32)>,
    instances: Vec<InstanceView>,
    /// (label, confirmation page URL).
    actions: Vec<(String, String)>,
}

/// A cluster of one account.
#[derive(Debug)]
pub(crate) struct ClusterView {
    name: String,
    provider: String,
    groups: Vec<GroupView>,
}

/// An account's clusters.
#[derive(Debug)]
pub(crate) struct AccountView {
    name: String,
    clusters: Vec<ClusterView>,
}

#[derive(Template)]
#[template(path = "ui/clusters.html")]
struct ClustersPage {
    layout: Layout,
    accounts: Vec<AccountView>,
}

fn health_name(health: HealthState) -> &'static str {
    match health {
        HealthState::Starting => "Starting",
        HealthState::Up => "Up",
        HealthState::Down => "Down",
        HealthState::OutOfService => "OutOfService",
    }
}

/// What a server group runs, as shown: the artifact's file name and the arguments
/// (redacted; the environment is not shown at all).
fn artifact_of(group: &ServerGroup) -> (String, String) {
    let mut spec = group.spec.clone();
    redact_value(&mut spec);
    let artifact = ["path", "url", "reference", "name"]
        .iter()
        .find_map(|key| spec["artifact"][key].as_str())
        .or_else(|| spec["image"].as_str())
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    let args = spec["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    (artifact, graph::shorten(&args, 60))
}

/// What the viewer may do to server groups: EXECUTE runs operations; destroying one
/// also needs WRITE.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupRights {
    execute: bool,
    write: bool,
}

impl GroupRights {
    const NONE: GroupRights = GroupRights {
        execute: false,
        write: false,
    };
}

fn group_view(
    app_url: &str,
    group: &ServerGroup,
    rights: GroupRights,
    traffic: Vec<(String, u32)>,
) -> GroupView {
    let (artifact, version) = artifact_of(group);
    let mut actions = Vec::new();
    if rights.execute {
        let base = format!(
            "/applications/{app_url}/serverGroups/{}/{}",
            url_component(&group.account),
            url_component(&group.name)
        );
        let provider = format!("?cloudProvider={}", url_component(&group.cloud_provider));
        if group.disabled {
            actions.push(("Enable".to_owned(), format!("{base}/enable{provider}")));
        } else {
            actions.push(("Disable".to_owned(), format!("{base}/disable{provider}")));
            actions.push(("Roll back".to_owned(), format!("{base}/rollback{provider}")));
        }
        actions.push(("Resize".to_owned(), format!("{base}/resize{provider}")));
        if rights.write {
            actions.push(("Destroy".to_owned(), format!("{base}/destroy{provider}")));
        }
    }
    GroupView {
        name: group.name.clone(),
        version,
        artifact,
        created: format::time(group.created_time),
        min: group.capacity.min,
        desired: group.capacity.desired,
        max: group.capacity.max,
        disabled: group.disabled,
        up: group.up_instances(),
        load_balancers: group.load_balancers.join(", "),
        traffic,
        instances: group
            .instances
            .iter()
            .map(|i| InstanceView {
                health: health_name(i.health),
                title: format!(
                    "{}: {}{}{}",
                    i.id,
                    health_name(i.health),
                    i.address
                        .as_deref()
                        .map(|a| format!(" at {a}"))
                        .unwrap_or_default(),
                    i.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            })
            .collect(),
        actions,
    }
}

/// `/applications/{app}/clusters`: server groups as cards, grouped by account and
/// cluster, newest first, with actions for those who may EXECUTE.
pub(crate) async fn clusters(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(app): Path<String>,
) -> Response {
    match clusters_page(&state, &viewer, &app).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn clusters_page(state: &UiState, viewer: &Viewer, app: &str) -> ApiResult<ClustersPage> {
    let application = authorize(&state.app, &viewer.caller, app, Access::Read).await?;
    let rights = GroupRights {
        execute: may(&viewer.caller, &application, Access::Execute),
        write: may(&viewer.caller, &application, Access::Write),
    };
    let mut shares = super::balancers::traffic_shares(state, &application.name).await?;
    let app_url = url_component(&application.name);
    let mut grouped: BTreeMap<String, BTreeMap<(String, String), Vec<ServerGroup>>> =
        BTreeMap::new();
    for provider_name in state.app.providers.names() {
        let provider = state.app.providers.provider(Some(&provider_name))?;
        for group in provider.server_groups(&application.name).await? {
            grouped
                .entry(group.account.clone())
                .or_default()
                .entry((group.cluster(), group.cloud_provider.clone()))
                .or_default()
                .push(group);
        }
    }
    let accounts = grouped
        .into_iter()
        .map(|(account, clusters)| AccountView {
            name: account,
            clusters: clusters
                .into_iter()
                .map(|((name, provider), mut groups)| {
                    groups.sort_by_key(|g| std::cmp::Reverse(g.created_time));
                    ClusterView {
                        name,
                        provider,
                        groups: groups
                            .iter()
                            .map(|g| {
                                let traffic = shares
                                    .remove(&(g.account.clone(), g.name.clone()))
                                    .unwrap_or_default();
                                group_view(&app_url, g, rights, traffic)
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(ClustersPage {
        layout: Layout::new(
            viewer,
            format!("Clusters · {}", application.name),
            Some(&application.name),
            "clusters",
        )
        .with_flash(state, viewer),
        accounts,
    })
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
struct ConfirmPage {
    layout: Layout,
    group: GroupView,
    account: String,
    provider: String,
    operation: String,
    verb: String,
    explanation: String,
    action: String,
    back: String,
}

/// Which provider a server group belongs to.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderParams {
    #[serde(default)]
    pub cloud_provider: Option<String>,
}

/// What an operation does, for the confirmation.
pub(crate) fn explain(operation: &str) -> Option<(&'static str, &'static str)> {
    Some(match operation {
        "enable" => (
            "Enable",
            "Its instances join its load balancers again and take traffic.",
        ),
        "disable" => (
            "Disable",
            "Its instances leave its load balancers (they keep running) and take no traffic.",
        ),
        "rollback" => (
            "Roll back",
            "Traffic returns to the cluster's previous server group, which is enabled (and resized to this one's capacity), then this one is disabled.",
        ),
        "resize" => (
            "Resize",
            "Instances are started or stopped until the server group has the desired count.",
        ),
        "destroy" => (
            "Destroy",
            "Its instances are stopped, it leaves its load balancers and it is deleted: this cannot be undone (a new deploy creates a new server group).",
        ),
        _ => return None,
    })
}

/// `/applications/{app}/serverGroups/{account}/{name}/{operation}`: asks to confirm an
/// operation on a server group (and, for a resize, the new capacity).
pub(crate) async fn confirm_operation(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((app, account, name, operation)): Path<(String, String, String, String)>,
    Query(params): Query<ProviderParams>,
) -> Response {
    match confirm_page(&state, &viewer, &app, &account, &name, &operation, params).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn confirm_page(
    state: &UiState,
    viewer: &Viewer,
    app: &str,
    account: &str,
    name: &str,
    operation: &str,
    params: ProviderParams,
) -> ApiResult<ConfirmPage> {
    let application = authorize(&state.app, &viewer.caller, app, Access::Execute).await?;
    let (verb, explanation) = explain(operation).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown operation '{operation}'; the UI offers enable, disable, rollback, resize and destroy"
        ))
    })?;
    if operation == "destroy" {
        authorize(&state.app, &viewer.caller, app, Access::Write).await?;
    }
    let provider = state
        .app
        .providers
        .provider(params.cloud_provider.as_deref())?;
    let group = provider
        .server_group(account, name)
        .await?
        .filter(|g| g.moniker.app == application.name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "server group '{name}' not found in application '{}' (account '{account}')",
                application.name
            ))
        })?;
    let app_url = url_component(&application.name);
    let traffic = super::balancers::traffic_shares(state, &application.name)
        .await?
        .remove(&(group.account.clone(), group.name.clone()))
        .unwrap_or_default();
    Ok(ConfirmPage {
        layout: Layout::new(
            viewer,
            format!("{verb} {name}"),
            Some(&application.name),
            "clusters",
        ),
        account: group.account.clone(),
        provider: group.cloud_provider.clone(),
        group: group_view(&app_url, &group, GroupRights::NONE, traffic),
        operation: operation.to_owned(),
        verb: verb.to_owned(),
        explanation: explanation.to_owned(),
        action: format!(
            "/applications/{app_url}/serverGroups/{}/{}/{operation}",
            url_component(&group.account),
            url_component(&group.name)
        ),
        back: format!("/applications/{app_url}/clusters"),
    })
}
