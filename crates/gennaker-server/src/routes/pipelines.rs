//! `/api/v1/applications/{app}/pipelines` and `/api/v1/pipelines/validate`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gennaker_core::redact::redact_value;
use gennaker_core::{Problem, Severity};
use gennaker_expr::validate_pipeline;
use gennaker_store::{
    ApplicationRecord, PipelineRecord, PipelineRevision, PipelineSave, SaveOutcome,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::audited;
use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, RawBody};
use crate::routes::applications::authorize;
use crate::routes::documents::{field_error, parse_body, reject_errors};
use crate::state::AppState;

/// A pipeline as a save or restore answers with it. Fiat's WRITE does not imply READ, so
/// a caller who may change an application but not read it gets the metadata only: a
/// restore would otherwise hand out an old revision they could never read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PipelineView {
    /// The pipeline's id (kept across revisions and renames).
    pub id: String,
    /// The application the pipeline belongs to.
    pub application: String,
    /// The pipeline's name.
    pub name: String,
    /// The revision number of the stored document.
    pub revision: i64,
    /// The document as stored; absent when the caller lacks READ on the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// When the pipeline was first saved.
    pub created_at: i64,
    /// When the current revision was saved.
    pub updated_at: i64,
    /// Who saved the current revision.
    pub updated_by: String,
}

impl PipelineView {
    /// The record as `caller` may see it.
    fn new(record: PipelineRecord, caller: &Caller, application: &ApplicationRecord) -> Self {
        let readable = caller
            .require(&application.name, &application.config, Access::Read)
            .is_ok();
        PipelineView {
            id: record.id,
            application: record.application,
            name: record.name,
            revision: record.revision,
            config: readable.then_some(record.config),
            created_at: record.created_at,
            updated_at: record.updated_at,
            updated_by: record.updated_by,
        }
    }
}

/// The answer to a pipeline save.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SaveResponse {
    /// `created`, `updated` or `unchanged`.
    pub outcome: SaveOutcome,
    /// The pipeline as stored now (its document only for callers with READ).
    pub pipeline: PipelineView,
    /// Warnings found while validating (e.g. stage types Gennaker cannot run yet).
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Problem>,
}

/// The answer to a validation request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ValidateResponse {
    /// True when there is no error (warnings allowed).
    pub valid: bool,
    /// Every problem found, each with its JSON path.
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<Problem>,
}

/// A pipeline of application `app` by its name or, failing that, its id: a pipeline
/// whose stored name cannot be typed or sent in a URL (saved before names had limits)
/// can still be read, run and deleted by its id.
pub(crate) async fn find(
    state: &AppState,
    app: &str,
    name_or_id: &str,
) -> ApiResult<Option<PipelineRecord>> {
    if let Some(record) = state.store.get_pipeline(app, name_or_id).await? {
        return Ok(Some(record));
    }
    Ok(state
        .store
        .get_pipeline_by_id(name_or_id)
        .await?
        .filter(|record| record.application.eq_ignore_ascii_case(app)))
}

/// `config` as `caller` may see it. Secrets in a pipeline document (a webhook's
/// `Authorization` header, a password in a URL) are its editors' to see: those who may
/// change it (WRITE) read them to edit them; READ alone shows them redacted.
pub(crate) fn for_caller(config: &mut Value, caller: &Caller, application: &ApplicationRecord) {
    if caller
        .require(&application.name, &application.config, Access::Write)
        .is_err()
    {
        redact_value(config);
    }
}

async fn load(state: &AppState, app: &str, name: &str) -> ApiResult<PipelineRecord> {
    find(state, app, name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "pipeline '{name}' not found in application '{app}' (by name or id); `gennaker pipeline list {app}` shows its pipelines and their ids"
        ))
    })
}

