//! `GET /api/v1/stageTypes`: every stage type this server knows, from the same catalog
//! that validates pipelines and that the engine runs.

use axum::Json;
use axum::extract::State;
use gennaker_core::StageTypeDescriptor;

use crate::auth::Caller;
use crate::error::ErrorBody;
use crate::state::AppState;

/// Lists every stage type: the runnable ones (generic, deployment, preconfigured
/// webhooks) with the cloud providers they act through, and Spinnaker's others as not
/// runnable. Sorted by type.
#[utoipa::path(get, path = "/api/v1/stageTypes", tag = "pipelines",
    responses((status = 200, description = "`[{type, label, description, runnable, providers, aliases, origin}]`", body = Vec<Object>),
        (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<Vec<StageTypeDescriptor>> {
    Json(
        state
            .engine
            .registry()
            .catalog()
            .descriptors()
            .cloned()
            .collect(),
    )
}
