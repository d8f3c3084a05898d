//! An execution as the client shows it: the fields of the server's execution JSON that
//! people look at, the stage tree, and the live updates `execution watch` applies.

use serde::Deserialize;
use serde_json::Value;

use gennaker_core::ExecutionStatus;

use crate::output::{self, details, table, text, time};
use crate::status::ReportedStatus;

/// An execution (Spinnaker's execution JSON; unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecutionView {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) application: String,
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) status: ReportedStatus,
    #[serde(default)]
    pub(crate) build_time: Option<i64>,
    #[serde(default)]
    pub(crate) start_time: Option<i64>,
    #[serde(default)]
    pub(crate) end_time: Option<i64>,
    #[serde(default)]
    pub(crate) canceled_by: Option<String>,
    #[serde(default)]
    pub(crate) cancellation_reason: Option<String>,
    #[serde(default)]
    pub(crate) trigger: Value,
    #[serde(default)]
    pub(crate) stages: Vec<StageView>,
}

/// One stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StageView {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) ref_id: String,
    #[serde(rename = "type", default)]
    pub(crate) stage_type: String,
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) status: ReportedStatus,
    #[serde(default)]
    pub(crate) start_time: Option<i64>,
    #[serde(default)]
    pub(crate) end_time: Option<i64>,
    #[serde(default)]
    pub(crate) context: Value,
    #[serde(default)]
    pub(crate) tasks: Vec<TaskView>,
    #[serde(default)]
    pub(crate) parent_stage_id: Option<String>,
    #[serde(default)]
    pub(crate) synthetic_stage_owner: Option<String>,
}

/// One task of a stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskView {
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) status: ReportedStatus,
    #[serde(default)]
    pub(crate) start_time: Option<i64>,
    #[serde(default)]
    pub(crate) end_time: Option<i64>,
}

/// A status change as the server streams it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusEvent {
    pub(crate) execution_id: String,
    #[serde(default)]
    pub(crate) stage_id: Option<String>,
    #[serde(default)]
    pub(crate) stage_name: Option<String>,
    #[serde(default)]
    pub(crate) task: Option<String>,
    pub(crate) status: ReportedStatus,
    pub(crate) time: i64,
}

/// What applying an event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The view is up to date.
    Updated,
    /// The event names a stage or task the view does not have yet (planned since it
    /// was read): read the execution again.
    Stale,
}

fn start_and_end(
    status: &ReportedStatus,
    time: i64,
    start_time: &mut Option<i64>,
    end_time: &mut Option<i64>,
) {
    match status {
        ReportedStatus::Known(ExecutionStatus::Running) => {
            start_time.get_or_insert(time);
            *end_time = None;
        }
        ReportedStatus::Known(ExecutionStatus::NotStarted) => {
            *start_time = None;
            *end_time = None;
        }
        s if s.is_complete() => {
            end_time.get_or_insert(time);
        }
        // Paused, buffered, … and statuses of newer servers leave the times alone.
        _ => {}
    }
}

impl ExecutionView {
    /// Applies a status change.
    pub(crate) fn apply(&mut self, event: &StatusEvent) -> Applied {
        let Some(stage_id) = &event.stage_id else {
            self.status.clone_from(&event.status);
            start_and_end(
                &event.status,
                event.time,
                &mut self.start_time,
                &mut self.end_time,
            );
            return Applied::Updated;
        };
        let Some(stage) = self.stages.iter_mut().find(|s| &s.id == stage_id) else {
            return Applied::Stale;
        };
        match &event.task {
            None => {
                stage.status.clone_from(&event.status);
                start_and_end(
                    &event.status,
                    event.time,
                    &mut stage.start_time,
                    &mut stage.end_time,
                );
                // A stage that starts has just planned its tasks and synthetic stages.
                if event.status.is(ExecutionStatus::Running) && stage.tasks.is_empty() {
                    return Applied::Stale;
                }
                Applied::Updated
            }
            Some(task_name) => {
                let Some(task) = stage.tasks.iter_mut().find(|t| &t.name == task_name) else {
                    return Applied::Stale;
                };
                task.status.clone_from(&event.status);
                start_and_end(
                    &event.status,
                    event.time,
                    &mut task.start_time,
                    &mut task.end_time,
                );
                Applied::Updated
            }
        }
    }

