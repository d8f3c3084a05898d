//! A pipeline's revision history: every saved revision, a line diff of the pretty JSON
//! between any two of them, and restoring one (as a new revision, validated like a
//! save).
//!
//! Reading needs READ on the application (the documents are redacted for those who may
//! not WRITE, as in the API); restoring is forwarded to the API's restore route, which
//! needs WRITE and validates the old document against today's rules.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use gennaker_store::PipelineRevision;
use serde::Deserialize;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::actions::Posted;
use super::format::{self, url_component};
use super::graph::shorten;
use super::pages::{Layout, may};
use super::{ProblemView, UiState, Viewer, error_page, redirect, render};
use crate::auth::Access;
use crate::error::{ApiError, ApiResult};
use crate::routes::applications::authorize;
use crate::routes::pipelines::for_caller;

/// Revisions listed at most (the newest); older ones are still compared by number.
const MAX_LISTED: usize = 100;
/// Unchanged lines shown around each change.
const CONTEXT_LINES: usize = 3;
/// Diff lines shown at most, and characters of each, so two very different large
/// documents still give a page of bounded size (well under 150 KB).
const MAX_DIFF_LINES: usize = 500;
const MAX_LINE_CHARS: usize = 300;
/// The diff gives up looking for the smallest one after this long (the result is still
/// a correct diff, only perhaps a longer one).
const DIFF_DEADLINE: Duration = Duration::from_millis(500);

/// One revision in the list.
#[derive(Debug)]
pub(crate) struct RevisionRow {
    revision: i64,
    saved: String,
    author: String,
    restored_from: Option<i64>,
    current: bool,
    /// The diff with the revision before it, when there is one.
    diff_url: Option<String>,
    restore_url: String,
}

/// One line of a diff.
#[derive(Debug, PartialEq)]
pub(crate) struct DiffLine {
    /// `same`, `del` or `add` (the CSS class).
    kind: &'static str,
    /// Its number in the older revision (empty for an added line).
    old: String,
    /// Its number in the newer revision (empty for a deleted line).
    new: String,
    text: String,
}

/// Changed lines with their context.
#[derive(Debug)]
pub(crate) struct Hunk {
    /// `@@ -12,7 +12,8 @@`.
    header: String,
    lines: Vec<DiffLine>,
}

/// The diff between two revisions.
#[derive(Debug)]
pub(crate) struct DiffView {
    from: i64,
    to: i64,
    added: usize,
    removed: usize,
    hunks: Vec<Hunk>,
    /// Set when the diff was cut at [`MAX_DIFF_LINES`].
    truncated: bool,
    /// The restore form of `from`, for writers, when it is not the current revision.
    restore_url: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/history.html")]
pub(crate) struct HistoryPage {
    layout: Layout,
    pipeline: String,
    action: String,
    rows: Vec<RevisionRow>,
    more: usize,
    numbers: Vec<i64>,
    from: i64,
    to: i64,
    diff: Option<DiffView>,
    can_write: bool,
    edit_url: String,
    /// Why a restore was refused, and the problems found in the old revision.
    pub error: String,
    pub problems: Vec<ProblemView>,
}

/// Which revisions to compare.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CompareParams {
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
}

/// A document as the diff compares it: pretty JSON, keys in the stored order.
fn pretty(config: &Value) -> String {
    let mut text = serde_json::to_string_pretty(config).unwrap_or_default();
    text.push('\n');
    text
}

