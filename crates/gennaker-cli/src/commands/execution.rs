//! `gennaker execution …` and `gennaker pipeline run`.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use gennaker_core::ExecutionStatus;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::Context;
use crate::args::{ExecutionCommand, RunArgs};
use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::{self, OutputFormat, emit, escape_controls, table, time};
use crate::view::{
    self, Applied, ExecutionView, StatusEvent, describe, elapsed, headline, now_millis, stage_table,
};

/// How many times in a row `watch` reconnects to a stream that ended early.
const MAX_RECONNECTS: u32 = 5;
/// The pause before reconnecting.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often a terminal view redraws to advance elapsed times.
const REDRAW: Duration = Duration::from_secs(1);

pub(super) async fn run(ctx: &mut Context<'_>, command: ExecutionCommand) -> Result<(), CliError> {
    match command {
        ExecutionCommand::List {
            application,
            pipeline,
            status,
            limit,
        } => list(ctx, application, pipeline, &status, limit).await,
        ExecutionCommand::Get { id } => {
            let raw = ctx.client()?.get(&["executions", &id], &[]).await?;
            emit(ctx.out, ctx.format, raw, |execution: &ExecutionView| {
                describe(execution, now_millis())
            })
        }
        ExecutionCommand::Watch { id, timeout } => {
            let client = ctx.client()?;
            watch(ctx, &client, &id, timeout).await
        }
        ExecutionCommand::Cancel { id, reason } => {
            let body = match reason {
                Some(reason) => json!({ "reason": reason }),
                None => json!({}),
            };
            act(ctx, &id, &["cancel"], &body).await?;
            ctx.say(&format!(
                "Canceling execution {id}: running stages stop and run their cancellation routines."
            ))
        }
        ExecutionCommand::Pause { id } => {
            act(ctx, &id, &["pause"], &json!({})).await?;
            ctx.say(&format!(
                "Pausing execution {id}; resume it with `gennaker execution resume {id}`."
            ))
        }
        ExecutionCommand::Resume { id } => {
            act(ctx, &id, &["resume"], &json!({})).await?;
            ctx.say(&format!("Resuming execution {id}."))
        }
        ExecutionCommand::Restart { id, stage } => {
            let client = ctx.client()?;
            let (stage_id, name) = resolve_stage(&client, &id, &stage).await?;
            act(ctx, &id, &["stages", &stage_id, "restart"], &json!({})).await?;
            ctx.say(&format!(
                "Restarting stage '{name}' of execution {id} and everything after it."
            ))
        }
        ExecutionCommand::Skip { id, stage } => {
            let client = ctx.client()?;
            let (stage_id, name) = resolve_stage(&client, &id, &stage).await?;
            act(ctx, &id, &["stages", &stage_id, "skip"], &json!({})).await?;
            ctx.say(&format!("Skipping stage '{name}' of execution {id}."))
        }
        ExecutionCommand::Judge {
            id,
            stage,
            proceed,
            stop,
            input,
        } => {
            let judgment = match (proceed, stop) {
                (true, false) => "continue",
                (false, true) => "stop",
                _ => {
                    return Err(CliError::Usage(
                        "give exactly one of --continue and --stop".to_owned(),
                    ));
                }
            };
            let client = ctx.client()?;
            let (stage_id, name) = resolve_stage(&client, &id, &stage).await?;
            let mut body = Map::new();
            body.insert("judgmentStatus".to_owned(), json!(judgment));
            if let Some(input) = &input {
                body.insert("judgmentInput".to_owned(), json!(input));
            }
            act(
                ctx,
                &id,
                &["stages", &stage_id, "judgment"],
                &Value::Object(body),
            )
            .await?;
            ctx.say(&format!(
                "Judged stage '{name}' of execution {id}: {judgment}."
            ))
        }
        ExecutionCommand::Evaluate {
            id,
            expression,
            stage,
        } => evaluate(ctx, &id, &expression, stage.as_deref()).await,
    }
}

