//! The web UI, served at `/` by the API's own server.
//!
//! Pages are rendered on the server from templates compiled into the binary
//! (`templates/ui/`, askama); the stylesheet and the one small script are embedded too,
//! so there is no build step besides cargo and nothing to fetch at run time. Every page
//! shows its data without JavaScript; the script only makes the execution page follow
//! the execution live (it listens to the API's server-sent events and fetches the
//! page's live part again, rendered on the server).
//!
//! Reading: pages read the store and the engine directly, with the API's permission
//! checks (`check_application_access`, Fiat's rules): the UI lists only applications
//! the user may READ and shows action buttons only where they may EXECUTE. Acting:
//! every form posts here (with the session's CSRF token), and the UI forwards it to the
//! API route that does the same thing, as the signed-in user, so the API's checks,
//! validation, messages and audit entries are the very same. See [`session`] for how
//! sign-in, cookies and CSRF work.

mod actions;
mod audit;
mod balancers;
mod canary;
mod controls;
mod filters;
mod format;
mod graph;
mod history;
mod pages;
mod password_signin;
mod session;
mod signin_limit;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{Next, from_fn};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;

use crate::auth::{Caller, TokenHash, resolve_caller};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) use self::session::Flash;
use self::session::{SessionInfo, Sessions};

/// The `User-Agent` the UI's forwarded API calls carry (their executions' origin is
/// `ui`).
pub(crate) const USER_AGENT: &str = "gennaker-ui/";

/// The largest API answer the UI reads when it forwards an action.
const MAX_API_ANSWER: usize = 4 * 1024 * 1024;

/// What the UI's handlers share.
#[derive(Clone)]
pub(crate) struct UiState {
    /// The API's state (store, engine, providers, settings).
    pub app: AppState,
    /// The API's authenticated routes, to which actions are forwarded.
    api: Router,
    /// Open sessions.
    sessions: Arc<Sessions>,
    /// Recent wrong passwords, by user name.
    signin_limit: Arc<signin_limit::SigninLimiter>,
}

/// The UI's routes, to merge into the API's router.
pub(crate) fn router(app: AppState, api: Router) -> Router<AppState> {
    let state = UiState {
        app,
        api,
        sessions: Arc::new(Sessions::default()),
        signin_limit: Arc::new(signin_limit::SigninLimiter::default()),
    };
    Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(actions::signin_form).post(actions::signin))
        .route("/signout", post(actions::signout))
        .route("/static/ui.css", get(stylesheet))
        .route("/static/ui.js", get(script))
        .route("/applications", get(pages::applications))
        .route("/applications/{app}", get(pages::application))
        .route("/applications/{app}/executions", get(pages::executions))
        .route("/applications/{app}/pipelines", get(pages::pipelines))
        .route(
            "/applications/{app}/pipelines/{name}/run",
            get(pages::run_form).post(actions::run),
        )
        .route(
            "/applications/{app}/pipelines/{name}/edit",
            get(pages::edit_form).post(actions::edit),
        )
        .route("/applications/{app}/clusters", get(pages::clusters))
        .route(
            "/applications/{app}/serverGroups/{account}/{name}/{operation}",
            get(pages::confirm_operation).post(actions::server_group_operation),
        )
        .route("/executions/{id}", get(pages::execution))
        .route("/executions/{id}/live", get(pages::execution_live))
        .route("/executions/{id}/events", get(actions::events))
        .route("/executions/{id}/cancel", post(actions::cancel))
        .route(
            "/executions/{id}/stages/{stage}/judgment",
            post(actions::judgment),
        )
        .merge(page_routes())
        // Execution controls, executions filters, password sign-in, audit log (ui-a).
        .route("/executions/{id}/pause", post(controls::pause))
        .route("/executions/{id}/resume", post(controls::resume))
        .route(
            "/executions/{id}/stages/{stage}/restart",
            post(controls::restart),
        )
        .route("/executions/{id}/stages/{stage}/skip", post(controls::skip))
        .route("/audit", get(audit::audit))
        .layer(from_fn(security_headers))
        .with_state(state)
}

