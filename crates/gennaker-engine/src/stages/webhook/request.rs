//! Building and sending a webhook's requests: the URL, method and headers from the
//! stage's context, the idempotency key, and what a response's status code means.

use gennaker_outbound::{OutboundError, read_capped, refusal_of};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use gennaker_core::execution::{Execution, StageExecution};
use gennaker_core::lenient::value_as_i64;
use gennaker_core::redact::redact_url_passwords;

use crate::task::Services;

/// The methods a webhook may use.
pub(super) const HTTP_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The header that lets the remote side recognise a repeated request.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Response headers never recorded: they carry session credentials.
const SECRET_RESPONSE_HEADERS: [&str; 1] = ["set-cookie"];

/// The key every request of this stage execution carries.
pub(super) fn idempotency_key(execution: &Execution, stage: &StageExecution) -> String {
    format!("{}:{}:{}", execution.id, stage.id, stage.restarts)
}

/// An absolute http(s) URL from a context field.
pub(super) fn parse_url(field: &str, value: Option<&Value>) -> Result<Url, String> {
    let text = match value {
        Some(Value::String(text)) if !text.trim().is_empty() => text.trim(),
        None | Some(Value::Null) => {
            return Err(format!(
                "the webhook has no {field}: set \"{field}\" to the http(s) URL to call"
            ));
        }
        Some(other) => return Err(format!("{field} must be a URL string, not {other}")),
    };
    if text.contains("${") {
        let text = redact_url_passwords(text);
        return Err(format!(
            "{field} '{text}' still holds an expression that could not be evaluated (see expressionEvaluationSummary); fix the expression"
        ));
    }
    let url = Url::parse(text).map_err(|e| {
        let text = redact_url_passwords(text);
        format!("{field} '{text}' is not a valid URL ({e}); write it like https://host/path")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{field} '{}' is not an http:// or https:// URL; webhooks only call http and https",
            redact_url_passwords(text)
        ));
    }
    Ok(url)
}

/// An HTTP method from a context field (any case), or `default`.
pub(super) fn parse_method(
    field: &str,
    value: Option<&Value>,
    default: Method,
) -> Result<Method, String> {
    let text = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(default),
        Some(Value::String(text)) => text.trim().to_ascii_uppercase(),
        Some(other) => return Err(format!("{field} must be an HTTP method name, not {other}")),
    };
    if !HTTP_METHODS.contains(&text.as_str()) {
        return Err(format!(
            "{field} '{text}' is not an HTTP method; use one of {}",
            HTTP_METHODS.join(", ")
        ));
    }
    Method::from_bytes(text.as_bytes()).map_err(|e| format!("{field} '{text}': {e}"))
}

/// `customHeaders` (a value may be a string, a number or a list of them) plus the
/// idempotency key, unless the user set one themselves.
pub(super) fn request_headers(stage: &StageExecution, key: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    match stage.context.get("customHeaders") {
        None | Some(Value::Null) => {}
        Some(Value::Object(custom)) => {
            for (name, value) in custom {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    format!("customHeaders: '{name}' is not a valid HTTP header name")
                })?;
                let values = match value {
                    Value::Array(items) => items.iter().collect(),
                    Value::Null => Vec::new(),
                    single => vec![single],
                };
                for value in values {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let value = HeaderValue::from_str(&text).map_err(|_| {
                        format!("customHeaders['{name}'] is not a valid header value")
                    })?;
                    headers.append(header.clone(), value);
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "customHeaders must be an object of header names to values, not {other}"
            ));
        }
    }
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        let value = HeaderValue::from_str(key)
            .map_err(|_| format!("cannot send the idempotency key '{key}' as a header"))?;
        headers.insert(IDEMPOTENCY_KEY, value);
    }
    Ok(headers)
}

