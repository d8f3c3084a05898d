//! `/api/v1/applications`.

use axum::Json;
use axum::extract::State;
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gennaker_core::validate_application_value;
use gennaker_store::ApplicationRecord;
use serde_json::{Value, json};

use crate::audit::audited;
use crate::auth::{Access, Caller, application_not_found, application_permissions};
use crate::config::EVERYONE;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, RawBody};
use crate::routes::documents::{field_error, parse_body, reject_errors};
use crate::state::AppState;

/// Reads an application the caller has `access` to: 404 when it does not exist or the
/// caller has no permission on it at all, 403 when the caller has some but not this one.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    name: &str,
    access: Access,
) -> ApiResult<ApplicationRecord> {
    let record = state
        .store
        .get_application(name)
        .await?
        .ok_or_else(|| application_not_found(name))?;
    caller.require(&record.name, &record.config, access)?;
    Ok(record)
}

/// Checks a new or changed application document: valid, created by someone the
/// settings allow, and it leaves its author able to manage it (a non-admin could
/// otherwise lock themselves out). `existing` is the stored document of a change: only
/// admins may change an application's permissions, or a WRITE user could grant their
/// own role everything (or take the application from its owners).
fn check_document(
    state: &AppState,
    caller: &Caller,
    document: &Value,
    existing: Option<&Value>,
) -> ApiResult<String> {
    reject_errors("application", validate_application_value(document))?;
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| field_error("$.name", "the application needs a 'name'".to_owned()))?
        .to_owned();
    if caller.admin {
        return Ok(name);
    }
    if let Some(stored) = existing {
        let old = stored.get("permissions").filter(|p| !p.is_null());
        let new = document.get("permissions").filter(|p| !p.is_null());
        if old != new {
            return Err(ApiError::Forbidden(format!(
                "only admins may change the permissions of application '{name}'; send the document with its current 'permissions' (as GET returns them), or ask an admin"
            )));
        }
        return Ok(name);
    }
    let creators = &state.config.application_creators;
    // Role names ignore case everywhere (Fiat lower-cases them); the setting may not.
    let may_create = creators.iter().any(|creator| {
        creator == EVERYONE
            || caller
                .roles
                .iter()
                .any(|role| role.eq_ignore_ascii_case(creator))
    });
    if !may_create {
        let who = if creators.is_empty() {
            "only admins may create applications on this server".to_owned()
        } else {
            format!(
                "only admins and roles [{}] may create applications, and user '{}' has [{}]",
                creators.join(", "),
                caller.name,
                caller.roles.join(", ")
            )
        };
        return Err(ApiError::Forbidden(format!(
            "{who}; ask an admin to create it (the server's `[auth] application_creators` setting decides who may)"
        )));
    }
    if let Ok(Some(permissions)) = application_permissions(document)
        && !permissions.allows(Access::Write, &caller.roles)
    {
        return Err(field_error(
            "$.permissions.WRITE",
            format!(
                "these permissions would leave user '{}' unable to change application '{name}': add one of the user's roles [{}] to WRITE",
                caller.name,
                caller.roles.join(", ")
            ),
        ));
    }
    Ok(name)
}

fn with_detail(status: StatusCode, record: ApplicationRecord) -> Response {
    let detail = json!({ "application": record.name, "version": record.version });
    audited((status, [(ETAG, etag(&record))], Json(record)), detail)
}

/// The entity tag of an application: its version, quoted as HTTP wants.
fn etag(record: &ApplicationRecord) -> String {
    format!("\"{}\"", record.version)
}

/// What the `If-Match` header of a PUT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precondition {
    /// No header: replace whatever is stored, as before optimistic concurrency existed.
    None,
    /// `*`: the application must exist.
    Exists,
    /// `"N"`: the application must still be at version N.
    Version(i64),
}

/// Reads `If-Match`: absent, `*`, or one strong entity tag as GET returns it (`"3"`).
fn precondition(headers: &HeaderMap) -> ApiResult<Precondition> {
    let mut values = headers.get_all(IF_MATCH).iter();
    let Some(value) = values.next() else {
        return Ok(Precondition::None);
    };
    let usage = || {
        ApiError::bad_request(
            "If-Match must be one entity tag as GET returns it in ETag (e.g. \"3\"), or *",
        )
    };
    if values.next().is_some() {
        return Err(usage());
    }
    let value = value.to_str().map_err(|_| usage())?.trim();
    if value == "*" {
        return Ok(Precondition::Exists);
    }
    value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<i64>().ok())
        .map(Precondition::Version)
        .ok_or_else(usage)
}

