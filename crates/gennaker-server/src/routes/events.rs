//! Live status changes as server-sent events.
//!
//! `GET /executions/{id}/events` first sends a `snapshot` (the whole execution), then
//! one `execution`, `stage` or `task` event per status change (the engine's
//! `ExecutionEvent` as JSON), and ends with a final `snapshot` once the execution has
//! ended. `GET /applications/{app}/events` sends the status changes of every execution
//! of the application until the client goes away.
//!
//! Events come from this server's engine, which on PostgreSQL also hears the events of
//! every other server sharing the database (LISTEN/NOTIFY, each event once), so a
//! stream on any server follows an execution whichever server's workers run it. The
//! per-execution stream also re-reads the execution every few seconds: a change whose
//! notification was lost (a dropped listener connection) arrives as a fresh
//! `snapshot`, and a missed event cannot leave a client waiting. A
//! client that falls behind gets a `snapshot` (per execution) or a `lagged` event (per
//! application) instead of the events it missed. Comments keep idle connections alive.
//!
//! A stream outlives the request that authorised it, so it re-checks the caller's token
//! and READ permission every few seconds, and at once when this server changes tokens,
//! users, roles or applications. When either is gone, it sends an `error` event saying
//! why and ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use gennaker_engine::{Engine, Execution, ExecutionEvent};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Caller, TokenHash, resolve_caller};
use crate::error::ApiError;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Path;
use crate::routes::applications::authorize as authorize_application;
use crate::routes::executions::{authorize as authorize_execution, load as load_execution};
use crate::state::AppState;

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often the per-execution stream re-reads the execution.
const RECHECK: Duration = Duration::from_secs(5);

/// An SSE event with a JSON payload; a value that cannot be serialized becomes a
/// comment rather than ending the stream.
fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|err| Event::default().comment(format!("event not serializable: {err}")))
}

fn status_event(event: &ExecutionEvent) -> Event {
    json_event(event.scope(), event)
}

/// What changes when an execution moves on: the statuses of it, its stages and tasks.
fn fingerprint(execution: &Execution) -> String {
    let mut text = execution.status.as_str().to_owned();
    for stage in &execution.stages {
        text.push_str(&stage.id);
        text.push_str(stage.status.as_str());
        for task in &stage.tasks {
            text.push_str(task.status.as_str());
        }
    }
    text
}

fn recheck_interval() -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// What the stream's caller was allowed to read, re-checked while the stream runs.
struct Session {
    state: AppState,
    token_hash: String,
    /// The application whose executions the stream shows.
    application: String,
    /// Whether the stream follows one execution (whose application may be deleted
    /// while admins may still read it) or a whole application.
    per_execution: bool,
    changes: tokio::sync::watch::Receiver<()>,
    timer: tokio::time::Interval,
}

impl Session {
    fn new(state: &AppState, token: TokenHash, application: String, per_execution: bool) -> Self {
        let mut changes = state.access_changes.subscribe();
        changes.mark_unchanged();
        Session {
            state: state.clone(),
            token_hash: token.0,
            application,
            per_execution,
            changes,
            timer: recheck_interval(),
        }
    }

    /// Waits until a re-check is due: a change of access on this server, or the
    /// periodic one (which also covers changes made through another server).
    async fn due(&mut self) {
        tokio::select! {
            changed = self.changes.changed() => {
                if changed.is_err() {
                    // No more signals: the periodic re-check remains.
                    self.timer.tick().await;
                }
            }
            _ = self.timer.tick() => {}
        }
    }

    /// Why the stream must end now, if it must: the token is no longer valid, or its
    /// user may no longer read the application. A database hiccup keeps the stream.
    async fn revoked(&self) -> Option<String> {
        let caller = match resolve_caller(&self.state, Ok(self.token_hash.clone())).await {
            Ok(caller) => caller,
            Err(ApiError::Unauthorized(_)) => {
                return Some(
                    "the token of this stream is no longer valid (revoked, expired, or its user was deleted); the stream is closed".to_owned(),
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "event stream: cannot re-check the caller");
                return None;
            }
        };
        let allowed = if self.per_execution {
            authorize_execution(&self.state, &caller, &self.application, Access::Read).await
        } else {
            authorize_application(&self.state, &caller, &self.application, Access::Read)
                .await
                .map(|_| ())
        };
        match allowed {
            Ok(()) => None,
            Err(ApiError::NotFound(_) | ApiError::Forbidden(_)) => Some(format!(
                "user '{}' may no longer read application '{}' (or it was deleted); the stream is closed",
                caller.name, self.application
            )),
            Err(err) => {
                tracing::warn!(error = %err, "event stream: cannot re-check the caller's permission");
                None
            }
        }
    }
}

/// The last event of a stream whose caller lost access.
fn revoked_event(message: &str) -> Event {
    json_event("error", &json!({ "message": message }))
}

/// The per-execution stream's state.
struct ExecutionStream {
    session: Session,
    engine: Engine,
    id: String,
    events: broadcast::Receiver<ExecutionEvent>,
    shutdown: CancellationToken,
    pending: VecDeque<Event>,
    /// Nothing more to send once `pending` is empty.
    finished: bool,
    /// Whether an event arrived since the last re-read.
    heard: bool,
    /// The execution's fingerprint at the last re-read.
    last_seen: String,
    /// When to re-read next (kept across loop turns, so a busy server's events for
    /// other executions cannot postpone it forever).
    recheck_timer: tokio::time::Interval,
}

