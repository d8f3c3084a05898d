//! Request extractors whose failures answer in the API's error format.
//!
//! axum's own `Json`, `Path`, `Query` and `Bytes` reject with a plain-text body (and 422
//! or 415 for a body that is not the expected JSON). These wrap them and turn every
//! rejection into an [`ApiError`], so each non-2xx answer of the API has the same
//! `{"error": …}` body, which the CLI and other clients parse.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;

use crate::error::ApiError;

/// A JSON request body of type `T`; anything else is a 400.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct JsonBody<T>(pub T);

/// Path parameters; a value of the wrong type (a revision that is not a number) is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub T);

/// Query parameters; a value of the wrong type is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub T);

/// The raw request body; one beyond the size limit is a 413.
#[derive(Debug)]
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(RawBody(Bytes::from_request(request, state).await?))
    }
}

/// Maps a rejection by its status: client faults keep axum's message (it names the
/// field or parameter), a server-side one is internal.
fn from_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!(
            "the request body is larger than the {} MiB the server accepts",
            crate::MAX_BODY_BYTES / (1024 * 1024)
        ))
    } else if status.is_server_error() {
        ApiError::Internal(text)
    } else {
        ApiError::bad_request(text)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}
