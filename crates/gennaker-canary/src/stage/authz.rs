//! What a judgement must be allowed before it reads anything: the canary config (its
//! applications include the pipeline's, or the user who started the execution may READ
//! one of them) and every scope that is a server group of another application (READ
//! there). Checked in the task, at run time, against the user's current rights
//! ([`gennaker_engine::Services::authorize`]).

use gennaker_core::Access;
use gennaker_core::naming::parse_name;
use gennaker_engine::{StageTarget, TaskContext, TaskError};

use super::request::RunCanaryContext;
use crate::lookup::StoredCanaryConfig;

/// The canary config belongs to the pipeline's application, or the user may READ one
/// of its applications.
pub(super) async fn config(
    ctx: &TaskContext<'_>,
    stored: &StoredCanaryConfig,
) -> Result<(), TaskError> {
    let application = &ctx.execution.application;
    if stored
        .applications
        .iter()
        .any(|a| a.eq_ignore_ascii_case(application))
    {
        return Ok(());
    }
    if stored.applications.is_empty() {
        return Err(TaskError::Permanent(format!(
            "canary config '{}' ({}) belongs to no application, so pipelines of '{application}' may not use it; add '{application}' to its applications",
            stored.name, stored.id
        )));
    }
    let mut refusal = None;
    for owner in &stored.applications {
        let target = StageTarget {
            kind: "canary config",
            name: &stored.name,
            application: owner,
        };
        match ctx.authorize(target, Access::Read).await {
            Ok(()) => return Ok(()),
            Err(TaskError::Permanent(why)) => refusal = Some(why),
            Err(other) => return Err(other),
        }
    }
    Err(TaskError::Permanent(format!(
        "canary config '{}' belongs to {}, not to '{application}', and none of them may be read: {}; add '{application}' to the config's applications or get READ on one of them",
        stored.name,
        stored.applications.join(", "),
        refusal.unwrap_or_default()
    )))
}

/// Every scope named like a server group of another existing application needs READ
/// there: its metrics are that application's.
pub(super) async fn scopes(
    ctx: &TaskContext<'_>,
    request: &RunCanaryContext,
) -> Result<(), TaskError> {
    for scopes in request.scopes.values() {
        for side in [&scopes.control_scope, &scopes.experiment_scope] {
            let owner = parse_name(&side.scope).app;
            if owner.is_empty() || owner.eq_ignore_ascii_case(&ctx.execution.application) {
                continue;
            }
            // A name that parses to no existing application is not anyone's server
            // group (a Prometheus label, a pod prefix): nothing to protect.
            let exists = ctx
                .services
                .store
                .get_application(&owner)
                .await
                .map_err(|e| {
                    TaskError::Transient(format!(
                        "cannot check who owns scope '{}': {e}",
                        side.scope
                    ))
                })?
                .is_some();
            if exists {
                let target = StageTarget {
                    kind: "server group",
                    name: &side.scope,
                    application: &owner,
                };
                ctx.authorize(target, Access::Read).await?;
            }
        }
    }
    Ok(())
}
