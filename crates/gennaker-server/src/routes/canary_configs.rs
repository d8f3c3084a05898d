//! `/api/v1/canaryConfigs`: Kayenta's canary configs, stored with their revisions.
//!
//! A config belongs to the applications it lists (`applications`), and their Fiat
//! permissions guard it, as Kayenta's configs are guarded in Spinnaker:
//! - reading (listing, getting, its history) needs READ on at least one of them; a
//!   config the caller may not read is "not found", exactly like one that does not
//!   exist;
//! - changing or deleting needs WRITE on every one of them — on an update, on those it
//!   lists now and on those the new document lists — so nobody moves a config out of
//!   the applications that own it, or into one they may not change. Applications a
//!   stored config lists that no longer exist guard nothing; a new document may only
//!   list applications that exist.
//!
//! Admins may do everything. Every change is audited, and a document with errors is
//! refused with every problem and its JSON path; nothing is stored then.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gennaker_canary::validate_config;
use gennaker_core::redact::redact_value;
use gennaker_core::{Problem, check_application_access};
use gennaker_store::{
    ApplicationRecord, CanaryConfigRecord, CanaryConfigRevision, CanaryConfigSave, ExpectedVersion,
    MAX_CANARY_CONFIG_BYTES, SaveOutcome,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::audited;
use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query, RawBody};
use crate::routes::documents::{field_error, parse_body, reject_errors};
use crate::state::AppState;

/// The longest id accepted in a document (Kayenta's are UUIDs).
const MAX_ID_LEN: usize = 128;

/// A canary config as a save answers with it: the document only for callers who may
/// read it (WRITE does not imply READ in Fiat's model).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CanaryConfigView {
    /// The config's id.
    pub id: String,
    /// The config's name.
    pub name: String,
    /// The applications it belongs to.
    pub applications: Vec<String>,
    /// The revision number of the stored document.
    pub revision: i64,
    /// The document as stored; absent when the caller may read none of its applications.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// When the config was first saved.
    pub created_at: i64,
    /// When the current revision was saved.
    pub updated_at: i64,
    /// Who saved the current revision.
    pub updated_by: String,
}

/// The answer to a save.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CanaryConfigSaveResponse {
    /// `created`, `updated` or `unchanged`.
    pub outcome: SaveOutcome,
    /// The config as stored now.
    pub canary_config: CanaryConfigView,
    /// Warnings found while validating (e.g. group weights that do not add up to 100).
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Problem>,
}

/// Which configs to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ListFilter {
    /// Only the configs belonging to this application.
    application: Option<String>,
}

/// The applications a config names, each with its record when it exists.
struct Owners(Vec<(String, Option<ApplicationRecord>)>);

impl Owners {
    async fn load(state: &AppState, names: &[String]) -> ApiResult<Self> {
        let mut owners = Vec::with_capacity(names.len());
        for name in names {
            owners.push((name.clone(), state.store.get_application(name).await?));
        }
        Ok(Owners(owners))
    }

    /// Whether the caller may read the config: READ on one of its applications.
    fn readable(&self, caller: &Caller) -> bool {
        caller.admin
            || self.0.iter().any(|(_, app)| {
                app.as_ref().is_some_and(|app| {
                    check_application_access(&app.config, Access::Read, false, &caller.roles)
                        .is_ok()
                })
            })
    }

    /// Whether the caller may change the config: WRITE on all its applications.
    fn writable(&self, caller: &Caller) -> bool {
        caller.admin
            || self.0.iter().all(|(_, app)| {
                app.as_ref().is_none_or(|app| {
                    check_application_access(&app.config, Access::Write, false, &caller.roles)
                        .is_ok()
                })
            })
    }

    /// Succeeds when the caller has WRITE on every application that exists, else a
    /// 403 naming the first one lacking (the caller reads the names in the config).
    fn require_write(&self, caller: &Caller) -> ApiResult<()> {
        if caller.admin {
            return Ok(());
        }
        for (name, app) in &self.0 {
            if let Some(app) = app
                && check_application_access(&app.config, Access::Write, false, &caller.roles)
                    .is_err()
            {
                return Err(ApiError::Forbidden(format!(
                    "user '{}' lacks WRITE permission on application '{name}'; changing a canary config needs WRITE on every application it lists (before and after the change); ask an owner of '{name}', or leave it out of 'applications'",
                    caller.name
                )));
            }
        }
        Ok(())
    }

    /// For a new document: every application must exist (and be visible to the
    /// caller), and the caller needs WRITE on each.
    fn require_write_new(&self, caller: &Caller) -> ApiResult<()> {
        for (i, (name, app)) in self.0.iter().enumerate() {
            let visible = app.as_ref().is_some_and(|app| {
                caller.admin
                    || check_application_access(&app.config, Access::Read, false, &caller.roles)
                        .is_ok()
                    || check_application_access(&app.config, Access::Write, false, &caller.roles)
                        .is_ok()
            });
            if !visible {
                // The answer of every application route for a hidden application: it
                // must not be told from a missing one.
                return Err(ApiError::NotFound(format!(
                    "application '{name}' (applications[{i}]) not found; a canary config may only list existing applications (create it with `gennaker app save`)"
                )));
            }
        }
        self.require_write(caller)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "canary config '{id}' not found; give its id or name (`gennaker canary config list` shows the configs you may read)"
    ))
}

