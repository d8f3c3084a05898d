//! Notifications waiting to be sent (Slack, email, webhooks), and what became of them.
//!
//! The engine writes them in the transaction of the step whose status change causes
//! them ([`StepCommit::notifications`](crate::StepCommit::notifications)): a crash
//! before the commit loses the change and its notifications together, one after it
//! keeps both. Each row has a unique `dedupe_key`, so writing the same notification
//! again is a no-op. A delivery worker [claims](NotificationStore::claim_notifications)
//! due rows under a lease, sends them, and records the outcome in one write
//! ([`finish_notification`](NotificationStore::finish_notification)) that only the
//! lease holder may make. A send whose outcome was never recorded (the server died
//! mid-send) is sent again once its lease expires: at-least-once for that one window.

use async_trait::async_trait;

use crate::error::Result;

/// A notification to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Unique per notification: a second insert with the same key is ignored.
    pub dedupe_key: String,
    /// The execution whose event it reports.
    pub execution_id: String,
    /// The stage, for stage events.
    pub stage_id: Option<String>,
    /// The event (`pipeline.failed`, `stage.complete`, `manualJudgment`, …).
    pub event: String,
    /// The notification type (`slack`, `email`, `webhook`, …).
    pub kind: String,
    /// What to send (JSON text, owned by the notifier; sealed at rest like executions).
    pub document: String,
    /// When it may first be sent (epoch ms).
    pub deliver_at: i64,
    /// Set when it will never be sent (an unsupported type): stored as
    /// [`NotificationStatus::Skipped`] with this reason, so the execution shows why.
    pub skipped: Option<String>,
}

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationStatus {
    /// Waiting to be sent (or sent again after a failure).
    Pending,
    /// Sent; the receiver accepted it.
    Delivered,
    /// Given up: a permanent error, or too many failed attempts.
    Failed,
    /// Never sent: Gennaker cannot send this type (the reason says so).
    Skipped,
}

impl NotificationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "PENDING",
            NotificationStatus::Delivered => "DELIVERED",
            NotificationStatus::Failed => "FAILED",
            NotificationStatus::Skipped => "SKIPPED",
        }
    }

    /// The status stored as `name`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "PENDING" => NotificationStatus::Pending,
            "DELIVERED" => NotificationStatus::Delivered,
            "FAILED" => NotificationStatus::Failed,
            "SKIPPED" => NotificationStatus::Skipped,
            _ => return None,
        })
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// Its id (rising in the order they were queued).
    pub id: i64,
    /// Its dedupe key.
    pub dedupe_key: String,
    /// The execution.
    pub execution_id: String,
    /// The stage, for stage events.
    pub stage_id: Option<String>,
    /// The event.
    pub event: String,
    /// The notification type.
    pub kind: String,
    /// What to send (JSON text; sealed as stored, see the notifier).
    pub document: String,
    /// Where it is.
    pub status: NotificationStatus,
    /// How many times it was claimed for sending.
    pub attempts: i64,
    /// When it is next due (epoch ms), while pending.
    pub next_attempt_at: i64,
    /// Why the last attempt failed, or why it was skipped.
    pub last_error: Option<String>,
    /// When it was queued (epoch ms).
    pub created_at: i64,
    /// When it was delivered, failed for good or skipped (epoch ms).
    pub finished_at: Option<i64>,
}

/// What a send came to, recorded by the lease holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Sent.
    Delivered,
    /// Failed for now; due again at `at` (epoch ms).
    Retry {
        /// When to try again.
        at: i64,
        /// Why it failed (no secrets: shown in the execution's notifications).
        error: String,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
}

/// Storage for notifications, kept by [`SqlStore`](crate::SqlStore) on both backends.
#[async_trait]
pub trait NotificationStore: Send + Sync + std::fmt::Debug {
    /// Queues notifications outside an engine step; rows whose dedupe key exists are
    /// ignored. Returns how many were new.
    async fn enqueue_notifications(&self, notifications: &[NewNotification]) -> Result<u64>;
    /// Leases up to `limit` pending notifications due at `now` whose lease (if any) has
    /// expired, oldest due first, to `owner` until `lease_until`; each claim counts as
    /// an attempt.
    async fn claim_notifications(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>>;
    /// Records the outcome of a claimed notification at `now` and drops the lease;
    /// `false` (nothing written) when `owner` no longer holds it.
    async fn finish_notification(
        &self,
        id: i64,
        owner: &str,
        now: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool>;
    /// The notifications of one execution, in the order they were queued.
    async fn execution_notifications(&self, execution_id: &str) -> Result<Vec<NotificationRecord>>;
    /// When the next pending notification becomes claimable (due, or its lease ends).
    async fn next_notification_due(&self) -> Result<Option<i64>>;
}
