//! `/audit`: the audit log, for admins — every mutating API call (the UI's forwarded
//! actions included) and every password sign-in: when, who, what, on what, and how it
//! ended, newest first, filtered by actor and target, paged by entry id (a permalink).
//! Others get a 403 and no link to it.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gennaker_store::{AuditEntry, AuditQuery};
use serde::Deserialize;

use super::format::{self, url_component};
use super::pages::Layout;
use super::{UiState, Viewer, error_page, render};
use crate::error::ApiResult;

/// Entries per page.
const PER_PAGE: i64 = 50;
/// The most of an entry's detail shown (the rest is in `gennaker audit list`).
const MAX_DETAIL: usize = 400;

/// The page's filters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target: String,
    /// Only entries older than this id (the next page).
    #[serde(default)]
    before: Option<i64>,
}

/// One entry as shown.
#[derive(Debug)]
pub(crate) struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    status: i64,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    layout: Layout,
    actor: String,
    target: String,
    rows: Vec<AuditRow>,
    newest: String,
    next: Option<String>,
}

fn row(entry: AuditEntry) -> AuditRow {
    let detail = match &entry.detail {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => super::graph::shorten(&other.to_string(), MAX_DETAIL),
    };
    AuditRow {
        at: format::time(entry.at),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        outcome: entry.outcome,
        status: entry.status,
        detail,
    }
}

/// `GET /audit`.
pub(crate) async fn audit(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(params): Query<AuditParams>,
) -> Response {
    match audit_page(&state, &viewer, params).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

async fn audit_page(state: &UiState, viewer: &Viewer, params: AuditParams) -> ApiResult<AuditPage> {
    viewer.caller.require_admin()?;
    let actor = params.actor.trim().to_owned();
    let target = params.target.trim().to_owned();
    let entries = state
        .app
        .store
        .list_audit(&AuditQuery {
            before_id: params.before,
            actor: (!actor.is_empty()).then(|| actor.clone()),
            target_prefix: (!target.is_empty()).then(|| target.clone()),
            limit: PER_PAGE + 1,
        })
        .await?;
    let base = format!(
        "/audit?actor={}&target={}",
        url_component(&actor),
        url_component(&target)
    );
    let more = entries.len() > usize::try_from(PER_PAGE).unwrap_or(usize::MAX);
    let rows: Vec<AuditEntry> = entries
        .into_iter()
        .take(usize::try_from(PER_PAGE).unwrap_or(usize::MAX))
        .collect();
    let next = more
        .then(|| rows.last().map(|last| format!("{base}&before={}", last.id)))
        .flatten();
    Ok(AuditPage {
        layout: Layout::new(viewer, "Audit log".to_owned(), None, "").with_flash(state, viewer),
        actor,
        target,
        rows: rows.into_iter().map(row).collect(),
        newest: params.before.map(|_| base).unwrap_or_default(),
        next,
    })
}
