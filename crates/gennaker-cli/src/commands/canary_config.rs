//! `gennaker canary config …`

use std::path::Path;

use gennaker_core::Problem;
use serde::Deserialize;
use serde_json::Value;

use super::{Context, read_document};
use crate::args::CanaryConfigCommand;
use crate::error::{CliError, WireProblem};
use crate::output::{self, OutputFormat, details, emit, list, table, text, time};

/// `CanaryConfigRecord`: the current revision of a config.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CanaryConfigRecord {
    id: String,
    name: String,
    #[serde(default)]
    applications: Vec<String>,
    revision: u64,
    #[serde(default)]
    config: Value,
    updated_at: Option<i64>,
    updated_by: Option<String>,
}

/// The answer to a save.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveResponse {
    outcome: String,
    canary_config: CanaryConfigRecord,
    #[serde(default)]
    warnings: Vec<WireProblem>,
}

const CONFIGS: &str = "canaryConfigs";

pub(super) async fn run(
    ctx: &mut Context<'_>,
    command: CanaryConfigCommand,
) -> Result<(), CliError> {
    match command {
        CanaryConfigCommand::List { application } => {
            let query: Vec<(&str, String)> = application
                .map(|app| ("application", app))
                .into_iter()
                .collect();
            let raw = ctx.client()?.get(&[CONFIGS], &query).await?;
            emit(
                ctx.out,
                ctx.format,
                raw,
                |configs: &Vec<CanaryConfigRecord>| {
                    table(
                        [
                            "NAME",
                            "APPLICATIONS",
                            "METRICS",
                            "REVISION",
                            "UPDATED",
                            "UPDATED BY",
                            "ID",
                        ],
                        configs
                            .iter()
                            .map(|c| {
                                [
                                    c.name.clone(),
                                    list(&c.applications),
                                    count(&c.config, "metrics"),
                                    c.revision.to_string(),
                                    time(c.updated_at),
                                    text(c.updated_by.as_deref()),
                                    c.id.clone(),
                                ]
                            })
                            .collect(),
                    )
                },
            )
        }
        CanaryConfigCommand::Get { config } => {
            let raw = ctx.client()?.get(&[CONFIGS, &config], &[]).await?;
            // The document itself, ready to edit and save again.
            if ctx.format != OutputFormat::Table {
                let document = raw.get("config").cloned().unwrap_or(raw);
                return output::write_structured(ctx.out, ctx.format, &document);
            }
            emit(ctx.out, ctx.format, raw, |c: &CanaryConfigRecord| {
                let summary = details(vec![
                    ("Name", c.name.clone()),
                    ("ID", c.id.clone()),
                    ("Applications", list(&c.applications)),
                    ("Revision", c.revision.to_string()),
                    (
                        "Description",
                        text(c.config.get("description").and_then(Value::as_str)),
                    ),
                    ("Updated", time(c.updated_at)),
                    ("Updated by", text(c.updated_by.as_deref())),
                ]);
                format!("{summary}\n\n{}", metrics(&c.config))
            })
        }
        CanaryConfigCommand::Save { file } => save(ctx, &file).await,
        CanaryConfigCommand::Delete { config } => {
            ctx.client()?.delete(&[CONFIGS, &config]).await?;
            ctx.say(&format!(
                "Deleted canary config '{config}' and its history."
            ))
        }
    }
}

/// Creates or updates: by the document's id when it has one, else by its name (an
/// existing config of that name gets a new revision), else as a new config.
async fn save(ctx: &mut Context<'_>, path: &Path) -> Result<(), CliError> {
    let document = read_document(path)?;
    let client = ctx.client()?;
    let id = document
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let existing = match (&id, document.get("name").and_then(Value::as_str)) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(name)) if !name.is_empty() => match client.get(&[CONFIGS, name], &[]).await {
            Ok(found) => found.get("id").and_then(Value::as_str).map(str::to_owned),
            Err(CliError::NotFound { .. }) => None,
            Err(err) => return Err(err),
        },
        // The server explains what is missing.
        (None, _) => None,
    };
    let raw = match existing {
        Some(id) => client.put(&[CONFIGS, &id], &document).await?,
        None => client.post(&[CONFIGS], &document).await?,
    };
    if ctx.format != OutputFormat::Table {
        return output::write_structured(ctx.out, ctx.format, &raw);
    }
    let response: SaveResponse =
        serde_json::from_value(raw).map_err(|err| CliError::InvalidResponse(err.to_string()))?;
    let c = &response.canary_config;
    let headline = match response.outcome.as_str() {
        "created" => format!(
            "Created canary config '{}' (revision {}).",
            c.name, c.revision
        ),
        "unchanged" => format!(
            "Canary config '{}' is unchanged (still revision {}).",
            c.name, c.revision
        ),
        _ => format!(
            "Saved canary config '{}' as revision {}.",
            c.name, c.revision
        ),
    };
    let warnings: Vec<Problem> = response.warnings.into_iter().map(Problem::from).collect();
    ctx.say(&format!(
        "{headline}\nid: {}{}",
        c.id,
        output::problem_lines(&warnings)
    ))
}

/// The length of an array field, `0` when absent.
fn count(config: &Value, key: &str) -> String {
    config
        .get(key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        .to_string()
}

/// The metrics as a table: what is compared, how, and in which groups.
fn metrics(config: &Value) -> String {
    let metrics = config
        .get("metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let weights = config
        .get("classifier")
        .and_then(|c| c.get("groupWeights"))
        .and_then(Value::as_object);
    table(
        ["METRIC", "QUERY", "GROUPS", "DIRECTION", "CRITICAL"],
        metrics
            .iter()
            .map(|metric| {
                let groups: Vec<String> = metric
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|groups| {
                        groups
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|g| match weights.and_then(|w| w.get(g)) {
                                Some(weight) => format!("{g} ({})", output::scalar(weight)),
                                None => g.to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let canary = metric
                    .get("analysisConfigurations")
                    .and_then(|a| a.get("canary"));
                let query = metric.get("query");
                [
                    text(metric.get("name").and_then(Value::as_str)),
                    format!(
                        "{} {}",
                        text(query.and_then(|q| q.get("type")).and_then(Value::as_str)),
                        text(
                            query
                                .and_then(|q| q.get("metricName"))
                                .and_then(Value::as_str)
                        ),
                    ),
                    list(&groups),
                    text(
                        canary
                            .and_then(|c| c.get("direction"))
                            .and_then(Value::as_str),
                    ),
                    canary
                        .and_then(|c| c.get("critical"))
                        .map_or_else(|| "-".to_owned(), output::scalar),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_table_shows_queries_groups_and_weights() {
        let config = json!({
            "metrics": [
                {"name": "errors", "groups": ["errors"], "query": {"type": "builtin", "metricName": "error_rate"},
                 "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}},
                {"name": "p99", "groups": ["latency", "extra"], "query": {"type": "prometheus", "metricName": "http_seconds"}}
            ],
            "classifier": {"groupWeights": {"errors": 70, "latency": 30}}
        });
        let text = metrics(&config);
        assert!(text.contains("builtin error_rate"), "{text}");
        assert!(text.contains("errors (70)"), "{text}");
        assert!(text.contains("latency (30), extra"), "{text}");
        assert!(text.contains("increase"), "{text}");
        assert_eq!(count(&config, "metrics"), "2");
    }
}
