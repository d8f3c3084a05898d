//! `/api/v1/users`, `/api/v1/roles`, `/api/v1/tokens` and `/api/v1/me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gennaker_store::{ApiToken, NewToken, Role, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::audited;
use crate::auth::{Caller, generate_token, hash_token};
use gennaker_core::display_name_problem;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, Path, Query};
use crate::state::AppState;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// Unique name.
    pub name: String,
    /// Whether the user is an admin.
    #[serde(default)]
    pub admin: bool,
    /// Roles to hold (they must exist).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A user's new set of roles.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolesBody {
    /// The roles, replacing the current ones.
    pub roles: Vec<String>,
}

/// A user's new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    /// The password (at least 12 characters); only its Argon2id hash is stored.
    pub password: String,
}

impl std::fmt::Debug for PasswordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordBody { password: <redacted> }")
    }
}

/// A new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRole {
    /// Unique name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// A token request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    /// A label, e.g. `laptop` or `ci`.
    pub name: String,
    /// The user the token is for; only admins may name someone else. Default: the caller.
    pub user: Option<String>,
    /// Days until it expires; default: never.
    pub expires_in_days: Option<u32>,
}

/// A freshly created token: the secret is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedToken {
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its metadata.
    pub info: ApiToken,
}

/// Whose tokens to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct TokenFilter {
    /// A user name; admins may list anyone's (or everyone's, without this).
    user: Option<String>,
}

/// The longest token name accepted.
const MAX_TOKEN_NAME_LEN: usize = 128;

/// The longest role description accepted.
const MAX_DESCRIPTION_LEN: usize = 1024;

fn valid_name(kind: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{kind} name '{name}' is invalid: use 1-64 letters, digits, '-', '_', '.' or '@'"
        )))
    }
}

/// The caller's own user.
#[utoipa::path(get, path = "/api/v1/me", tag = "access", responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub(crate) async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<User>> {
    state
        .store
        .get_user(&caller.name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::Unauthorized("the user of this token no longer exists".to_owned()))
}

/// Lists users (admins only).
#[utoipa::path(get, path = "/api/v1/users", tag = "access", responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<User>>> {
    caller.require_admin()?;
    Ok(Json(state.store.list_users().await?))
}

/// Creates a user (admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    valid_name("user", &body.name)?;
    let user = state
        .store
        .create_user(&body.name, body.admin, &body.roles)
        .await?;
    let detail = json!({ "user": user.name, "admin": user.admin, "roles": user.roles });
    Ok(audited((StatusCode::CREATED, Json(user)), detail))
}

/// Reads a user (admins, or the user themself).
#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "access", params(("name" = String, Path, description = "User name")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<User>> {
    caller.require_self_or_admin(&name)?;
    state
        .store
        .get_user(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("user '{name}' not found")))
}

/// Deletes a user and their tokens (admins only; not yourself).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "access", params(("name" = String, Path, description = "User name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if caller.name.eq_ignore_ascii_case(&name) {
        return Err(ApiError::Conflict(
            "you cannot delete your own user; ask another admin".to_owned(),
        ));
    }
    state.store.delete_user(&name).await?;
    state.access_changes.notify();
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a user's roles (admins only).
#[utoipa::path(put, path = "/api/v1/users/{name}/roles", tag = "access", params(("name" = String, Path, description = "User name")), request_body = RolesBody,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_roles(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RolesBody>,
) -> ApiResult<Json<User>> {
    caller.require_admin()?;
    let user = state.store.set_user_roles(&name, &body.roles).await?;
    state.access_changes.notify();
    Ok(Json(user))
}

/// Sets a user's password for the web UI's sign-in (admins only). Only its hash is
/// stored; it is never returned or logged.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "access", params(("name" = String, Path, description = "User name")), request_body = PasswordBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if let Some(problem) = crate::passwords::password_problem(&body.password) {
        return Err(ApiError::bad_request(format!("user '{name}': {problem}")));
    }
    if state.store.get_user(&name).await?.is_none() {
        return Err(ApiError::NotFound(format!("user '{name}' not found")));
    }
    let hash = crate::passwords::hash_password(body.password).await?;
    state.store.set_user_password(&name, Some(&hash)).await?;
    Ok(audited(StatusCode::NO_CONTENT, json!({ "user": name })))
}

