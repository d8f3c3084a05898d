//! From status changes to notifications: which `notifications[]` entries an event
//! matches (Spinnaker's `when` values), and what each will send, rendered at the
//! moment of the event with its expressions evaluated against the execution.

use gennaker_core::execution::{Execution, ExecutionStatus, ExecutionType, StageExecution};
use gennaker_core::lenient::truthy;
use gennaker_core::{NOTIFICATION_TYPES, SENT_NOTIFICATION_TYPES};
use gennaker_engine::{ExecutionEvent, ExpressionSupport, NotificationPlanner};
use gennaker_store::NewNotification;
use serde_json::{Map, Value, json};

/// The most notifications one step may queue: every notification entry of every stage
/// event is bounded by the pipeline's size, but a step of a huge pipeline should not
/// write an unbounded batch.
const MAX_PER_STEP: usize = 1000;

/// Plans notifications for the engine (see [`NotificationPlanner`]).
#[derive(Debug, Clone, Default)]
pub struct Planner {
    base_url: Option<String>,
}

impl Planner {
    /// A planner whose links point at `base_url` (the server as people reach it).
    pub fn new(base_url: Option<String>) -> Self {
        Self {
            base_url: base_url.map(|url| url.trim_end_matches('/').to_owned()),
        }
    }

    /// Where people see the execution.
    pub fn link(&self, execution_id: &str) -> Option<String> {
        self.base_url
            .as_ref()
            .map(|base| format!("{base}/api/v1/executions/{execution_id}"))
    }
}

/// The `when` names an event goes by: `pipeline.complete`, `stage.failed`, and for a
/// manual judgment also `manualJudgment` (waiting), `manualJudgmentContinue` and
/// `manualJudgmentStop`. Canceled executions and stages send nothing (as in Spinnaker).
fn event_names(level: &str, status: ExecutionStatus, judgment: bool) -> Vec<String> {
    let phase = match status {
        ExecutionStatus::Running => "starting",
        ExecutionStatus::Succeeded | ExecutionStatus::Stopped | ExecutionStatus::Skipped => {
            "complete"
        }
        ExecutionStatus::Canceled => return Vec::new(),
        s if s.is_complete() => "failed",
        _ => return Vec::new(),
    };
    let mut names = vec![format!("{level}.{phase}")];
    if judgment {
        names.push(
            match phase {
                "starting" => "manualJudgment",
                "complete" => "manualJudgmentContinue",
                _ => "manualJudgmentStop",
            }
            .to_owned(),
        );
    }
    names
}

impl NotificationPlanner for Planner {
    fn plan(
        &self,
        execution: &Execution,
        version: i64,
        events: &[ExecutionEvent],
        expressions: &ExpressionSupport,
    ) -> Vec<NewNotification> {
        if execution.execution_type != ExecutionType::Pipeline {
            return Vec::new();
        }
        let mut planned = Vec::new();
        for event in events {
            match event.scope() {
                "execution" => {
                    // A resumed execution turns RUNNING again: not a start.
                    if event.status == ExecutionStatus::Running
                        && execution.start_time != Some(event.time)
                    {
                        continue;
                    }
                    let entries = execution.pipeline_config.get("notifications");
                    let names = event_names("pipeline", event.status, false);
                    self.plan_entries(
                        execution,
                        None,
                        version,
                        event,
                        &names,
                        entries,
                        expressions,
                        &mut planned,
                    );
                }
                "stage" => {
                    let Some(stage) = event.stage_id.as_deref().and_then(|id| execution.stage(id))
                    else {
                        continue;
                    };
                    // Spinnaker sends none for synthetic stages.
                    if stage.parent_stage_id.is_some()
                        || stage.synthetic_stage_owner.is_some()
                        || !truthy(stage.context.get("sendNotifications"))
                        || (event.status == ExecutionStatus::Running
                            && stage.start_time != Some(event.time))
                    {
                        continue;
                    }
                    let names =
                        event_names("stage", event.status, stage.stage_type == "manualJudgment");
                    let entries = stage.context.get("notifications");
                    self.plan_entries(
                        execution,
                        Some(stage),
                        version,
                        event,
                        &names,
                        entries,
                        expressions,
                        &mut planned,
                    );
                }
                _ => {}
            }
        }
        planned.truncate(MAX_PER_STEP);
        planned
    }
}

