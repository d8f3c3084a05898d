//! Gennaker's notifications: Spinnaker's pipeline-level `notifications[]` and
//! stage-level `sendNotifications` + `notifications[]`, sent as Slack messages, emails
//! and webhooks.
//!
//! Two halves, joined by the store:
//!
//! - [`Planner`] is the engine's [`NotificationPlanner`](gennaker_engine::NotificationPlanner):
//!   for each status change of a step it finds the entries whose `when` names the event
//!   (`pipeline.failed`, `stage.complete`, `manualJudgment`, …), evaluates their
//!   message, address and subject against the execution, and returns rows the engine
//!   writes in the step's own transaction. A type Gennaker does not send (`sms`,
//!   `pubsub`, …) is written SKIPPED with the reason.
//! - [`Notifier`] claims those rows under a lease, sends them (webhooks and Slack
//!   through the outbound policy's client; email over SMTP with `lettre`), and
//!   records DELIVERED, a retry with exponential backoff, or FAILED. A notification
//!   never changes its execution: the pipeline neither waits for nor fails with it.

mod deliver;
mod plan;
mod send;
mod settings;

pub use deliver::{Notifier, NotifyError};
pub use plan::Planner;
pub use send::SendError;
pub use settings::{NotifySettings, RetryPolicy, SlackSettings, SmtpSettings, is_mailbox};