/// Pipeline history and restore, load balancers, and canary reports.
fn page_routes() -> Router<UiState> {
    Router::new()
        .route("/static/canary.css", get(canary_stylesheet))
        .route(
            "/applications/{app}/pipelines/{name}/history",
            get(history::history),
        )
        .route(
            "/applications/{app}/pipelines/{name}/history/{revision}/restore",
            post(history::restore),
        )
        .route(
            "/applications/{app}/loadBalancers",
            get(balancers::load_balancers),
        )
        .route(
            "/executions/{id}/stages/{stage}/canary",
            get(canary::report_page),
        )
}

/// Middleware: what every UI answer carries. The content security policy allows only
/// this server's own stylesheet and script (no inline code, no other origin), forms
/// posting here, and no framing.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !is_static && !headers.contains_key(CACHE_CONTROL) {
        // Pages hold one user's data: no shared cache may keep them.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The UI's style sheet: the frame's rules, then those of the history, load balancer
/// and canary pages.
const STYLESHEET: &str = concat!(
    include_str!("../../static/ui.css"),
    include_str!("../../static/pages.css")
);
const SCRIPT: &str = include_str!("../../static/ui.js");

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// The canary report's own style sheet (scoped to `.gk-canary`), as the standalone
/// report page inlines it.
async fn canary_stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        gennaker_canary::report::REPORT_CSS,
    )
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The signed-in user of a UI request, and their session.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// Who they are (resolved from the session's token on every request).
    pub caller: Caller,
    /// Their session.
    pub session: SessionInfo,
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        let Some(session) = state.sessions.find(&parts.headers) else {
            return Err(not_signed_in(parts));
        };
        match resolve_caller(&state.app, Ok(session.token_hash.clone())).await {
            Ok(caller) => Ok(Viewer { caller, session }),
            Err(ApiError::Unauthorized(_)) => {
                // The token was revoked or expired: the session ends with it.
                state.sessions.close(&session.key);
                Err(not_signed_in(parts))
            }
            Err(other) => Err(error_page(None, &other)),
        }
    }
}

/// A page read without a session goes to the sign-in form (and comes back after it);
/// anything else is refused.
fn not_signed_in(parts: &Parts) -> Response {
    if parts.method == Method::GET {
        let target = parts
            .uri
            .path_and_query()
            .map_or("/applications", |p| p.as_str());
        let next = format::url_component(target);
        redirect(&format!("/signin?next={next}"))
    } else {
        plain_error(
            StatusCode::FORBIDDEN,
            "You are not signed in (or your session ended): sign in again, then repeat the action.",
        )
    }
}

/// A `303 See Other` to `location` (after a POST, the browser GETs it).
pub(crate) fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A redirect that also sets cookies.
pub(crate) fn redirect_with_cookies(location: &str, cookies: &[String]) -> Response {
    let mut response = redirect(location);
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// Renders a template as an HTML answer with `status`.
pub(crate) fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a web UI template failed to render");
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page could not be rendered; the details are in the server's log.",
            )
        }
    }
}

/// The error page for an API error, within the layout when the user is known.
pub(crate) fn error_page(viewer: Option<&Viewer>, error: &ApiError) -> Response {
    let (status, _) = error.status_and_code();
    let message = if status.is_server_error() {
        tracing::error!(error = %error, "a web UI page failed");
        "Something went wrong on the server; the details are in its log.".to_owned()
    } else {
        error.to_string()
    };
    match viewer {
        Some(viewer) => render(
            status,
            &pages::ErrorPage {
                layout: pages::Layout::new(viewer, status_title(status), None, ""),
                message,
            },
        ),
        None => plain_error(status, &message),
    }
}

