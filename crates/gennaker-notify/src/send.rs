//! Sending one notification: a webhook (JSON POST of the event), Slack (an
//! incoming-webhook message with a link to the execution) or email (SMTP).
//!
//! Errors name the host, never the whole URL: a Slack webhook URL's path is its token.

use std::time::Duration;

use gennaker_core::redact::redact_url_passwords;
use gennaker_outbound::OutboundPolicy;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use url::Url;

use crate::settings::{SlackSettings, SmtpSettings};

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (the receiver is down, busy or failed: 5xx, 429, timeouts).
    #[error("{0}")]
    Transient(String),
    /// Trying again cannot help (refused by the outbound policy, 4xx, a bad address,
    /// a missing setting).
    #[error("{0}")]
    Permanent(String),
}

/// What the senders need, built once.
#[derive(Clone)]
pub(crate) struct Senders {
    pub(crate) policy: OutboundPolicy,
    pub(crate) http: reqwest::Client,
    pub(crate) slack: Option<SlackSettings>,
    pub(crate) smtp: Option<SmtpSettings>,
}

impl Senders {
    /// Sends the rendered notification `document`; HTTP receivers get `key` as the
    /// `Idempotency-Key` header, so they can tell a repeat after a crash.
    pub(crate) async fn send(&self, document: &Value, key: &str) -> Result<(), SendError> {
        let kind = document["type"].as_str().unwrap_or_default();
        match kind {
            "webhook" => {
                let address = document["address"].as_str().unwrap_or_default();
                self.post(address, &webhook_body(document), key).await
            }
            "slack" => self.slack(document, key).await,
            "email" => self.email(document).await,
            other => Err(SendError::Permanent(format!(
                "Gennaker cannot send '{other}' notifications"
            ))),
        }
    }

    async fn slack(&self, document: &Value, key: &str) -> Result<(), SendError> {
        let address = document["address"].as_str().unwrap_or_default();
        let (url, channel) = if address.starts_with("https://") || address.starts_with("http://") {
            (address.to_owned(), None)
        } else {
            let Some(slack) = &self.slack else {
                return Err(SendError::Permanent(
                    "no Slack incoming webhook is configured: set [notifications.slack] webhook_url in gennaker.toml".into(),
                ));
            };
            (slack.webhook_url.clone(), Some(address))
        };
        self.post(&url, &slack_body(document, channel), key).await
    }

    async fn post(&self, address: &str, body: &Value, key: &str) -> Result<(), SendError> {
        let url = Url::parse(address).map_err(|e| {
            SendError::Permanent(format!(
                "the address '{}' is not a URL: {e}",
                redact_url_passwords(address)
            ))
        })?;
        let host = url.host_str().unwrap_or("?").to_owned();
        self.policy
            .check_url(&url)
            .map_err(|e| SendError::Permanent(scrub(&e.to_string(), &url, &host)))?;
        let response = self
            .http
            .post(url.clone())
            .header("Idempotency-Key", key)
            .json(body)
            .timeout(self.policy.request_timeout())
            .send()
            .await
            .map_err(|e| {
                let refused = gennaker_outbound::refusal_of(&e).is_some();
                let e = e.without_url();
                let text = scrub(&e.to_string(), &url, &host);
                let message = format!("POST to {host} failed: {}", error_chain(&e, &text));
                if refused {
                    SendError::Permanent(message)
                } else {
                    SendError::Transient(message)
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("{host} answered HTTP {}", status.as_u16());
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(SendError::Transient(message))
        } else {
            Err(SendError::Permanent(message))
        }
    }

    async fn email(&self, document: &Value) -> Result<(), SendError> {
        let Some(smtp) = &self.smtp else {
            return Err(SendError::Permanent(
                "no SMTP server is configured: set [notifications.smtp] host and from in gennaker.toml".into(),
            ));
        };
        let bad =
            |what: &str, e: &dyn std::fmt::Display| SendError::Permanent(format!("{what}: {e}"));
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| bad("[notifications.smtp] from is not an email address", &e))?;
        let mut builder = Message::builder().from(from).subject(subject(document));
        for to in addresses(&document["address"]) {
            let mailbox: Mailbox = to
                .parse()
                .map_err(|e| bad(&format!("'{to}' is not an email address"), &e))?;
            builder = builder.to(mailbox);
        }
        for cc in addresses(&document["cc"]) {
            let mailbox: Mailbox = cc
                .parse()
                .map_err(|e| bad(&format!("cc '{cc}' is not an email address"), &e))?;
            builder = builder.cc(mailbox);
        }
        let message = builder
            .header(ContentType::TEXT_PLAIN)
            .body(email_body(document))
            .map_err(|e| bad("the message cannot be built", &e))?;
        let transport = if smtp.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| bad("STARTTLS cannot be set up", &e))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        };
        let mut transport = transport.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        match transport.build().send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = format!("SMTP {}:{}: {e}", smtp.host, smtp.port);
                if e.is_permanent() {
                    Err(SendError::Permanent(text))
                } else {
                    Err(SendError::Transient(text))
                }
            }
        }
    }
}

/// `text` without the URL's path and query (a token may hide there) or password.
fn scrub(text: &str, url: &Url, host: &str) -> String {
    let mut origin = url.clone();
    origin.set_path("");
    origin.set_query(None);
    let _ = origin.set_password(None);
    text.replace(url.as_str(), host)
        .replace(origin.as_str(), host)
}

/// The causes of a reqwest error, scrubbed, for a message that says what happened.
fn error_chain(error: &reqwest::Error, first: &str) -> String {
    let mut text = first.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&redact_url_passwords(&cause_text));
        }
        source = cause.source();
    }
    text
}

