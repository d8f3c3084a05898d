//! The OpenAPI document, collected from the handlers' `#[utoipa::path]` annotations.

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::routes::{
    access, applications, canary, canary_configs, events, executions, infrastructure, pipelines,
    stage_types, triggers,
};
use crate::state::AppState;

/// Every documented API route.
pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(applications::list, applications::create))
        .routes(routes!(
            applications::get,
            applications::put,
            applications::delete
        ))
        .routes(routes!(pipelines::list, pipelines::save))
        .routes(routes!(pipelines::get, pipelines::delete))
        .routes(routes!(pipelines::history))
        .routes(routes!(pipelines::revision))
        .routes(routes!(pipelines::restore))
        .routes(routes!(pipelines::validate))
        .routes(routes!(stage_types::list))
        .routes(routes!(canary_configs::list, canary_configs::create))
        .routes(routes!(
            canary_configs::get,
            canary_configs::put,
            canary_configs::delete
        ))
        .routes(routes!(canary_configs::history))
        .routes(routes!(executions::run))
        .routes(routes!(executions::list))
        .routes(routes!(executions::get))
        .routes(routes!(executions::cancel))
        .routes(routes!(executions::pause))
        .routes(routes!(executions::resume))
        .routes(routes!(executions::restart))
        .routes(routes!(executions::skip))
        .routes(routes!(executions::judgment))
        .routes(routes!(executions::evaluate))
        .routes(routes!(executions::notifications))
        .routes(routes!(canary::report))
        .routes(routes!(canary::report_html))
        .routes(routes!(events::execution_events))
        .routes(routes!(events::application_events))
        .routes(routes!(infrastructure::clusters))
        .routes(routes!(infrastructure::server_groups))
        .routes(routes!(infrastructure::server_group))
        .routes(routes!(infrastructure::server_group_operation))
        .routes(routes!(infrastructure::load_balancers))
        .routes(routes!(infrastructure::run_task))
        .routes(routes!(access::me))
        .routes(routes!(access::list_users, access::create_user))
        .routes(routes!(access::get_user, access::delete_user))
        .routes(routes!(access::set_roles))
        .routes(routes!(access::set_password, access::remove_password))
        .routes(routes!(access::list_roles, access::create_role))
        .routes(routes!(access::delete_role))
        .routes(routes!(access::list_tokens, access::create_token))
        .routes(routes!(access::revoke_token))
        .routes(routes!(audit::list))
        .routes(routes!(triggers::log))
        .routes(routes!(triggers::fire))
}

/// Adds the title, version and bearer security scheme.
pub(crate) fn finish(mut openapi: OpenApi) -> OpenApi {
    openapi.info.title = "Gennaker API".to_owned();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    openapi.info.description = Some(
        "Continuous delivery in one binary. Every route needs `Authorization: Bearer <token>`."
            .to_owned(),
    );
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    openapi.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    openapi
}

/// `GET /api/openapi.json`.
pub(crate) async fn serve(openapi: Arc<OpenApi>) -> Response {
    Json(openapi.as_ref().clone()).into_response()
}
