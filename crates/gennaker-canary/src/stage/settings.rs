//! The stage's `canaryConfig`, read the way Orca reads it (Deck writes numbers as
//! strings: `"5"`, `"0.25"`) into typed settings. One reader serves the save-time rules
//! (problems at JSON paths; `${…}` values are only known at run time and pass) and the
//! run (where a value still holding `${` is a mistake).

use std::collections::BTreeMap;

use gennaker_core::{Fields, Problem, ValidationReport, is_expression, type_name};
use serde_json::Value;

use crate::aggregate::{CanaryTiming, StageThresholds};

/// Orca's step when a scope names none: one point a minute.
pub(crate) const DEFAULT_STEP_SECS: u64 = 60;

/// Longest lifetime, warm-up, lookback or offset accepted: thirty days. Longer analyses
/// would only plan more judgements than an execution may hold.
const MAX_SECS: u64 = 30 * 24 * 3600;

/// Most judgements one stage may plan (each is a wait and an analysis stage).
pub(crate) const MAX_JUDGEMENTS: u64 = 1000;

/// Most scopes a stage may name.
const MAX_SCOPES: usize = 50;

/// Where the settings are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// At save: expressions are unknown and pass.
    Save,
    /// At run: expressions were evaluated; one left unevaluated is an error.
    Run,
}

/// One scope of the stage: which control and experiment to compare.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scope {
    /// `scopeName` (metrics name the scope they are fetched for; default `default`).
    pub name: String,
    /// The control (baseline).
    pub control: String,
    /// Where the control is (region, namespace).
    pub control_location: String,
    /// The experiment (canary).
    pub experiment: String,
    /// Where the experiment is.
    pub experiment_location: String,
    /// Extra template variables.
    pub extended: BTreeMap<String, String>,
}

/// The stage's settings, typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// `canaryConfigId`, when set.
    pub config_id: Option<String>,
    /// `canaryConfigName`, used when no id is set.
    pub config_name: Option<String>,
    /// `metricsAccountName`; the default account when absent.
    pub metrics_account: Option<String>,
    /// `storageAccountName` (recorded; Gennaker keeps results in the execution).
    pub storage_account: Option<String>,
    /// `configurationAccountName` (recorded).
    pub configuration_account: Option<String>,
    /// Score thresholds (Orca's default 75/50 when `scoreThresholds` is absent).
    pub thresholds: StageThresholds,
    /// Lifetime, interval, warm-up, lookback, offset.
    pub timing: CanaryTiming,
    /// `scopes[0].startTimeIso`.
    pub start: Option<jiff::Timestamp>,
    /// Seconds between points (`scopes[0].step`).
    pub step_secs: u64,
    /// The scopes.
    pub scopes: Vec<Scope>,
    /// `siteLocal`, passed through.
    pub site_local: Value,
}