/// Addresses in a string (comma or space separated) or a list of strings.
fn addresses(value: &Value) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split([',', ' ', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match value {
        Value::String(s) => split(s),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .flat_map(split)
            .collect(),
        _ => Vec::new(),
    }
}

/// One line saying what happened: `Pipeline 'deploy' (shop) failed: TERMINAL`.
pub(crate) fn summary(document: &Value) -> String {
    let pipeline = document["pipeline"].as_str().unwrap_or_default();
    let application = document["application"].as_str().unwrap_or_default();
    let status = document["status"].as_str().unwrap_or_default();
    let event = document["event"].as_str().unwrap_or_default();
    let what = match event {
        "manualJudgment" => "is waiting for a manual judgment".to_owned(),
        "manualJudgmentContinue" => "was judged: continue".to_owned(),
        "manualJudgmentStop" => "was judged: stop".to_owned(),
        e if e.ends_with(".starting") => "is starting".to_owned(),
        e if e.ends_with(".complete") => format!("completed ({status})"),
        _ => format!("failed ({status})"),
    };
    match document["stage"]["name"].as_str() {
        Some(stage) => format!("Stage '{stage}' of pipeline '{pipeline}' ({application}) {what}"),
        None => format!("Pipeline '{pipeline}' ({application}) {what}"),
    }
}

/// What a webhook receives: the event, without the routing fields.
fn webhook_body(document: &Value) -> Value {
    let mut body = document.clone();
    if let Value::Object(map) = &mut body {
        for key in ["type", "address", "cc", "subject", "body"] {
            map.remove(key);
        }
        map.insert("summary".into(), Value::String(summary(document)));
    }
    body
}

/// Slack's incoming-webhook shape: `text` (also the notification's fallback) and one
/// attachment linking to the execution, coloured by outcome.
fn slack_body(document: &Value, channel: Option<&str>) -> Value {
    let summary = summary(document);
    let event = document["event"].as_str().unwrap_or_default();
    let color = if event.ends_with("failed") || event == "manualJudgmentStop" {
        "danger"
    } else if event.ends_with("complete") || event == "manualJudgmentContinue" {
        "good"
    } else {
        "#439FE0"
    };
    let mut attachment = json!({
        "fallback": summary,
        "color": color,
        "title": summary,
        "fields": [
            {"title": "Application", "value": document["application"], "short": true},
            {"title": "Status", "value": document["status"], "short": true}
        ]
    });
    if let Some(link) = document["link"].as_str() {
        attachment["title_link"] = Value::String(link.to_owned());
    }
    if let Some(message) = document["message"].as_str() {
        attachment["text"] = Value::String(message.to_owned());
    }
    let mut text = summary;
    if let Some(link) = document["link"].as_str() {
        text = format!("{text} <{link}|view execution>");
    }
    let mut body = json!({"text": text, "attachments": [attachment]});
    if let Some(channel) = channel.filter(|c| !c.is_empty()) {
        body["channel"] = Value::String(channel.to_owned());
    }
    body
}

fn subject(document: &Value) -> String {
    match document["subject"].as_str() {
        Some(subject) if !subject.trim().is_empty() => subject.to_owned(),
        _ => format!("[Gennaker] {}", summary(document)),
    }
}

/// The default body with the event's message appended (as Spinnaker does), or the
/// notification's `customBody` instead.
fn email_body(document: &Value) -> String {
    if let Some(body) = document["body"].as_str().filter(|b| !b.trim().is_empty()) {
        return body.to_owned();
    }
    let mut body = format!("{}.\n", summary(document));
    if let Some(message) = document["message"].as_str() {
        body.push('\n');
        body.push_str(message);
        body.push('\n');
    }
    body.push_str(&format!(
        "\nExecution: {}\n",
        document["executionId"].as_str().unwrap_or_default()
    ));
    if let Some(link) = document["link"].as_str() {
        body.push_str(&format!("{link}\n"));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_stage() -> Value {
        json!({"type": "slack", "address": "#deploys", "event": "stage.failed",
               "executionId": "01E", "application": "shop", "pipeline": "deploy",
               "status": "TERMINAL", "link": "https://gk.example.com/api/v1/executions/01E",
               "message": "rollback now", "stage": {"name": "canary"}})
    }

    #[test]
    fn slack_messages_name_what_happened_and_link_to_the_execution() {
        let body = slack_body(&failed_stage(), Some("#deploys"));
        assert_eq!(body["channel"], "#deploys");
        assert_eq!(
            body["text"],
            "Stage 'canary' of pipeline 'deploy' (shop) failed (TERMINAL) <https://gk.example.com/api/v1/executions/01E|view execution>"
        );
        assert_eq!(body["attachments"][0]["color"], "danger");
        assert_eq!(body["attachments"][0]["text"], "rollback now");
        assert_eq!(
            body["attachments"][0]["title_link"],
            "https://gk.example.com/api/v1/executions/01E"
        );
    }

    #[test]
    fn errors_never_show_a_url_path_or_password() {
        let url = Url::parse("https://u:pw@hooks.slack.com/services/T0/B0/TOKEN?x=1").unwrap();
        let text = format!("error sending request for url ({url}): refused");
        let scrubbed = scrub(&text, &url, "hooks.slack.com");
        assert!(
            !scrubbed.contains("TOKEN") && !scrubbed.contains("pw"),
            "{scrubbed}"
        );
    }

    #[test]
    fn email_addresses_come_as_lists_or_separated_strings() {
        assert_eq!(addresses(&json!("a@x.io, b@x.io")), ["a@x.io", "b@x.io"]);
        assert_eq!(
            addresses(&json!(["a@x.io", "b@x.io;c@x.io"])),
            ["a@x.io", "b@x.io", "c@x.io"]
        );
        assert!(addresses(&Value::Null).is_empty());
    }
}
