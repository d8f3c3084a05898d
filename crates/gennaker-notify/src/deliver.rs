//! The delivery worker: claims due notifications under a lease, sends them, and
//! records each outcome before it claims more.
//!
//! Exactly once where it can be: a notification is claimed by one worker at a time
//! (the lease), and it is marked DELIVERED in the store as soon as the receiver
//! accepted it, before anything else is claimed. The one window left is a crash
//! between the receiver's acceptance and that write: the outcome is then unknown, and
//! the notification is sent again when its lease expires (at-least-once, as any
//! sender without a receiver-side idempotency key must be). Webhook receivers can
//! tell such a repeat by the `Idempotency-Key` header (the notification's dedupe key).
//!
//! Nothing here touches executions: a receiver that is down or refuses only leaves a
//! FAILED notification, listed with the execution, never a failed pipeline.

use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::{Clock, ExecutionEvent};
use gennaker_outbound::OutboundPolicy;
use gennaker_store::{
    DeliveryOutcome, NotificationRecord, NotificationStore, SealingKey, StoreError,
};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::send::{SendError, Senders};
use crate::settings::{NotifySettings, RetryPolicy};

/// How long a claimed notification is held: longer than any one send may take (the
/// outbound request timeout, the SMTP timeout).
const LEASE: Duration = Duration::from_secs(120);
/// Notifications claimed at once.
const BATCH: i64 = 16;
/// The longest the worker sleeps without looking at the store (another server may
/// have queued notifications; PostgreSQL sends no wake-up for them).
const IDLE_RECHECK: Duration = Duration::from_secs(2);

/// Why the worker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The outbound HTTP client cannot be built.
    #[error("the notifications' HTTP client cannot be built: {0}")]
    Client(#[from] gennaker_outbound::OutboundError),
}

/// Sends the notifications the engine queued.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn NotificationStore>,
    key: Option<SealingKey>,
    senders: Senders,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    owner: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("owner", &self.owner)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A worker on `store`, opening what the engine sealed with `key` (`None`: the
    /// documents are stored in clear), sending under the outbound `policy` (Slack and
    /// webhook addresses alike), on `clock`'s time.
    pub fn new(
        store: Arc<dyn NotificationStore>,
        key: Option<SealingKey>,
        settings: &NotifySettings,
        policy: &OutboundPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NotifyError> {
        Ok(Self {
            store,
            key,
            senders: Senders {
                policy: policy.clone(),
                http: policy.client()?,
                slack: settings.slack.clone(),
                smtp: settings.smtp.clone(),
            },
            clock,
            retry: settings.retry,
            owner: format!("gennaker-notify-{}", uuid::Uuid::new_v4()),
        })
    }

    /// Claims the notifications due now and sends them, one at a time, recording each
    /// outcome as soon as it is known. Returns how many were handled.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX));
        let claimed = self
            .store
            .claim_notifications(&self.owner, now, lease_until, BATCH)
            .await?;
        let handled = claimed.len();
        for notification in claimed {
            let outcome = self.attempt(&notification).await;
            let finished_at = self.clock.now();
            let recorded = self
                .store
                .finish_notification(notification.id, &self.owner, finished_at, &outcome)
                .await?;
            if !recorded {
                warn!(
                    notification = notification.id,
                    "notify: the lease ran out during the send; another worker may send it again"
                );
            }
        }
        Ok(handled)
    }

    async fn attempt(&self, notification: &NotificationRecord) -> DeliveryOutcome {
        let document = match self.open(notification) {
            Ok(document) => document,
            Err(error) => return DeliveryOutcome::Failed { error },
        };
        match self.senders.send(&document, &notification.dedupe_key).await {
            Ok(()) => {
                debug!(
                    notification = notification.id,
                    execution = %notification.execution_id,
                    event = %notification.event,
                    kind = %notification.kind,
                    "notify: delivered"
                );
                DeliveryOutcome::Delivered
            }
            Err(SendError::Permanent(error)) => {
                warn!(notification = notification.id, execution = %notification.execution_id, %error, "notify: failed for good");
                DeliveryOutcome::Failed { error }
            }
            Err(SendError::Transient(error)) => {
                let attempts = u32::try_from(notification.attempts).unwrap_or(u32::MAX);
                if attempts >= self.retry.max_attempts {
                    warn!(notification = notification.id, execution = %notification.execution_id, %error, attempts, "notify: giving up");
                    return DeliveryOutcome::Failed {
                        error: format!("gave up after {attempts} attempts; the last: {error}"),
                    };
                }
                let wait = self.retry.wait_after(attempts);
                info!(notification = notification.id, %error, retry_in_ms = wait.as_millis() as u64, "notify: will retry");
                DeliveryOutcome::Retry {
                    at: self
                        .clock
                        .now()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
                    error,
                }
            }
        }
    }

    fn open(&self, notification: &NotificationRecord) -> Result<Value, String> {
        let text = match &self.key {
            Some(key) => key
                .open_document(&notification.document, &notification.execution_id)
                .map_err(|e| e.to_string())?,
            None => notification.document.clone(),
        };
        serde_json::from_str(&text).map_err(|e| format!("the stored notification is damaged: {e}"))
    }

    /// Delivers until `shutdown`: after every engine event (the step that queued a
    /// notification has committed by then), when the next retry is due, and every few
    /// seconds (for what other servers queued).
    pub async fn run(
        self,
        mut events: broadcast::Receiver<ExecutionEvent>,
        shutdown: CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            let mut busy = false;
            match self.deliver_due().await {
                Ok(handled) => busy = handled > 0,
                Err(error) => warn!(%error, "notify: cannot read the notification queue"),
            }
            if busy {
                continue;
            }
            let now = self.clock.now();
            let idle = i64::try_from(IDLE_RECHECK.as_millis()).unwrap_or(i64::MAX);
            let due = match self.store.next_notification_due().await {
                Ok(Some(due)) => due.min(now + idle),
                _ => now + idle,
            };
            let wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                received = events.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = received {
                        // The engine is gone; keep polling until shutdown.
                        events = events.resubscribe();
                    }
                }
            }
        }
    }
}
