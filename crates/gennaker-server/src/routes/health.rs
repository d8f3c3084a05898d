//! `/healthz` (the process is alive) and `/readyz` (it can serve: the database answers;
//! it also names the server, as its task records do, among servers sharing a database).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::UNAVAILABLE_MESSAGE;
use crate::state::AppState;

/// Liveness: always 200 while the process serves HTTP.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the database answers, 503 otherwise.
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(
                json!({ "status": "ready", "database": state.store.backend(), "server": state.engine.server_id() }),
            ),
        ),
        // /readyz needs no token: the driver's error (hosts, ports, file paths) goes to the
        // log only.
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "database": state.store.backend(), "server": state.engine.server_id(), "error": UNAVAILABLE_MESSAGE }),
                ),
            )
        }
    }
}
