//! The UI's actions (POST) and its event stream: sign-in and sign-out here, the rest
//! forwarded to the API as the signed-in user.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::format::url_component;
use super::pages::{self, RunPage};
use super::session::{
    ABSOLUTE_LIMIT, SESSION_COOKIE, SIGNIN_COOKIE, cookie, foreign_origin, random_token,
    same_secret, set_cookie,
};
use super::{UiState, Viewer, error_page, plain_error, redirect, redirect_with_cookies, render};
use crate::auth::{hash_token, resolve_caller};
use crate::error::ApiError;

/// How long a sign-in form stays valid.
const SIGNIN_FORM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
/// The longest value of a form field the UI passes on (a cancel reason, a parameter).
const MAX_FIELD: usize = 64 * 1024;

/// A POST from a signed-in user's page: the session is live, the `Origin` (when sent)
/// is this site, and the form carries the session's CSRF token. Handlers that take it
/// cannot run without all three.
pub(crate) struct Posted {
    /// Who posted.
    pub viewer: Viewer,
    /// The form's fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Posted {
    /// The first value of a field, trimmed; empty when absent.
    fn field(&self, name: &str) -> String {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    }
}

pub(crate) fn refused_csrf() -> Response {
    plain_error(
        StatusCode::FORBIDDEN,
        "This form did not come from a page of this site, or it has expired (its CSRF token is missing or wrong): reload the page and try again.",
    )
}

fn refused_origin(origin: &str) -> Response {
    plain_error(
        StatusCode::FORBIDDEN,
        &format!("A form posted from another site ({origin}) is refused."),
    )
}

impl FromRequest<UiState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &UiState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        if let Some(origin) = foreign_origin(&parts.headers) {
            return Err(refused_origin(&origin));
        }
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(|err| {
                plain_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the form could not be read: {}", err.body_text()),
                )
            })?;
        let token = fields
            .iter()
            .find(|(key, _)| key == "csrf")
            .map_or("", |(_, value)| value.as_str());
        if !same_secret(token, &viewer.session.csrf) {
            tracing::warn!(user = %viewer.caller.name, "a web UI form without a valid CSRF token was refused");
            return Err(refused_csrf());
        }
        if let Some((name, _)) = fields.iter().find(|(_, value)| value.len() > MAX_FIELD) {
            return Err(plain_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the field '{name}' is longer than {} KiB", MAX_FIELD / 1024),
            ));
        }
        Ok(Posted { viewer, fields })
    }
}

#[derive(Template)]
#[template(path = "ui/signin.html")]
struct SigninPage {
    csrf: String,
    next: String,
    user: String,
    error: String,
}

/// Where to go after sign-in: a path on this site, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.contains(['\r', '\n']) =>
        {
            next.to_owned()
        }
        _ => "/applications".to_owned(),
    }
}

/// The sign-in form's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NextParams {
    #[serde(default)]
    next: Option<String>,
}

pub(crate) fn signin_page(
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    error: String,
) -> Response {
    signin_page_for(headers, status, next, "", error)
}

