//! Reading submitted documents (JSON or YAML) and turning validation into API errors.

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use gennaker_core::{DocumentFormat, Problem, Severity, ValidationReport, parse_document};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Parses a request body as YAML when its content type says so, else as JSON.
pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let is_yaml = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("yaml"));
    let format = if is_yaml {
        DocumentFormat::Yaml
    } else {
        DocumentFormat::Json
    };
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not UTF-8 text: {e}")))?;
    parse_document(text, format).map_err(|err| ApiError::BadRequest {
        message: format!(
            "the document is not valid {}: {err}",
            if is_yaml { "YAML" } else { "JSON" }
        ),
        problems: vec![Problem {
            severity: Severity::Error,
            path: "$".to_owned(),
            message: err.to_string(),
            hint: None,
        }],
    })
}

/// Turns a report with errors into a 400 listing every problem; passes warnings through.
pub(crate) fn reject_errors(what: &str, report: ValidationReport) -> ApiResult<Vec<Problem>> {
    let error_count = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if error_count > 0 {
        return Err(ApiError::BadRequest {
            message: format!("the {what} has {error_count} error(s); nothing was saved"),
            problems: report.problems,
        });
    }
    Ok(report.problems)
}

/// A 400 for one field of a document.
pub(crate) fn field_error(path: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        message: message.clone(),
        problems: vec![Problem {
            severity: Severity::Error,
            path: path.to_owned(),
            message,
            hint: None,
        }],
    }
}
