//! Infrastructure: an application's clusters, server groups (with instances, health and
//! traffic weights) and load balancers, and ad-hoc operations on them.
//!
//! Operations never act directly: each runs as an orchestration execution (Spinnaker's
//! `POST /applications/{app}/tasks`), so it is recorded, visible in the execution view,
//! durable across a crash, and carried out by the same stages pipelines use. Reading
//! needs READ on the application; operations need EXECUTE.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gennaker_deploy::{DeployError, LoadBalancer, ServerGroup};
use gennaker_engine::Requester;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::audit::AuditDetail;
use crate::auth::{Access, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query, RawBody};
use crate::routes::applications::authorize;
use crate::state::AppState;

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        match error {
            DeployError::NotFound { .. } => ApiError::NotFound(error.to_string()),
            DeployError::Invalid(message) | DeployError::Unsupported(message) => {
                ApiError::bad_request(message)
            }
            DeployError::Unavailable(message) => ApiError::Unavailable(message),
        }
    }
}

/// A cluster: the server groups of one `app-stack-detail` in one account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Cluster {
    /// `app-stack-detail`.
    name: String,
    /// The account.
    account: String,
    /// `local`, `kubernetes`.
    cloud_provider: String,
    /// Its server groups, oldest first.
    server_groups: Vec<String>,
}

/// Which cloud provider to ask (default: `local`).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderParams {
    /// `local` unless given.
    cloud_provider: Option<String>,
}

/// An ad-hoc operation: stages run one after the other as an orchestration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskBody {
    /// Shown as the execution's name.
    #[serde(default)]
    description: Option<String>,
    /// The stages, in Spinnaker's stage JSON (`type` and its fields).
    #[schema(value_type = Vec<Object>)]
    job: Vec<Value>,
}

/// The answer to an operation: the orchestration that carries it out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskAccepted {
    /// Follow it with `GET {ref}` or `gennaker execution watch`.
    #[serde(rename = "ref")]
    reference: String,
    /// The orchestration's execution id.
    execution_id: String,
}

async fn application_server_groups(
    state: &AppState,
    app: &str,
    cloud_provider: Option<&str>,
) -> ApiResult<Vec<ServerGroup>> {
    let provider = state.providers.provider(cloud_provider)?;
    Ok(provider.server_groups(app).await?)
}

/// Lists an application's clusters.
#[utoipa::path(get, path = "/api/v1/applications/{app}/clusters", tag = "infrastructure",
    params(("app" = String, Path, description = "Application name"), ProviderParams),
    responses((status = 200, body = Vec<Cluster>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn clusters(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(params): Query<ProviderParams>,
) -> ApiResult<Json<Vec<Cluster>>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    let groups =
        application_server_groups(&state, &application.name, params.cloud_provider.as_deref())
            .await?;
    let mut clusters: BTreeMap<(String, String), Cluster> = BTreeMap::new();
    for group in groups {
        let key = (group.account.clone(), group.cluster());
        clusters
            .entry(key)
            .or_insert_with(|| Cluster {
                name: group.cluster(),
                account: group.account.clone(),
                cloud_provider: group.cloud_provider.clone(),
                server_groups: Vec::new(),
            })
            .server_groups
            .push(group.name);
    }
    Ok(Json(clusters.into_values().collect()))
}

/// Lists an application's server groups with their instances, health and capacity.
#[utoipa::path(get, path = "/api/v1/applications/{app}/serverGroups", tag = "infrastructure",
    params(("app" = String, Path, description = "Application name"), ProviderParams),
    responses((status = 200, body = Vec<Object>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn server_groups(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(params): Query<ProviderParams>,
) -> ApiResult<Json<Vec<ServerGroup>>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    Ok(Json(
        application_server_groups(&state, &application.name, params.cloud_provider.as_deref())
            .await?,
    ))
}

/// One server group of an application.
#[utoipa::path(get, path = "/api/v1/applications/{app}/serverGroups/{name}", tag = "infrastructure",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Server group (`app-stack-v003`)"), ProviderParams),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn server_group(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
    Query(params): Query<ProviderParams>,
) -> ApiResult<Json<ServerGroup>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    application_server_groups(&state, &application.name, params.cloud_provider.as_deref())
        .await?
        .into_iter()
        .find(|group| group.name == name)
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "server group '{name}' not found in application '{}'; `gennaker cluster list {}` shows its server groups",
                application.name, application.name
            ))
        })
}

/// Lists an application's load balancers with the traffic share of each server group.
#[utoipa::path(get, path = "/api/v1/applications/{app}/loadBalancers", tag = "infrastructure",
    params(("app" = String, Path, description = "Application name"), ProviderParams),
    responses((status = 200, body = Vec<Object>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn load_balancers(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(params): Query<ProviderParams>,
) -> ApiResult<Json<Vec<LoadBalancer>>> {
    let application = authorize(&state, &caller, &app, Access::Read).await?;
    let router = state.providers.router(params.cloud_provider.as_deref())?;
    Ok(Json(router.load_balancers(&application.name).await?))
}

/// Runs ad-hoc stages (resize, enable, disable, destroy, rollback, upsertLoadBalancer…)
/// as an orchestration execution, like Gate's `POST /applications/{app}/tasks`.
#[utoipa::path(post, path = "/api/v1/applications/{app}/tasks", tag = "infrastructure",
    params(("app" = String, Path, description = "Application name")),
    request_body(content = TaskBody),
    responses((status = 202, body = TaskAccepted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn run_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let application = authorize(&state, &caller, &app, Access::Execute).await?;
    let body: TaskBody = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(format!(
            "the request body is not valid ({err}); send JSON like {{\"description\": \"Resize\", \"job\": [{{\"type\": \"resizeServerGroup\", …}}]}}"
        ))
    })?;
    let description = body.description.unwrap_or_else(|| describe_job(&body.job));
    orchestrate(&state, &caller, &application.name, &description, body.job).await
}

/// An operation on one server group, by name.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerGroupOperation {
    /// For `resize`: the new capacity `{min, max, desired}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    capacity: Option<Value>,
    /// The account (default `local`).
    #[serde(default)]
    account: Option<String>,
    /// The cloud provider (default `local`).
    #[serde(default)]
    cloud_provider: Option<String>,
}