    /// Whether the execution has ended. A status this client does not know (from a
    /// newer server) counts as an end once the execution has an end time: the server
    /// has finished with it, and `watch` must not wait on it forever.
    pub(crate) fn has_ended(&self) -> bool {
        match &self.status {
            ReportedStatus::Known(status) => status.is_complete(),
            ReportedStatus::Unknown(_) => self.end_time.is_some(),
        }
    }

    /// The stages in display order with their depth: each top-level stage, then its
    /// synthetic stages (before ones first) indented under it.
    pub(crate) fn tree(&self) -> Vec<(usize, &StageView)> {
        let mut rows = Vec::with_capacity(self.stages.len());
        for stage in self.stages.iter().filter(|s| s.parent_stage_id.is_none()) {
            self.push_subtree(stage, 0, &mut rows);
        }
        // Stages whose parent is missing from the document still show, at the top level.
        for stage in &self.stages {
            if !rows.iter().any(|(_, s)| s.id == stage.id) {
                rows.push((0, stage));
            }
        }
        rows
    }

    fn push_subtree<'a>(
        &'a self,
        stage: &'a StageView,
        depth: usize,
        rows: &mut Vec<(usize, &'a StageView)>,
    ) {
        // A malformed document with a parent cycle must not recurse forever.
        if depth > 32 || rows.iter().any(|(_, s)| s.id == stage.id) {
            return;
        }
        rows.push((depth, stage));
        for owner in ["STAGE_BEFORE", "STAGE_AFTER"] {
            for child in self.stages.iter().filter(|s| {
                s.parent_stage_id.as_deref() == Some(stage.id.as_str())
                    && s.synthetic_stage_owner.as_deref().unwrap_or("STAGE_AFTER") == owner
            }) {
                self.push_subtree(child, depth + 1, rows);
            }
        }
    }

    /// `manual by alice`, `webhook`, …
    pub(crate) fn trigger_text(&self) -> String {
        let kind = self
            .trigger
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("-");
        match self.trigger.get("user").and_then(Value::as_str) {
            Some(user) if !user.is_empty() => format!("{kind} by {user}"),
            _ => kind.to_owned(),
        }
    }

    /// The first failed top-level stage and its error, if any.
    pub(crate) fn failure(&self) -> Option<(&StageView, Option<String>)> {
        let failed = |s: &&StageView| {
            s.status.is(ExecutionStatus::Terminal) || s.status.is(ExecutionStatus::Stopped)
        };
        let stage = self
            .stages
            .iter()
            .filter(|s| s.parent_stage_id.is_none())
            .find(failed)?;
        // The error may sit on the stage or on one of its synthetic stages.
        let error = stage_error(stage).or_else(|| {
            self.stages
                .iter()
                .filter(|s| s.parent_stage_id.as_deref() == Some(stage.id.as_str()))
                .find_map(stage_error)
        });
        Some((stage, error))
    }

    /// Why the execution did not succeed, in one line.
    pub(crate) fn failure_reason(&self) -> Option<String> {
        if self.status.is(ExecutionStatus::Canceled) {
            let by = self.canceled_by.as_deref().unwrap_or("someone");
            return Some(match &self.cancellation_reason {
                Some(reason) => format!("canceled by {by}: {reason}"),
                None => format!("canceled by {by}"),
            });
        }
        // An execution that failed on startup (an expected artifact could not be
        // bound) has no failed stage; the engine recorded why.
        let Some((stage, error)) = self.failure() else {
            return self
                .cancellation_reason
                .clone()
                .filter(|_| self.status.is(ExecutionStatus::Terminal));
        };
        Some(match error {
            Some(error) => format!("stage '{}' failed: {error}", stage.name),
            None => format!("stage '{}' ended {}", stage.name, stage.status),
        })
    }
}

/// The error a failed stage recorded (`context.exception.details.errors`).
pub(crate) fn stage_error(stage: &StageView) -> Option<String> {
    stage
        .context
        .get("exception")
        .and_then(gennaker_core::exception_error)
}