/// Reads the `canaryConfig` (and `deployments`) of a `kayentaCanary` stage, reporting
/// every problem with its path. `None` when the settings cannot be used.
pub(crate) fn read(
    stage: &Fields<'_>,
    accounts: &[String],
    mode: Mode,
    report: &mut ValidationReport,
) -> Option<Settings> {
    let before = report.errors().count();
    // With deployments the scopes are the groups deployed: they need no names.
    let automatic = super::deployments::automatic(stage.map);
    stage.one_of(
        "analysisType",
        &["realTime", "realTimeAutomatic", "retrospective"],
        report,
    );
    let Some(config) = stage.object("canaryConfig", report) else {
        if !stage.has("canaryConfig") {
            report.push(
                Problem::error(
                    stage.at("canaryConfig"),
                    "kayentaCanary needs a canaryConfig",
                )
                .with_hint(
                    "at least canaryConfigId (or canaryConfigName), lifetimeDuration and scopes",
                ),
            );
        }
        return None;
    };
    let config_id = text(&config, "canaryConfigId", mode, report);
    let config_name = text(&config, "canaryConfigName", mode, report);
    if !config.has("canaryConfigId") && !config.has("canaryConfigName") {
        report.push(
            Problem::error(
                config.at("canaryConfigId"),
                "no canary config named: set canaryConfigId (or canaryConfigName)",
            )
            .with_hint("the id or name of a canary config of this application (`GET /api/v1/canaryConfigs`)"),
        );
    }
    let metrics_account = text(&config, "metricsAccountName", mode, report);
    if let Some(account) = &metrics_account
        && !accounts.is_empty()
        && !accounts.iter().any(|a| a == account)
    {
        report.push(
            Problem::error(
                config.at("metricsAccountName"),
                format!(
                    "metrics account '{account}' is not configured on this server; configured accounts: {}",
                    accounts.join(", ")
                ),
            )
            .with_hint("name one of them, or leave metricsAccountName out to use the default account"),
        );
    }
    let storage_account = text(&config, "storageAccountName", mode, report);
    let configuration_account = text(&config, "configurationAccountName", mode, report);
    text(&config, "combinedCanaryResultStrategy", mode, report);
    let site_local = match config.object("siteLocal", report) {
        Some(fields) => Value::Object(fields.map.clone()),
        None => Value::Object(serde_json::Map::new()),
    };
    let thresholds = thresholds(&config, mode, report);
    let (scopes, start, end, step_secs) = scopes(&config, mode, automatic, report);
    let timing = timing(&config, start, end, mode, report);
    if report.errors().count() > before {
        return None;
    }
    // Save time with expressions in the values: what is known was checked.
    let timing = timing?;
    Some(Settings {
        config_id,
        config_name,
        metrics_account,
        storage_account,
        configuration_account,
        thresholds: thresholds?,
        timing,
        start,
        step_secs,
        scopes,
        site_local,
    })
}