/// The line diff from `old` to `new`, in hunks of changes with [`CONTEXT_LINES`] around
/// them; at most `max_lines` lines (the flag says whether some were left out).
pub(crate) fn line_diff(old: &str, new: &str, max_lines: usize) -> (Vec<Hunk>, usize, usize, bool) {
    let diff = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(old, new);
    let (mut added, mut removed, mut shown) = (0, 0, 0);
    let mut truncated = false;
    let mut hunks = Vec::new();
    for group in diff.grouped_ops(CONTEXT_LINES) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        let mut lines = Vec::new();
        for op in &group {
            for change in diff.iter_changes(op) {
                let kind = match change.tag() {
                    ChangeTag::Equal => "same",
                    ChangeTag::Delete => {
                        removed += 1;
                        "del"
                    }
                    ChangeTag::Insert => {
                        added += 1;
                        "add"
                    }
                };
                if shown >= max_lines {
                    truncated = true;
                    continue;
                }
                shown += 1;
                let number = |n: Option<usize>| n.map(|n| (n + 1).to_string()).unwrap_or_default();
                lines.push(DiffLine {
                    kind,
                    old: number(change.old_index()),
                    new: number(change.new_index()),
                    text: shorten(
                        change.value().trim_end_matches(['\n', '\r']),
                        MAX_LINE_CHARS,
                    ),
                });
            }
        }
        if !lines.is_empty() {
            hunks.push(Hunk {
                header: format!(
                    "@@ -{},{} +{},{} @@",
                    old_range.start + 1,
                    old_range.len(),
                    new_range.start + 1,
                    new_range.len()
                ),
                lines,
            });
        }
    }
    (hunks, added, removed, truncated)
}

fn find_revision(revisions: &[PipelineRevision], number: i64) -> ApiResult<&PipelineRevision> {
    revisions
        .iter()
        .find(|r| r.revision == number)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "there is no revision {number}; the history lists revisions 1 to {}",
                revisions.first().map_or(0, |r| r.revision)
            ))
        })
}

/// The history page of pipeline `name` of `app`, comparing `params` (by default the
/// revision before the current one with the current one).
pub(crate) async fn history_page(
    state: &UiState,
    viewer: &Viewer,
    app: &str,
    name: &str,
    params: &CompareParams,
) -> ApiResult<HistoryPage> {
    let application = authorize(&state.app, &viewer.caller, app, Access::Read).await?;
    let can_write = may(&viewer.caller, &application, Access::Write);
    let pipeline = crate::routes::pipelines::find(&state.app, &application.name, name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline '{name}' not found in application '{}'",
                application.name
            ))
        })?;
    let mut revisions = state
        .app
        .store
        .pipeline_history(&application.name, &pipeline.name)
        .await?;
    for revision in &mut revisions {
        for_caller(&mut revision.config, &viewer.caller, &application);
    }
    let current = revisions.first().map_or(pipeline.revision, |r| r.revision);
    let base = format!(
        "/applications/{}/pipelines/{}/history",
        url_component(&application.name),
        url_component(&pipeline.name)
    );
    let restore_url = |revision: i64| format!("{base}/{revision}/restore");
    let to = params.to.unwrap_or(current);
    let from = params.from.unwrap_or(to - 1);
    let diff = if params.from.is_some() || params.to.is_some() || revisions.len() > 1 {
        let older = find_revision(&revisions, from)?;
        let newer = find_revision(&revisions, to)?;
        let (hunks, added, removed, truncated) = line_diff(
            &pretty(&older.config),
            &pretty(&newer.config),
            MAX_DIFF_LINES,
        );
        Some(DiffView {
            from,
            to,
            added,
            removed,
            hunks,
            truncated,
            restore_url: (can_write && from != current).then(|| restore_url(from)),
        })
    } else {
        None
    };
    let rows = revisions
        .iter()
        .take(MAX_LISTED)
        .map(|r| RevisionRow {
            revision: r.revision,
            saved: format::time(r.created_at),
            author: r.author.clone(),
            restored_from: r.restored_from,
            current: r.revision == current,
            diff_url: (r.revision > 1)
                .then(|| format!("{base}?from={}&to={}", r.revision - 1, r.revision)),
            restore_url: restore_url(r.revision),
        })
        .collect();
    Ok(HistoryPage {
        layout: Layout::new(
            viewer,
            format!("History of {} · {}", pipeline.name, application.name),
            Some(&application.name),
            "pipelines",
        )
        .with_flash(state, viewer),
        edit_url: format!(
            "/applications/{}/pipelines/{}/edit",
            url_component(&application.name),
            url_component(&pipeline.name)
        ),
        pipeline: pipeline.name,
        action: base,
        more: revisions.len().saturating_sub(MAX_LISTED),
        numbers: revisions.iter().map(|r| r.revision).collect(),
        rows,
        from,
        to,
        diff,
        can_write,
        error: String::new(),
        problems: Vec::new(),
    })
}

