//! The `kayentaCanary` stage, run by Gennaker's engine instead of Orca and Kayenta.
//!
//! As in Orca (`orca-kayenta`), the stage expands into synthetic stages when it starts:
//!
//! ```text
//! kayentaCanary                       task aggregateCanaryResults
//!  ├─ before: deployCanaryServerGroups (with deployments; see below)
//!  ├─ before: runCanaryIntervals
//!  │    ├─ wait "Warmup Wait"          (beginCanaryAnalysisAfterMins > 0, real time)
//!  │    ├─ wait "Interval Wait #i"     (real time only)
//!  │    └─ runCanary "Run Canary #i"   task runCanary: fetch both sides, judge
//!  └─ after and on failure: cleanupCanaryClusters (with deployments)
//! ```
//!
//! With `deployments` (Kayenta's "Real Time (Automatic)", see [`deployments`]) the
//! stage deploys a control (production's version) and an experiment next to
//! production first, analyses them (every scope is overwritten with the first pair's
//! groups) and removes them after success and after failure. Those two stage types
//! belong to the deployment layer and are planned here by name.
//!
//! Each `runCanary` fetches every metric of the canary config for the control and the
//! experiment through the metric source of `metricsAccountName`, pairs the series by
//! tags as Kayenta's mixer does, and judges them with [`crate::judge`]. A score at or
//! below the marginal threshold ends the analysis at once. `aggregateCanaryResults`
//! then judges the last score against the thresholds with Orca's messages.
//!
//! Departures from Orca, deliberate:
//! * the judgement that stops the analysis early is TERMINAL even with
//!   `continuePipeline`: Orca's FAILED_CONTINUE there would let the next interval run
//!   (FAILED_CONTINUE lets what follows start), so the analysis would go on after the
//!   canary failed. `runCanaryIntervals` and `kayentaCanary` carry the stage's
//!   `continuePipeline`/`failPipeline`, so the stage itself ends FAILED_CONTINUE (or
//!   STOPPED) and the pipeline goes on as configured;
//! * times are counted in seconds, so fractional minutes (`"0.25"`) work (see
//!   [`crate::aggregate::CanaryTiming`]);
//! * a control or experiment cluster that is the production cluster is refused at
//!   save: its highlander deploy and cleanup would destroy production.

mod aggregate_task;
mod authz;
pub mod deployments;
mod intervals;
mod mixer;
mod request;
mod run;
mod settings;

use std::sync::Arc;

use gennaker_core::{
    CheckContext, Fields, JsonPath, Origin, StageTypeDescriptor, ValidationReport,
};
use gennaker_engine::{StageDefinition, StageExecution, StageRegistry, SyntheticSpec, TaskSpec};
use serde_json::{Map, Value};

pub(crate) use request::RunCanaryContext;

use crate::lookup::CanaryConfigLookup;
use crate::source::MetricSources;

/// The stage type users put in pipelines.
pub const KAYENTA_CANARY: &str = "kayentaCanary";
/// The synthetic stage holding the waits and judgements.
pub const RUN_CANARY_INTERVALS: &str = "runCanaryIntervals";
/// The synthetic stage of one judgement.
pub const RUN_CANARY: &str = "runCanary";
/// Orca's name prefix of the judgement stages; the number after `#` orders them.
pub const RUN_CANARY_PREFIX: &str = "Run Canary #";

/// Registers `kayentaCanary` and its synthetic stages and tasks: metrics come from
/// `sources` (by `metricsAccountName`), canary configs from `configs`.
pub fn register(
    registry: &mut StageRegistry,
    sources: MetricSources,
    configs: Arc<dyn CanaryConfigLookup>,
) {
    let accounts: Vec<String> = sources.names().map(str::to_owned).collect();
    registry
        .stage(KayentaCanaryStage { accounts })
        .stage(intervals::RunCanaryIntervalsStage)
        .stage(run::RunCanaryStage)
        .task(aggregate_task::AggregateCanaryResultsTask)
        .task(intervals::CheckCanaryIntervalsTask)
        .task(run::RunCanaryTask::new(sources, configs));
}

