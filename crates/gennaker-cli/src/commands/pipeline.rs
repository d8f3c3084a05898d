//! `gennaker pipeline …`

use std::path::Path;

use gennaker_core::Problem;
use gennaker_expr::validate_pipeline;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Context, read_document};
use crate::args::PipelineCommand;
use crate::error::{CliError, WireProblem};
use crate::output::{self, OutputFormat, details, emit, scalar, table, text, time};

/// `PipelineRecord`: the current revision of a pipeline.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PipelineRecord {
    #[serde(default)]
    id: Value,
    application: String,
    name: String,
    revision: u64,
    #[serde(default)]
    config: Value,
    updated_at: Option<i64>,
    updated_by: Option<String>,
}

/// `PipelineRevision`: one stored revision.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PipelineRevision {
    #[serde(default)]
    pipeline_id: Value,
    revision: u64,
    name: String,
    #[serde(default)]
    config: Value,
    created_at: Option<i64>,
    author: Option<String>,
    restored_from: Option<u64>,
}

/// The answer to a save.
#[derive(Debug, Deserialize)]
struct SaveResponse {
    outcome: String,
    pipeline: PipelineRecord,
    #[serde(default)]
    warnings: Vec<WireProblem>,
}

pub(super) async fn run(ctx: &mut Context<'_>, command: PipelineCommand) -> Result<(), CliError> {
    match command {
        PipelineCommand::List { app } => {
            let raw = ctx
                .client()?
                .get(&["applications", &app, "pipelines"], &[])
                .await?;
            emit(
                ctx.out,
                ctx.format,
                raw,
                |pipelines: &Vec<PipelineRecord>| {
                    table(
                        [
                            "NAME",
                            "REVISION",
                            "STAGES",
                            "TRIGGERS",
                            "ENABLED",
                            "UPDATED",
                            "UPDATED BY",
                            "ID",
                        ],
                        pipelines
                            .iter()
                            .map(|p| {
                                [
                                    p.name.clone(),
                                    p.revision.to_string(),
                                    count(&p.config, "stages"),
                                    count(&p.config, "triggers"),
                                    enabled(&p.config),
                                    time(p.updated_at),
                                    text(p.updated_by.as_deref()),
                                    scalar(&p.id),
                                ]
                            })
                            .collect(),
                    )
                },
            )
        }
        PipelineCommand::Get {
            app,
            name,
            revision: None,
        } => {
            let raw = ctx
                .client()?
                .get(&["applications", &app, "pipelines", &name], &[])
                .await?;
            emit(ctx.out, ctx.format, raw, |p: &PipelineRecord| {
                let summary = details(vec![
                    ("Application", p.application.clone()),
                    ("Name", p.name.clone()),
                    ("ID", scalar(&p.id)),
                    ("Revision", p.revision.to_string()),
                    (
                        "Description",
                        text(p.config.get("description").and_then(Value::as_str)),
                    ),
                    ("Enabled", enabled(&p.config)),
                    ("Triggers", count(&p.config, "triggers")),
                    ("Updated", time(p.updated_at)),
                    ("Updated by", text(p.updated_by.as_deref())),
                ]);
                format!("{summary}\n\n{}", stages(&p.config))
            })
        }
        PipelineCommand::Get {
            app,
            name,
            revision: Some(revision),
        } => {
            let revision = revision.to_string();
            let raw = ctx
                .client()?
                .get(
                    &[
                        "applications",
                        &app,
                        "pipelines",
                        &name,
                        "history",
                        &revision,
                    ],
                    &[],
                )
                .await?;
            emit(ctx.out, ctx.format, raw, |r: &PipelineRevision| {
                let summary = details(vec![
                    ("Name", r.name.clone()),
                    ("Pipeline ID", scalar(&r.pipeline_id)),
                    ("Revision", r.revision.to_string()),
                    ("Created", time(r.created_at)),
                    ("Author", text(r.author.as_deref())),
                    (
                        "Restored from",
                        r.restored_from
                            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    ),
                ]);
                format!("{summary}\n\n{}", stages(&r.config))
            })
        }
        PipelineCommand::Save { file, application } => save(ctx, &file, application).await,
        PipelineCommand::Delete { app, name } => {
            ctx.client()?
                .delete(&["applications", &app, "pipelines", &name])
                .await?;
            ctx.say(&format!(
                "Deleted pipeline '{name}' of application {app} and its history."
            ))
        }
        PipelineCommand::History { app, name } => {
            let raw = ctx
                .client()?
                .get(&["applications", &app, "pipelines", &name, "history"], &[])
                .await?;
            emit(
                ctx.out,
                ctx.format,
                raw,
                |revisions: &Vec<PipelineRevision>| {
                    table(
                        ["REVISION", "CREATED", "AUTHOR", "RESTORED FROM", "STAGES"],
                        revisions
                            .iter()
                            .map(|r| {
                                [
                                    r.revision.to_string(),
                                    time(r.created_at),
                                    text(r.author.as_deref()),
                                    r.restored_from
                                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                                    count(&r.config, "stages"),
                                ]
                            })
                            .collect(),
                    )
                },
            )
        }
        PipelineCommand::Restore {
            app,
            name,
            revision,
        } => {
            let raw = ctx
                .client()?
                .post(
                    &[
                        "applications",
                        &app,
                        "pipelines",
                        &name,
                        "history",
                        &revision.to_string(),
                        "restore",
                    ],
                    &json!({}),
                )
                .await?;
            emit(ctx.out, ctx.format, raw, |p: &PipelineRecord| {
                format!(
                    "Restored revision {revision} of pipeline '{}' in {}; it is now revision {}.",
                    p.name, p.application, p.revision
                )
            })
        }
        // The binary read `server_config` into the catalog.
        PipelineCommand::Validate { file, .. } => validate(ctx, &file),
        PipelineCommand::Run(args) => super::execution::run_pipeline(ctx, args).await,
        PipelineCommand::Trigger {
            app,
            name,
            kind,
            payload,
        } => super::trigger::fire(ctx, &app, &name, kind, payload.as_deref()).await,
    }
}