/// HTTP status codes from a list (numbers or numeric strings) or a CSV string.
pub(super) fn status_codes(value: Option<&Value>) -> Vec<u16> {
    let as_code = |v: &Value| value_as_i64(v).and_then(|n| u16::try_from(n).ok());
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(as_code).collect(),
        Some(Value::String(csv)) => csv
            .split(',')
            .filter_map(|s| s.trim().parse::<u16>().ok())
            .collect(),
        Some(single @ Value::Number(_)) => as_code(single).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A response, as recorded.
pub(super) struct Reply {
    pub(super) status: u16,
    headers: Map<String, Value>,
    pub(super) location: Option<String>,
    pub(super) body: Value,
    /// Whether the body was longer than the outbound policy's `max_response_bytes`
    /// (only its start is kept, as text).
    truncated: bool,
}

impl Reply {
    /// Orca's `webhook` (or `monitor`, `cancel`) record of a response.
    pub(super) fn record(&self) -> Map<String, Value> {
        let mut record = Map::new();
        record.insert("statusCode".into(), json!(self.status));
        // Orca's name for the numeric code; expressions written for Spinnaker use it.
        record.insert("statusCodeValue".into(), json!(self.status));
        record.insert("headers".into(), Value::Object(self.headers.clone()));
        if !self.body.is_null() {
            record.insert("body".into(), self.body.clone());
        }
        if self.truncated {
            record.insert("truncated".into(), Value::Bool(true));
        }
        record
    }
}

/// Why a request got no response.
pub(super) enum SendError {
    /// The outbound policy refused the URL, an address it resolved to, or a redirect.
    Refused {
        error: OutboundError,
        /// Whether a redirect (not the URL itself) was refused.
        redirect: bool,
    },
    /// The request failed (connection refused, timeout, a broken body).
    Failed(reqwest::Error),
}

impl SendError {
    /// Whether repeating the request may help: a refusal never does.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            Self::Refused { .. } => false,
            Self::Failed(error) => is_transient(error),
        }
    }

    /// What went wrong with a request to `url` (the context `field` that held it),
    /// as a sentence for the stage's error; a password in a URL is hidden.
    pub(super) fn describe(&self, field: &str, method: &Method, url: &Url) -> String {
        let text = match self {
            Self::Refused {
                error: error @ OutboundError::ForbiddenAddress { url: refused, .. },
                redirect: false,
            } if *refused == url.to_string() => format!("webhook {field} {error}"),
            Self::Refused {
                error,
                redirect: true,
            } => format!(
                "webhook {method} {url} ({field}) was redirected somewhere outbound requests may not go: {error}"
            ),
            Self::Refused { error, .. } => {
                format!("webhook {method} {url} ({field}) was refused: {error}")
            }
            Self::Failed(error) => {
                format!("webhook {method} {url} failed: {}", describe(error))
            }
        };
        redact_url_passwords(&text).into_owned()
    }
}