/// Lists an application's pipelines.
#[utoipa::path(get, path = "/api/v1/applications/{app}/pipelines", tag = "pipelines", params(("app" = String, Path, description = "Application name")),
    responses((status = 200, body = Vec<PipelineRecord>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<PipelineRecord>>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    let mut pipelines = state.store.list_pipelines(&application.name).await?;
    for pipeline in &mut pipelines {
        for_caller(&mut pipeline.config, &caller, &application);
    }
    Ok(Json(pipelines))
}

/// Saves a pipeline by name (or id): creates it, or stores a new revision. The document
/// is Spinnaker pipeline JSON (or the same as YAML with `Content-Type: application/yaml`);
/// a document with errors is refused and nothing is stored.
#[utoipa::path(post, path = "/api/v1/applications/{app}/pipelines", tag = "pipelines", params(("app" = String, Path, description = "Application name")),
    request_body(content = Object, description = "Spinnaker pipeline document"),
    responses((status = 201, body = SaveResponse), (status = 200, body = SaveResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn save(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let application = authorize(&state, &caller, &app, Access::Write).await?;
    let mut document = parse_body(&headers, &body)?;
    stamp_save(
        &mut document,
        &application.name,
        &caller.name,
        state.engine.now(),
    );
    let warnings = reject_errors(
        "pipeline",
        validate_pipeline(&document, state.engine.registry().catalog()),
    )?;
    if let Some(named) = document.get("application").and_then(Value::as_str)
        && !named.eq_ignore_ascii_case(&application.name)
    {
        return Err(field_error(
            "$.application",
            format!(
                "the pipeline belongs to application '{named}' but is saved under '{}'; fix 'application' or the URL",
                application.name
            ),
        ));
    }
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| field_error("$.name", "the pipeline needs a 'name'".to_owned()))?
        .to_owned();
    let id = document
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let save = PipelineSave {
        id,
        name,
        config: document,
    };
    let (pipeline, outcome) = state
        .store
        .save_pipeline(&application.name, &save, &caller.name)
        .await?;
    let status = if outcome == SaveOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let detail =
        json!({ "pipelineId": pipeline.id, "revision": pipeline.revision, "outcome": outcome });
    let body = SaveResponse {
        outcome,
        pipeline: PipelineView::new(pipeline, &caller, &application),
        warnings,
    };
    Ok(audited((status, Json(body)), detail))
}

/// What Front50 sets on every save: a document without `application` belongs to the
/// one in the URL; `updateTs` (epoch ms, a string as Front50 writes it) and
/// `lastModifiedBy` say when and by whom (the store ignores them when deciding whether a
/// save changed anything).
fn stamp_save(document: &mut Value, application: &str, user: &str, now: i64) {
    let Value::Object(map) = document else {
        return;
    };
    let named = map
        .get("application")
        .is_some_and(|a| !gennaker_core::is_blank(a));
    if !named {
        map.insert("application".into(), Value::String(application.to_owned()));
    }
    map.insert("updateTs".into(), Value::String(now.to_string()));
    map.insert("lastModifiedBy".into(), Value::String(user.to_owned()));
}

/// Reads a pipeline's current revision.
#[utoipa::path(get, path = "/api/v1/applications/{app}/pipelines/{name}", tag = "pipelines",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name (or id)")),
    responses((status = 200, body = PipelineRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<PipelineRecord>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    let mut pipeline = load(&state, &application.name, &name).await?;
    for_caller(&mut pipeline.config, &caller, &application);
    Ok(Json(pipeline))
}

/// Deletes a pipeline and its history.
#[utoipa::path(delete, path = "/api/v1/applications/{app}/pipelines/{name}", tag = "pipelines",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name (or id)")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let application = authorize(&state, &caller, &app, Access::Write).await?;
    let pipeline = load(&state, &application.name, &name).await?;
    let deleted = state
        .store
        .delete_pipeline(&application.name, &pipeline.name)
        .await?;
    // The deleted document goes to the audit log, so a deletion can always be undone by hand.
    let detail = json!({ "pipelineId": deleted.id, "revision": deleted.revision, "deleted": deleted.config });
    Ok(audited(StatusCode::NO_CONTENT, detail))
}

/// Lists every revision of a pipeline, newest first.
#[utoipa::path(get, path = "/api/v1/applications/{app}/pipelines/{name}/history", tag = "pipelines",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name (or id)")),
    responses((status = 200, body = Vec<PipelineRevision>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<PipelineRevision>>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    let mut revisions = state
        .store
        .pipeline_history(&application.name, &name)
        .await?;
    for revision in &mut revisions {
        for_caller(&mut revision.config, &caller, &application);
    }
    Ok(Json(revisions))
}

/// Reads one revision of a pipeline.
#[utoipa::path(get, path = "/api/v1/applications/{app}/pipelines/{name}/history/{revision}", tag = "pipelines",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name (or id)"), ("revision" = i64, Path, description = "Revision number")),
    responses((status = 200, body = PipelineRevision), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revision(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name, revision)): Path<(String, String, i64)>,
) -> ApiResult<Json<PipelineRevision>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    state
        .store
        .pipeline_revision(&application.name, &name, revision)
        .await?
        .map(|mut revision| {
            for_caller(&mut revision.config, &caller, &application);
            Json(revision)
        })
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline '{name}' of application '{app}' has no revision {revision}"
            ))
        })
}

/// Makes an old revision current again (as a new revision).
#[utoipa::path(post, path = "/api/v1/applications/{app}/pipelines/{name}/history/{revision}/restore", tag = "pipelines",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Pipeline name (or id)"), ("revision" = i64, Path, description = "Revision to restore")),
    responses((status = 200, body = PipelineView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name, revision)): Path<(String, String, i64)>,
) -> ApiResult<Response> {
    let application = authorize(&state, &caller, &app, Access::Write).await?;
    // An old revision passed the rules of its day; it must pass today's, like a save.
    // Revisions never change, so checking before the store's transaction is safe.
    let old = state
        .store
        .pipeline_revision(&application.name, &name, revision)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline '{name}' of application '{app}' has no revision {revision}"
            ))
        })?;
    if let Err(err) = reject_errors(
        "revision",
        validate_pipeline(&old.config, state.engine.registry().catalog()),
    ) {
        let readable = caller
            .require(&application.name, &application.config, Access::Read)
            .is_ok();
        // The problems quote the document, which a caller without READ may not see.
        return Err(if readable {
            err
        } else {
            ApiError::bad_request(format!(
                "revision {revision} does not pass validation; nothing was saved"
            ))
        });
    }
    let restored = state
        .store
        .restore_pipeline_revision(&application.name, &name, revision, &caller.name)
        .await?;
    let detail = json!({ "pipelineId": restored.id, "revision": restored.revision, "restoredFrom": revision });
    Ok(audited(
        Json(PipelineView::new(restored, &caller, &application)),
        detail,
    ))
}

/// Validates a pipeline document without saving it.
#[utoipa::path(post, path = "/api/v1/pipelines/validate", tag = "pipelines", request_body(content = Object, description = "Spinnaker pipeline document"),
    responses((status = 200, body = ValidateResponse), (status = 401, body = ErrorBody)))]
pub(crate) async fn validate(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Json<ValidateResponse> {
    let problems = match parse_body(&headers, &body) {
        Ok(document) => validate_pipeline(&document, state.engine.registry().catalog()).problems,
        Err(ApiError::BadRequest { problems, .. }) => problems,
        Err(other) => vec![Problem {
            severity: Severity::Error,
            path: "$".to_owned(),
            message: other.to_string(),
            hint: None,
        }],
    };
    let valid = !problems.iter().any(|p| p.severity == Severity::Error);
    Json(ValidateResponse { valid, problems })
}