/// Milliseconds as `850ms`, `12s`, `3m04s`, `1h02m`.
pub(crate) fn duration(millis: i64) -> String {
    let millis = millis.max(0);
    let seconds = millis / 1000;
    match seconds {
        0 if millis < 1000 => format!("{millis}ms"),
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// How long something ran: start to end, or start to `now` while it runs.
pub(crate) fn elapsed(start: Option<i64>, end: Option<i64>, now: i64) -> String {
    match (start, end) {
        (Some(start), Some(end)) => duration(end - start),
        (Some(start), None) => duration(now - start),
        _ => "-".to_owned(),
    }
}

/// The task a stage is on: the running one, else the last one that ran.
fn current_task(stage: &StageView) -> String {
    stage
        .tasks
        .iter()
        .find(|t| t.status.is(ExecutionStatus::Running))
        .or_else(|| stage.tasks.iter().rev().find(|t| t.start_time.is_some()))
        .map_or_else(|| "-".to_owned(), |t| t.name.clone())
}

/// The stage tree as a table; errors of failed stages follow it.
pub(crate) fn stage_table(execution: &ExecutionView, now: i64) -> String {
    let rows = execution
        .tree()
        .into_iter()
        .map(|(depth, stage)| {
            [
                format!("{}{}", "  ".repeat(depth), text(Some(&stage.name))),
                text(Some(&stage.ref_id)),
                text(Some(&stage.stage_type)),
                stage.status.to_string(),
                elapsed(stage.start_time, stage.end_time, now),
                current_task(stage),
            ]
        })
        .collect();
    let mut rendered = table(["STAGE", "REF", "TYPE", "STATUS", "ELAPSED", "TASK"], rows);
    for (_, stage) in execution.tree() {
        if let Some(error) = stage_error(stage) {
            let line = format!("{}: {error}", stage.name);
            rendered.push('\n');
            rendered.push_str(&output::escape_controls(&line));
        }
    }
    rendered
}

/// One line: `<id>  app/pipeline  STATUS  elapsed`.
pub(crate) fn headline(execution: &ExecutionView, now: i64) -> String {
    format!(
        "Execution {}  {}/{}  {}  {}",
        execution.id,
        execution.application,
        execution.name,
        execution.status,
        elapsed(execution.start_time, execution.end_time, now)
    )
}

/// The summary and the stage tree, for `execution get`.
pub(crate) fn describe(execution: &ExecutionView, now: i64) -> String {
    let mut rows = vec![
        ("Execution", execution.id.clone()),
        ("Application", execution.application.clone()),
        ("Pipeline", execution.name.clone()),
        ("Status", execution.status.to_string()),
        ("Trigger", execution.trigger_text()),
        ("Created", time(execution.build_time)),
        ("Started", time(execution.start_time)),
        ("Ended", time(execution.end_time)),
        (
            "Elapsed",
            elapsed(execution.start_time, execution.end_time, now),
        ),
    ];
    if let Some(reason) = execution.failure_reason() {
        rows.push(("Reason", reason));
    }
    let parameters = execution
        .trigger
        .get("parameters")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .map(|(k, v)| format!("{k}={}", output::scalar(v)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    rows.push(("Parameters", output::list(&parameters)));
    format!("{}\n\n{}", details(rows), stage_table(execution, now))
}

/// The current time in epoch milliseconds.
pub(crate) fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn execution() -> ExecutionView {
        serde_json::from_value(execution_json()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn execution_json() -> Value {
        json!({
            "id": "e1", "application": "shop", "name": "deploy", "status": "RUNNING",
            "startTime": 1000, "trigger": {"type": "manual", "user": "alice", "parameters": {"env": "prod"}},
            "stages": [
                {"id": "s1", "refId": "1", "type": "deploy", "name": "Deploy", "status": "RUNNING",
                 "startTime": 1000, "tasks": [{"name": "deployTask", "status": "RUNNING", "startTime": 1000}]},
                {"id": "s1a", "refId": "1>1", "type": "wait", "name": "Settle", "status": "NOT_STARTED",
                 "parentStageId": "s1", "syntheticStageOwner": "STAGE_AFTER"},
                {"id": "s1b", "refId": "1<1", "type": "check", "name": "Check", "status": "SUCCEEDED",
                 "startTime": 1000, "endTime": 1500, "parentStageId": "s1", "syntheticStageOwner": "STAGE_BEFORE"},
                {"id": "s2", "refId": "2", "type": "wait", "name": "Wait", "status": "NOT_STARTED"},
            ]
        })
    }

    #[test]
    fn synthetic_stages_are_indented_under_their_parent_before_ones_first() {
        let execution = execution();
        let order: Vec<(usize, &str)> = execution
            .tree()
            .into_iter()
            .map(|(d, s)| (d, s.name.as_str()))
            .collect();
        assert_eq!(
            order,
            [(0, "Deploy"), (1, "Check"), (1, "Settle"), (0, "Wait")]
        );
        let table = stage_table(&execution, 4000);
        assert!(table.contains("\n  Check"), "{table}");
        assert!(table.contains("deployTask"), "{table}");
        assert!(table.contains("3s"), "{table}");
    }

    #[test]
    fn events_update_the_view_or_ask_for_a_fresh_copy() {
        let mut execution = execution();
        let event = |stage: Option<&str>, task: Option<&str>, status: &str| StatusEvent {
            execution_id: "e1".into(),
            stage_id: stage.map(str::to_owned),
            stage_name: None,
            task: task.map(str::to_owned),
            status: ReportedStatus::from_text(status),
            time: 9000,
        };
        assert_eq!(
            execution.apply(&event(Some("s1"), Some("deployTask"), "SUCCEEDED")),
            Applied::Updated
        );
        assert_eq!(execution.stages[0].tasks[0].end_time, Some(9000));
        assert_eq!(
            execution.apply(&event(Some("s2"), None, "RUNNING")),
            Applied::Stale
        );
        assert_eq!(execution.stages[3].start_time, Some(9000));
        assert_eq!(
            execution.apply(&event(Some("new"), None, "RUNNING")),
            Applied::Stale
        );
        assert_eq!(
            execution.apply(&event(None, None, "SUCCEEDED")),
            Applied::Updated
        );
        assert_eq!(execution.end_time, Some(9000));
        assert!(execution.has_ended());
    }

    #[test]
    fn failures_name_the_stage_and_its_error() {
        let mut execution = execution();
        execution.status = ReportedStatus::Known(ExecutionStatus::Terminal);
        execution.stages[0].status = ReportedStatus::Known(ExecutionStatus::Terminal);
        execution.stages[0].context =
            json!({"exception": {"details": {"errors": ["image not found"]}}});
        assert_eq!(
            execution.failure_reason().as_deref(),
            Some("stage 'Deploy' failed: image not found")
        );
        execution.status = ReportedStatus::Known(ExecutionStatus::Canceled);
        execution.canceled_by = Some("bob".into());
        assert_eq!(
            execution.failure_reason().as_deref(),
            Some("canceled by bob")
        );
        // Failed on startup (an expected artifact not bound): no stage ran.
        let mut startup = self::execution();
        startup.status = ReportedStatus::Known(ExecutionStatus::Terminal);
        startup.cancellation_reason = Some("Failed on startup: expected artifact 'repo'".into());
        assert_eq!(
            startup.failure_reason().as_deref(),
            Some("Failed on startup: expected artifact 'repo'")
        );
        let text = describe(&execution, 5000);
        assert!(text.contains("manual by alice"), "{text}");
        assert!(text.contains("env=prod"), "{text}");
        assert!(text.contains("Deploy: image not found"), "{text}");
    }

    #[test]
    fn statuses_of_a_newer_server_show_as_sent() {
        let mut raw = execution_json();
        raw["stages"][3]["status"] = json!("AWAITING_QUORUM");
        let mut execution: ExecutionView = serde_json::from_value(raw).unwrap();
        let table = stage_table(&execution, 4000);
        assert!(table.contains("AWAITING_QUORUM"), "{table}");

        let event = StatusEvent {
            execution_id: "e1".into(),
            stage_id: None,
            stage_name: None,
            task: None,
            status: ReportedStatus::from_text("QUIESCED"),
            time: 9000,
        };
        assert_eq!(execution.apply(&event), Applied::Updated);
        assert_eq!(execution.end_time, None);
        assert!(!execution.has_ended());
        assert!(headline(&execution, 4000).contains("  QUIESCED  "));
        // The server's final read has an end time: the execution ended, not successfully.
        execution.end_time = Some(9500);
        assert!(execution.has_ended());
        assert!(describe(&execution, 9600).contains("QUIESCED"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_400), "12s");
        assert_eq!(duration(184_000), "3m04s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(elapsed(None, None, 5), "-");
        assert_eq!(elapsed(Some(0), None, 2000), "2s");
    }
}