async fn save(
    ctx: &mut Context<'_>,
    path: &Path,
    application: Option<String>,
) -> Result<(), CliError> {
    let mut document = read_document(path)?;
    let app = target_application(&mut document, application, path)?;
    let raw = ctx
        .client()?
        .post(&["applications", &app, "pipelines"], &document)
        .await?;
    if ctx.format != OutputFormat::Table {
        return output::write_structured(ctx.out, ctx.format, &raw);
    }
    let response: SaveResponse =
        serde_json::from_value(raw).map_err(|err| CliError::InvalidResponse(err.to_string()))?;
    let p = &response.pipeline;
    let headline = match response.outcome.as_str() {
        "created" => format!(
            "Created pipeline '{}' in {} (revision {}).",
            p.name, p.application, p.revision
        ),
        "unchanged" => format!(
            "Pipeline '{}' in {} is unchanged (still revision {}).",
            p.name, p.application, p.revision
        ),
        _ => format!(
            "Saved pipeline '{}' in {} as revision {}.",
            p.name, p.application, p.revision
        ),
    };
    let warnings: Vec<Problem> = response.warnings.into_iter().map(Problem::from).collect();
    ctx.say(&format!("{headline}{}", output::problem_lines(&warnings)))
}

/// The application a pipeline is saved into: the document's `application`, or
/// `--application`, which is written into the document when it names none.
fn target_application(
    document: &mut Value,
    flag: Option<String>,
    path: &Path,
) -> Result<String, CliError> {
    let declared = document
        .get("application")
        .and_then(Value::as_str)
        .filter(|app| !app.is_empty())
        .map(str::to_owned);
    match (declared, flag) {
        (Some(declared), Some(flag)) if !declared.eq_ignore_ascii_case(&flag) => {
            Err(CliError::Usage(format!(
                "{} belongs to application {declared}, but --application says {flag}; fix one of them",
                path.display()
            )))
        }
        (Some(declared), _) => Ok(declared),
        (None, Some(flag)) => {
            if let Value::Object(map) = document {
                map.insert("application".to_owned(), Value::String(flag.clone()));
            }
            Ok(flag)
        }
        (None, None) => Err(CliError::Usage(format!(
            "{} names no application; add \"application\" to it or pass --application",
            path.display()
        ))),
    }
}