impl ExecutionStream {
    /// Re-reads the execution and queues it as a `snapshot`; ends the stream when the
    /// execution has ended (or is gone).
    async fn snapshot(&mut self) {
        match self.engine.execution(&self.id).await {
            Ok(Some(execution)) => {
                self.last_seen = fingerprint(&execution);
                self.pending.push_back(json_event("snapshot", &execution));
                if execution.status.is_complete() {
                    self.finished = true;
                }
            }
            Ok(None) => {
                self.pending.push_back(json_event(
                    "error",
                    &json!({"message": format!("execution '{}' no longer exists", self.id)}),
                ));
                self.finished = true;
            }
            // A database hiccup: the next re-read tries again.
            Err(err) => {
                tracing::warn!(error = %err, execution = %self.id, "event stream: cannot re-read the execution")
            }
        }
    }

    /// The periodic re-read: sends a snapshot when the execution changed without this
    /// server's engine saying so, or when it ended.
    async fn recheck(&mut self) {
        let heard = std::mem::take(&mut self.heard);
        match self.engine.execution(&self.id).await {
            Ok(Some(execution)) => {
                let seen = fingerprint(&execution);
                if execution.status.is_complete() || (!heard && seen != self.last_seen) {
                    self.snapshot().await;
                } else {
                    self.last_seen = seen;
                }
            }
            Ok(None) => self.snapshot().await,
            Err(err) => {
                tracing::warn!(error = %err, execution = %self.id, "event stream: cannot re-read the execution")
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.finished {
                return None;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                received = self.events.recv() => match received {
                    Ok(event) if event.execution_id == self.id => {
                        self.heard = true;
                        let ended = event.stage_id.is_none() && event.status.is_complete();
                        self.pending.push_back(status_event(&event));
                        if ended {
                            self.snapshot().await;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.snapshot().await,
                    Err(RecvError::Closed) => self.finished = true,
                },
                _ = self.recheck_timer.tick() => self.recheck().await,
                () = self.session.due() => {
                    if let Some(message) = self.session.revoked().await {
                        self.pending.clear();
                        self.pending.push_back(revoked_event(&message));
                        self.finished = true;
                    }
                }
            }
        }
    }
}

/// Follows one execution live: a `snapshot` first, then its status changes, then a
/// final `snapshot` when it has ended (the stream closes then).
#[utoipa::path(get, path = "/api/v1/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "Server-sent events: `snapshot` (the execution), then `execution`, `stage` and `task` status changes"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn execution_events(
    State(state): State<AppState>,
    caller: Caller,
    Extension(token): Extension<TokenHash>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribe before reading, so no change falls between the snapshot and the events.
    let events = state.engine.subscribe();
    let execution = load_execution(&state, &caller, &id, Access::Read).await?;
    let mut stream = ExecutionStream {
        session: Session::new(&state, token, execution.application.clone(), true),
        engine: state.engine.clone(),
        id: execution.id.clone(),
        events,
        shutdown: state.shutdown.clone(),
        pending: VecDeque::new(),
        finished: execution.status.is_complete(),
        heard: false,
        last_seen: fingerprint(&execution),
        recheck_timer: recheck_interval(),
    };
    stream.pending.push_back(json_event("snapshot", &execution));
    Ok(
        Sse::new(futures::stream::unfold(stream, ExecutionStream::next))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
}

/// The per-application stream's state.
struct ApplicationStream {
    session: Session,
    /// Set when the caller lost access: the stream ends after this event.
    revoked: Option<Event>,
    finished: bool,
    application: String,
    events: broadcast::Receiver<ExecutionEvent>,
    shutdown: CancellationToken,
}

impl ApplicationStream {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(event) = self.revoked.take() {
                self.finished = true;
                return Some((Ok(event), self));
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = self.session.due() => {
                    if let Some(message) = self.session.revoked().await {
                        self.revoked = Some(revoked_event(&message));
                    }
                }
                received = self.events.recv() => match received {
                    Ok(event) if event.application.eq_ignore_ascii_case(&self.application) => {
                        return Some((Ok(status_event(&event)), self));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        let event = json_event("lagged", &json!({
                            "missed": missed,
                            "message": "events were missed; re-read the executions you follow",
                        }));
                        return Some((Ok(event), self));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// Follows every execution of an application live: `execution`, `stage` and `task`
/// status changes, until the client disconnects.
#[utoipa::path(get, path = "/api/v1/applications/{app}/events", tag = "executions",
    params(("app" = String, Path, description = "Application name")),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "Server-sent events: `execution`, `stage` and `task` status changes; `lagged` when some were missed"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn application_events(
    State(state): State<AppState>,
    caller: Caller,
    Extension(token): Extension<TokenHash>,
    Path(app): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let application = authorize_application(&state, &caller, &app, Access::Read).await?;
    let stream = ApplicationStream {
        session: Session::new(&state, token, application.name.clone(), false),
        revoked: None,
        finished: false,
        application: application.name,
        events: state.engine.subscribe(),
        shutdown: state.shutdown.clone(),
    };
    Ok(
        Sse::new(futures::stream::unfold(stream, ApplicationStream::next))
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
}
