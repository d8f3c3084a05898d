//! A `[[webhooks.preconfigured]]` entry as an operator writes it, and the checks that
//! stop a server from starting on a bad one.

use std::collections::HashMap;

use gennaker_core::stage_types::StageCatalog;
use gennaker_core::{Fields, JsonPath, ValidationReport};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::super::monitor::compile_path;
use super::super::request::{parse_method, parse_url};
use super::super::rules::check_webhook;

/// One `[[webhooks.preconfigured]]` entry of the server's configuration (Orca's
/// `webhook.preconfigured`): a stage type of its own that calls a fixed endpoint. The
/// fields after `parameters` are the `webhook` stage's, with its names; those set here
/// override what a pipeline's stage says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreconfiguredWebhook {
    /// The `type` string pipelines use for the stage.
    #[serde(rename = "type", default)]
    pub stage_type: String,
    /// A short title (the type when unset).
    pub label: Option<String>,
    /// What the stage does, in a sentence.
    pub description: Option<String>,
    /// What a pipeline's stage fills in through `parameterValues`.
    #[serde(default)]
    pub parameters: Vec<WebhookParameter>,
    /// The http(s) URL to call; may use `${parameterValues.name}`.
    pub url: Option<String>,
    /// The HTTP method (POST when unset).
    pub method: Option<String>,
    /// Header name -> a value or a list of values.
    pub custom_headers: Option<Map<String, Value>>,
    /// The body: a TOML/JSON value, or a string of JSON (sent as written when a
    /// non-JSON `Content-Type` header is set).
    pub payload: Option<Value>,
    /// Whether to poll until the remote job ends.
    pub wait_for_completion: Option<bool>,
    /// `getMethod`, `locationHeader` or `webhookResponse`.
    pub status_url_resolution: Option<String>,
    /// Where the status URL is in the response (`webhookResponse`).
    pub status_url_json_path: Option<String>,
    /// Where the status is in a polled response.
    pub status_json_path: Option<String>,
    /// Where a progress message is in a polled response.
    pub progress_json_path: Option<String>,
    /// Comma-separated statuses that mean success.
    pub success_statuses: Option<String>,
    /// Comma-separated statuses that mean the remote job was canceled.
    pub canceled_statuses: Option<String>,
    /// Comma-separated statuses that mean failure.
    pub terminal_statuses: Option<String>,
    /// Status codes that fail the stage without retrying.
    pub fail_fast_status_codes: Option<Vec<u16>>,
    /// Status codes that are retried.
    pub retry_status_codes: Option<Vec<u16>>,
    /// Seconds to wait before the first poll.
    pub wait_before_monitor: Option<u64>,
    /// The URL called when the execution is canceled.
    pub cancel_endpoint: Option<String>,
    /// Its method (POST when unset).
    pub cancel_method: Option<String>,
    /// Its body.
    pub cancel_payload: Option<Value>,
}

/// A value a pipeline's stage gives a preconfigured webhook (Orca's
/// `PreconfiguredStageParameter`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookParameter {
    /// Its key in `parameterValues`.
    #[serde(default)]
    pub name: String,
    /// A short title (the name when unset).
    pub label: Option<String>,
    /// What it is for; shown when it is missing.
    pub description: Option<String>,
    /// Used when the stage gives none; without one the parameter is required.
    pub default_value: Option<Value>,
    /// `string` (the default) or `boolean`, which must be true or false.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl WebhookParameter {
    /// How messages name it.
    pub(super) fn title(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// Whether its values must be true or false.
    pub(super) fn is_boolean(&self) -> bool {
        self.kind.as_deref() == Some("boolean")
    }
}

/// What is wrong with a `[[webhooks.preconfigured]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "webhooks.preconfigured[{index}].{field}: {message}{}",
    entry_type(stage_type)
)]
pub struct WebhookConfigError {
    /// Which entry (from 0, in file order).
    pub index: usize,
    /// Its `type`, when it has one.
    pub stage_type: String,
    /// The field at fault (`url`, `parameters[1].name`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn entry_type(stage_type: &str) -> String {
    if stage_type.is_empty() {
        String::new()
    } else {
        format!(" (the entry of type '{stage_type}')")
    }
}