/// An optional string; at run time an unevaluated expression is an error.
fn text(
    fields: &Fields<'_>,
    key: &str,
    mode: Mode,
    report: &mut ValidationReport,
) -> Option<String> {
    let value = fields.string(key, report)?;
    if mode == Mode::Run && value.contains("${") {
        unevaluated(fields, key, report);
        return None;
    }
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

fn unevaluated(fields: &Fields<'_>, key: &str, report: &mut ValidationReport) {
    report.push(Problem::error(
        fields.at(key),
        format!("{key} still holds an expression after evaluation; fix the expression so it gives a value"),
    ));
}

/// A number Jackson would read (a number or a numeric string). `Ok(None)`: absent, or
/// an expression at save time. `Err(())`: reported.
fn number(
    fields: &Fields<'_>,
    key: &str,
    mode: Mode,
    report: &mut ValidationReport,
) -> Result<Option<f64>, ()> {
    let Some(value) = fields.get(key) else {
        return Ok(None);
    };
    if is_expression(value) {
        if mode == Mode::Run {
            unevaluated(fields, key, report);
            return Err(());
        }
        return Ok(None);
    }
    let before = report.errors().count();
    let parsed = fields.number(key, report);
    if report.errors().count() > before {
        return Err(());
    }
    Ok(parsed)
}

/// A duration in minutes (possibly fractional), as whole seconds.
fn minutes(
    fields: &Fields<'_>,
    key: &str,
    mode: Mode,
    report: &mut ValidationReport,
) -> Result<Option<u64>, ()> {
    let Some(m) = number(fields, key, mode, report)? else {
        return Ok(None);
    };
    seconds(fields, key, m * 60.0, "minutes", report).map(Some)
}

fn seconds(
    fields: &Fields<'_>,
    key: &str,
    secs: f64,
    unit: &str,
    report: &mut ValidationReport,
) -> Result<u64, ()> {
    if !(0.0..=MAX_SECS as f64).contains(&secs) {
        report.push(Problem::error(
            fields.at(key),
            format!(
                "{key} must be between 0 and {} {unit}",
                if unit == "hours" {
                    MAX_SECS / 3600
                } else {
                    MAX_SECS / 60
                }
            ),
        ));
        return Err(());
    }
    // Whole seconds: the engine's waits count in seconds.
    Ok(secs.round() as u64)
}

fn thresholds(
    config: &Fields<'_>,
    mode: Mode,
    report: &mut ValidationReport,
) -> Option<StageThresholds> {
    let Some(thresholds) = config.object("scoreThresholds", report) else {
        if config.has("scoreThresholds") {
            return None;
        }
        // Orca's KayentaCanaryContext default.
        return Some(StageThresholds {
            pass: Some(75.0),
            marginal: Some(50.0),
        });
    };
    let mut read = |key: &str| match number(&thresholds, key, mode, report) {
        Ok(Some(v)) if !(0.0..=100.0).contains(&v) => {
            report.push(Problem::error(
                thresholds.at(key),
                format!("scoreThresholds.{key} must be a score between 0 and 100, not {v}"),
            ));
            Err(())
        }
        other => other,
    };
    let marginal = read("marginal");
    let pass = read("pass");
    let (Ok(marginal), Ok(pass)) = (marginal, pass) else {
        return None;
    };
    if let (Some(m), Some(p)) = (marginal, pass)
        && p < m
    {
        report.push(
            Problem::error(
                thresholds.at("pass"),
                format!("the pass score ({p}) is below the marginal score ({m})"),
            )
            .with_hint("a judgement at or below marginal stops the canary; pass must be at least marginal, e.g. {\"marginal\": \"75\", \"pass\": \"90\"}"),
        );
        return None;
    }
    if pass.is_none() && !thresholds.has("pass") {
        report.push(Problem::warning(
            thresholds.at("pass"),
            "no pass score: the canary passes whenever its last score is above marginal",
        ));
    }
    Some(StageThresholds { pass, marginal })
}

type ScopeParts = (
    Vec<Scope>,
    Option<jiff::Timestamp>,
    Option<jiff::Timestamp>,
    u64,
);

fn scopes(
    config: &Fields<'_>,
    mode: Mode,
    automatic: bool,
    report: &mut ValidationReport,
) -> ScopeParts {
    let items = config.objects("scopes", "a canary scope", report);
    if items.is_empty() {
        report.push(
            Problem::error(
                config.at("scopes"),
                "canaryConfig needs at least one scope naming the control and the experiment",
            )
            .with_hint("e.g. [{\"scopeName\": \"default\", \"controlScope\": \"app-baseline\", \"experimentScope\": \"app-canary\"}]"),
        );
        return (Vec::new(), None, None, DEFAULT_STEP_SECS);
    }
    if items.len() > MAX_SCOPES {
        report.push(Problem::error(
            config.at("scopes"),
            format!("at most {MAX_SCOPES} scopes, not {}", items.len()),
        ));
    }
    let mut scopes: Vec<Scope> = Vec::new();
    let (mut start, mut end, mut step) = (None, None, DEFAULT_STEP_SECS);
    for (i, scope) in &items {
        let name = text(scope, "scopeName", mode, report).unwrap_or_else(|| "default".to_owned());
        if scopes.iter().any(|s| s.name == name) {
            report.push(Problem::error(
                scope.at("scopeName"),
                format!("scope name '{name}' is used twice; give each scope its own scopeName"),
            ));
        }
        let (control, experiment) = if automatic {
            (
                Some(text(scope, "controlScope", mode, report).unwrap_or_default()),
                Some(text(scope, "experimentScope", mode, report).unwrap_or_default()),
            )
        } else {
            let control =
                scope.required_string("controlScope", "the control (baseline) scope", report);
            let experiment =
                scope.required_string("experimentScope", "the experiment (canary) scope", report);
            (
                control.and_then(|_| text(scope, "controlScope", mode, report)),
                experiment.and_then(|_| text(scope, "experimentScope", mode, report)),
            )
        };
        let control_location = text(scope, "controlLocation", mode, report).unwrap_or_default();
        let experiment_location =
            text(scope, "experimentLocation", mode, report).unwrap_or_default();
        let extended = extended_params(scope, report);
        if *i == 0 {
            // Only scope 0 supplies the window and the step for every scope (Orca).
            start = timestamp(scope, "startTimeIso", mode, report);
            end = timestamp(scope, "endTimeIso", mode, report);
            if let Ok(Some(s)) = number(scope, "step", mode, report) {
                if !(1.0..=86_400.0).contains(&s) {
                    report.push(Problem::error(
                        scope.at("step"),
                        format!("step must be between 1 and 86400 seconds, not {s}"),
                    ));
                } else {
                    step = s.round() as u64;
                }
            }
        } else {
            // Orca reads the window from scope 0 only; elsewhere it is kept but unused.
            for key in ["startTimeIso", "endTimeIso"] {
                scope.string(key, report);
            }
        }
        if let (Some(control), Some(experiment)) = (control, experiment) {
            scopes.push(Scope {
                name,
                control,
                control_location,
                experiment,
                experiment_location,
                extended,
            });
        }
    }
    (scopes, start, end, step)
}

fn extended_params(scope: &Fields<'_>, report: &mut ValidationReport) -> BTreeMap<String, String> {
    let Some(params) = scope.object("extendedScopeParams", report) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (key, value) in params.map {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            other => {
                report.push(Problem::error(
                    params.at(key),
                    format!(
                        "an extended scope parameter must be a string, not {}",
                        type_name(other)
                    ),
                ));
                continue;
            }
        };
        out.insert(key.clone(), text);
    }
    out
}

