//! The API's error vocabulary and its JSON form.
//!
//! Every non-2xx response has the body
//! `{"error": {"code": "...", "message": "...", "problems": [...]}}`. Client faults carry their
//! own message; internal faults say only that something went wrong, and the detail goes to
//! the log (and the audit log) through the response's extensions.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gennaker_core::Problem;
use gennaker_engine::EngineError;
use gennaker_store::StoreError;
use serde::Serialize;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the needed permission (403).
    #[error("{0}")]
    Forbidden(String),
    /// The target does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong; `problems` lists each issue with its JSON path (400).
    #[error("{message}")]
    BadRequest {
        /// A summary.
        message: String,
        /// Each problem found, all at once.
        problems: Vec<Problem>,
    },
    /// The request body is beyond the size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The request took longer than the server's request timeout (408).
    #[error("{0}")]
    Timeout(String),
    /// The request conflicts with stored state (409).
    #[error("{0}")]
    Conflict(String),
    /// A fault on the server's side (500); the text is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// A dependency (the database) is not available (503); like `Internal`, the text is
    /// logged, not returned (driver errors name hosts, ports and files).
    #[error("{0}")]
    Unavailable(String),
    /// The database is busy with other writers (503 with `Retry-After: 1`): the same
    /// request is likely to succeed in a moment. The text is logged, not returned.
    #[error("{0}")]
    Busy(String),
}

impl ApiError {
    /// A 400 without per-field problems.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => ApiError::NotFound(err.to_string()),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Busy(_) => ApiError::Busy(err.to_string()),
            StoreError::TooLarge(message) => ApiError::TooLarge(message),
            StoreError::Database(
                sqlx_error @ (sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)),
            ) => ApiError::Unavailable(format!("the database is not available: {sqlx_error}")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound { kind: "stage", id } => ApiError::NotFound(format!(
                "stage '{id}' not found in the execution; give a stage id or a top-level refId (`gennaker execution get ID` lists them)"
            )),
            EngineError::NotFound { kind, id } => ApiError::NotFound(format!(
                "{kind} '{id}' not found; `gennaker execution list` shows recent executions"
            )),
            EngineError::Conflict(message) => ApiError::Conflict(message),
            EngineError::Forbidden(message) => ApiError::Forbidden(message),
            EngineError::Invalid(message) => ApiError::bad_request(message),
            EngineError::Build(build) => ApiError::bad_request(build.to_string()),
            EngineError::Store(store) => ApiError::from(store),
            EngineError::Document(document) => ApiError::Internal(format!(
                "a stored execution document cannot be read: {document}"
            )),
            EngineError::Outbound(outbound) => ApiError::Internal(outbound.to_string()),
        }
    }
}
/// What clients are told when the database does not answer; the cause goes to the log.
pub(crate) const UNAVAILABLE_MESSAGE: &str = "the database is not available right now; try again later (the details are in the server's log)";

/// What clients are told when the database is busy with other writers.
pub(crate) const BUSY_MESSAGE: &str = "the database is busy with other requests; retry in a moment (the response's Retry-After header says when)";

/// The seconds a client should wait before retrying a request the busy database
/// refused: writers hold it for milliseconds, not longer.
const BUSY_RETRY_AFTER_SECONDS: &str = "1";

/// The JSON body of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code.
    pub code: String,
    /// A message for people: what was wrong and how to fix it.
    pub message: String,
    /// Problems found in a submitted document, each with its JSON path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<Problem>,
}

/// The full error text, kept on the response for the audit log and request logging.
#[derive(Debug, Clone)]
pub(crate) struct ErrorText(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let busy = matches!(self, ApiError::Busy(_));
        let internal_text = self.to_string();
        let (message, problems) = match self {
            ApiError::Internal(_) => (
                "something went wrong on the server; the details are in its log".to_owned(),
                Vec::new(),
            ),
            ApiError::Unavailable(_) => (UNAVAILABLE_MESSAGE.to_owned(), Vec::new()),
            ApiError::Busy(_) => (BUSY_MESSAGE.to_owned(), Vec::new()),
            ApiError::BadRequest { message, problems } => (message, problems),
            other => (other.to_string(), Vec::new()),
        };
        if status.is_server_error() {
            tracing::error!(error = %internal_text, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                problems,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if busy {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(BUSY_RETRY_AFTER_SECONDS),
            );
        }
        response.extensions_mut().insert(ErrorText(internal_text));
        response
    }
}

/// The handlers' result type.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_busy_database_is_a_503_to_retry_in_a_second() {
        // A real SQLITE_BUSY: a second writer that does not wait for the first.
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut waiter = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let busy = sqlx::raw_sql("PRAGMA busy_timeout = 0; BEGIN IMMEDIATE")
            .execute(&mut waiter)
            .await
            .err()
            .unwrap();
        holder.close().await.unwrap();
        waiter.close().await.unwrap();

        let error = ApiError::from(StoreError::from(busy));
        assert!(matches!(error, ApiError::Busy(_)), "{error:?}");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        // The driver's text goes to the log only.
        let text = &response.extensions().get::<ErrorText>().unwrap().0;
        assert!(text.starts_with("the database is busy: "), "{text}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "busy", "message": BUSY_MESSAGE}})
        );

        // A database that is not there is no reason to retry at once.
        let unavailable = ApiError::from(StoreError::from(sqlx::Error::PoolTimedOut));
        let response = unavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
