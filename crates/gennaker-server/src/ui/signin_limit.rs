//! How often a password may be tried: at most [`MAX_FAILURES`] wrong passwords for one
//! user name within [`WINDOW`]; then sign-ins with a password for that name are refused
//! (without checking the password) until the oldest failure is older than the window.
//!
//! Counted per name entered, whether or not such a user exists, so the answers do not
//! tell which names exist. A right password clears the count. Kept in memory (a
//! restarted server starts afresh, as its sessions do), for at most [`MAX_NAMES`] names.
//! API tokens are not limited: they are 256 random bits, not guessable.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Wrong passwords allowed per name within [`WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
/// The window in which failures count.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Names tracked at most; beyond, the one whose last failure is oldest is forgotten.
const MAX_NAMES: usize = 10_000;

/// Recent password failures by user name.
#[derive(Debug, Default)]
pub(crate) struct SigninLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SigninLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        // Every change is complete when the lock is released: a poisoned map is sound.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long until `name` may try again, when it has used up its attempts.
    pub(crate) fn blocked_for(&self, name: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        let recent = failures.get_mut(&name.to_lowercase())?;
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() < MAX_FAILURES {
            return None;
        }
        recent
            .front()
            .map(|oldest| WINDOW.saturating_sub(now.duration_since(*oldest)))
    }

    /// Counts a wrong password for `name`.
    pub(crate) fn failed(&self, name: &str) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= MAX_NAMES {
            failures.retain(|_, recent| {
                recent
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < WINDOW)
            });
            if failures.len() >= MAX_NAMES
                && let Some(stalest) = failures
                    .iter()
                    .min_by_key(|(_, recent)| recent.back().copied())
                    .map(|(name, _)| name.clone())
            {
                failures.remove(&stalest);
            }
        }
        let recent = failures.entry(name.to_lowercase()).or_default();
        recent.push_back(now);
        while recent.len() > MAX_FAILURES {
            recent.pop_front();
        }
    }

    /// Forgets the failures of `name` (it signed in).
    pub(crate) fn succeeded(&self, name: &str) {
        self.lock().remove(&name.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn five_failures_block_a_name_until_the_window_passes() {
        let limiter = SigninLimiter::default();
        for _ in 0..MAX_FAILURES - 1 {
            limiter.failed("Rita");
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert_eq!(limiter.blocked_for("rita"), None, "four failures are fine");
        limiter.failed("RITA");
        let wait = limiter.blocked_for("rita").unwrap();
        assert_eq!(wait, WINDOW - Duration::from_secs(40));
        assert_eq!(limiter.blocked_for("otto"), None, "other names are not");
        tokio::time::advance(wait).await;
        assert_eq!(
            limiter.blocked_for("rita"),
            None,
            "the oldest failure aged out"
        );
        limiter.failed("rita");
        assert!(limiter.blocked_for("rita").is_some());
        limiter.succeeded("rita");
        assert_eq!(limiter.blocked_for("rita"), None);
    }
}