fn timestamp(
    scope: &Fields<'_>,
    key: &str,
    mode: Mode,
    report: &mut ValidationReport,
) -> Option<jiff::Timestamp> {
    let value = text(scope, key, mode, report)?;
    if value.contains("${") {
        return None;
    }
    match value.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t),
        Err(e) => {
            report.push(
                Problem::error(
                    scope.at(key),
                    format!("{key} '{value}' is not an ISO-8601 instant: {e}"),
                )
                .with_hint("e.g. \"2024-05-01T12:00:00Z\""),
            );
            None
        }
    }
}

/// An ISO-8601 duration (`PT1H`, `PT0H5M`, `P1D`; days as 24 hours like Java's
/// `Duration.parse`) in seconds; `None` when it is not one.
pub(crate) fn iso_duration_secs(duration: &str) -> Option<f64> {
    let duration = duration.trim();
    if !duration.starts_with(['P', 'p']) {
        return None;
    }
    duration
        .parse::<jiff::Span>()
        .ok()?
        .total(jiff::SpanTotal::from(jiff::Unit::Second).days_are_24_hours())
        .ok()
        .filter(|secs| secs.is_finite())
}

/// `lifetimeDuration` (ISO-8601, e.g. `PT0H5M`) or the legacy `lifetimeHours`, as
/// seconds.
fn lifetime(
    config: &Fields<'_>,
    mode: Mode,
    report: &mut ValidationReport,
) -> Result<Option<u64>, ()> {
    if let Some(duration) = text(config, "lifetimeDuration", mode, report) {
        if duration.contains("${") {
            return Ok(None);
        }
        return match iso_duration_secs(&duration) {
            Some(secs) => seconds(config, "lifetimeDuration", secs, "minutes", report).map(Some),
            None => {
                report.push(
                    Problem::error(
                        config.at("lifetimeDuration"),
                        format!("lifetimeDuration '{duration}' is not an ISO-8601 duration"),
                    )
                    .with_hint("e.g. \"PT1H\", \"PT0H30M\" or \"PT90S\""),
                );
                Err(())
            }
        };
    }
    match number(config, "lifetimeHours", mode, report)? {
        Some(hours) => seconds(config, "lifetimeHours", hours * 3600.0, "hours", report).map(Some),
        None => Ok(None),
    }
}