/// The sign-in form with the user name entered before.
pub(crate) fn signin_page_for(
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    user: &str,
    error: String,
) -> Response {
    let csrf = random_token();
    let mut response = render(
        status,
        &SigninPage {
            csrf: csrf.clone(),
            next: next.to_owned(),
            user: user.to_owned(),
            error,
        },
    );
    if let Ok(value) = set_cookie(headers, SIGNIN_COOKIE, &csrf, Some(SIGNIN_FORM_LIFETIME)).parse()
    {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
    response
}

/// `GET /signin`: the sign-in form (or, when signed in already, where it leads).
pub(crate) async fn signin_form(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(params): Query<NextParams>,
) -> Response {
    let next = safe_next(params.next.as_deref());
    if state.sessions().find(&headers).is_some() {
        return redirect(&next);
    }
    signin_page(&headers, StatusCode::OK, &next, String::new())
}

/// The sign-in form's fields: an API token, or a user name and password. (No
/// `Debug`: it holds secrets.)
#[derive(Deserialize)]
pub(crate) struct SigninForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /signin`: checks the token, opens a session and sets its cookie.
pub(crate) async fn signin(
    State(state): State<UiState>,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Some(origin) = foreign_origin(&headers) {
        return refused_origin(&origin);
    }
    let Ok(Form(form)) = form else {
        return signin_page(
            &headers,
            StatusCode::BAD_REQUEST,
            "/applications",
            "The form could not be read; enter your token again.".to_owned(),
        );
    };
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, &expected) {
        return refused_csrf();
    }
    let token = form.token.trim();
    if token.is_empty() && !form.user.trim().is_empty() {
        return super::password_signin::signin(&state, &headers, &next, form.user, form.password)
            .await;
    }
    if token.is_empty() || token.len() > 512 {
        return signin_page(
            &headers,
            StatusCode::BAD_REQUEST,
            &next,
            "Enter your user name and password, or an API token (it starts with gnk_).".to_owned(),
        );
    }
    let hash = hash_token(token);
    match resolve_caller(&state.app, Ok(hash.clone())).await {
        Ok(caller) => {
            let id = state.sessions().open(hash);
            tracing::info!(user = %caller.name, "signed in to the web UI");
            redirect_with_cookies(
                &next,
                &[
                    set_cookie(&headers, SESSION_COOKIE, &id, Some(ABSOLUTE_LIMIT)),
                    set_cookie(&headers, SIGNIN_COOKIE, "", None),
                ],
            )
        }
        Err(ApiError::Unauthorized(_)) => signin_page(
            &headers,
            StatusCode::UNAUTHORIZED,
            &next,
            "That token is not valid: it is unknown, expired or revoked. Create one with `gennaker token create` (the first admin's is in <data-dir>/admin-token).".to_owned(),
        ),
        Err(other) => error_page(None, &other),
    }
}

/// `POST /signout`: ends the session (and revokes the token a password sign-in made
/// for it).
pub(crate) async fn signout(
    State(state): State<UiState>,
    headers: HeaderMap,
    posted: Posted,
) -> Response {
    if let Some(token) = state.sessions().close(&posted.viewer.session.key)
        && let Err(err) = state.app.store.revoke_token(&token).await
    {
        tracing::warn!(error = %err, "the token of a signed-out web UI session could not be revoked; it expires by itself");
    }
    redirect_with_cookies("/signin", &[set_cookie(&headers, SESSION_COOKIE, "", None)])
}

/// `GET /executions/{id}/events`: the API's event stream of the execution, for the
/// page's script (EventSource sends the session cookie, not a bearer token).
pub(crate) async fn events(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    state
        .forward_response(
            &viewer,
            Method::GET,
            &format!("/api/v1/executions/{}/events", url_component(&id)),
            None,
        )
        .await
}

fn execution_url(id: &str) -> String {
    format!("/executions/{}", url_component(id))
}

/// `POST /executions/{id}/cancel`: cancels with the reason given.
pub(crate) async fn cancel(
    State(state): State<UiState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let reason = posted.field("reason");
    let body = json!({ "reason": (!reason.is_empty()).then_some(reason) });
    let outcome = state
        .forward(
            &posted.viewer,
            Method::POST,
            &format!("/api/v1/executions/{}/cancel", url_component(&id)),
            Some(&body),
        )
        .await;
    match outcome {
        Ok(_) => state.flash(
            &posted.viewer,
            "ok",
            "Cancel requested: running stages are stopping.",
        ),
        Err(refusal) => state.flash(
            &posted.viewer,
            "error",
            format!("Not canceled: {}", refusal.message),
        ),
    }
    redirect(&execution_url(&id))
}

/// `POST /executions/{id}/stages/{stage}/judgment`: continue or stop a manual judgment.
pub(crate) async fn judgment(
    State(state): State<UiState>,
    Path((id, stage)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let status = posted.field("judgmentStatus");
    let input = posted.field("judgmentInput");
    let body = json!({
        "judgmentStatus": status,
        "judgmentInput": (!input.is_empty()).then_some(input),
    });
    let outcome = state
        .forward(
            &posted.viewer,
            Method::POST,
            &format!(
                "/api/v1/executions/{}/stages/{}/judgment",
                url_component(&id),
                url_component(&stage)
            ),
            Some(&body),
        )
        .await;
    match outcome {
        Ok(_) => state.flash(&posted.viewer, "ok", format!("Judged '{status}'.")),
        Err(refusal) => state.flash(
            &posted.viewer,
            "error",
            format!("Not judged: {}", refusal.message),
        ),
    }
    redirect(&execution_url(&id))
}

/// `POST /applications/{app}/pipelines/{name}/run`: runs the pipeline with the form's
/// parameters (`p.<name>`; an empty one takes its default) and opens the execution.
pub(crate) async fn run(
    State(state): State<UiState>,
    Path((app, name)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let mut parameters = Map::new();
    for (key, value) in &posted.fields {
        if let Some(parameter) = key.strip_prefix("p.")
            && !value.trim().is_empty()
        {
            parameters.insert(parameter.to_owned(), Value::String(value.trim().to_owned()));
        }
    }
    let body = json!({ "parameters": parameters });
    let outcome = state
        .forward(
            &posted.viewer,
            Method::POST,
            &format!(
                "/api/v1/applications/{}/pipelines/{}/executions",
                url_component(&app),
                url_component(&name)
            ),
            Some(&body),
        )
        .await;
    match outcome {
        Ok(execution) => {
            let id = execution["id"].as_str().unwrap_or_default();
            state.flash(&posted.viewer, "ok", format!("Started {name}."));
            redirect(&execution_url(id))
        }
        Err(refusal) => {
            // The form again, with what was entered and why the run was refused.
            match pages::run_page(&state, &posted.viewer, &app, &name).await {
                Ok(mut page) => {
                    refill(&mut page, &parameters);
                    page.error = refusal.message;
                    render(refusal.status, &page)
                }
                Err(err) => error_page(Some(&posted.viewer), &err),
            }
        }
    }
}

/// `POST /applications/{app}/pipelines/{name}/edit`: saves the edited JSON (or YAML,
/// with `format=yaml`) as a new revision through the API, which validates it first. A
/// document with errors is not saved: the form comes back with the text as typed and
/// each problem at its JSON path (or where the YAML does not parse).
pub(crate) async fn edit(
    State(state): State<UiState>,
    Path((app, name)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let text = posted
        .fields
        .iter()
        .find(|(key, _)| key == "config")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let yaml = pages::wants_yaml(Some(&posted.field("format")));
    let body = if yaml {
        match gennaker_core::parse_document(&text, gennaker_core::DocumentFormat::Yaml) {
            Ok(document) => serde_json::to_vec(&document).unwrap_or_default(),
            Err(syntax) => {
                let refusal = super::Refusal {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("the YAML does not parse at {syntax}"),
                    problems: Vec::new(),
                };
                return edit_refused(&state, &posted, &app, &name, text, yaml, refusal).await;
            }
        }
    } else {
        text.clone().into_bytes()
    };
    let outcome = state
        .forward_bytes(
            &posted.viewer,
            Method::POST,
            &format!("/api/v1/applications/{}/pipelines", url_component(&app)),
            Some(body),
        )
        .await;
    match outcome {
        Ok(saved) => {
            let revision = saved["pipeline"]["revision"].as_i64().unwrap_or_default();
            let warnings = super::problems_of(&saved["warnings"]).len();
            let mut message = format!("Saved {name}: revision {revision}.");
            if warnings > 0 {
                message.push_str(&format!(
                    " {warnings} warning(s): `gennaker pipeline validate` lists them."
                ));
            }
            state.flash(&posted.viewer, "ok", message);
            redirect(&format!("/applications/{}/pipelines", url_component(&app)))
        }
        Err(refusal) => edit_refused(&state, &posted, &app, &name, text, yaml, refusal).await,
    }
}

/// The editor again, with the text as typed and why it was not saved.
async fn edit_refused(
    state: &UiState,
    posted: &Posted,
    app: &str,
    name: &str,
    text: String,
    yaml: bool,
    refusal: super::Refusal,
) -> Response {
    match pages::edit_page(state, &posted.viewer, app, name, yaml).await {
        Ok(mut page) => {
            page.text = text;
            page.error = refusal.message;
            page.problems = refusal.problems;
            render(refusal.status, &page)
        }
        Err(err) => error_page(Some(&posted.viewer), &err),
    }
}

fn refill(page: &mut RunPage, entered: &Map<String, Value>) {
    for field in &mut page.fields {
        if let Some(Value::String(value)) = entered.get(&field.name) {
            field.value.clone_from(value);
        }
    }
}

/// `POST /applications/{app}/serverGroups/{account}/{name}/{operation}`: runs the
/// confirmed operation as a recorded task and opens its execution.
pub(crate) async fn server_group_operation(
    State(state): State<UiState>,
    Path((app, account, name, operation)): Path<(String, String, String, String)>,
    posted: Posted,
) -> Response {
    let Some((verb, _)) = pages::explain(&operation) else {
        return error_page(
            Some(&posted.viewer),
            &ApiError::NotFound(format!("unknown operation '{operation}'")),
        );
    };
    let mut body = json!({ "account": account });
    let provider = posted.field("cloudProvider");
    if !provider.is_empty() {
        body["cloudProvider"] = json!(provider);
    }
    if operation == "resize" {
        let mut capacity = Map::new();
        for key in ["min", "desired", "max"] {
            match posted.field(key).parse::<u32>() {
                Ok(value) => {
                    capacity.insert(key.to_owned(), json!(value));
                }
                Err(_) => {
                    state.flash(
                        &posted.viewer,
                        "error",
                        format!("Not resized: '{key}' must be a whole number of instances."),
                    );
                    return redirect(&format!("/applications/{}/clusters", url_component(&app)));
                }
            }
        }
        body["capacity"] = Value::Object(capacity);
    }
    let outcome = state
        .forward(
            &posted.viewer,
            Method::POST,
            &format!(
                "/api/v1/applications/{}/serverGroups/{}/{}",
                url_component(&app),
                url_component(&name),
                url_component(&operation)
            ),
            Some(&body),
        )
        .await;
    match outcome {
        Ok(task) => {
            let id = task["executionId"].as_str().unwrap_or_default();
            state.flash(&posted.viewer, "ok", format!("{verb} {name}: started."));
            redirect(&execution_url(id))
        }
        Err(refusal) => {
            state.flash(
                &posted.viewer,
                "error",
                format!("{verb} {name} refused: {}", refusal.message),
            );
            redirect(&format!("/applications/{}/clusters", url_component(&app)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/executions/x?stage=1")),
            "/executions/x?stage=1"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "x",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/applications", "{bad}");
        }
        assert_eq!(safe_next(None), "/applications");
    }
}