/// Resizes, enables, disables, destroys or rolls back one server group (`rollback`
/// returns traffic to the cluster's previous server group, then disables this one).
/// EXECUTE on the application; `destroy` needs WRITE as well.
#[utoipa::path(post, path = "/api/v1/applications/{app}/serverGroups/{name}/{operation}", tag = "infrastructure",
    params(("app" = String, Path, description = "Application name"), ("name" = String, Path, description = "Server group"),
        ("operation" = String, Path, description = "`resize`, `enable`, `disable`, `destroy` or `rollback`")),
    request_body(content = ServerGroupOperation, description = "`capacity` for resize; may be empty otherwise"),
    responses((status = 202, body = TaskAccepted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn server_group_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name, operation)): Path<(String, String, String)>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let application = authorize(&state, &caller, &app, Access::Execute).await?;
    if operation == "destroy" {
        // Destroying cannot be undone: it also takes the right to change the application.
        authorize(&state, &caller, &app, Access::Write).await?;
    }
    let body: ServerGroupOperation = if body.iter().all(u8::is_ascii_whitespace) {
        ServerGroupOperation::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::bad_request(format!(
                "the request body is not valid ({err}); send JSON like {{\"capacity\": {{\"min\": 1, \"max\": 3, \"desired\": 2}}}}"
            ))
        })?
    };
    let account = body.account.unwrap_or_else(|| "local".to_owned());
    let provider = state.providers.provider(body.cloud_provider.as_deref())?;
    let group = provider
        .server_group(&account, &name)
        .await?
        .filter(|group| group.moniker.app == application.name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "server group '{name}' not found in application '{}' (account '{account}'); `gennaker cluster list {}` shows its server groups",
                application.name, application.name
            ))
        })?;
    let stage = server_group_stage(&operation, &group, body.capacity)?;
    let description = format!("{} {name}", capitalized(&operation));
    orchestrate(
        &state,
        &caller,
        &application.name,
        &description,
        vec![stage],
    )
    .await
}

/// The stage that carries out `operation` on `group`.
fn server_group_stage(
    operation: &str,
    group: &ServerGroup,
    capacity: Option<Value>,
) -> ApiResult<Value> {
    let mut stage = Map::new();
    stage.insert("serverGroupName".into(), json!(group.name));
    stage.insert("cluster".into(), json!(group.cluster()));
    stage.insert("credentials".into(), json!(group.account));
    stage.insert("account".into(), json!(group.account));
    stage.insert("cloudProvider".into(), json!(group.cloud_provider));
    stage.insert("moniker".into(), json!(group.moniker));
    let stage_type = match operation {
        "resize" => {
            let capacity = capacity.ok_or_else(|| {
                ApiError::bad_request(
                    "resize needs a capacity: send {\"capacity\": {\"min\": 1, \"max\": 3, \"desired\": 2}}",
                )
            })?;
            stage.insert("action".into(), json!("scale_exact"));
            stage.insert("capacity".into(), capacity);
            "resizeServerGroup"
        }
        "enable" => "enableServerGroup",
        "disable" => "disableServerGroup",
        "destroy" => "destroyServerGroup",
        "rollback" => {
            stage.insert("rollbackType".into(), json!("PREVIOUS_IMAGE"));
            stage.insert(
                "rollbackContext".into(),
                json!({ "rollbackServerGroupName": group.name }),
            );
            "rollbackServerGroup"
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "unknown server group operation '{other}'; use resize, enable, disable, destroy or rollback"
            )));
        }
    };
    stage.insert("type".into(), json!(stage_type));
    stage.insert("name".into(), json!(capitalized(operation)));
    Ok(Value::Object(stage))
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn describe_job(job: &[Value]) -> String {
    let types: Vec<&str> = job
        .iter()
        .filter_map(|stage| stage.get("type").and_then(Value::as_str))
        .collect();
    if types.is_empty() {
        "Ad-hoc operation".to_owned()
    } else {
        types.join(", ")
    }
}

async fn orchestrate(
    state: &AppState,
    caller: &Caller,
    application: &str,
    description: &str,
    job: Vec<Value>,
) -> ApiResult<Response> {
    if job.is_empty() {
        return Err(ApiError::bad_request(
            "the job has no stages; send {\"job\": [{\"type\": \"resizeServerGroup\", …}]}",
        ));
    }
    if let Some((index, _)) = job
        .iter()
        .enumerate()
        .find(|(_, stage)| stage.get("type").and_then(Value::as_str).is_none())
    {
        return Err(ApiError::bad_request(format!(
            "job[{index}] has no \"type\"; every stage names its type, e.g. \"resizeServerGroup\""
        )));
    }
    let requester = Requester {
        user: caller.name.clone(),
        roles: caller.roles.clone(),
        origin: "api".to_owned(),
    };
    let execution = state
        .engine
        .run_orchestration(application, description, &job, &requester)
        .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(TaskAccepted {
            reference: format!("/api/v1/executions/{}", execution.id),
            execution_id: execution.id.clone(),
        }),
    )
        .into_response();
    response.extensions_mut().insert(AuditDetail(json!({
        "executionId": execution.id,
        "application": application,
        "description": description,
    })));
    Ok(response)
}
