//! `notifications[]` on a pipeline or a stage (spinnaker-model §6).

use super::fields::Fields;
use crate::problems::{Problem, ValidationReport};
use crate::suggest;

/// Notification types Deck offers (plus HipChat, which survives in old pipelines, and
/// Gennaker's `webhook`: a JSON POST of the event to `address`).
pub const NOTIFICATION_TYPES: &[&str] = &[
    "email",
    "webhook",
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

/// The types Gennaker sends; the others are kept (imports never fail) and skipped at
/// run time with the reason recorded in the execution's notifications.
pub const SENT_NOTIFICATION_TYPES: &[&str] = &["slack", "email", "webhook"];

/// Types addressed by an `address` (the others use a publisher or the repository).
const ADDRESSED: &[&str] = &[
    "email",
    "webhook",
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
            } else if !SENT_NOTIFICATION_TYPES.contains(&kind) {
                report.push(
                    Problem::warning(
                        notification.at("type"),
                        format!(
                            "Gennaker cannot send '{kind}' notifications; it is kept, and skipped at run time with the reason shown in the execution's notifications"
                        ),
                    )
                    .with_hint(format!(
                        "Gennaker sends {}",
                        SENT_NOTIFICATION_TYPES.join(", ")
                    )),
                );
            }
            if kind == "webhook"
                && let Some(address) = notification.get("address").and_then(|v| v.as_str())
                && !address.contains("${")
                && !(address.starts_with("https://") || address.starts_with("http://"))
            {
                report.push(Problem::error(
                    notification.at("address"),
                    format!(
                        "a webhook notification's address must be an http(s) URL, not '{address}'"
                    ),
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
        check_messages(&notification, report);
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

/// `message`: `{"<event>": {"text": "…"}}`, the text added to what is sent on that event.
fn check_messages(notification: &Fields<'_>, report: &mut ValidationReport) {
    // Checked for its type by `object`; read raw to walk its keys.
    if notification.object("message", report).is_none() {
        return;
    }
    let Some(serde_json::Value::Object(messages)) = notification.get("message") else {
        return;
    };
    for (event, message) in messages {
        let path = notification.at("message").key(event);
        if !NOTIFICATION_EVENTS.contains(&event.as_str()) {
            report.push(Problem::error(
                path.clone(),
                format!(
                    "message for unknown notification event '{event}'{}",
                    suggest::did_you_mean(event, NOTIFICATION_EVENTS.iter().copied())
                ),
            ));
        }
        match message.get("text") {
            Some(serde_json::Value::String(_)) | None => {}
            Some(other) => report.push(Problem::error(
                path.key("text"),
                format!(
                    "the message text must be a string, not {}",
                    super::fields::type_name(other)
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::stage_types::StageCatalog;
    use crate::validate::validate_pipeline_value;

    fn problems(notifications: serde_json::Value) -> Vec<(String, bool, String)> {
        let pipeline = json!({"application": "app", "name": "p",
                              "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 1}],
                              "notifications": notifications});
        let report = validate_pipeline_value(&pipeline, &StageCatalog::spinnaker());
        report
            .errors()
            .map(|p| (p.path.clone(), true, p.message.clone()))
            .chain(
                report
                    .warnings()
                    .map(|p| (p.path.clone(), false, p.message.clone())),
            )
            .filter(|(path, _, _)| path.starts_with("$.notifications"))
            .collect()
    }

    #[test]
    fn sent_types_pass_and_others_warn_that_they_are_skipped() {
        let found = problems(json!([
            {"type": "slack", "address": "deploys", "when": ["pipeline.failed"],
             "message": {"pipeline.failed": {"text": "${execution.name} failed"}}},
            {"type": "email", "address": "ops@example.com", "when": ["pipeline.complete"]},
            {"type": "webhook", "address": "https://hooks.example.com/x", "when": ["stage.failed"]},
            {"type": "sms", "address": "+15550100", "when": ["pipeline.failed"]}
        ]));
        assert_eq!(found.len(), 1, "{found:?}");
        let (path, error, message) = &found[0];
        assert_eq!(path, "$.notifications[3].type");
        assert!(!error);
        assert!(message.contains("cannot send 'sms'"), "{message}");
    }

    #[test]
    fn unknown_events_missing_addresses_and_bad_messages_are_errors_at_their_paths() {
        let found = problems(json!([
            {"type": "webhook", "when": ["pipeline.finished"]},
            {"type": "webhook", "address": "ftp://x", "when": ["pipeline.failed"],
             "message": {"pipeline.fail": {"text": "x"}, "pipeline.failed": {"text": 3}}}
        ]));
        let errors: Vec<&str> = found
            .iter()
            .filter(|(_, error, _)| *error)
            .map(|(path, _, _)| path.as_str())
            .collect();
        assert_eq!(
            errors,
            [
                "$.notifications[0].address",
                "$.notifications[0].when[0]",
                "$.notifications[1].address",
                "$.notifications[1].message['pipeline.fail']",
                "$.notifications[1].message['pipeline.failed'].text",
            ],
            "{found:?}"
        );
    }
}
