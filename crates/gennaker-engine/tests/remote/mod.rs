//! A scripted HTTP server on 127.0.0.1 that records what it receives: the remote end of
//! the `webhook` stage's tests.
// Each test binary uses part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use gennaker_engine::Execution;
use gennaker_engine::testing::{PATIENCE, stage};
use serde_json::{Value, json};

/// A request the remote received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Value,
}

impl Seen {
    pub(crate) fn key(&self) -> &str {
        self.headers
            .get("idempotency-key")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// An answer the remote gives.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) headers: Vec<(&'static str, String)>,
}

pub(crate) fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        headers: Vec::new(),
    }
}

#[derive(Default)]
struct RemoteState {
    seen: Vec<Seen>,
    /// `METHOD /path` → answers in turn; the last one repeats.
    script: HashMap<String, VecDeque<Answer>>,
}

/// A scripted HTTP server that records what it receives.
#[derive(Clone)]
pub(crate) struct Remote {
    state: Arc<Mutex<RemoteState>>,
    pub(crate) base: String,
}

impl Remote {
    pub(crate) async fn start() -> Remote {
        let state = Arc::new(Mutex::new(RemoteState::default()));
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Remote { state, base }
    }

    pub(crate) fn on(&self, method: &str, path: &str, answers: Vec<Answer>) {
        let mut state = self.state.lock().unwrap();
        state
            .script
            .insert(format!("{method} {path}"), answers.into());
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    /// Waits (real time, bounded) until `method path` was requested `count` times.
    pub(crate) async fn wait_for(&self, method: &str, path: &str, count: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let seen = self.seen(method, path);
            if seen.len() >= count {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} × {method} {path}; saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(
    State(state): State<Arc<Mutex<RemoteState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let mut recorded = HashMap::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        recorded.insert(name.as_str().to_owned(), values.join(", "));
    }
    let seen = Seen {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        headers: recorded,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let key = format!("{} {}", seen.method, seen.path);
    let mut state = state.lock().unwrap();
    state.seen.push(seen);
    let answer = match state.script.get_mut(&key) {
        Some(answers) if answers.len() > 1 => answers.pop_front(),
        Some(answers) => answers.front().cloned(),
        None => None,
    }
    .unwrap_or_else(|| answer(404, json!({"error": format!("nothing scripted for {key}")})));
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap())
        .header("content-type", "application/json");
    for (name, value) in &answer.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(answer.body.to_string())).unwrap()
}

/// The idempotency key of the stage's calls (the stage restarted `restarts` times).
pub(crate) fn key_of(execution: &Execution, name: &str, restarts: u32) -> String {
    format!("{}:{}:{restarts}", execution.id, stage(execution, name).id)
}