impl Planner {
    #[allow(clippy::too_many_arguments)]
    fn plan_entries(
        &self,
        execution: &Execution,
        stage: Option<&StageExecution>,
        version: i64,
        event: &ExecutionEvent,
        names: &[String],
        entries: Option<&Value>,
        expressions: &ExpressionSupport,
        planned: &mut Vec<NewNotification>,
    ) {
        let Some(Value::Array(entries)) = entries else {
            return;
        };
        let mut root = None;
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(entry) = entry else {
                continue;
            };
            let when: Vec<&str> = match entry.get("when") {
                Some(Value::Array(when)) => when.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for name in names.iter().filter(|n| when.contains(&n.as_str())) {
                let root =
                    root.get_or_insert_with(|| expression_root(execution, stage, expressions));
                planned.push(self.render(
                    execution,
                    stage,
                    version,
                    event,
                    name,
                    index,
                    entry,
                    root,
                    expressions,
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        execution: &Execution,
        stage: Option<&StageExecution>,
        version: i64,
        event: &ExecutionEvent,
        name: &str,
        index: usize,
        entry: &Map<String, Value>,
        root: &Value,
        expressions: &ExpressionSupport,
    ) -> NewNotification {
        let kind = entry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut errors = Vec::new();
        let mut evaluate = |value: Option<&Value>| -> Option<Value> {
            let value = value?;
            let transformed = expressions.transform(value, root);
            errors.extend(transformed.failures.iter().map(|f| f.message.clone()));
            Some(transformed.value)
        };
        let address = evaluate(entry.get("address"));
        let message = evaluate(
            entry
                .get("message")
                .and_then(|m| m.get(name))
                .and_then(|m| m.get("text")),
        );
        let subject = evaluate(entry.get("customSubject"));
        let body = evaluate(entry.get("customBody"));
        let cc = evaluate(entry.get("cc"));
        let level = if stage.is_some() { "stage" } else { "pipeline" };
        let mut document = json!({
            "type": kind,
            "address": address,
            "event": name,
            "level": level,
            "executionId": execution.id,
            "application": execution.application,
            "pipeline": execution.name,
            "status": event.status,
            "time": event.time,
            "link": self.link(&execution.id),
            "message": message,
        });
        if let (Some(stage), Value::Object(map)) = (stage, &mut document) {
            map.insert(
                "stage".into(),
                json!({"id": stage.id, "refId": stage.ref_id, "name": stage.name,
                       "type": stage.stage_type, "status": event.status}),
            );
        }
        if let Value::Object(map) = &mut document {
            for (key, value) in [("subject", subject), ("body", body), ("cc", cc)] {
                if let Some(value) = value {
                    map.insert(key.into(), value);
                }
            }
            if !errors.is_empty() {
                map.insert("expressionErrors".into(), json!(errors));
            }
        }
        let skipped = if kind == "hipchat" {
            Some("HipChat no longer exists; this notification is never sent".to_owned())
        } else if !SENT_NOTIFICATION_TYPES.contains(&kind.as_str()) {
            Some(if NOTIFICATION_TYPES.contains(&kind.as_str()) {
                format!(
                    "Gennaker cannot send '{kind}' notifications (it sends {})",
                    SENT_NOTIFICATION_TYPES.join(", ")
                )
            } else {
                format!("unknown notification type '{kind}'")
            })
        } else {
            None
        };
        NewNotification {
            dedupe_key: format!(
                "{}/{version}/{}/{name}/{level}{index}",
                execution.id,
                stage.map_or("-", |s| s.id.as_str())
            ),
            execution_id: execution.id.clone(),
            stage_id: stage.map(|s| s.id.clone()),
            event: name.to_owned(),
            kind,
            document: document.to_string(),
            deliver_at: event.time,
            skipped,
        }
    }
}

/// What a notification's expressions see: the stage's view for stage events (its
/// context, ancestors' outputs, `execution`, `trigger`, `parameters`), and for
/// pipeline events `execution`, `trigger` and `parameters`.
fn expression_root(
    execution: &Execution,
    stage: Option<&StageExecution>,
    expressions: &ExpressionSupport,
) -> Value {
    if let Some(stage) = stage {
        return expressions.stage_root(execution, stage, None);
    }
    let mut view = serde_json::to_value(execution).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut view {
        map.remove("pipelineConfig");
    }
    json!({
        "execution": view,
        "trigger": Value::Object(execution.trigger.clone()),
        "parameters": Value::Object(execution.parameters()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_spinnaker_when_names() {
        assert_eq!(
            event_names("pipeline", ExecutionStatus::Running, false),
            ["pipeline.starting"]
        );
        for status in [
            ExecutionStatus::Succeeded,
            ExecutionStatus::Stopped,
            ExecutionStatus::Skipped,
        ] {
            assert_eq!(event_names("stage", status, false), ["stage.complete"]);
        }
        for status in [ExecutionStatus::Terminal, ExecutionStatus::FailedContinue] {
            assert_eq!(event_names("pipeline", status, false), ["pipeline.failed"]);
        }
        assert!(event_names("pipeline", ExecutionStatus::Canceled, false).is_empty());
        assert!(event_names("stage", ExecutionStatus::Paused, false).is_empty());
        assert_eq!(
            event_names("stage", ExecutionStatus::Running, true),
            ["stage.starting", "manualJudgment"]
        );
        assert_eq!(
            event_names("stage", ExecutionStatus::Succeeded, true),
            ["stage.complete", "manualJudgmentContinue"]
        );
        assert_eq!(
            event_names("stage", ExecutionStatus::Terminal, true),
            ["stage.failed", "manualJudgmentStop"]
        );
    }
}