/// `pipeline run`: starts the execution, then follows it with `--watch`.
pub(super) async fn run_pipeline(ctx: &mut Context<'_>, args: RunArgs) -> Result<(), CliError> {
    let mut parameters = Map::new();
    for pair in &args.parameters {
        let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(CliError::Usage(format!(
                "-p {pair}: a parameter is KEY=VALUE, e.g. -p env=prod"
            )));
        };
        parameters.insert(key.trim().to_owned(), Value::String(value.to_owned()));
    }
    let mut body = Map::new();
    body.insert("parameters".to_owned(), Value::Object(parameters));
    if let Some(correlation) = &args.correlation_id {
        body.insert("correlationId".to_owned(), json!(correlation));
    }
    let client = ctx.client()?;
    let raw = client
        .post(
            &[
                "applications",
                &args.app,
                "pipelines",
                &args.name,
                "executions",
            ],
            &Value::Object(body),
        )
        .await?;
    let started: ExecutionView = serde_json::from_value(raw.clone())
        .map_err(|err| CliError::InvalidResponse(err.to_string()))?;
    if args.watch {
        if ctx.format == OutputFormat::Table {
            writeln!(
                ctx.out,
                "{}",
                escape_controls(&format!(
                    "Started execution {} of '{}' in {}.",
                    started.id, args.name, started.application
                ))
            )?;
        }
        return watch(ctx, &client, &started.id, args.timeout).await;
    }
    if ctx.format != OutputFormat::Table {
        return output::write_structured(ctx.out, ctx.format, &raw);
    }
    ctx.say(&format!(
        "Started execution {id} of '{}' in {}.\nFollow it with `gennaker execution watch {id}`.",
        args.name,
        started.application,
        id = started.id
    ))
}

async fn list(
    ctx: &mut Context<'_>,
    application: Option<String>,
    pipeline: Option<String>,
    statuses: &[ExecutionStatus],
    limit: Option<u32>,
) -> Result<(), CliError> {
    let mut query = Vec::new();
    if let Some(application) = application {
        query.push(("application", application));
    }
    if let Some(pipeline) = pipeline {
        query.push(("pipeline", pipeline));
    }
    if !statuses.is_empty() {
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        query.push(("status", names.join(",")));
    }
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    let raw = ctx.client()?.get(&["executions"], &query).await?;
    let now = now_millis();
    emit(
        ctx.out,
        ctx.format,
        raw,
        |executions: &Vec<ExecutionView>| {
            table(
                [
                    "ID",
                    "APPLICATION",
                    "PIPELINE",
                    "STATUS",
                    "STARTED",
                    "ELAPSED",
                    "TRIGGER",
                ],
                executions
                    .iter()
                    .map(|e| {
                        [
                            e.id.clone(),
                            e.application.clone(),
                            e.name.clone(),
                            e.status.to_string(),
                            time(e.start_time.or(e.build_time)),
                            elapsed(e.start_time, e.end_time, now),
                            e.trigger_text(),
                        ]
                    })
                    .collect(),
            )
        },
    )
}

/// POSTs an operation on an execution.
async fn act(
    ctx: &mut Context<'_>,
    id: &str,
    operation: &[&str],
    body: &Value,
) -> Result<(), CliError> {
    let mut segments = vec!["executions", id];
    segments.extend_from_slice(operation);
    let raw = ctx.client()?.post(&segments, body).await?;
    if ctx.format != OutputFormat::Table {
        output::write_structured(ctx.out, ctx.format, &raw)?;
    }
    Ok(())
}

/// Finds a stage by id, top-level refId or name; returns (id, name).
async fn resolve_stage(
    client: &ApiClient,
    id: &str,
    wanted: &str,
) -> Result<(String, String), CliError> {
    let raw = client.get(&["executions", id], &[]).await?;
    let execution: ExecutionView =
        serde_json::from_value(raw).map_err(|err| CliError::InvalidResponse(err.to_string()))?;
    find_stage(&execution, wanted).map(|s| (s.id.clone(), s.name.clone()))
}

