//! `gennaker audit`

use serde::Deserialize;
use serde_json::Value;

use super::Context;
use crate::args::AuditArgs;
use crate::error::CliError;
use crate::output::{emit, scalar, table, text, time};

/// One audit entry; `detail` is free-form and only shown in JSON/YAML.
#[derive(Debug, Deserialize)]
struct AuditEntry {
    #[serde(default)]
    id: Value,
    at: Option<i64>,
    actor: Option<String>,
    action: String,
    target: Option<String>,
    outcome: Option<String>,
    #[serde(default)]
    status: Value,
}

pub(super) async fn run(ctx: &mut Context<'_>, args: AuditArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(actor) = args.actor {
        query.push(("actor", actor));
    }
    if let Some(target) = args.target {
        query.push(("target", target));
    }
    let raw = ctx.client()?.get(&["audit"], &query).await?;
    emit(ctx.out, ctx.format, raw, |entries: &Vec<AuditEntry>| {
        table(
            [
                "ID", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "STATUS",
            ],
            entries
                .iter()
                .map(|e| {
                    [
                        scalar(&e.id),
                        time(e.at),
                        text(e.actor.as_deref()),
                        e.action.clone(),
                        text(e.target.as_deref()),
                        text(e.outcome.as_deref()),
                        scalar(&e.status),
                    ]
                })
                .collect(),
        )
    })
}
