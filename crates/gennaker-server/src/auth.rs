//! Authentication (bearer tokens) and authorisation (per-application permissions).
//!
//! Tokens are 32 random bytes shown once as `gnk_<hex>`; the store keeps only their
//! SHA-256, so a leaked database does not leak credentials. Lookup is by hash, which
//! reveals nothing an attacker can use, so no constant-time comparison is needed.
//!
//! Application permissions follow Spinnaker's Fiat model: an application document may
//! carry `permissions: {READ: [roles], WRITE: [roles], EXECUTE: [roles]}`.
//! The rules are [`gennaker_core::Permissions`]' (an application naming no role is open to
//! every authenticated user; EXECUTE falls back to READ when absent; WRITE does not imply
//! READ). Admins may do everything.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use gennaker_core::Access;
use gennaker_core::{AccessDenied, Permissions, check_application_access};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The prefix of every Gennaker API token, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "gnk_";

/// Creates a new random token secret.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// The hash under which a token is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated user making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name.
    pub name: String,
    /// Whether the user is an admin.
    pub admin: bool,
    /// The user's roles.
    pub roles: Vec<String>,
}

/// The hash of the token a request was authenticated with, so a long-lived response
/// (an event stream) can check later that it is still valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHash(pub String);

/// The actor name recorded on a response, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Actor(pub String);

/// The permissions in an application document: `None` when it names none (unrestricted),
/// `Err` when they cannot be read (which denies everyone but admins).
pub fn application_permissions(document: &Value) -> Result<Option<Permissions>, String> {
    Permissions::of_application_document(document)
}

/// The answer for an application that does not exist, and for one the caller may not
/// see at all: the two must not be told apart, or a refusal would confirm that it
/// exists.
pub(crate) fn application_not_found(application: &str) -> ApiError {
    ApiError::NotFound(format!(
        "application '{application}' not found; create it with `gennaker app save`"
    ))
}

impl Caller {
    /// Succeeds when the caller may act on the application with the given document.
    ///
    /// A caller who may not READ the application gets the same 404 as for an
    /// application that does not exist (and never its role lists). A caller who may
    /// READ it but lacks this permission gets a 403 naming the roles that grant it, so
    /// they know whom to ask; the application's existence is no secret to them.
    pub fn require(
        &self,
        application: &str,
        document: &Value,
        access: Access,
    ) -> Result<(), ApiError> {
        match check_application_access(document, access, self.admin, &self.roles) {
            Ok(()) => Ok(()),
            Err(AccessDenied::UnreadablePermissions(err)) => {
                tracing::warn!(application, error = %err, "an application's permissions cannot be read; only admins may use it until they are fixed");
                Err(application_not_found(application))
            }
            Err(AccessDenied::MissingRole { access, granted }) => {
                let may_read =
                    check_application_access(document, Access::Read, false, &self.roles).is_ok();
                if !may_read {
                    return Err(application_not_found(application));
                }
                Err(ApiError::Forbidden(format!(
                    "user '{}' lacks {access} permission on application '{application}': it is granted to role(s) [{}]; an admin can grant a role with `gennaker user set-roles`",
                    self.name,
                    granted.join(", "),
                )))
            }
        }
    }

    /// Succeeds when the caller is the user `name` (names compare case-insensitively, as
    /// they are stored) or an admin.
    pub fn require_self_or_admin(&self, name: &str) -> Result<(), ApiError> {
        if self.name.eq_ignore_ascii_case(name) {
            Ok(())
        } else {
            self.require_admin()
        }
    }

    /// Succeeds when the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "user '{}' is not an admin; only admins may do this",
                self.name
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("this route needs authentication".to_owned()))
    }
}

fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "missing credentials: send 'Authorization: Bearer <token>' (the CLI reads --token, GENNAKER_TOKEN or ~/.config/gennaker/config.toml)".to_owned(),
        )
    })?;
    let value = header.to_str().map_err(|_| {
        ApiError::Unauthorized("the Authorization header is not valid text".to_owned())
    })?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".to_owned())
        })
}

