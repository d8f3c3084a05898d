//! The engine's clock: wall time in production, a hand-driven clock in tests.
//!
//! Due times are stored in the database as epoch milliseconds, so the engine needs a
//! wall clock, and tests need to move it without sleeping. tokio's paused time cannot
//! serve here: it jumps forward whenever the runtime is idle, and the runtime looks idle
//! while sqlx waits on its SQLite thread, so timers would fire in the middle of queries.
//! [`ManualClock`] moves only when a test says so.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A source of "now" that can also wait until a moment.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in epoch milliseconds.
    fn now(&self) -> i64;
    /// Waits until `at` (epoch ms) or `max_wait` of real time, whichever comes first.
    fn sleep_until(
        &self,
        at: i64,
        max_wait: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's wall clock; waits on tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    fn sleep_until(
        &self,
        at: i64,
        max_wait: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = Duration::from_millis(u64::try_from(at - self.now()).unwrap_or(0));
        Box::pin(tokio::time::sleep(wait.min(max_wait)))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// A clock showing `start` (epoch ms).
    pub fn new(start: i64) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward, waking whatever waits for the new time.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(
        &self,
        at: i64,
        max_wait: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            let reached = changes.wait_for(|now| *now >= at);
            // The real-time bound keeps a worker re-checking the queue even when a test
            // never moves the clock.
            let _ = tokio::time::timeout(max_wait, reached).await;
        })
    }
}

/// Milliseconds in a duration, saturating.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