fn status_title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

/// A minimal HTML error page, for when there is no signed-in user to lay a page out for.
pub(crate) fn plain_error(status: StatusCode, message: &str) -> Response {
    let page = pages::PlainError {
        title: status_title(status),
        message: message.to_owned(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

/// What the API answered a forwarded action with, when it refused it.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The API's status.
    pub status: StatusCode,
    /// Its message.
    pub message: String,
    /// The problems it found in a submitted document, each at its JSON path.
    pub problems: Vec<ProblemView>,
}

/// A problem the API found in a submitted document.
#[derive(Debug, Clone)]
pub(crate) struct ProblemView {
    /// `error` or `warning`.
    pub severity: String,
    /// Its JSON path (`$.stages[1].waitTime`).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when the API knows.
    pub hint: String,
}

/// The problems listed in an API answer (`error.problems`, or `warnings`).
pub(crate) fn problems_of(list: &Value) -> Vec<ProblemView> {
    let text = |p: &Value, key: &str| p[key].as_str().unwrap_or_default().to_owned();
    list.as_array()
        .map(|problems| {
            problems
                .iter()
                .map(|p| ProblemView {
                    severity: text(p, "severity"),
                    path: text(p, "path"),
                    message: text(p, "message"),
                    hint: text(p, "hint"),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl UiState {
    /// Calls the API as the viewer (same checks, same audit entry) and returns its JSON
    /// answer, or why it refused.
    pub(crate) async fn forward(
        &self,
        viewer: &Viewer,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Refusal> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        self.forward_bytes(viewer, method, path, body).await
    }

    /// [`UiState::forward`] with a JSON body sent as given (a document being edited,
    /// which the API parses and reports on).
    pub(crate) async fn forward_bytes(
        &self,
        viewer: &Viewer,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, Refusal> {
        let (status, bytes) = self.forward_raw(viewer, method, path, body).await?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let error = &json["error"];
        Err(Refusal {
            status,
            message: error["message"]
                .as_str()
                .map_or_else(|| format!("the server answered {status}"), str::to_owned),
            problems: problems_of(&error["problems"]),
        })
    }

    async fn forward_raw(
        &self,
        viewer: &Viewer,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, axum::body::Bytes), Refusal> {
        let response = self.forward_response(viewer, method, path, body).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_API_ANSWER)
            .await
            .map_err(|err| Refusal {
                status: StatusCode::BAD_GATEWAY,
                message: format!("the API's answer could not be read: {err}"),
                problems: Vec::new(),
            })?;
        Ok((status, bytes))
    }

    /// The API's response itself (an event stream is passed on as it comes).
    pub(crate) async fn forward_response(
        &self,
        viewer: &Viewer,
        method: Method,
        path: &str,
        bytes: Option<Vec<u8>>,
    ) -> Response {
        let mut builder = Request::builder().method(method).uri(path).header(
            axum::http::header::USER_AGENT,
            concat!("gennaker-ui/", env!("CARGO_PKG_VERSION")),
        );
        if bytes.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Body::from(bytes.unwrap_or_default()));
        let mut request = match request {
            Ok(request) => request,
            Err(err) => {
                return plain_error(
                    StatusCode::BAD_REQUEST,
                    &format!("this action cannot be sent: {err}"),
                );
            }
        };
        request
            .extensions_mut()
            .insert(TokenHash(viewer.session.token_hash.clone()));
        match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Leaves a message on the viewer's next page.
    pub(crate) fn flash(&self, viewer: &Viewer, kind: &'static str, text: impl Into<String>) {
        self.sessions.set_flash(
            &viewer.session.key,
            Flash {
                kind,
                text: text.into(),
            },
        );
    }

    /// Takes the message left for this page.
    pub(crate) fn take_flash(&self, viewer: &Viewer) -> Option<Flash> {
        self.sessions.take_flash(&viewer.session.key)
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}
