//! The operator's notification settings (`[notifications]` in gennaker.toml).

use std::time::Duration;

/// How notifications are sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// The server's address as people reach it (`[notifications] base_url`), for the
    /// link to the execution in every message; `None` leaves the link out.
    pub base_url: Option<String>,
    /// Slack (`[notifications.slack]`); `None`: Slack notifications addressed to a
    /// channel fail with the setting named.
    pub slack: Option<SlackSettings>,
    /// The SMTP server (`[notifications.smtp]`); `None`: email notifications fail with
    /// the setting named.
    pub smtp: Option<SmtpSettings>,
    /// Retries of failed sends.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("base_url", &self.base_url)
            .field("slack", &self.slack.as_ref().map(|_| "configured"))
            .field("smtp", &self.smtp)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Slack: an incoming webhook. Spinnaker posts with a bot token to a channel; Gennaker
/// posts to the workspace's incoming-webhook URL and names the notification's
/// `address` as the `channel` (a notification whose address is itself an
/// `https://` URL posts there instead, under the outbound policy).
#[derive(Clone, PartialEq, Eq)]
pub struct SlackSettings {
    /// The incoming-webhook URL; its path is a secret token and is never logged.
    pub webhook_url: String,
}

/// The SMTP server email notifications go through.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Its host name.
    pub host: String,
    /// Its port (25, 587 with STARTTLS).
    pub port: u16,
    /// The sender (`Gennaker <gennaker@example.com>`).
    pub from: String,
    /// Login name, if the server wants one.
    pub username: Option<String>,
    /// Password (never logged nor shown).
    pub password: Option<String>,
    /// Upgrade the connection with STARTTLS before sending (required when set).
    pub starttls: bool,
}

/// Whether `text` is an email address as `from` and `to` take it (`a@b.c` or
/// `Name <a@b.c>`), for checking settings before the first send.
pub fn is_mailbox(text: &str) -> bool {
    text.parse::<lettre::message::Mailbox>().is_ok()
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("starttls", &self.starttls)
            .finish()
    }
}

/// Exponential backoff with a cap, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each further one.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
    /// Sends tried before the notification is FAILED for good.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(600),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failed send (1-based).
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first_wait
            .saturating_mul(1u32 << doublings)
            .min(self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let policy = RetryPolicy {
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(10),
            max_attempts: 5,
        };
        let waits: Vec<u64> = (1..=6).map(|a| policy.wait_after(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(policy.wait_after(1000).as_secs(), 10);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let settings = NotifySettings {
            slack: Some(SlackSettings {
                webhook_url: "https://hooks.slack.com/services/T0/B0/SECRETTOKEN".into(),
            }),
            smtp: Some(SmtpSettings {
                host: "mail".into(),
                port: 25,
                from: "g@example.com".into(),
                username: Some("u".into()),
                password: Some("hunter2".into()),
                starttls: false,
            }),
            ..NotifySettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("SECRETTOKEN") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
