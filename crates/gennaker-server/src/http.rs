//! The HTTP server itself: accepting connections within limits, and stopping on time.
//!
//! `axum::serve` has no header-read timeout, no connection cap and waits for every
//! connection when it stops, so one slow client could hold connections open forever
//! and delay a SIGTERM without end. Here each connection is served by hyper's HTTP/1.1
//! builder with a header-read timeout (which also closes idle kept-alive connections),
//! a semaphore caps open connections, and a stopping server gives open requests a
//! deadline before it closes their connections.
//!
//! HTTP/1.1 only: hyper's protocol detection for cleartext HTTP/2 waits for the
//! client's first bytes without any timeout, and the API's clients speak HTTP/1.1.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::state::AppState;

/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections over the cap that are being answered 503 at once; beyond these they
/// are closed without an answer, so refusing costs bounded work.
const MAX_REFUSALS: usize = 64;

/// How long answering a refused connection may take.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` within `settings`' limits until `stop` is cancelled, then
/// lets open requests finish for at most `settings.shutdown_deadline` and closes what
/// is still open.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    stop: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let close_now = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let service = app.map_request(|request: Request<Incoming>| request.map(Body::new));
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(stream, settings.max_connections, &refusals);
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = graceful.watch(builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        ));
        let close_now = close_now.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "client connection ended with an error");
                    }
                }
                () = close_now.cancelled() => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    let deadline = settings.shutdown_deadline;
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = deadline.as_secs_f64(),
            "connections still open after the shutdown deadline ([http] shutdown_deadline_seconds); closing them"
        );
        close_now.cancel();
    }
}

/// Answers a connection over the cap with a 503 and closes it (in the background,
/// bounded in time and in number).
fn refuse(mut stream: TcpStream, max_connections: usize, refusals: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tracing::debug!(
        max_connections,
        "connection refused: too many open connections"
    );
    let body = ErrorBody {
        error: ErrorDetail {
            code: "unavailable".to_owned(),
            message: format!(
                "the server has too many open connections (at most {max_connections}, [http] max_connections); try again later"
            ),
            problems: Vec::new(),
        },
    };
    let body = serde_json::to_string(&body).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            // Read what the client sent, so closing does not reset the connection
            // before it has read the answer.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        drop(permit);
    });
}

/// Middleware: a request whose response has not started within the request timeout is
/// answered 408. An event stream's response starts at once, so streams are not cut.
pub(crate) async fn limit_time(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.http.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request took longer than {} s ([http] request_timeout_seconds) and was stopped; a change it was making still completes and is in the audit log",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// Middleware: error answers axum makes itself (405 with an empty body, plain-text
/// rejections) get the API's JSON error body, so every client can parse every error.
/// The web UI's error pages (HTML) are left as they are.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(ALLOW)
                .and_then(|value| value.to_str().ok())
                .filter(|allowed| !allowed.is_empty())
                .map(|allowed| format!(" (it accepts {allowed})"))
                .unwrap_or_default();
            format!(
                "this method is not allowed on this route{allowed}; /api/openapi.json lists each route's methods"
            )
        }
        other => format!(
            "the request failed: {}",
            other.canonical_reason().unwrap_or("error")
        ),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        other if other.is_server_error() => "internal",
        _ => "bad_request",
    };
    let (mut parts, _) = response.into_parts();
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
            problems: Vec::new(),
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}