/// Removes a user's password: they sign in with an API token only (admins only).
#[utoipa::path(delete, path = "/api/v1/users/{name}/password", tag = "access", params(("name" = String, Path, description = "User name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    state.store.set_user_password(&name, None).await?;
    Ok(audited(StatusCode::NO_CONTENT, json!({ "user": name })))
}

/// Lists roles (admins only).
#[utoipa::path(get, path = "/api/v1/roles", tag = "access", responses((status = 200, body = Vec<Role>), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_roles(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Role>>> {
    caller.require_admin()?;
    Ok(Json(state.store.list_roles().await?))
}

/// Creates a role (admins only).
#[utoipa::path(post, path = "/api/v1/roles", tag = "access", request_body = NewRole,
    responses((status = 201, body = Role), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_role(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewRole>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    valid_name("role", &body.name)?;
    if let Some(problem) =
        display_name_problem("role description", &body.description, MAX_DESCRIPTION_LEN)
    {
        return Err(ApiError::bad_request(problem));
    }
    let role = state
        .store
        .create_role(&body.name, &body.description)
        .await?;
    let detail = json!({ "role": role.name });
    Ok(audited((StatusCode::CREATED, Json(role)), detail))
}

/// Deletes a role and removes it from its users (admins only).
#[utoipa::path(delete, path = "/api/v1/roles/{name}", tag = "access", params(("name" = String, Path, description = "Role name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.store.delete_role(&name).await?;
    state.access_changes.notify();
    Ok(StatusCode::NO_CONTENT)
}

/// Lists tokens: the caller's own, or (admins) anyone's.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", params(TokenFilter), responses((status = 200, body = Vec<ApiToken>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<TokenFilter>,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let user = match filter.user {
        Some(user) => {
            caller.require_self_or_admin(&user)?;
            Some(user)
        }
        None if caller.admin => None,
        None => Some(caller.name.clone()),
    };
    Ok(Json(state.store.list_tokens(user.as_deref()).await?))
}

/// Creates a token for the caller (or, for admins, for any user).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = TokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<TokenRequest>,
) -> ApiResult<Response> {
    let user = body.user.unwrap_or_else(|| caller.name.clone());
    caller.require_self_or_admin(&user)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the token needs a name, e.g. 'laptop' or 'ci'",
        ));
    }
    if let Some(problem) = display_name_problem("token name", &body.name, MAX_TOKEN_NAME_LEN) {
        return Err(ApiError::bad_request(problem));
    }
    let secret = generate_token();
    let expires_at = body
        .expires_in_days
        .map(|days| gennaker_store::now_millis() + i64::from(days) * MILLIS_PER_DAY);
    let info = state
        .store
        .create_token(&NewToken {
            user,
            name: body.name,
            token_hash: hash_token(&secret),
            expires_at,
        })
        .await?;
    let detail = json!({ "tokenId": info.id, "user": info.user });
    let body = CreatedToken {
        token: secret,
        info,
    };
    Ok(audited((StatusCode::CREATED, Json(body)), detail))
}

/// Revokes a token (its owner or an admin). Someone else's token is "not found" to a
/// non-admin, exactly like a token that does not exist: a 403 would confirm it exists.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path, description = "Token id")),
    responses((status = 200, body = ApiToken), (status = 404, body = ErrorBody, description = "No such token, or not the caller's and the caller is not an admin")))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiToken>> {
    let not_found = || ApiError::NotFound(format!("token '{id}' not found"));
    let token = state.store.get_token(&id).await?.ok_or_else(not_found)?;
    if caller.require_self_or_admin(&token.user).is_err() {
        return Err(not_found());
    }
    let revoked = state.store.revoke_token(&id).await?;
    state.access_changes.notify();
    Ok(Json(revoked))
}