fn find_stage<'e>(
    execution: &'e ExecutionView,
    wanted: &str,
) -> Result<&'e view::StageView, CliError> {
    if let Some(stage) = execution.stages.iter().find(|s| s.id == wanted) {
        return Ok(stage);
    }
    if let Some(stage) = execution
        .stages
        .iter()
        .find(|s| s.parent_stage_id.is_none() && s.ref_id == wanted)
    {
        return Ok(stage);
    }
    let named: Vec<&view::StageView> = execution
        .stages
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case(wanted))
        .collect();
    match named.as_slice() {
        [stage] => Ok(stage),
        [] => {
            let known: Vec<String> = execution
                .stages
                .iter()
                .filter(|s| s.parent_stage_id.is_none())
                .map(|s| format!("'{}' (refId {})", s.name, s.ref_id))
                .collect();
            Err(CliError::Usage(format!(
                "execution {} has no stage '{wanted}'; its stages are {}. Name a stage by id, refId or name",
                execution.id,
                output::list(&known)
            )))
        }
        several => {
            let ids: Vec<String> = several
                .iter()
                .map(|s| format!("{} (refId {})", s.id, s.ref_id))
                .collect();
            Err(CliError::Usage(format!(
                "execution {} has {} stages named '{wanted}': {}; name one by its id",
                execution.id,
                several.len(),
                ids.join(", ")
            )))
        }
    }
}

async fn evaluate(
    ctx: &mut Context<'_>,
    id: &str,
    expression: &str,
    stage: Option<&str>,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let mut body = Map::new();
    body.insert("expression".to_owned(), json!(expression));
    if let Some(stage) = stage {
        let (stage_id, _) = resolve_stage(&client, id, stage).await?;
        body.insert("stageId".to_owned(), json!(stage_id));
    }
    let raw = client
        .post(&["executions", id, "evaluate"], &Value::Object(body))
        .await?;
    if let Some(error) = raw.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the expression failed");
        let column = error.get("column").and_then(Value::as_u64).unwrap_or(0);
        let hint = error
            .get("hint")
            .and_then(Value::as_str)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return Err(CliError::Usage(format!(
            "{expression}\n{}^\nthe expression failed at column {column}: {message}{hint}",
            " ".repeat(column.saturating_sub(1) as usize)
        )));
    }
    let result = raw.get("result").cloned().unwrap_or(Value::Null);
    output::write_structured(ctx.out, ctx.format, &result)
}

/// How a live view shows itself.
struct Screen {
    /// Redraw in place (a terminal) or append lines (a log).
    terminal: bool,
    /// Lines drawn last time (to move the cursor back over them).
    drawn: usize,
    /// Whether anything was printed yet (the log's heading).
    started: bool,
}

impl Screen {
    /// Redraws the whole view (terminal only).
    fn redraw(
        &mut self,
        out: &mut dyn std::io::Write,
        execution: &ExecutionView,
    ) -> Result<(), CliError> {
        let now = now_millis();
        let text = format!(
            "{}\n\n{}",
            escape_controls(&headline(execution, now)),
            stage_table(execution, now)
        );
        if self.drawn > 0 {
            // Up to the first line drawn, then clear to the end of the screen.
            write!(out, "\x1b[{}F\x1b[J", self.drawn)?;
        }
        writeln!(out, "{text}")?;
        out.flush()?;
        self.drawn = text.lines().count();
        self.started = true;
        Ok(())
    }

    /// One line per change (a log).
    fn log(
        &mut self,
        out: &mut dyn std::io::Write,
        execution: &ExecutionView,
        event: Option<&StatusEvent>,
    ) -> Result<(), CliError> {
        if !self.started {
            writeln!(
                out,
                "{}",
                escape_controls(&format!(
                    "Watching execution {} of '{}' in {} ({}).",
                    execution.id, execution.name, execution.application, execution.status
                ))
            )?;
            self.started = true;
        }
        let Some(event) = event else {
            return Ok(());
        };
        let clock = jiff::Timestamp::from_millisecond(event.time)
            .map(|t| t.strftime("%H:%M:%S").to_string())
            .unwrap_or_default();
        let stage = || {
            event
                .stage_id
                .as_deref()
                .and_then(|id| execution.stages.iter().find(|s| s.id == id))
                .map_or_else(
                    || event.stage_name.clone().unwrap_or_default(),
                    |s| format!("{} ({})", s.name, s.stage_type),
                )
        };
        let line = match (&event.stage_id, &event.task) {
            (None, _) => format!("{clock}  execution {}", event.status),
            (Some(_), None) => format!("{clock}  stage {}  {}", stage(), event.status),
            (Some(_), Some(task)) => {
                format!("{clock}  stage {}  task {task}  {}", stage(), event.status)
            }
        };
        writeln!(out, "{}", escape_controls(&line))?;
        out.flush()?;
        Ok(())
    }
}