/// A config by id or, failing that, by name, with its applications, if the caller may
/// read it; else "not found".
async fn find_readable(
    state: &AppState,
    caller: &Caller,
    id_or_name: &str,
) -> ApiResult<(CanaryConfigRecord, Owners)> {
    let record = match state.canary_configs.get_canary_config(id_or_name).await? {
        Some(record) => Some(record),
        None => {
            state
                .canary_configs
                .get_canary_config_by_name(id_or_name)
                .await?
        }
    };
    let record = record.ok_or_else(|| not_found(id_or_name))?;
    let owners = Owners::load(state, &record.applications).await?;
    if !owners.readable(caller) {
        return Err(not_found(id_or_name));
    }
    Ok((record, owners))
}

/// `config` as `caller` may see it: those who may change it see it whole, readers see
/// it with secrets redacted (as pipelines are shown).
fn for_caller(config: &mut Value, caller: &Caller, owners: &Owners) {
    if !owners.writable(caller) {
        redact_value(config);
    }
}

fn view(record: CanaryConfigRecord, readable: bool) -> CanaryConfigView {
    CanaryConfigView {
        id: record.id,
        name: record.name,
        applications: record.applications,
        revision: record.revision,
        config: readable.then_some(record.config),
        created_at: record.created_at,
        updated_at: record.updated_at,
        updated_by: record.updated_by,
    }
}

/// A submitted document, checked: parsed, bounded, valid, and its identity read out.
struct Submitted {
    document: Value,
    id: Option<String>,
    name: String,
    applications: Vec<String>,
    warnings: Vec<Problem>,
}

fn submitted(headers: &HeaderMap, body: &[u8]) -> ApiResult<Submitted> {
    let document = parse_body(headers, body)?;
    let size = serde_json::to_string(&document)
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .len();
    if size > MAX_CANARY_CONFIG_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the canary config is {size} bytes of JSON; at most {MAX_CANARY_CONFIG_BYTES} are stored"
        )));
    }
    let warnings = reject_errors("canary config", validate_config(&document))?;
    let id = match document.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.is_empty() => None,
        Some(Value::String(id)) if usable_id(id) => Some(id.clone()),
        Some(_) => return Err(field_error("$.id", bad_id())),
    };
    // Validation made sure these are there and of the right types.
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let applications = document
        .get("applications")
        .and_then(Value::as_array)
        .map(|apps| {
            apps.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Submitted {
        document,
        id,
        name,
        applications,
        warnings,
    })
}

/// Whether `id` may name a new config: bounded, and safe in a URL path and a terminal.
fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | '?' | '%' | '#'))
}

fn bad_id() -> String {
    format!(
        "a canary config id is a string of 1 to {MAX_ID_LEN} characters without / \\ ? % # or control characters; leave 'id' out to get a new UUID"
    )
}

/// Stores a checked document and answers like every save.
async fn store(
    state: &AppState,
    caller: &Caller,
    submitted: Submitted,
    new_owners: &Owners,
    expected: ExpectedVersion,
) -> ApiResult<Response> {
    let save = CanaryConfigSave {
        id: submitted.id,
        name: submitted.name,
        applications: submitted.applications,
        config: submitted.document,
        expected,
    };
    let (record, outcome) = state
        .canary_configs
        .save_canary_config(&save, &caller.name)
        .await?;
    let status = if outcome == SaveOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let detail = json!({
        "canaryConfigId": record.id, "name": record.name, "applications": record.applications,
        "revision": record.revision, "outcome": outcome,
    });
    let body = CanaryConfigSaveResponse {
        outcome,
        canary_config: view(record, new_owners.readable(caller)),
        warnings: submitted.warnings,
    };
    Ok(audited((status, Json(body)), detail))
}

