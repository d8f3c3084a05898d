//! The execution page's controls: pause and resume the execution, restart a failed
//! stage, skip the rest of a running wait. Each is a form (CSRF-protected POST) shown
//! only to users who may EXECUTE on the application, and forwarded to the API's route
//! for it (`/api/v1/executions/{id}/pause`, `…/resume`, `…/stages/{stage}/restart`,
//! `…/stages/{stage}/skip`), so the engine, the checks and the audit entry are the
//! API's.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use gennaker_core::execution::{Execution, ExecutionStatus, StageExecution};
use std::time::Duration;

use super::actions::Posted;
use super::format::url_component;
use super::{UiState, redirect};

/// A button of the controls section: a form posting to `url`.
#[derive(Debug, Clone)]
pub(crate) struct ControlButton {
    /// Where the form posts.
    pub url: String,
    /// The button's text.
    pub label: String,
    /// What it does, shown beside it.
    pub note: String,
    /// Its CSS class (`primary`, `danger` or empty).
    pub class: &'static str,
    /// A name for tests and styling: `pause`, `resume`, `restart`, `skip`.
    pub kind: &'static str,
}

/// What the viewer may do to the execution now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Controls {
    /// The buttons, execution-wide ones first.
    pub buttons: Vec<ControlButton>,
}

/// Whether a finished stage failed (and so is offered a restart).
fn failed(stage: &StageExecution) -> bool {
    matches!(
        stage.status,
        ExecutionStatus::Terminal
            | ExecutionStatus::FailedContinue
            | ExecutionStatus::Canceled
            | ExecutionStatus::Stopped
    )
}

/// The controls of `execution` for a viewer; none without EXECUTE.
pub(crate) fn controls(execution: &Execution, can_execute: bool) -> Controls {
    if !can_execute {
        return Controls::default();
    }
    let base = format!("/executions/{}", url_component(&execution.id));
    let stage_url = |stage: &StageExecution, action: &str| {
        format!("{base}/stages/{}/{action}", url_component(&stage.id))
    };
    let mut buttons = Vec::new();
    match execution.status {
        ExecutionStatus::Running => buttons.push(ControlButton {
            url: format!("{base}/pause"),
            label: "Pause".to_owned(),
            note: "No new task starts until it is resumed; paused time does not count against timeouts.".to_owned(),
            class: "",
            kind: "pause",
        }),
        ExecutionStatus::Paused => buttons.push(ControlButton {
            url: format!("{base}/resume"),
            label: "Resume".to_owned(),
            note: "The execution carries on where it was paused.".to_owned(),
            class: "primary",
            kind: "resume",
        }),
        _ => {}
    }
    for stage in &execution.stages {
        if stage.stage_type == "wait" && stage.status == ExecutionStatus::Running {
            buttons.push(ControlButton {
                url: stage_url(stage, "skip"),
                label: format!("Skip wait: {}", stage.name),
                note: "Ends the wait now; the stage succeeds and the pipeline goes on.".to_owned(),
                class: "",
                kind: "skip",
            });
        }
    }
    if execution.status != ExecutionStatus::Paused {
        for stage in execution.top_level_stages().filter(|s| failed(s)) {
            buttons.push(ControlButton {
                url: stage_url(stage, "restart"),
                label: format!("Restart: {}", stage.name),
                note: format!(
                    "Runs the {} stage again, then everything after it.",
                    stage.status
                ),
                class: "primary",
                kind: "restart",
            });
        }
    }
    Controls { buttons }
}

/// How long a control waits for the engine to apply it before showing the page.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);
/// How often it looks meanwhile.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// Waits (at most [`SETTLE_LIMIT`]) until the engine has applied a control, so the page
/// the browser is sent to shows its effect — and a restarted execution's page, running
/// again, follows it live. A control still queued after that is shown as it is.
async fn settle(state: &UiState, id: &str, applied: impl Fn(&Execution) -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    while tokio::time::Instant::now() < deadline {
        match state.app.engine.execution(id).await {
            Ok(Some(execution)) if !applied(&execution) => {
                tokio::time::sleep(SETTLE_POLL).await;
            }
            _ => return,
        }
    }
}

/// Forwards a control to the API and comes back to the execution with its outcome
/// (once `applied` holds, or the wait for it ends).
async fn forward(
    state: &UiState,
    posted: &Posted,
    id: &str,
    api_path: &str,
    done: &str,
    applied: impl Fn(&Execution) -> bool,
) -> Response {
    let outcome = state
        .forward(&posted.viewer, Method::POST, api_path, None)
        .await;
    match outcome {
        Ok(_) => {
            settle(state, id, applied).await;
            state.flash(&posted.viewer, "ok", done);
        }
        Err(refusal) => state.flash(
            &posted.viewer,
            "error",
            format!("Refused: {}", refusal.message),
        ),
    }
    redirect(&format!("/executions/{}", url_component(id)))
}

/// `POST /executions/{id}/pause`.
pub(crate) async fn pause(
    State(state): State<UiState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let path = format!("/api/v1/executions/{}/pause", url_component(&id));
    forward(
        &state,
        &posted,
        &id,
        &path,
        "Paused: no new task starts.",
        |e| e.status != ExecutionStatus::Running,
    )
    .await
}

/// `POST /executions/{id}/resume`.
pub(crate) async fn resume(
    State(state): State<UiState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let path = format!("/api/v1/executions/{}/resume", url_component(&id));
    forward(&state, &posted, &id, &path, "Resumed.", |e| {
        e.status != ExecutionStatus::Paused
    })
    .await
}

/// `POST /executions/{id}/stages/{stage}/restart`.
pub(crate) async fn restart(
    State(state): State<UiState>,
    Path((id, stage)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let path = format!(
        "/api/v1/executions/{}/stages/{}/restart",
        url_component(&id),
        url_component(&stage)
    );
    forward(
        &state,
        &posted,
        &id,
        &path,
        "Restarted: the stage runs again.",
        |e| {
            e.stage(&stage)
                .is_none_or(|s| !s.status.is_complete() || s.status == ExecutionStatus::Succeeded)
        },
    )
    .await
}

/// `POST /executions/{id}/stages/{stage}/skip`.
pub(crate) async fn skip(
    State(state): State<UiState>,
    Path((id, stage)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let path = format!(
        "/api/v1/executions/{}/stages/{}/skip",
        url_component(&id),
        url_component(&stage)
    );
    forward(
        &state,
        &posted,
        &id,
        &path,
        "Skipped: the wait ended.",
        |e| {
            e.stage(&stage)
                .is_none_or(|s| s.status != ExecutionStatus::Running)
        },
    )
    .await
}
