//! `gennaker canary judge`: Kayenta's judge on metric-set pairs, offline; and
//! `gennaker canary config …` and `gennaker canary report`, the client verbs of the
//! server's stored canary configs and canary reports (gennaker-cli's
//! [`CanaryConfigCommand`] and [`CanaryReportArgs`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use gennaker_canary::{
    CanaryConfig, JudgeOptions, MetricSetPair, ScoreThresholds, ShapeCheck, judge, render_table,
};
use gennaker_cli::{CanaryConfigCommand, CanaryReportArgs, OutputFormat};
use serde::de::DeserializeOwned;

/// Canary commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CanaryCommand {
    /// Judge a canary: compare experiment with control metrics as Kayenta's NetflixACAJudge does.
    Judge(JudgeArgs),
    /// Manage the canary configs stored on the server: list, get, save, delete.
    #[command(subcommand)]
    Config(CanaryConfigCommand),
    /// The report of a canary analysis in an execution: each interval's score and each
    /// metric's classification with why, or the standalone HTML page (--html FILE).
    Report(CanaryReportArgs),
}

/// `gennaker canary judge`
#[derive(Debug, clap::Args)]
pub(crate) struct JudgeArgs {
    /// The canary config (Kayenta's JSON).
    #[arg(long)]
    config: PathBuf,
    /// Metric-set pairs: a JSON array of {"name", "tags", "values": {"control": [...], "experiment": [...]}}.
    #[arg(long)]
    data: PathBuf,
    /// Score at or above which the canary passes.
    #[arg(long, default_value_t = 75.0)]
    pass: f64,
    /// Score at or above which (and below pass) the canary is marginal.
    #[arg(long, default_value_t = 50.0)]
    marginal: f64,
    /// Also flag distribution-shape changes the location test misses (off in Kayenta).
    #[arg(long)]
    shape_check: bool,
    /// Warn when a metric has fewer points than this on either side.
    #[arg(long)]
    min_samples: Option<usize>,
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("the {what} {} is not valid", path.display()))
}

/// Runs `gennaker canary judge`.
pub(crate) fn judge_command(args: JudgeArgs, output: Option<OutputFormat>) -> anyhow::Result<()> {
    let JudgeArgs {
        config,
        data,
        pass,
        marginal,
        shape_check,
        min_samples,
    } = args;
    if !(0.0..=100.0).contains(&marginal) || !(0.0..=100.0).contains(&pass) || marginal > pass {
        anyhow::bail!(
            "thresholds must satisfy 0 <= --marginal <= --pass <= 100 (got marginal {marginal}, pass {pass})"
        );
    }
    let config: CanaryConfig = read_json(&config, "canary config")?;
    let pairs: Vec<MetricSetPair> = read_json(&data, "metric data")?;
    let options = JudgeOptions {
        shape_check: shape_check.then(ShapeCheck::default),
        min_samples,
    };
    let result = judge(
        &config,
        &pairs,
        &ScoreThresholds { pass, marginal },
        &options,
    )
    .context("the judgement failed")?;
    match output {
        Some(OutputFormat::Json) => println!("{}", serde_json::to_string_pretty(&result)?),
        Some(OutputFormat::Yaml) => print!(
            "{}",
            gennaker_core::to_yaml_string(&serde_json::to_value(&result)?)?
        ),
        _ => print!("{}", render_table(&result)),
    }
    Ok(())
}
