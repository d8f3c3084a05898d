//! `gennaker trigger log` and `gennaker pipeline trigger`.

use std::path::Path;

use serde_json::{Value, json};

use super::{Context, read_document};
use crate::args::TriggerCommand;
use crate::error::CliError;
use crate::output::{emit, scalar, table, time};

pub(super) async fn run(ctx: &mut Context<'_>, command: TriggerCommand) -> Result<(), CliError> {
    match command {
        TriggerCommand::Log { app, limit } => {
            let raw = ctx
                .client()?
                .get(
                    &["applications", &app, "triggerEvents"],
                    &[("limit", limit.to_string())],
                )
                .await?;
            emit(ctx.out, ctx.format, raw, |entries: &Vec<Value>| {
                let mut rows = Vec::new();
                for entry in entries {
                    let event = &entry["event"];
                    let what = [
                        &event["type"],
                        &event["source"],
                        &event["repository"],
                        &event["tag"],
                        &event["branch"],
                        &event["pipeline"],
                        &event["status"],
                    ]
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(|v| scalar(v))
                    .collect::<Vec<_>>()
                    .join(" ");
                    for pipeline in entry["pipelines"].as_array().into_iter().flatten() {
                        let outcome = if pipeline["fired"] == json!(true) {
                            match pipeline.get("executionId") {
                                Some(id) => format!("fired: {}", scalar(id)),
                                None => "fired before (duplicate)".to_owned(),
                            }
                        } else {
                            format!("not fired: {}", scalar(&pipeline["reason"]))
                        };
                        rows.push([
                            time(entry["receivedAt"].as_i64()),
                            what.clone(),
                            scalar(&pipeline["pipeline"]),
                            scalar(&pipeline["trigger"]),
                            outcome,
                        ]);
                    }
                }
                table(["TIME", "EVENT", "PIPELINE", "TRIGGER", "OUTCOME"], rows)
            })
        }
    }
}

pub(super) async fn fire(
    ctx: &mut Context<'_>,
    app: &str,
    name: &str,
    kind: Option<String>,
    payload: Option<&Path>,
) -> Result<(), CliError> {
    let payload = match payload {
        Some(path) => read_document(path)?,
        None => json!({}),
    };
    let raw = ctx
        .client()?
        .post(
            &["applications", app, "pipelines", name, "trigger"],
            &json!({"type": kind, "payload": payload}),
        )
        .await?;
    emit(ctx.out, ctx.format, raw, |entry: &Value| {
        format!(
            "Trigger {} of pipeline '{}' fired: execution {}.",
            scalar(&entry["trigger"]),
            scalar(&entry["pipeline"]),
            scalar(&entry["executionId"])
        )
    })
}