/// The parameter kinds an entry may declare.
const PARAMETER_KINDS: [&str; 2] = ["string", "boolean"];

/// Entry fields that describe the stage type rather than its call.
const TYPE_FIELDS: [&str; 4] = ["type", "label", "description", "parameters"];

/// An entry, checked: its `webhook` fields as a stage context.
pub(super) struct Checked {
    pub(super) fields: Map<String, Value>,
}

/// Checks every entry against the types `known` already defines and each other.
pub(super) fn check_all(
    known: &StageCatalog,
    webhooks: &[PreconfiguredWebhook],
) -> Result<Vec<Checked>, WebhookConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut checked = Vec::with_capacity(webhooks.len());
    for (index, webhook) in webhooks.iter().enumerate() {
        let entry = Entry { index, webhook };
        entry.check_type(known)?;
        if let Some(first) = seen.insert(webhook.stage_type.as_str(), index) {
            return Err(entry.error(
                "type",
                format!(
                    "'{}' is already defined by webhooks.preconfigured[{first}]; each entry needs its own type",
                    webhook.stage_type
                ),
            ));
        }
        checked.push(entry.check()?);
    }
    Ok(checked)
}

struct Entry<'a> {
    index: usize,
    webhook: &'a PreconfiguredWebhook,
}

