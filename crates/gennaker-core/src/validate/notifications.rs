//! `notifications[]` on a pipeline or a stage (spinnaker-model §6).

use super::fields::Fields;
use crate::problems::{Problem, ValidationReport};
use crate::suggest;

/// Notification types Deck offers (plus HipChat, which survives in old pipelines).
pub const NOTIFICATION_TYPES: &[&str] = &[
    "email",
    "slack",
    "sms",
    "googlechat",
    "microsoftteams",
    "bearychat",
    "githubStatus",
    "pubsub",
    "cdevents",
    "hipchat",
];

/// Events a notification can be sent on.
pub const NOTIFICATION_EVENTS: &[&str] = &[
    "pipeline.starting",
    "pipeline.complete",
    "pipeline.failed",
    "stage.starting",
    "stage.complete",
    "stage.failed",
    "orchestration.starting",
    "orchestration.complete",
    "orchestration.failed",
    "task.starting",
    "task.complete",
    "task.failed",
    "manualJudgment",
    "manualJudgmentContinue",
    "manualJudgmentStop",
];

/// Types addressed by an `address` (the others use a publisher or the repository).
const ADDRESSED: &[&str] = &[
    "email",
    "slack",
    "sms",
    "googlechat",
    "microsoftteams",
    "bearychat",
    "hipchat",
];

/// Where the notifications hang.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Pipeline,
    Stage,
}

pub(super) fn check_notifications(owner: &Fields<'_>, level: Level, report: &mut ValidationReport) {
    for (_, notification) in owner.objects("notifications", "a notification", report) {
        notification.string("level", report);
        let kind = notification.required_string("type", "the notification type", report);
        if let Some(kind) = kind {
            if !NOTIFICATION_TYPES.contains(&kind) {
                report.push(
                    Problem::error(
                        notification.at("type"),
                        format!(
                            "unknown notification type '{kind}'{}",
                            suggest::did_you_mean(kind, NOTIFICATION_TYPES.iter().copied())
                        ),
                    )
                    .with_hint(format!(
                        "notification types: {}",
                        NOTIFICATION_TYPES.join(", ")
                    )),
                );
            } else if kind == "hipchat" {
                report.push(Problem::warning(
                    notification.at("type"),
                    "HipChat no longer exists; this notification is never sent",
                ));
            }
            if ADDRESSED.contains(&kind) {
                notification.required_string(
                    "address",
                    "the address (channel, email or number)",
                    report,
                );
            } else {
                notification.string("address", report);
            }
        } else {
            notification.string("address", report);
        }
        let events = notification.strings("when", report);
        if events.is_empty() && !notification.has("when") {
            report.push(
                Problem::warning(
                    notification.at("when"),
                    "the notification has no 'when' events, so it is never sent",
                )
                .with_hint(match level {
                    Level::Pipeline => "e.g. [\"pipeline.failed\"]",
                    Level::Stage => "e.g. [\"stage.failed\"]",
                }),
            );
        }
        for (i, event) in events {
            if !NOTIFICATION_EVENTS.contains(&event) {
                report.push(Problem::error(
                    notification.at("when").index(i),
                    format!(
                        "unknown notification event '{event}'{}",
                        suggest::did_you_mean(event, NOTIFICATION_EVENTS.iter().copied())
                    ),
                ));
            }
        }
    }
}