fn timing(
    config: &Fields<'_>,
    start: Option<jiff::Timestamp>,
    end: Option<jiff::Timestamp>,
    mode: Mode,
    report: &mut ValidationReport,
) -> Option<CanaryTiming> {
    let begin = minutes(config, "beginCanaryAnalysisAfterMins", mode, report);
    let interval = minutes(config, "canaryAnalysisIntervalMins", mode, report);
    let lookback = minutes(config, "lookbackMins", mode, report);
    let offset = minutes(config, "baselineAnalysisOffsetInMins", mode, report);
    let lifetime = lifetime(config, mode, report);
    let scope_path = config.at("scopes").index(0);
    let has_end_time = end.is_some() || has_scope0(config, "endTimeIso");
    let lifetime_secs = if has_end_time {
        let (Some(start), Some(end)) = (start, end) else {
            if !has_scope0(config, "startTimeIso") {
                report.push(
                    Problem::error(
                        scope_path.key("startTimeIso"),
                        "a retrospective analysis (scopes[0].endTimeIso set) needs scopes[0].startTimeIso too",
                    )
                    .with_hint("set the start of the window to analyse, e.g. \"2024-05-01T12:00:00Z\""),
                );
            }
            return None;
        };
        let span = end.as_second().saturating_sub(start.as_second());
        if span <= 0 {
            report.push(Problem::error(
                scope_path.key("endTimeIso"),
                format!("scopes[0].endTimeIso ({end}) must be after startTimeIso ({start})"),
            ));
            return None;
        }
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        // Orca counts the window in whole minutes; keep that unless the settings use
        // fractions of a minute.
        let whole_minutes = [&interval, &begin, &lookback, &offset]
            .iter()
            .all(|v| matches!(v, Ok(None)) || matches!(v, Ok(Some(s)) if s % 60 == 0));
        if whole_minutes && span >= 60 {
            span / 60 * 60
        } else {
            span
        }
    } else {
        match lifetime {
            Ok(Some(secs)) => secs,
            Ok(None) if config.has("lifetimeDuration") || config.has("lifetimeHours") => {
                return None;
            }
            Ok(None) => {
                report.push(
                    Problem::error(
                        config.at("lifetimeDuration"),
                        "canaryConfig needs lifetimeDuration (how long to analyse in real time) or scopes[0].endTimeIso (a retrospective analysis)",
                    )
                    .with_hint("e.g. \"lifetimeDuration\": \"PT1H\""),
                );
                return None;
            }
            Err(()) => return None,
        }
    };
    let (Ok(begin), Ok(interval), Ok(lookback), Ok(offset)) = (begin, interval, lookback, offset)
    else {
        return None;
    };
    let timing = CanaryTiming {
        lifetime_secs,
        interval_secs: interval,
        begin_after_secs: begin.unwrap_or(0),
        lookback_secs: lookback.unwrap_or(0),
        baseline_offset_secs: offset.unwrap_or(0),
        has_end_time,
    };
    let count = timing.judgement_count();
    if count == 0 {
        report.push(Problem::error(
            config.at("lifetimeDuration"),
            "the analysis is shorter than one second, so there is nothing to judge",
        ));
        return None;
    }
    if count > MAX_JUDGEMENTS {
        report.push(
            Problem::error(
                config.at("canaryAnalysisIntervalMins"),
                format!("the analysis would make {count} judgements; at most {MAX_JUDGEMENTS}"),
            )
            .with_hint("use a longer canaryAnalysisIntervalMins or a shorter lifetime"),
        );
        return None;
    }
    Some(timing)
}

fn has_scope0(config: &Fields<'_>, key: &str) -> bool {
    config
        .get("scopes")
        .and_then(|s| s.get(0))
        .and_then(|s| s.get(key))
        .is_some_and(|v| !gennaker_core::is_blank(v))
}