/// Offline: parse and validate with the same rules the server applies on save. Nothing
/// is saved, so the wording says what a save would do.
fn validate(ctx: &mut Context<'_>, path: &Path) -> Result<(), CliError> {
    let document = read_document(path)?;
    let report = validate_pipeline(&document, ctx.catalog);
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    match ctx.format {
        OutputFormat::Table => {
            for problem in &report.problems {
                writeln!(ctx.out, "{}", output::problem(problem))?;
            }
            if errors == 0 {
                let note = match warnings {
                    0 => String::new(),
                    1 => "; it would be saved with 1 warning".to_owned(),
                    n => format!("; it would be saved with {n} warnings"),
                };
                writeln!(
                    ctx.out,
                    "{}: valid pipeline{note} (validated offline, nothing saved)",
                    path.display()
                )?;
            }
        }
        format => {
            let problems = serde_json::to_value(&report.problems).map_err(std::io::Error::other)?;
            let summary = json!({"valid": errors == 0, "problems": problems});
            output::write_structured(ctx.out, format, &summary)?;
        }
    }
    if errors == 0 {
        Ok(())
    } else {
        Err(CliError::Invalid {
            path: path.to_owned(),
            errors,
            warnings,
        })
    }
}

/// The length of an array field, `0` when absent.
fn count(config: &Value, key: &str) -> String {
    config
        .get(key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        .to_string()
}

fn enabled(config: &Value) -> String {
    let disabled = config
        .get("disabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if disabled { "no" } else { "yes" }.to_owned()
}

/// The stage graph as a table: what runs, and after what.
fn stages(config: &Value) -> String {
    let stages = config
        .get("stages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    table(
        ["REF", "TYPE", "NAME", "AFTER"],
        stages
            .iter()
            .map(|stage| {
                let after: Vec<String> = stage
                    .get("requisiteStageRefIds")
                    .and_then(Value::as_array)
                    .map(|refs| refs.iter().map(scalar).collect())
                    .unwrap_or_default();
                [
                    stage.get("refId").map_or_else(|| "-".to_owned(), scalar),
                    text(stage.get("type").and_then(Value::as_str)),
                    text(stage.get("name").and_then(Value::as_str)),
                    output::list(&after),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_application_comes_from_the_document_or_the_flag() {
        let path = PathBuf::from("p.json");
        let mut doc = json!({"application": "shop", "name": "deploy"});
        assert_eq!(target_application(&mut doc, None, &path).unwrap(), "shop");
        assert_eq!(
            target_application(&mut doc, Some("shop".into()), &path).unwrap(),
            "shop"
        );
        let err = target_application(&mut doc, Some("other".into()), &path).unwrap_err();
        assert!(
            err.to_string().contains("--application says other"),
            "{err}"
        );

        let mut doc = json!({"name": "deploy"});
        assert!(target_application(&mut doc, None, &path).is_err());
        assert_eq!(
            target_application(&mut doc, Some("shop".into()), &path).unwrap(),
            "shop"
        );
        assert_eq!(doc["application"], "shop");
    }

    #[test]
    fn stage_table_lists_refs_and_dependencies() {
        let config = json!({"stages": [
            {"refId": "1", "type": "wait", "name": "Wait", "requisiteStageRefIds": []},
            {"refId": 2, "type": "deploy", "name": "Deploy", "requisiteStageRefIds": ["1", 3]},
        ]});
        let text = stages(&config);
        assert!(text.contains("Deploy"), "{text}");
        assert!(text.contains("1, 3"), "{text}");
        assert_eq!(count(&config, "stages"), "2");
        assert_eq!(count(&config, "triggers"), "0");
        assert_eq!(enabled(&json!({"disabled": true})), "no");
    }
}