impl Entry<'_> {
    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> WebhookConfigError {
        let field = field.into();
        let message = message.into();
        // The stage's messages start with the field, which the error names already.
        let message = match message.strip_prefix(&format!("{field} ")) {
            Some(rest) => rest.to_owned(),
            None => message,
        };
        WebhookConfigError {
            index: self.index,
            stage_type: self.webhook.stage_type.clone(),
            field,
            message,
        }
    }

    fn check_type(&self, known: &StageCatalog) -> Result<(), WebhookConfigError> {
        let stage_type = self.webhook.stage_type.as_str();
        if stage_type.trim().is_empty() {
            return Err(self.error(
                "type",
                "is missing: set it to the stage type pipelines will use, e.g. type = \"deployHook\"",
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if !stage_type.chars().all(allowed) {
            return Err(self.error(
                "type",
                format!("'{stage_type}' may only hold letters, digits, '_', '-' and '.'"),
            ));
        }
        if let Some(entry) = known.get(stage_type) {
            let builtin = &entry.descriptor.stage_type;
            let what = if builtin == stage_type {
                "a built-in stage type".to_owned()
            } else {
                format!("another name of the built-in stage type '{builtin}'")
            };
            return Err(self.error(
                "type",
                format!(
                    "'{stage_type}' is {what}; give the preconfigured webhook a type of its own"
                ),
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<Checked, WebhookConfigError> {
        let Value::Object(mut fields) =
            serde_json::to_value(self.webhook).map_err(|e| self.error("type", e.to_string()))?
        else {
            return Err(self.error("type", "the entry is not a table"));
        };
        fields.retain(|key, value| !value.is_null() && !TYPE_FIELDS.contains(&key.as_str()));
        self.check_parameters()?;
        self.check_url("url", fields.get("url"), true)?;
        self.check_url("cancelEndpoint", fields.get("cancelEndpoint"), false)?;
        for key in ["method", "cancelMethod"] {
            if let Some(method) = fields.get(key) {
                parse_method(key, Some(method), Method::POST).map_err(|e| self.error(key, e))?;
            }
        }
        self.check_headers(fields.get("customHeaders"))?;
        if let Some(payload) = self.payload(fields.get("payload"))? {
            fields.insert("payload".into(), payload);
        }
        for key in ["statusUrlJsonPath", "statusJsonPath", "progressJsonPath"] {
            if let Some(text) = fields.get(key).and_then(Value::as_str)
                && !text.contains("${")
            {
                compile_path(key, text).map_err(|e| self.error(key, e))?;
            }
        }
        // The stage's own rules, for what the entry sets: what it leaves open (say
        // statusJsonPath) a pipeline's stage may still give.
        let mut report = ValidationReport::default();
        check_webhook(&Fields::new(&fields, JsonPath::root()), &mut report);
        if let Some(problem) = report.errors().find(|p| {
            let field = field_of(&p.path);
            fields.contains_key(field.split(['.', '[']).next().unwrap_or_default())
        }) {
            let message = match &problem.hint {
                Some(hint) => format!("{} ({hint})", problem.message),
                None => problem.message.clone(),
            };
            return Err(self.error(field_of(&problem.path), message));
        }
        Ok(Checked { fields })
    }

    /// A URL: http(s), or an expression whose fixed start is.
    fn check_url(
        &self,
        field: &str,
        value: Option<&Value>,
        required: bool,
    ) -> Result<(), WebhookConfigError> {
        let text = match value.and_then(Value::as_str).map(str::trim) {
            Some(text) if !text.is_empty() => text,
            _ if required => {
                return Err(self.error(
                    field,
                    "is missing: set it to the http(s) URL the stage calls",
                ));
            }
            _ => return Ok(()),
        };
        match text.find("${") {
            None => parse_url(field, value)
                .map(drop)
                .map_err(|e| self.error(field, e)),
            Some(at) => {
                let fixed = &text[..at];
                let http = ["http://", "https://"]
                    .iter()
                    .any(|scheme| fixed.starts_with(scheme) || scheme.starts_with(fixed));
                if http {
                    Ok(())
                } else {
                    Err(self.error(
                        field,
                        format!("'{text}' is not an http:// or https:// URL; webhooks only call http and https"),
                    ))
                }
            }
        }
    }

    fn check_headers(&self, headers: Option<&Value>) -> Result<(), WebhookConfigError> {
        let Some(Value::Object(headers)) = headers else {
            return Ok(());
        };
        for (name, value) in headers {
            let field = format!("customHeaders.{name}");
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.error(&field, format!("'{name}' is not a valid header name")))?;
            let values = match value {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            for value in values {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(_) | Value::Bool(_) => value.to_string(),
                    _ => {
                        return Err(self.error(&field, "must be a string or a list of strings"));
                    }
                };
                if !text.contains("${") && HeaderValue::from_str(&text).is_err() {
                    return Err(self.error(&field, "is not a valid header value"));
                }
            }
        }
        Ok(())
    }

    /// A string payload is JSON text (Orca writes payloads so) unless a non-JSON
    /// `Content-Type` says it is sent as written.
    fn payload(&self, payload: Option<&Value>) -> Result<Option<Value>, WebhookConfigError> {
        let Some(Value::String(text)) = payload else {
            return Ok(None);
        };
        let declared = self
            .webhook
            .custom_headers
            .iter()
            .flatten()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.to_string().to_ascii_lowercase());
        if declared.is_some_and(|kind| !kind.contains("json")) {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some).map_err(|e| {
            self.error(
                "payload",
                format!(
                    "is a string but not JSON ({e}); write it as a TOML table, as JSON text, or set a non-JSON Content-Type header to send it as written"
                ),
            )
        })
    }

    fn check_parameters(&self) -> Result<(), WebhookConfigError> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, parameter) in self.webhook.parameters.iter().enumerate() {
            let field = |key: &str| format!("parameters[{i}].{key}");
            let name = parameter.name.trim();
            if name.is_empty() {
                return Err(self.error(
                    field("name"),
                    "is missing: set it to the key stages give the value under in parameterValues",
                ));
            }
            if let Some(first) = names.insert(name, i) {
                return Err(self.error(
                    field("name"),
                    format!("'{name}' is already the name of parameters[{first}]"),
                ));
            }
            if let Some(kind) = &parameter.kind
                && !PARAMETER_KINDS.contains(&kind.as_str())
            {
                return Err(self.error(
                    field("type"),
                    format!("'{kind}' is not one of {}", PARAMETER_KINDS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// `$.failFastStatusCodes[1]` -> `failFastStatusCodes[1]`.
fn field_of(path: &str) -> &str {
    path.trim_start_matches('$').trim_start_matches('.')
}
