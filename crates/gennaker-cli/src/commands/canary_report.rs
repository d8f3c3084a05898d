//! `gennaker canary report EXECUTION_ID [--stage STAGE] [--html FILE]`: the canary report
//! of a `kayentaCanary` stage, from `GET /api/v1/executions/{id}/stages/{stageId}/canary`:
//! a table (each interval's score and verdict, each metric of the last judged interval
//! with its classification and why), the report as JSON/YAML, or the standalone HTML
//! page written to a file.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::Context;
use crate::error::CliError;
use crate::output::{self, OutputFormat, table};

/// `gennaker canary report`
#[derive(Debug, clap::Args)]
pub struct CanaryReportArgs {
    /// The execution's id.
    pub execution: String,
    /// The kayentaCanary stage (or one of its "Run Canary #i" stages), by id or name;
    /// default: the execution's first kayentaCanary stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Write the standalone HTML report (inline SVG charts, no scripts) to this file
    /// instead of printing a table.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    stage_name: String,
    status: String,
    #[serde(default)]
    overall: Overall,
    #[serde(default)]
    intervals: Vec<Interval>,
}

#[derive(Debug, Default, Deserialize)]
struct Overall {
    score: Option<f64>,
    verdict: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interval {
    name: String,
    status: String,
    score: Option<f64>,
    verdict: Option<String>,
    #[serde(default)]
    window: Option<Window>,
    #[serde(default)]
    warnings: Vec<String>,
    error: Option<String>,
    #[serde(default)]
    metrics: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Window {
    experiment_start: String,
    experiment_end: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metric {
    name: String,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
    classification: String,
    deviation_percent: Option<f64>,
    why: String,
}

/// The stage to report on: the one asked for, or the first kayentaCanary stage.
async fn stage(ctx: &Context<'_>, args: &CanaryReportArgs) -> Result<String, CliError> {
    if let Some(stage) = &args.stage {
        return Ok(stage.clone());
    }
    let execution = ctx
        .client()?
        .get(&["executions", &args.execution], &[])
        .await?;
    execution["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["type"] == "kayentaCanary")
        .and_then(|s| s["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "execution {} has no kayentaCanary stage; name the stage with --stage",
                args.execution
            ))
        })
}

fn score(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |s| format!("{s}"))
}

fn render(report: &Report) -> String {
    let mut out = format!(
        "{} ({}): score {} - {}\n",
        report.stage_name,
        report.status,
        score(report.overall.score),
        report.overall.verdict.as_deref().unwrap_or("no score yet")
    );
    if let Some(message) = &report.overall.message {
        out.push_str(message);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&table(
        [
            "INTERVAL",
            "STATUS",
            "SCORE",
            "VERDICT",
            "CANARY WINDOW",
            "NOTES",
        ],
        report
            .intervals
            .iter()
            .map(|i| {
                let mut notes = i.warnings.clone();
                notes.extend(i.error.clone());
                [
                    i.name.clone(),
                    i.status.clone(),
                    score(i.score),
                    i.verdict.clone().unwrap_or_else(|| "-".to_owned()),
                    i.window.as_ref().map_or_else(
                        || "-".to_owned(),
                        |w| format!("{} - {}", w.experiment_start, w.experiment_end),
                    ),
                    notes.join(" "),
                ]
            })
            .collect(),
    ));
    if let Some(last) = report
        .intervals
        .iter()
        .rev()
        .find(|i| !i.metrics.is_empty())
    {
        out.push_str(&format!("\n\nMetrics of {}:\n", last.name));
        out.push_str(&table(
            ["METRIC", "RESULT", "DEVIATION", "WHY"],
            last.metrics
                .iter()
                .map(|m| {
                    let mut name = m.name.clone();
                    if !m.tags.is_empty() {
                        let tags: Vec<String> =
                            m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        name = format!("{name}{{{}}}", tags.join(","));
                    }
                    [
                        name,
                        m.classification.clone(),
                        m.deviation_percent
                            .map_or_else(|| "N/A".to_owned(), |d| format!("{d:+.1}%")),
                        m.why.clone(),
                    ]
                })
                .collect(),
        ));
    }
    out
}

/// Runs `gennaker canary report`.
pub(crate) async fn run(ctx: &mut Context<'_>, args: CanaryReportArgs) -> Result<(), CliError> {
    let stage = stage(ctx, &args).await?;
    if let Some(path) = &args.html {
        let page = ctx
            .client()?
            .get_text(&[
                "executions",
                &args.execution,
                "stages",
                &stage,
                "canary.html",
            ])
            .await?;
        std::fs::write(path, page).map_err(|source| CliError::WriteFile {
            path: path.clone(),
            source,
        })?;
        return ctx.say(&format!("Wrote the canary report to {}.", path.display()));
    }
    let raw: Value = ctx
        .client()?
        .get(
            &["executions", &args.execution, "stages", &stage, "canary"],
            &[],
        )
        .await?;
    if ctx.format != OutputFormat::Table {
        return output::write_structured(ctx.out, ctx.format, &raw);
    }
    let report: Report =
        serde_json::from_value(raw).map_err(|err| CliError::InvalidResponse(err.to_string()))?;
    writeln!(ctx.out, "{}", render(&report))?;
    Ok(())
}