/// Middleware: resolves the bearer token to a [`Caller`] or answers 401.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // The token is copied out first: a borrowed request is not `Send` across an await.
    // A request the web UI forwards carries its session's token hash as an extension
    // (clients cannot set extensions; only code in this process can).
    let token = match request.extensions().get::<TokenHash>() {
        Some(forwarded) => Ok(forwarded.0.clone()),
        None => bearer_token(&request).map(hash_token),
    };
    let hash = token.as_ref().ok().cloned();
    let caller = match resolve_caller(&state, token).await {
        Ok(caller) => caller,
        Err(err) => {
            let mut response = err.into_response();
            response
                .extensions_mut()
                .insert(Actor("anonymous".to_owned()));
            return response;
        }
    };
    let actor = Actor(caller.name.clone());
    request.extensions_mut().insert(caller);
    if let Some(hash) = hash {
        request.extensions_mut().insert(TokenHash(hash));
    }
    let mut response = next.run(request).await;
    response.extensions_mut().insert(actor);
    response
}

/// The user a token (by its hash) belongs to, if it is valid now.
pub(crate) async fn resolve_caller(
    state: &AppState,
    token_hash: Result<String, ApiError>,
) -> Result<Caller, ApiError> {
    let found = state
        .store
        .authenticate(&token_hash?, gennaker_store::now_millis())
        .await?;
    let (_, user) = found.ok_or_else(|| {
        ApiError::Unauthorized(
            "the token is not valid: it is unknown, expired or revoked; create a new one with `gennaker token create` (the first admin's token is in <data-dir>/admin-token)".to_owned(),
        )
    })?;
    Ok(Caller {
        name: user.name,
        admin: user.admin,
        roles: user.roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller(roles: &[&str]) -> Caller {
        Caller {
            name: "u".into(),
            admin: false,
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 4 + 64);
        assert_ne!(a, generate_token());
        assert_eq!(
            hash_token("x"),
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }

    #[test]
    fn fiat_semantics() {
        let open = json!({"name": "a"});
        assert!(caller(&[]).require("a", &open, Access::Write).is_ok());
        let app = json!({"permissions": {"READ": ["r"], "WRITE": ["w"]}});
        assert!(caller(&["r"]).require("a", &app, Access::Read).is_ok());
        assert!(caller(&["r"]).require("a", &app, Access::Write).is_err());
        assert!(caller(&["w"]).require("a", &app, Access::Write).is_ok());
        let broken = json!({"permissions": "everyone"});
        assert!(matches!(
            caller(&["r"]).require("a", &broken, Access::Read),
            Err(ApiError::NotFound(_))
        ));
        // EXECUTE falls back to READ when unset.
        assert!(caller(&["r"]).require("a", &app, Access::Execute).is_ok());
        // No permission at all: as if the application did not exist.
        let hidden = caller(&["x"]).require("a", &app, Access::Read).unwrap_err();
        assert!(matches!(hidden, ApiError::NotFound(_)), "{hidden}");
        assert_eq!(hidden.to_string(), application_not_found("a").to_string());
        // WRITE without READ is no READ: a refusal is a 404 too, never the role lists.
        let write_only = caller(&["w"])
            .require("a", &app, Access::Execute)
            .unwrap_err();
        assert!(matches!(write_only, ApiError::NotFound(_)), "{write_only}");
        let exec = json!({"permissions": {"READ": ["r"], "EXECUTE": ["x"]}});
        assert!(caller(&["r"]).require("a", &exec, Access::Execute).is_err());
        assert!(caller(&["x"]).require("a", &exec, Access::Execute).is_ok());
        let admin = Caller {
            admin: true,
            ..caller(&[])
        };
        assert!(admin.require("a", &exec, Access::Write).is_ok());
        let err = caller(&["r"])
            .require("a", &app, Access::Write)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("lacks WRITE permission on application 'a'"),
            "{err}"
        );
    }
}
