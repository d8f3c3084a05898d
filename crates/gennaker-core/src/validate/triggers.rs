//! `triggers[]`: known types and each type's required fields.

use std::collections::HashSet;

use super::fields::Fields;
use crate::problems::{Problem, ValidationReport};
use crate::suggest;

/// Trigger types Echo and Deck know (spinnaker-model §5).
pub const TRIGGER_TYPES: &[&str] = &[
    "cron",
    "webhook",
    "git",
    "docker",
    "jenkins",
    "travis",
    "wercker",
    "concourse",
    "gitlab-ci",
    "pipeline",
    "pubsub",
    "artifactory",
    "nexus",
    "helm",
    "plugin",
    "cdevents",
    "manual",
];

const GIT_SOURCES: &[&str] = &["github", "gitlab", "bitbucket", "stash"];
const PIPELINE_STATUSES: &[&str] = &["successful", "failed", "canceled", "suspended"];
const PUBSUB_SYSTEMS: &[&str] = &["google", "amazon", "kafka"];

pub(super) fn check_triggers(
    pipeline: &Fields<'_>,
    artifact_ids: &HashSet<String>,
    report: &mut ValidationReport,
) {
    for (_, trigger) in pipeline.objects("triggers", "a trigger", report) {
        trigger.boolean("enabled", report);
        trigger.string("runAsUser", report);
        for (i, id) in trigger.strings("expectedArtifactIds", report) {
            if !artifact_ids.contains(id) {
                report.push(
                    Problem::error(
                        trigger.at("expectedArtifactIds").index(i),
                        format!(
                            "the trigger expects artifact '{id}' but expectedArtifacts has no such id{}",
                            suggest::did_you_mean(id, artifact_ids.iter().map(String::as_str))
                        ),
                    )
                    .with_hint("add it to the pipeline's expectedArtifacts or remove it here"),
                );
            }
        }
        let Some(kind) = trigger.required_string("type", "the trigger type", report) else {
            continue;
        };
        if !TRIGGER_TYPES.contains(&kind) {
            report.push(
                Problem::error(
                    trigger.at("type"),
                    format!(
                        "unknown trigger type '{kind}'{}",
                        suggest::did_you_mean(kind, TRIGGER_TYPES.iter().copied())
                    ),
                )
                .with_hint(format!("trigger types: {}", TRIGGER_TYPES.join(", "))),
            );
            continue;
        }
        check_trigger_fields(kind, &trigger, report);
    }
}

fn check_trigger_fields(kind: &str, trigger: &Fields<'_>, report: &mut ValidationReport) {
    match kind {
        "cron" => check_cron(trigger, report),
        "webhook" => {
            if trigger.string("source", report).is_none() && !trigger.has("source") {
                report.push(
                    Problem::warning(
                        trigger.at("source"),
                        "the webhook trigger has no source, so no webhook can match it",
                    )
                    .with_hint(
                        "set \"source\": \"my-service\" and POST to /webhooks/webhook/my-service",
                    ),
                );
            }
            trigger.object("payloadConstraints", report);
        }
        "git" => {
            if trigger.has("source") {
                trigger.one_of("source", GIT_SOURCES, report);
            } else {
                trigger.required_string(
                    "source",
                    "the git host (github, gitlab, bitbucket, stash)",
                    report,
                );
            }
            trigger.required_string("project", "the repository owner or project", report);
            trigger.required_string("slug", "the repository name", report);
            trigger.string("branch", report);
            trigger.string("secret", report);
            trigger.strings("events", report);
        }
        "docker" => {
            trigger.required_string("account", "the registry account", report);
            trigger.required_string("repository", "the image repository", report);
            for key in ["organization", "registry", "tag"] {
                trigger.string(key, report);
            }
        }
        "jenkins" | "travis" | "wercker" | "concourse" | "gitlab-ci" => {
            trigger.required_string("master", "the CI server ('master')", report);
            trigger.required_string("job", "the CI job", report);
            trigger.string("propertyFile", report);
        }
        "pipeline" => {
            trigger.required_string(
                "application",
                "the application of the upstream pipeline",
                report,
            );
            trigger.required_string("pipeline", "the id of the upstream pipeline", report);
            for (i, status) in trigger.strings("status", report) {
                if !PIPELINE_STATUSES.contains(&status) {
                    report.push(Problem::error(
                        trigger.at("status").index(i),
                        format!(
                            "pipeline status '{status}' is not one of {}{}",
                            PIPELINE_STATUSES.join(", "),
                            suggest::did_you_mean(status, PIPELINE_STATUSES.iter().copied())
                        ),
                    ));
                }
            }
        }
        "pubsub" => {
            if trigger.has("pubsubSystem") {
                trigger.one_of("pubsubSystem", PUBSUB_SYSTEMS, report);
            } else {
                trigger.required_string("pubsubSystem", "the pub/sub system", report);
            }
            trigger.required_string("subscriptionName", "the subscription", report);
        }
        "helm" => {
            trigger.required_string("account", "the Helm account", report);
            trigger.required_string("chart", "the chart", report);
        }
        _ => {}
    }
}

/// Presence and shape only: Quartz has 6 or 7 fields (seconds first); full parsing is
/// the trigger crate's job.
fn check_cron(trigger: &Fields<'_>, report: &mut ValidationReport) {
    let Some(expr) = trigger.required_string("cronExpression", "the cron expression", report)
    else {
        return;
    };
    let fields = expr.split_whitespace().count();
    if fields == 5 {
        report.push(
            Problem::error(
                trigger.at("cronExpression"),
                format!("cron expression '{expr}' has 5 fields (Unix cron); Spinnaker uses Quartz with seconds first"),
            )
            .with_hint(format!("try \"0 {expr}\" and use '?' for day-of-month or day-of-week")),
        );
    } else if !(6..=7).contains(&fields) {
        report.push(
            Problem::error(
                trigger.at("cronExpression"),
                format!("cron expression '{expr}' has {fields} fields; Quartz expects 6 or 7"),
            )
            .with_hint(
                "sec min hour day-of-month month day-of-week [year], e.g. \"0 0 12 ? * MON-FRI\"",
            ),
        );
    }
}