/// Lists the canary configs the caller may read, by name.
#[utoipa::path(get, path = "/api/v1/canaryConfigs", tag = "canaryConfigs", params(ListFilter),
    responses((status = 200, body = Vec<CanaryConfigRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<ListFilter>,
) -> ApiResult<Json<Vec<CanaryConfigRecord>>> {
    let records = state
        .canary_configs
        .list_canary_configs(filter.application.as_deref())
        .await?;
    // One read of the applications for the whole list, not one per config.
    let applications: HashMap<String, ApplicationRecord> = state
        .store
        .list_applications()
        .await?
        .into_iter()
        .map(|app| (app.name.to_lowercase(), app))
        .collect();
    let mut visible = Vec::with_capacity(records.len());
    for mut record in records {
        let owners = Owners(
            record
                .applications
                .iter()
                .map(|name| {
                    (
                        name.clone(),
                        applications.get(&name.to_lowercase()).cloned(),
                    )
                })
                .collect(),
        );
        if owners.readable(&caller) {
            for_caller(&mut record.config, &caller, &owners);
            visible.push(record);
        }
    }
    Ok(Json(visible))
}

/// Creates a canary config from Kayenta's JSON (or the same as YAML with
/// `Content-Type: application/yaml`). Its `id` is kept when given (a new UUID
/// otherwise); an id or name another config has is a conflict. Needs WRITE on every
/// application it lists.
#[utoipa::path(post, path = "/api/v1/canaryConfigs", tag = "canaryConfigs",
    request_body(content = Object, description = "Kayenta canary config document"),
    responses((status = 201, body = CanaryConfigSaveResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let submitted = submitted(&headers, &body)?;
    let owners = Owners::load(&state, &submitted.applications).await?;
    owners.require_write_new(&caller)?;
    if let Some(id) = &submitted.id
        && state.canary_configs.get_canary_config(id).await?.is_some()
    {
        return Err(ApiError::Conflict(format!(
            "a canary config with id '{id}' exists already; update it with PUT /api/v1/canaryConfigs/{id} (`gennaker canary config save` does), or leave 'id' out to create a copy"
        )));
    }
    store(&state, &caller, submitted, &owners, ExpectedVersion::Absent).await
}

/// Reads a canary config by id (or name).
#[utoipa::path(get, path = "/api/v1/canaryConfigs/{id}", tag = "canaryConfigs",
    params(("id" = String, Path, description = "Config id (or name)")),
    responses((status = 200, body = CanaryConfigRecord), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CanaryConfigRecord>> {
    let (mut record, owners) = find_readable(&state, &caller, &id).await?;
    for_caller(&mut record.config, &caller, &owners);
    Ok(Json(record))
}

/// Replaces the canary config with this id (a rename keeps the id), or creates it
/// under this id. Needs WRITE on every application it lists now and on every one the
/// new document lists.
#[utoipa::path(put, path = "/api/v1/canaryConfigs/{id}", tag = "canaryConfigs",
    params(("id" = String, Path, description = "Config id")),
    request_body(content = Object, description = "Kayenta canary config document"),
    responses((status = 200, body = CanaryConfigSaveResponse), (status = 201, body = CanaryConfigSaveResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let mut submitted = submitted(&headers, &body)?;
    if let Some(named) = &submitted.id
        && *named != id
    {
        return Err(field_error(
            "$.id",
            format!("the document's id '{named}' is not the id in the URL '{id}'; fix one of them"),
        ));
    }
    submitted.id = Some(id.clone());
    let expected = match state.canary_configs.get_canary_config(&id).await? {
        Some(current) => {
            let owners = Owners::load(&state, &current.applications).await?;
            if !owners.readable(&caller) {
                return Err(not_found(&id));
            }
            owners.require_write(&caller)?;
            ExpectedVersion::Exactly(current.revision)
        }
        None if usable_id(&id) => ExpectedVersion::Absent,
        None => return Err(ApiError::bad_request(bad_id())),
    };
    let owners = Owners::load(&state, &submitted.applications).await?;
    owners.require_write_new(&caller)?;
    store(&state, &caller, submitted, &owners, expected).await
}

/// Deletes a canary config and its history. Needs WRITE on every application it lists.
#[utoipa::path(delete, path = "/api/v1/canaryConfigs/{id}", tag = "canaryConfigs",
    params(("id" = String, Path, description = "Config id (or name)")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (record, owners) = find_readable(&state, &caller, &id).await?;
    owners.require_write(&caller)?;
    let deleted = state
        .canary_configs
        .delete_canary_config(&record.id, ExpectedVersion::Exactly(record.revision))
        .await?;
    // The deleted document goes to the audit log, so a deletion can be undone by hand.
    let detail = json!({
        "canaryConfigId": deleted.id, "name": deleted.name, "revision": deleted.revision,
        "deleted": deleted.config,
    });
    Ok(audited(StatusCode::NO_CONTENT, detail))
}

/// Lists the kept revisions of a canary config, newest first.
#[utoipa::path(get, path = "/api/v1/canaryConfigs/{id}/history", tag = "canaryConfigs",
    params(("id" = String, Path, description = "Config id (or name)")),
    responses((status = 200, body = Vec<CanaryConfigRevision>), (status = 404, body = ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CanaryConfigRevision>>> {
    let (record, owners) = find_readable(&state, &caller, &id).await?;
    let mut revisions = state
        .canary_configs
        .canary_config_history(&record.id)
        .await?;
    for revision in &mut revisions {
        for_caller(&mut revision.config, &caller, &owners);
    }
    Ok(Json(revisions))
}