/// Sends one request (a JSON payload unless a text one goes with a non-JSON
/// `Content-Type`) through the engine's outbound policy and reads the response, its
/// body cut at the policy's `max_response_bytes`.
pub(super) async fn send(
    services: &Services,
    method: Method,
    url: &Url,
    headers: HeaderMap,
    payload: Option<&Value>,
) -> Result<Reply, SendError> {
    // A URL with an address is never resolved: refuse it before any connection.
    services
        .outbound
        .check_url(url)
        .map_err(|error| SendError::Refused {
            error,
            redirect: false,
        })?;
    let mut request = services
        .http
        .request(method, url.clone())
        .timeout(services.outbound.request_timeout())
        .headers(headers.clone());
    if let Some(payload) = payload {
        let declared = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        request = match (payload, declared) {
            // A text payload with a non-JSON content type goes as written.
            (Value::String(text), Some(kind)) if !kind.contains("json") => {
                request.body(text.clone())
            }
            (payload, declared) => {
                let body = serde_json::to_vec(payload).unwrap_or_default();
                let request = request.body(body);
                if declared.is_none() {
                    request.header(CONTENT_TYPE, "application/json")
                } else {
                    request
                }
            }
        };
    }
    let failed = |error: reqwest::Error| match refusal_of(&error) {
        Some(refused) => SendError::Refused {
            error: refused.clone(),
            redirect: error.is_redirect(),
        },
        None => SendError::Failed(error),
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let mut recorded = Map::new();
    for name in response.headers().keys() {
        if SECRET_RESPONSE_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let values: Vec<&str> = response
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        recorded.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let max = services.outbound.max_response_bytes();
    let capped = read_capped(response, max)
        .await
        .map_err(SendError::Failed)?;
    let (bytes, truncated) = (capped.bytes, capped.truncated);
    let body = if bytes.is_empty() {
        Value::Null
    } else if truncated {
        // Cut JSON does not parse: the kept start is stored as text, marked.
        Value::String(format!(
            "{}… (truncated at {max} bytes)",
            String::from_utf8_lossy(&bytes)
        ))
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Reply {
        status,
        headers: recorded,
        location,
        body,
        truncated,
    })
}

/// `url` for a message: its password hidden (messages are shown to every reader of
/// the execution and may be logged).
pub(super) fn shown(url: &Url) -> String {
    redact_url_passwords(url.as_str()).into_owned()
}

/// A request error with its causes: reqwest's own text ("error sending request for
/// url …") leaves out the refused connection or the DNS failure behind it. A password
/// in the URL is hidden.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    redact_url_passwords(&text).into_owned()
}

/// Whether a failed request is worth repeating: the server could not be reached or
/// did not answer in time. (A repeated POST is safe enough: it carries the same
/// idempotency key.)
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_body() || error.is_request()
}

/// What a status code means for a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Class {
    Success,
    Retry,
    FailFast,
    Fail,
}

/// Orca's reading of a status code: `failFastStatusCodes` first, then 2xx/3xx, then
/// what is worth retrying (5xx, 429 and `retryStatusCodes`).
pub(super) fn classify(status: u16, fail_fast: &[u16], retry: &[u16]) -> Class {
    if fail_fast.contains(&status) {
        Class::FailFast
    } else if (200..400).contains(&status) {
        Class::Success
    } else if status >= 500 || status == 429 || retry.contains(&status) {
        Class::Retry
    } else {
        Class::Fail
    }
}

/// A short, readable excerpt of a response body for an error message.
pub(super) fn excerpt(body: &Value) -> String {
    let text = match body {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!(": {short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_classify_like_orca() {
        assert_eq!(classify(200, &[], &[]), Class::Success);
        assert_eq!(classify(302, &[], &[]), Class::Success);
        assert_eq!(classify(503, &[], &[]), Class::Retry);
        assert_eq!(classify(429, &[], &[]), Class::Retry);
        assert_eq!(classify(409, &[], &[409]), Class::Retry);
        assert_eq!(classify(400, &[], &[]), Class::Fail);
        assert_eq!(classify(504, &[504], &[]), Class::FailFast);
    }

    #[test]
    fn codes_and_lists_are_lenient() {
        assert_eq!(status_codes(Some(&json!([500, "502"]))), vec![500, 502]);
        assert_eq!(status_codes(Some(&json!("409, 423"))), vec![409, 423]);
        assert!(parse_method("method", Some(&json!("fetch")), Method::POST).is_err());
        assert_eq!(
            parse_method("method", Some(&json!("put")), Method::POST).ok(),
            Some(Method::PUT)
        );
        assert!(parse_url("url", Some(&json!("ftp://x.example.com"))).is_err());
        assert!(parse_url("url", Some(&json!("https://x/${nope}"))).is_err());
    }

    #[test]
    fn messages_never_quote_a_url_password() {
        for bad in [
            "ftp://user:pa55@x.example.com",
            "https://user:pa55@x/${nope}",
            "https://user:pa55@[bad",
        ] {
            let error = parse_url("url", Some(&json!(bad))).unwrap_err();
            assert!(
                !error.contains("pa55") && error.contains("user:***@"),
                "{error}"
            );
        }
        let url = Url::parse("https://user:pa55@x.example.com/hook").unwrap();
        assert_eq!(shown(&url), "https://user:***@x.example.com/hook");
    }
}
