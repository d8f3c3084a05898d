//! How the UI writes times, durations, failures and URL parts.

use gennaker_core::execution::{Execution, ExecutionStatus, StageExecution};

/// Milliseconds since the epoch as `2026-12-05 02:10:32 UTC`.
pub(crate) fn time(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Milliseconds as `850ms`, `12s`, `3m04s`, `1h02m`.
pub(crate) fn duration(millis: i64) -> String {
    let millis = millis.max(0);
    let seconds = millis / 1000;
    match seconds {
        0 => format!("{millis}ms"),
        1..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// How long something ran: start to end, or start to `now` while it runs; empty
/// before it started.
pub(crate) fn elapsed(start: Option<i64>, end: Option<i64>, now: i64) -> String {
    match (start, end) {
        (Some(start), Some(end)) => duration(end - start),
        (Some(start), None) => duration(now - start),
        _ => String::new(),
    }
}

/// A URL query value or path segment, percent-encoded (everything but letters, digits
/// and `-_.~`, so it is safe in either place).
pub(crate) fn url_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, COMPONENT).to_string()
}

/// What is encoded: everything but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The error a failed stage recorded (`context.exception.details.errors`, or `error`),
/// verbatim.
pub(crate) fn stage_error(stage: &StageExecution) -> Option<String> {
    stage
        .context
        .get("exception")
        .and_then(gennaker_core::exception_error)
}

/// Why the execution did not succeed, in one line: who canceled it and why, or the
/// first failed top-level stage with the error it (or one of its synthetic stages)
/// recorded.
pub(crate) fn failure_reason(execution: &Execution) -> Option<String> {
    if execution.status == ExecutionStatus::Canceled {
        let by = execution.canceled_by.as_deref().unwrap_or("someone");
        return Some(match &execution.cancellation_reason {
            Some(reason) => format!("Canceled by {by}: {reason}"),
            None => format!("Canceled by {by}"),
        });
    }
    let failed = |s: &StageExecution| {
        matches!(
            s.status,
            ExecutionStatus::Terminal | ExecutionStatus::Stopped
        )
    };
    let stage = execution.top_level_stages().find(|s| failed(s))?;
    let error = stage_error(stage).or_else(|| {
        execution
            .stages
            .iter()
            .filter(|s| s.parent_stage_id.as_deref() == Some(stage.id.as_str()))
            .find_map(stage_error)
    });
    Some(match error {
        Some(error) => format!("Stage '{}' failed: {error}", stage.name),
        None => format!("Stage '{}' ended {}", stage.name, stage.status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_400), "12s");
        assert_eq!(duration(184_000), "3m04s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(elapsed(Some(1000), None, 3000), "2s");
        assert_eq!(elapsed(None, None, 3000), "");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(url_component("/a b?c=d&e"), "%2Fa%20b%3Fc%3Dd%26e");
    }
}