/// `kayentaCanary`: plans `runCanaryIntervals`, then aggregates its scores.
struct KayentaCanaryStage {
    /// The configured metrics accounts, for the save-time check of
    /// `metricsAccountName` (empty: not known, e.g. offline, and not checked).
    accounts: Vec<String>,
}

impl StageDefinition for KayentaCanaryStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            KAYENTA_CANARY,
            Origin::Kayenta,
            "Canary Analysis",
            "compare a canary with its baseline at intervals with Kayenta's judge, reading metrics from the server's metric sources",
        )
    }

    fn check(&self, stage: &Fields<'_>, context: &CheckContext<'_>, report: &mut ValidationReport) {
        settings::read(stage, &self.accounts, settings::Mode::Save, report);
        deployments::check(stage, context.cloud_providers, report);
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new(aggregate_task::AGGREGATE_TASK)]
    }

    /// Only settings that can run plan the intervals; otherwise the aggregate task
    /// runs at once and fails with what is wrong.
    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        if read_run_settings(&stage.context).is_err() {
            return Vec::new();
        }
        let mut context = Map::new();
        for key in ["canaryConfig", "continuePipeline", "failPipeline"] {
            if let Some(value) = stage.context.get(key) {
                context.insert(key.to_owned(), value.clone());
            }
        }
        let mut stages = Vec::new();
        if deployments::automatic(&stage.context) {
            stages.push(SyntheticSpec {
                stage_type: deployments::DEPLOY_CANARY_SERVER_GROUPS.to_owned(),
                name: "Deploy Canary Server Groups".to_owned(),
                context: deployments_context(stage),
                after: Vec::new(),
            });
            // The scopes come from what was just deployed (its output, nearest first).
            context.insert(
                deployments::DEPLOYED_SCOPES.to_owned(),
                Value::String(format!("${{{}}}", deployments::DEPLOYED_SERVER_GROUPS)),
            );
        }
        let after = if stages.is_empty() {
            Vec::new()
        } else {
            vec![0]
        };
        stages.push(SyntheticSpec {
            stage_type: RUN_CANARY_INTERVALS.to_owned(),
            name: RUN_CANARY_INTERVALS.to_owned(),
            context,
            after,
        });
        stages
    }

    fn after_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        cleanup(stage)
    }

    /// Orca's on-failure stages: the groups go whether the canary passed or not.
    fn on_failure_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        cleanup(stage)
    }
}

/// The context of the planned deployment stages: the stage's `deployments`.
fn deployments_context(stage: &StageExecution) -> Map<String, Value> {
    let mut context = Map::new();
    if let Some(deployments) = stage.context.get("deployments") {
        context.insert("deployments".to_owned(), deployments.clone());
    }
    context
}

/// `cleanupCanaryClusters`, when the stage deploys its own groups.
fn cleanup(stage: &StageExecution) -> Vec<SyntheticSpec> {
    if !deployments::automatic(&stage.context) {
        return Vec::new();
    }
    vec![SyntheticSpec {
        stage_type: deployments::CLEANUP_CANARY_CLUSTERS.to_owned(),
        name: "Cleanup Canary Clusters".to_owned(),
        context: deployments_context(stage),
        after: Vec::new(),
    }]
}

/// The settings of an evaluated stage context, or every problem in one message.
pub(crate) fn read_run_settings(
    context: &Map<String, Value>,
) -> Result<settings::Settings, String> {
    let mut report = ValidationReport::default();
    let fields = Fields::new(context, JsonPath::root());
    let read = settings::read(&fields, &[], settings::Mode::Run, &mut report);
    match read {
        Some(settings) if report.is_valid() => Ok(settings),
        _ => {
            let problems: Vec<String> = report
                .errors()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            Err(format!(
                "the canary stage's settings cannot run: {}",
                if problems.is_empty() {
                    "they are incomplete".to_owned()
                } else {
                    problems.join("; ")
                }
            ))
        }
    }
}
