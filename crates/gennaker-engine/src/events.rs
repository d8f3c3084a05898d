//! Status changes, published after each committed step for live views and
//! notifications.

use serde::{Deserialize, Serialize};

use gennaker_core::execution::{Execution, ExecutionStatus};
use gennaker_store::NewNotification;

use crate::expressions::ExpressionSupport;

/// One status change of an execution, a stage or a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionEvent {
    /// The execution.
    pub execution_id: String,
    /// Its application.
    pub application: String,
    /// Its pipeline's name.
    pub pipeline_name: String,
    /// The stage, for stage and task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<String>,
    /// The stage's refId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_id: Option<String>,
    /// The stage's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    /// The task's name, for task events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The new status.
    pub status: ExecutionStatus,
    /// When (epoch ms).
    pub time: i64,
}

impl ExecutionEvent {
    /// `execution`, `stage` or `task`.
    pub fn scope(&self) -> &'static str {
        match (&self.stage_id, &self.task) {
            (None, _) => "execution",
            (Some(_), None) => "stage",
            (Some(_), Some(_)) => "task",
        }
    }
}

/// Turns a step's status changes into notifications to send (pipeline and stage
/// `notifications[]`). The engine calls it with the execution as the step leaves it,
/// before the commit, and writes what it returns in the step's own transaction: a
/// notification exists exactly when the status change that caused it does.
pub trait NotificationPlanner: Send + Sync + std::fmt::Debug {
    /// The notifications `events` cause. `version` is the execution version the step
    /// writes: with the execution id it tells steps apart in dedupe keys. Must not fail
    /// nor block: a notification that cannot be prepared is returned with the reason.
    fn plan(
        &self,
        execution: &Execution,
        version: i64,
        events: &[ExecutionEvent],
        expressions: &ExpressionSupport,
    ) -> Vec<NewNotification>;
}

/// The longest a display name (stage, pipeline, task) is carried in a notice to the
/// other servers; longer ones are cut, so an event always fits PostgreSQL's limit.
const NOTICE_NAME_CHARS: usize = 200;

/// What one server tells the others sharing its database about a committed step: the
/// step's status events, and which server (engine) committed it, so that server drops
/// its own notices (it published those events in-process already).
#[derive(Debug, Deserialize)]
pub(crate) struct Notice {
    /// The committing engine's id ([`crate::Engine::server_id`]).
    pub(crate) server: String,
    /// The step's events, in order.
    pub(crate) events: Vec<ExecutionEvent>,
}

impl Notice {
    /// Reads a notice; `None` for text that is not one (another program on the channel).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// `events` as notices from `server`, each at most `max_bytes` long, in order. An event
/// too long even alone has its display names cut; one still too long (an enormous
/// application name) is left out: event streams re-read executions periodically.
pub(crate) fn notices(server: &str, events: &[ExecutionEvent], max_bytes: usize) -> Vec<String> {
    let head = match serde_json::to_string(server) {
        Ok(server) => format!("{{\"server\":{server},\"events\":["),
        Err(_) => return Vec::new(),
    };
    let tail = "]}";
    let fits =
        |body: &str, more: &str| head.len() + body.len() + 1 + more.len() + tail.len() <= max_bytes;
    let mut notices = Vec::new();
    let mut body = String::new();
    for event in events {
        let Some(text) = event_text(event, |text| fits("", text)) else {
            tracing::debug!(execution = %event.execution_id, "engine: an event too long for a notice is not sent to the other servers");
            continue;
        };
        if !body.is_empty() && !fits(&body, &text) {
            notices.push(format!("{head}{body}{tail}"));
            body.clear();
        }
        if !body.is_empty() {
            body.push(',');
        }
        body.push_str(&text);
    }
    if !body.is_empty() {
        notices.push(format!("{head}{body}{tail}"));
    }
    notices
}

/// `event` as JSON, its names cut when it does not otherwise `fit`.
fn event_text(event: &ExecutionEvent, fit: impl Fn(&str) -> bool) -> Option<String> {
    let text = serde_json::to_string(event).ok()?;
    if fit(&text) {
        return Some(text);
    }
    let cut = |name: &Option<String>| {
        name.as_ref()
            .map(|n| n.chars().take(NOTICE_NAME_CHARS).collect::<String>())
    };
    let shortened = ExecutionEvent {
        pipeline_name: event
            .pipeline_name
            .chars()
            .take(NOTICE_NAME_CHARS)
            .collect(),
        stage_name: cut(&event.stage_name),
        task: cut(&event.task),
        ..event.clone()
    };
    let text = serde_json::to_string(&shortened).ok()?;
    fit(&text).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize, stage_name: &str) -> ExecutionEvent {
        ExecutionEvent {
            execution_id: format!("e{n}"),
            application: "shop".into(),
            pipeline_name: "release".into(),
            stage_id: Some(format!("s{n}")),
            ref_id: Some("1".into()),
            stage_name: Some(stage_name.into()),
            task: None,
            status: ExecutionStatus::Succeeded,
            time: 1,
        }
    }

    fn read(notices: &[String]) -> Vec<ExecutionEvent> {
        notices
            .iter()
            .flat_map(|n| {
                let notice = Notice::parse(n).expect("a notice");
                assert_eq!(notice.server, "server-a");
                notice.events
            })
            .collect()
    }

    #[test]
    fn events_travel_in_order_in_notices_within_the_limit() {
        let events: Vec<ExecutionEvent> = (0..100).map(|n| event(n, "deploy")).collect();
        let notices = notices("server-a", &events, 1_000);
        assert!(notices.len() > 1, "split: {}", notices.len());
        assert!(notices.iter().all(|n| n.len() <= 1_000));
        assert_eq!(read(&notices), events);
        assert!(super::notices("server-a", &[], 1_000).is_empty());
    }

    #[test]
    fn long_names_are_cut_and_what_cannot_fit_is_left_out() {
        let long = event(1, &"x".repeat(5_000));
        let notices = notices("server-a", &[long.clone(), event(2, "ok")], 1_000);
        let read = read(&notices);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].stage_name.as_ref().map(String::len), Some(200));
        assert_eq!(read[0].execution_id, long.execution_id);
        let mut huge = event(3, "ok");
        huge.application = "a".repeat(5_000);
        let notices = super::notices("server-a", &[huge, event(4, "ok")], 1_000);
        assert_eq!(super::tests::read(&notices), vec![event(4, "ok")]);
        assert!(Notice::parse("not json").is_none());
    }
}
