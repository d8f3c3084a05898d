//! The `webhook` stage's save-time rules: what `gennaker pipeline validate` and a save
//! report about its fields.

use gennaker_core::redact::redact_url_passwords;
use gennaker_core::{Fields, Problem, ValidationReport};

use super::request::HTTP_METHODS;

/// Where the status URL comes from when the stage waits for completion.
const STATUS_URL_RESOLUTIONS: &[&str] = &["getMethod", "locationHeader", "webhookResponse"];

/// The `webhook` stage's save-time rules (preconfigured webhooks check their merged
/// fields with them too).
pub(super) fn check_webhook(stage: &Fields<'_>, report: &mut ValidationReport) {
    if let Some(url) = stage.required_string("url", "the URL to call", report)
        && !url.contains("${")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        report.push(
            Problem::error(
                stage.at("url"),
                format!(
                    "url '{}' is not an http:// or https:// URL",
                    redact_url_passwords(url)
                ),
            )
            .with_hint("webhooks only call http and https URLs"),
        );
    }
    if let Some(method) = stage.string("method", report)
        && !method.contains("${")
        && !HTTP_METHODS.contains(&method.to_ascii_uppercase().as_str())
    {
        report.push(Problem::error(
            stage.at("method"),
            format!(
                "method '{method}' is not an HTTP method ({})",
                HTTP_METHODS.join(", ")
            ),
        ));
    }
    stage.object("customHeaders", report);
    for key in [
        "statusUrlJsonPath",
        "statusJsonPath",
        "progressJsonPath",
        "successStatuses",
        "canceledStatuses",
        "terminalStatuses",
        "cancelEndpoint",
        "cancelMethod",
    ] {
        stage.string(key, report);
    }
    for key in ["failFastStatusCodes", "retryStatusCodes"] {
        if let Some(codes) = stage.array(key, report) {
            for (i, code) in codes.iter().enumerate() {
                let ok = gennaker_core::lenient::value_as_u64(code)
                    .is_some_and(|c| (100..=599).contains(&c));
                if !ok {
                    report.push(Problem::error(
                        stage.at(key).index(i),
                        format!("{code} is not an HTTP status code"),
                    ));
                }
            }
        }
    }
    if stage.boolean("waitForCompletion", report) == Some(true) {
        match stage.one_of("statusUrlResolution", STATUS_URL_RESOLUTIONS, report) {
            None if !stage.has("statusUrlResolution") => report.push(
                Problem::error(
                    stage.at("statusUrlResolution"),
                    "waitForCompletion is on but statusUrlResolution is missing",
                )
                .with_hint("use getMethod (poll the same URL), locationHeader or webhookResponse"),
            ),
            Some("webhookResponse") if !stage.has("statusUrlJsonPath") => report.push(Problem::error(
                stage.at("statusUrlJsonPath"),
                "statusUrlResolution webhookResponse needs statusUrlJsonPath (where the status URL is in the response)",
            )),
            _ => {}
        }
        if !stage.has("statusJsonPath") {
            report.push(
                Problem::error(
                    stage.at("statusJsonPath"),
                    "waitForCompletion is on but statusJsonPath is missing",
                )
                .with_hint("the JSON path of the status in the polled response, e.g. \"$.status\""),
            );
        }
    }
}