/// `/applications/{app}/pipelines/{name}/history`: the revisions, and the diff of
/// `?from=&to=`.
pub(crate) async fn history(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<CompareParams>,
) -> Response {
    match history_page(&state, &viewer, &app, &name, &params).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(err) => error_page(Some(&viewer), &err),
    }
}

/// `POST /applications/{app}/pipelines/{name}/history/{revision}/restore`: makes the
/// revision current again, through the API (WRITE, validated like a save). A refused
/// restore shows the history again with the reason and each problem at its JSON path.
pub(crate) async fn restore(
    State(state): State<UiState>,
    Path((app, name, revision)): Path<(String, String, i64)>,
    posted: Posted,
) -> Response {
    let outcome = state
        .forward(
            &posted.viewer,
            Method::POST,
            &format!(
                "/api/v1/applications/{}/pipelines/{}/history/{revision}/restore",
                url_component(&app),
                url_component(&name)
            ),
            None,
        )
        .await;
    match outcome {
        Ok(restored) => {
            let now = restored["revision"].as_i64().unwrap_or_default();
            state.flash(
                &posted.viewer,
                "ok",
                format!("Restored revision {revision} of {name}: it is revision {now} now."),
            );
            redirect(&format!(
                "/applications/{}/pipelines/{}/history",
                url_component(&app),
                url_component(&name)
            ))
        }
        Err(refusal) => {
            let params = CompareParams {
                from: Some(revision),
                to: None,
            };
            match history_page(&state, &posted.viewer, &app, &name, &params).await {
                Ok(mut page) => {
                    page.error =
                        format!("Revision {revision} was not restored: {}", refusal.message);
                    page.problems = refusal.problems;
                    render(refusal.status, &page)
                }
                Err(err) => error_page(Some(&posted.viewer), &err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(hunks: &[Hunk]) -> Vec<(&'static str, String)> {
        hunks
            .iter()
            .flat_map(|h| h.lines.iter().map(|l| (l.kind, l.text.clone())))
            .collect()
    }

    #[test]
    fn a_changed_field_is_one_line_removed_and_one_added_with_context() {
        let old = pretty(&serde_json::json!({"name": "release", "waitTime": 5, "keep": true}));
        let new = pretty(&serde_json::json!({"name": "release", "waitTime": 9, "keep": true}));
        let (hunks, added, removed, truncated) = line_diff(&old, &new, 100);
        assert_eq!((added, removed, truncated), (1, 1, false));
        assert_eq!(hunks.len(), 1);
        assert_eq!(hunks[0].header, "@@ -1,5 +1,5 @@");
        let lines = kinds(&hunks);
        assert!(lines.contains(&("del", "  \"waitTime\": 5,".to_owned())));
        assert!(lines.contains(&("add", "  \"waitTime\": 9,".to_owned())));
        let deleted = hunks[0].lines.iter().find(|l| l.kind == "del").unwrap();
        assert_eq!((deleted.old.as_str(), deleted.new.as_str()), ("3", ""));
    }

    #[test]
    fn equal_documents_have_no_hunks_and_long_diffs_are_cut() {
        let doc = pretty(&serde_json::json!({"a": 1}));
        assert!(line_diff(&doc, &doc, 100).0.is_empty());
        let old: String = (0..50).map(|i| format!("{i}\n")).collect();
        let new: String = (100..150).map(|i| format!("{i}\n")).collect();
        let (hunks, added, removed, truncated) = line_diff(&old, &new, 10);
        assert_eq!((added, removed, truncated), (50, 50, true));
        assert_eq!(hunks.iter().map(|h| h.lines.len()).sum::<usize>(), 10);
    }
}
