//! Sign-in with a user name and password (for users an admin gave one: `gennaker user
//! set-password`).
//!
//! A right password opens a session on a new API token made for it (named
//! [`SESSION_TOKEN_NAME`], expiring with the session, its secret thrown away at once):
//! from there on the session is exactly a token session — every request resolves the
//! user again, the API's checks apply, an admin sees and can revoke it — and sign-out
//! revokes it. Wrong passwords are limited per name ([`super::signin_limit`]) and every
//! attempt is in the audit log (`POST /signin`, target `users/<name>`), the password
//! never.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gennaker_store::{NewAuditEntry, NewToken, now_millis};
use serde_json::json;

use super::actions::signin_page_for;
use super::session::{ABSOLUTE_LIMIT, SESSION_COOKIE, SIGNIN_COOKIE, set_cookie};
use super::{UiState, error_page, redirect_with_cookies};
use crate::auth::{generate_token, hash_token};
use crate::error::ApiError;
use crate::passwords::{MAX_PASSWORD_BYTES, verify_password};

/// The name of the tokens password sign-ins make.
pub(crate) const SESSION_TOKEN_NAME: &str = "web UI sign-in";

/// The longest user name looked at (names are at most 64 characters).
const MAX_NAME: usize = 128;

/// Checks the password of `user`; opens a session, or shows the form again with why not.
pub(crate) async fn signin(
    state: &UiState,
    headers: &HeaderMap,
    next: &str,
    user: String,
    password: String,
) -> Response {
    let name = user.trim();
    if name.len() > MAX_NAME || password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return signin_page_for(
            headers,
            StatusCode::BAD_REQUEST,
            next,
            name,
            "Enter your user name and your password.".to_owned(),
        );
    }
    if let Some(wait) = state.signin_limit.blocked_for(name) {
        audit(
            state,
            "anonymous",
            name,
            "denied",
            429,
            "too many wrong passwords",
        )
        .await;
        return signin_page_for(
            headers,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            name,
            format!(
                "Too many wrong passwords for '{name}': try again in {} minute(s), or sign in with an API token.",
                wait.as_secs().div_ceil(60).max(1)
            ),
        );
    }
    let found = match state.app.store.user_password(name).await {
        Ok(found) => found,
        Err(err) => return error_page(None, &ApiError::from(err)),
    };
    let (account, hash) = match found {
        Some((account, hash)) => (Some(account), Some(hash)),
        None => (None, None),
    };
    let matches = verify_password(password, hash).await;
    let Some(account) = account.filter(|_| matches) else {
        state.signin_limit.failed(name);
        audit(
            state,
            "anonymous",
            name,
            "denied",
            401,
            "wrong user name or password",
        )
        .await;
        return signin_page_for(
            headers,
            StatusCode::UNAUTHORIZED,
            next,
            name,
            "Wrong user name or password (or this user has no password: an admin sets one with `gennaker user set-password`).".to_owned(),
        );
    };
    state.signin_limit.succeeded(name);
    let secret = generate_token();
    let token_hash = hash_token(&secret);
    let expires_at = now_millis() + i64::try_from(ABSOLUTE_LIMIT.as_millis()).unwrap_or(i64::MAX);
    let token = state
        .app
        .store
        .create_token(&NewToken {
            user: account.name.clone(),
            name: SESSION_TOKEN_NAME.to_owned(),
            token_hash: token_hash.clone(),
            expires_at: Some(expires_at),
        })
        .await;
    let token = match token {
        Ok(token) => token,
        Err(err) => return error_page(None, &ApiError::from(err)),
    };
    let id = state.sessions().open_with(token_hash, Some(token.id));
    audit(state, &account.name, &account.name, "success", 303, "").await;
    tracing::info!(user = %account.name, "signed in to the web UI with a password");
    redirect_with_cookies(
        next,
        &[
            set_cookie(headers, SESSION_COOKIE, &id, Some(ABSOLUTE_LIMIT)),
            set_cookie(headers, SIGNIN_COOKIE, "", None),
        ],
    )
}

/// Records a password sign-in attempt in the audit log.
async fn audit(state: &UiState, actor: &str, name: &str, outcome: &str, status: i64, why: &str) {
    let detail = if why.is_empty() {
        json!({ "method": "password" })
    } else {
        json!({ "method": "password", "error": why })
    };
    let entry = NewAuditEntry {
        actor: actor.to_owned(),
        action: "POST /signin".to_owned(),
        target: format!("users/{}", name.to_lowercase()),
        outcome: outcome.to_owned(),
        status,
        detail,
    };
    if let Err(err) = state.app.store.append_audit(&entry).await {
        tracing::error!(error = %err, "could not write a sign-in to the audit log");
    }
}