/// What the watch loop waits for.
enum Wake {
    Event(Option<Result<eventsource_stream::Event, String>>),
    Redraw,
    Timeout,
}

/// Follows an execution over its event stream until it ends; the outcome becomes the
/// result (and so the exit status).
pub(super) async fn watch(
    ctx: &mut Context<'_>,
    client: &ApiClient,
    id: &str,
    timeout: Option<u64>,
) -> Result<(), CliError> {
    let deadline = timeout.map(|seconds| Instant::now() + Duration::from_secs(seconds));
    let live = ctx.format == OutputFormat::Table;
    let mut screen = Screen {
        terminal: ctx.terminal,
        drawn: 0,
        started: false,
    };
    let mut execution: Option<ExecutionView> = None;
    let mut failures = 0;
    let mut redraw = tokio::time::interval(REDRAW);
    'connect: loop {
        let response = match client.stream(&["executions", id, "events"]).await {
            Ok(response) => response,
            // The first connection's error (404, 403, unreachable) is the answer.
            Err(err) if execution.is_none() => return Err(err),
            Err(err) => {
                failures += 1;
                if failures > MAX_RECONNECTS {
                    return Err(CliError::StreamLost {
                        id: id.to_owned(),
                        reason: err.to_string(),
                    });
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue 'connect;
            }
        };
        let mut events = response.bytes_stream().eventsource();
        loop {
            let wake = tokio::select! {
                event = events.next() => Wake::Event(event.map(|e| e.map_err(|err| err.to_string()))),
                _ = redraw.tick(), if screen.terminal && live && execution.is_some() => Wake::Redraw,
                () = sleep_until(deadline) => Wake::Timeout,
            };
            let event = match wake {
                Wake::Redraw => {
                    if let Some(current) = &execution {
                        screen.redraw(ctx.out, current)?;
                    }
                    continue;
                }
                Wake::Timeout => {
                    let status = execution
                        .as_ref()
                        .map_or_else(|| "running".to_owned(), |e| e.status.to_string());
                    return Err(CliError::WatchTimeout {
                        id: id.to_owned(),
                        status,
                        seconds: timeout.unwrap_or_default(),
                    });
                }
                Wake::Event(None) => break,
                Wake::Event(Some(Err(reason))) => {
                    note_interrupted(&mut screen, ctx.out, live, &reason)?;
                    break;
                }
                Wake::Event(Some(Ok(event))) => event,
            };
            failures = 0;
            let mut status_event = None;
            match event.event.as_str() {
                "snapshot" => {
                    let fresh: ExecutionView = serde_json::from_str(&event.data)
                        .map_err(|err| CliError::InvalidResponse(err.to_string()))?;
                    execution = Some(fresh);
                }
                "execution" | "stage" | "task" => {
                    let parsed: StatusEvent = serde_json::from_str(&event.data)
                        .map_err(|err| CliError::InvalidResponse(err.to_string()))?;
                    let stale = match execution.as_mut() {
                        Some(current) if current.id == parsed.execution_id => {
                            current.apply(&parsed) == Applied::Stale
                        }
                        Some(_) => false,
                        None => true,
                    };
                    if stale {
                        execution = Some(fetch(client, id).await?);
                    }
                    status_event = Some(parsed);
                }
                "error" => {
                    let message = serde_json::from_str::<Value>(&event.data)
                        .ok()
                        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or(event.data);
                    return Err(CliError::StreamLost {
                        id: id.to_owned(),
                        reason: message,
                    });
                }
                // Keep-alives and events of newer servers.
                _ => continue,
            }
            let Some(current) = &execution else { continue };
            if live {
                if screen.terminal {
                    screen.redraw(ctx.out, current)?;
                } else {
                    screen.log(ctx.out, current, status_event.as_ref())?;
                }
            }
            if current.has_ended() {
                // The final state, with every stage's end, comes from a fresh read.
                let last = fetch(client, id).await.unwrap_or_else(|_| current.clone());
                return finish(ctx, &mut screen, &last, live).await;
            }
        }
        // The stream ended before the execution did: the server restarted or a proxy
        // cut the connection. A fresh read tells whether it ended meanwhile.
        match fetch(client, id).await {
            Ok(current) if current.has_ended() => {
                return finish(ctx, &mut screen, &current, live).await;
            }
            Ok(current) => execution = Some(current),
            Err(_) => {}
        }
        failures += 1;
        if failures > MAX_RECONNECTS {
            return Err(CliError::StreamLost {
                id: id.to_owned(),
                reason: "the server closed the stream repeatedly".to_owned(),
            });
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// A note in a log view about a dropped stream (a terminal view just redraws).
fn note_interrupted(
    screen: &mut Screen,
    out: &mut dyn std::io::Write,
    live: bool,
    reason: &str,
) -> Result<(), CliError> {
    if live && !screen.terminal {
        writeln!(
            out,
            "(event stream interrupted: {}; reconnecting)",
            escape_controls(reason)
        )?;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn fetch(client: &ApiClient, id: &str) -> Result<ExecutionView, CliError> {
    let raw = client.get(&["executions", id], &[]).await?;
    serde_json::from_value(raw).map_err(|err| CliError::InvalidResponse(err.to_string()))
}

/// Shows the final state, and turns an unsuccessful end into the error that sets the
/// exit status.
async fn finish(
    ctx: &mut Context<'_>,
    screen: &mut Screen,
    execution: &ExecutionView,
    live: bool,
) -> Result<(), CliError> {
    if live {
        if screen.terminal {
            screen.redraw(ctx.out, execution)?;
        } else {
            screen.log(ctx.out, execution, None)?;
            let now = now_millis();
            writeln!(
                ctx.out,
                "\n{}\n\n{}",
                escape_controls(&headline(execution, now)),
                stage_table(execution, now)
            )?;
        }
    } else {
        let raw = ctx
            .client()?
            .get(&["executions", &execution.id], &[])
            .await?;
        output::write_structured(ctx.out, ctx.format, &raw)?;
    }
    if execution.status.is(ExecutionStatus::Succeeded) {
        return Ok(());
    }
    Err(CliError::ExecutionFailed {
        id: execution.id.clone(),
        status: execution.status.clone(),
        reason: execution.failure_reason(),
        failed_stage: execution.failure().map(|(stage, _)| stage.name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution() -> ExecutionView {
        serde_json::from_value(json!({
            "id": "e1", "status": "RUNNING",
            "stages": [
                {"id": "a", "refId": "1", "name": "Approve", "status": "RUNNING"},
                {"id": "b", "refId": "2", "name": "Wait", "status": "NOT_STARTED"},
                {"id": "c", "refId": "2>1", "name": "Wait", "status": "NOT_STARTED", "parentStageId": "b"},
            ]
        }))
        .unwrap()
    }

    #[test]
    fn stages_are_found_by_id_ref_or_unique_name() {
        let execution = execution();
        assert_eq!(find_stage(&execution, "a").unwrap().name, "Approve");
        assert_eq!(find_stage(&execution, "2").unwrap().id, "b");
        assert_eq!(find_stage(&execution, "approve").unwrap().id, "a");
        let err = find_stage(&execution, "Wait").unwrap_err().to_string();
        assert!(err.contains("2 stages named 'Wait'"), "{err}");
        let err = find_stage(&execution, "Deploy").unwrap_err().to_string();
        assert!(
            err.contains("'Approve' (refId 1)") && err.contains("no stage 'Deploy'"),
            "{err}"
        );
    }
}