/// Lists the applications the caller may read.
#[utoipa::path(get, path = "/api/v1/applications", tag = "applications",
    responses((status = 200, body = Vec<ApplicationRecord>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApplicationRecord>>> {
    let all = state.store.list_applications().await?;
    Ok(Json(
        all.into_iter()
            .filter(|app| caller.require(&app.name, &app.config, Access::Read).is_ok())
            .collect(),
    ))
}

/// Creates an application from its document (`name`, `email`, `permissions`, …).
#[utoipa::path(post, path = "/api/v1/applications", tag = "applications", request_body(content = Object, description = "Application document"),
    responses((status = 201, body = ApplicationRecord, headers(("ETag" = String, description = "The version, quoted"))), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let document = parse_body(&headers, &body)?;
    let name = check_document(&state, &caller, &document, None)?;
    let record = state
        .store
        .create_application(&name, &document, &caller.name)
        .await?;
    Ok(with_detail(StatusCode::CREATED, record))
}

/// Reads one application.
#[utoipa::path(get, path = "/api/v1/applications/{app}", tag = "applications", params(("app" = String, Path, description = "Application name")),
    responses((status = 200, body = ApplicationRecord, headers(("ETag" = String, description = "The version, quoted; send it back in If-Match to update only this version"))),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Response> {
    let record = authorize(&state, &caller, &app, Access::Read).await?;
    Ok(([(ETAG, etag(&record))], Json(record)).into_response())
}

/// Creates or replaces an application. With `If-Match` (the ETag of a GET), the
/// replacement happens only if nobody changed the application since; otherwise 409.
#[utoipa::path(put, path = "/api/v1/applications/{app}", tag = "applications",
    params(("app" = String, Path, description = "Application name"),
        ("If-Match" = Option<String>, Header, description = "The ETag of the version the change is based on (e.g. \"3\"), or * for any existing version; without it the document replaces whatever is stored")),
    request_body(content = Object, description = "Application document"),
    responses((status = 200, body = ApplicationRecord, headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 201, body = ApplicationRecord, headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "If-Match names a version that is no longer current, or an application that does not exist")))]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let precondition = precondition(&headers)?;
    let mut document = parse_body(&headers, &body)?;
    match document.get("name").and_then(Value::as_str) {
        Some(name) if !name.eq_ignore_ascii_case(&app) => {
            return Err(field_error(
                "$.name",
                format!("the document names application '{name}' but the URL names '{app}'"),
            ));
        }
        Some(_) => {}
        None => {
            if let Value::Object(map) = &mut document {
                map.insert("name".to_owned(), Value::String(app.clone()));
            }
        }
    }
    let stored = match state.store.get_application(&app).await? {
        Some(existing) => match caller.require(&existing.name, &existing.config, Access::Write) {
            Ok(()) => Some(existing),
            // Hidden from the caller: answered exactly as if it did not exist (a
            // creation attempt), so a PUT cannot probe which applications exist.
            Err(ApiError::NotFound(_)) => None,
            Err(refused) => return Err(refused),
        },
        None => None,
    };
    match stored {
        Some(existing) => {
            check_document(&state, &caller, &document, Some(&existing.config))?;
            let expected_version = match precondition {
                Precondition::Version(version) => Some(version),
                Precondition::Exists | Precondition::None => None,
            };
            let record = state
                .store
                .update_application(&existing.name, &document, &caller.name, expected_version)
                .await?;
            state.access_changes.notify();
            Ok(with_detail(StatusCode::OK, record))
        }
        None if precondition != Precondition::None => Err(ApiError::Conflict(format!(
            "application '{app}' does not exist, so If-Match cannot match; send the document without If-Match to create it"
        ))),
        None => {
            let name = check_document(&state, &caller, &document, None)?;
            let record = state
                .store
                .create_application(&name, &document, &caller.name)
                .await?;
            Ok(with_detail(StatusCode::CREATED, record))
        }
    }
}

/// Deletes an application (refused while it has pipelines).
#[utoipa::path(delete, path = "/api/v1/applications/{app}", tag = "applications", params(("app" = String, Path, description = "Application name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    let record = authorize(&state, &caller, &app, Access::Write).await?;
    state.store.delete_application(&record.name).await?;
    state.access_changes.notify();
    Ok(StatusCode::NO_CONTENT)
}
