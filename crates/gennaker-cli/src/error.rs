//! Everything that can go wrong in a client command, worded for the person at the
//! terminal: each message says what to check next.

use std::path::PathBuf;

use gennaker_core::{ExecutionStatus, Problem, Severity, SyntaxError};
use serde::Deserialize;

use crate::config::TokenSource;
use crate::output::problem_lines;
use crate::status::ReportedStatus;

/// Where the endpoint and token settings live; repeated in several messages.
const SETTINGS_HINT: &str = "Check --url / GENNAKER_URL / ~/.config/gennaker/config.toml";

/// A failed client command. `Display` is the whole message for the user (several lines
/// when the server listed problems); the binary prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing listens at the URL.
    #[error(
        "cannot reach Gennaker at {url}: connection refused. Is `gennaker server` running? {SETTINGS_HINT}"
    )]
    ConnectionRefused {
        /// The base URL that was tried.
        url: String,
    },
    /// The server could not be reached for another reason (DNS, TLS, timeout).
    #[error("cannot reach Gennaker at {url}: {reason}. {SETTINGS_HINT}")]
    Unreachable {
        /// The base URL that was tried.
        url: String,
        /// What the network layer reported.
        reason: String,
    },
    /// The configured URL is not an http(s) URL.
    #[error("`{url}` is not a valid server URL ({reason}). {SETTINGS_HINT}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// 401: no token, or one the server does not accept.
    #[error("{}", unauthorized_message(url, token_source, message))]
    Unauthorized {
        /// The base URL that was called.
        url: String,
        /// Where the token came from.
        token_source: TokenSource,
        /// The server's explanation.
        message: String,
    },
    /// 403: the token is valid but its user lacks a permission.
    #[error("permission denied: {message}. {hint}")]
    Forbidden {
        /// The server's message, naming the missing permission.
        message: String,
        /// What to do about it, which depends on the kind of route.
        hint: &'static str,
    },
    /// 404.
    #[error("not found: {message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// 400 and other client errors: the request or document was refused.
    #[error(
        "the server rejected the request: {message}{}",
        problem_lines(problems)
    )]
    Rejected {
        /// The server's summary.
        message: String,
        /// Every problem the server found in the document, when it sent them.
        problems: Vec<Problem>,
    },
    /// 409: the change collides with existing state.
    #[error("conflict: {message}")]
    Conflict {
        /// The server's explanation.
        message: String,
    },
    /// 5xx or an unexpected status.
    #[error("the server failed (HTTP {status}): {message}. Its log has the details")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A 2xx response whose body is not what this client expects.
    #[error(
        "unexpected response from the server: {0}. Is --url pointing at a Gennaker server of the same version?"
    )]
    InvalidResponse(String),
    /// `--url`/`GENNAKER_URL` names another server than the config file, and no token was
    /// given for it: the file's token is not sent to a server it was not saved for.
    #[error(
        "not sending the token from {} to {url}: it is saved for {token_url}. Pass --token or set GENNAKER_TOKEN for {url}, or change `url` in that file",
        path.display()
    )]
    TokenNotForUrl {
        /// The server the command would call.
        url: String,
        /// The server the config file's token belongs to.
        token_url: String,
        /// The config file.
        path: PathBuf,
    },
    /// The config file exists but cannot be used.
    #[error("cannot use the config file {}: {reason}. Valid keys are `url` and `token`", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file named on the command line cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not well-formed JSON or YAML.
    #[error("{}:{}:{}: syntax error: {}", path.display(), error.line, error.column, error.message)]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: SyntaxError,
    },
    /// Offline validation found errors; the problems were already printed.
    #[error("{} is not a valid pipeline: {errors} error(s), {warnings} warning(s)", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// How many errors.
        errors: usize,
        /// How many warnings.
        warnings: usize,
    },
    /// The arguments do not make sense together (beyond what clap checks).
    #[error("{0}")]
    Usage(String),
    /// A watched execution ended without succeeding.
    #[error("execution {id} ended {status}{}. Inspect it with `gennaker execution get {id}`{}", reason_suffix(reason), restart_hint(id, failed_stage.as_deref()))]
    ExecutionFailed {
        /// The execution.
        id: String,
        /// Its final status (`TERMINAL`, `CANCELED`, …, or one of a newer server).
        status: ReportedStatus,
        /// What made it fail, when the execution says (a stage's error, the
        /// cancellation reason).
        reason: Option<String>,
        /// The top-level stage that failed, by name.
        failed_stage: Option<String>,
    },
    /// `--timeout` passed while the watched execution was still going.
    #[error(
        "execution {id} is still {status} after {seconds}s; it goes on running. Follow it with `gennaker execution watch {id}` or stop it with `gennaker execution cancel {id}`"
    )]
    WatchTimeout {
        /// The execution.
        id: String,
        /// Its status when the wait ended.
        status: String,
        /// The timeout.
        seconds: u64,
    },
    /// The event stream ended again and again before the execution did.
    #[error(
        "lost the event stream of execution {id} ({reason}); it may still be running. Check the server, then `gennaker execution watch {id}` again"
    )]
    StreamLost {
        /// The execution.
        id: String,
        /// What happened last.
        reason: String,
    },
    /// A file the command was asked to write could not be written.
    #[error("cannot write {}: {source}. Check that its directory exists and is writable", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the result failed (e.g. stdout closed).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(reason) => format!(": {reason}"),
        None => String::new(),
    }
}

fn restart_hint(id: &str, stage: Option<&str>) -> String {
    match stage {
        Some(stage) => format!(
            "; after fixing the cause, `gennaker execution restart {id} '{stage}'` runs it again from that stage"
        ),
        None => String::new(),
    }
}

/// Exit status of a command whose watched execution SUCCEEDED (or that did not watch).
pub const EXIT_SUCCESS: u8 = 0;
/// Exit status of a command that failed before an execution could tell anything.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status when the watched execution ended TERMINAL.
pub const EXIT_TERMINAL: u8 = 3;
/// Exit status when the watched execution was CANCELED.
pub const EXIT_CANCELED: u8 = 4;
/// Exit status when the watched execution ended STOPPED or another unsuccessful way.
pub const EXIT_OTHER_END: u8 = 5;
/// Exit status when `--timeout` passed before the watched execution ended.
pub const EXIT_TIMEOUT: u8 = 6;

impl CliError {
    /// The process exit status for this error (see `gennaker execution watch --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::ExecutionFailed { status, .. } => match status {
                ReportedStatus::Known(ExecutionStatus::Terminal) => EXIT_TERMINAL,
                ReportedStatus::Known(ExecutionStatus::Canceled) => EXIT_CANCELED,
                _ => EXIT_OTHER_END,
            },
            CliError::WatchTimeout { .. } => EXIT_TIMEOUT,
            _ => EXIT_FAILURE,
        }
    }
}

fn unauthorized_message(url: &str, source: &TokenSource, message: &str) -> String {
    const ADMIN_TOKEN: &str = "The admin token is in <data-dir>/admin-token on the server machine \
         (default ~/.local/share/gennaker/admin-token), unless the server was started with \
         GENNAKER_ADMIN_TOKEN";
    match source {
        TokenSource::Missing => format!(
            "the server at {url} requires an API token and none was given ({message}). Pass \
             --token, set GENNAKER_TOKEN, or put `token = \"…\"` in \
             ~/.config/gennaker/config.toml. {ADMIN_TOKEN}"
        ),
        TokenSource::FlagOrEnv => format!(
            "the server at {url} rejected the token from --token / GENNAKER_TOKEN ({message}): \
             it is unknown, expired or revoked. Check its value or create a new one with \
             `gennaker token create`. {ADMIN_TOKEN}"
        ),
        TokenSource::ConfigFile(path) => format!(
            "the server at {url} rejected the token from {} ({message}): it is unknown, \
             expired or revoked. Check its value or create a new one with `gennaker token \
             create`. {ADMIN_TOKEN}",
            path.display()
        ),
    }
}

/// Advice for a 403. Application routes are governed by roles, which an admin can grant;
/// every other route that answers 403 (users, roles, the audit log, other users' tokens)
/// is for admins only, where a role would not help.
fn forbidden_hint(request: &str) -> &'static str {
    if request.contains("/api/v1/applications") || request.contains("/api/v1/canaryConfigs") {
        "Ask an admin to grant one of your roles that permission (`gennaker whoami` shows your roles)"
    } else {
        "Only admins may do this: ask one to do it for you (`gennaker whoami` shows whether you are an admin)"
    }
}

/// What a failed request was, so the error can say so when the server did not.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// Base URL of the server.
    pub(crate) base_url: String,
    /// `GET /api/v1/applications/shop`.
    pub(crate) request: String,
    pub(crate) token_source: TokenSource,
}

/// The error body every non-2xx response of the API carries.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default)]
    problems: Vec<WireProblem>,
}

/// A problem as the API sends it; the core type is serialize-only, so this mirrors it.
#[derive(Debug, Deserialize)]
pub(crate) struct WireProblem {
    severity: String,
    path: String,
    message: String,
    #[serde(default)]
    hint: Option<String>,
}

impl From<WireProblem> for Problem {
    fn from(wire: WireProblem) -> Self {
        Self {
            // An unknown severity from a newer server is treated as the stricter one.
            severity: if wire.severity.eq_ignore_ascii_case("warning") {
                Severity::Warning
            } else {
                Severity::Error
            },
            path: wire.path,
            message: wire.message,
            hint: wire.hint,
        }
    }
}

impl CliError {
    /// Builds the error for a non-2xx response from its status and body.
    pub(crate) fn from_response(status: u16, body: &str, context: &RequestContext) -> Self {
        let parsed = serde_json::from_str::<ErrorEnvelope>(body).ok();
        let Some(ErrorEnvelope { error }) = parsed else {
            return Self::foreign_response(status, body, context);
        };
        let message = error.message;
        let problems: Vec<Problem> = error.problems.into_iter().map(Problem::from).collect();
        match status {
            401 => Self::Unauthorized {
                url: context.base_url.clone(),
                token_source: context.token_source.clone(),
                message,
            },
            403 => Self::Forbidden {
                message,
                hint: forbidden_hint(&context.request),
            },
            404 => Self::NotFound { message },
            409 if problems.is_empty() => Self::Conflict { message },
            400..=499 => Self::Rejected { message, problems },
            _ => Self::Server { status, message },
        }
    }

    /// A response without Gennaker's error body: a proxy, another service, or a crash.
    fn foreign_response(status: u16, body: &str, context: &RequestContext) -> Self {
        let snippet = body_snippet(body);
        let request = &context.request;
        match status {
            401 => Self::Unauthorized {
                url: context.base_url.clone(),
                token_source: context.token_source.clone(),
                message: snippet.unwrap_or_else(|| "no details".to_owned()),
            },
            404 => Self::NotFound {
                message: format!(
                    "{request} does not exist at {}; is --url pointing at a Gennaker server?",
                    context.base_url
                ),
            },
            _ => {
                let message = match snippet {
                    Some(snippet) => format!("{request}: {snippet}"),
                    None => format!("{request}: empty response"),
                };
                match status {
                    403 => Self::Forbidden {
                        message,
                        hint: forbidden_hint(&context.request),
                    },
                    409 => Self::Conflict { message },
                    400..=499 => Self::Rejected {
                        message,
                        problems: Vec::new(),
                    },
                    _ => Self::Server { status, message },
                }
            }
        }
    }

    /// Maps a transport failure; "connection refused" gets its own, most common, advice.
    pub(crate) fn from_transport(err: &reqwest::Error, base_url: &str) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut innermost = err.to_string();
        while let Some(current) = source {
            if let Some(io) = current.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return Self::ConnectionRefused {
                    url: base_url.to_owned(),
                };
            }
            innermost = current.to_string();
            source = current.source();
        }
        let reason = if err.is_timeout() {
            "the request timed out".to_owned()
        } else {
            innermost
        };
        Self::Unreachable {
            url: base_url.to_owned(),
            reason,
        }
    }
}

/// The first line of a non-JSON body, short enough for a terminal.
fn body_snippet(body: &str) -> Option<String> {
    const MAX: usize = 200;
    let line = body.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(token_source: TokenSource) -> RequestContext {
        RequestContext {
            base_url: "http://127.0.0.1:7777".to_owned(),
            request: "GET /api/v1/applications/shop".to_owned(),
            token_source,
        }
    }

    fn error_body(code: &str, message: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": message}}).to_string()
    }

    #[test]
    fn unauthorized_without_token_says_where_tokens_come_from() {
        let err = CliError::from_response(
            401,
            &error_body("unauthorized", "missing bearer token"),
            &context(TokenSource::Missing),
        );
        let text = err.to_string();
        assert!(text.contains("none was given"), "{text}");
        assert!(text.contains("GENNAKER_TOKEN"), "{text}");
        assert!(text.contains("<data-dir>/admin-token"), "{text}");
    }

    #[test]
    fn unauthorized_with_token_names_its_source() {
        let text = CliError::from_response(
            401,
            &error_body("unauthorized", "invalid token"),
            &context(TokenSource::ConfigFile(PathBuf::from(
                "/home/u/.config/gennaker/config.toml",
            ))),
        )
        .to_string();
        assert!(
            text.contains("/home/u/.config/gennaker/config.toml"),
            "{text}"
        );
        assert!(text.contains("revoked"), "{text}");
        assert!(text.contains("invalid token"), "{text}");

        let text = CliError::from_response(401, "", &context(TokenSource::FlagOrEnv)).to_string();
        assert!(text.contains("--token / GENNAKER_TOKEN"), "{text}");
    }

    #[test]
    fn forbidden_shows_the_servers_message() {
        let text = CliError::from_response(
            403,
            &error_body("forbidden", "WRITE on application shop is required"),
            &context(TokenSource::FlagOrEnv),
        )
        .to_string();
        assert!(
            text.starts_with("permission denied: WRITE on application shop is required"),
            "{text}"
        );
    }

    #[test]
    fn forbidden_on_an_admin_route_does_not_suggest_roles() {
        let admin_route = RequestContext {
            request: "POST /api/v1/users".to_owned(),
            ..context(TokenSource::FlagOrEnv)
        };
        let text = CliError::from_response(
            403,
            &error_body(
                "forbidden",
                "user 'rita' is not an admin; only admins may do this",
            ),
            &admin_route,
        )
        .to_string();
        assert!(text.contains("Only admins may do this"), "{text}");
        assert!(!text.contains("grant one of your roles"), "{text}");

        let text = CliError::from_response(
            403,
            &error_body("forbidden", "user 'rita' lacks WRITE permission"),
            &context(TokenSource::FlagOrEnv),
        )
        .to_string();
        assert!(text.contains("grant one of your roles"), "{text}");
    }

    #[test]
    fn not_found_uses_the_server_message_or_explains_a_foreign_server() {
        let text = CliError::from_response(
            404,
            &error_body("not_found", "application shop does not exist"),
            &context(TokenSource::FlagOrEnv),
        )
        .to_string();
        assert_eq!(text, "not found: application shop does not exist");

        let text =
            CliError::from_response(404, "<html>nginx</html>", &context(TokenSource::FlagOrEnv))
                .to_string();
        assert!(
            text.contains("GET /api/v1/applications/shop does not exist"),
            "{text}"
        );
        assert!(text.contains("--url"), "{text}");
    }

    #[test]
    fn bad_request_lists_every_problem() {
        let body = serde_json::json!({"error": {
            "code": "bad_request",
            "message": "the pipeline has 2 problems",
            "problems": [
                {"severity": "error", "path": "$.stages[1].requisiteStageRefIds[0]",
                 "message": "no stage has refId 9", "hint": "existing refIds: 1, 2"},
                {"severity": "warning", "path": "$.stages[0].type",
                 "message": "Gennaker cannot run this stage type yet", "hint": null},
            ]
        }});
        let err = CliError::from_response(400, &body.to_string(), &context(TokenSource::FlagOrEnv));
        let CliError::Rejected { problems, .. } = &err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[1].severity, Severity::Warning);
        let text = err.to_string();
        assert!(
            text.starts_with("the server rejected the request: the pipeline has 2 problems\n"),
            "{text}"
        );
        assert!(
            text.contains("error    $.stages[1].requisiteStageRefIds[0]: no stage has refId 9"),
            "{text}"
        );
        assert!(text.contains("hint: existing refIds: 1, 2"), "{text}");
        assert!(text.contains("warning  $.stages[0].type"), "{text}");
    }

    #[test]
    fn conflict_and_server_errors() {
        let text = CliError::from_response(
            409,
            &error_body("conflict", "role qa exists"),
            &context(TokenSource::FlagOrEnv),
        )
        .to_string();
        assert_eq!(text, "conflict: role qa exists");
        let err = CliError::from_response(502, "Bad Gateway\n", &context(TokenSource::FlagOrEnv));
        assert!(matches!(err, CliError::Server { status: 502, .. }));
        assert!(err.to_string().contains("Bad Gateway"), "{err}");
    }

    #[test]
    fn exit_codes_follow_the_final_status() {
        let failed = |status: ReportedStatus| CliError::ExecutionFailed {
            id: "e1".to_owned(),
            status,
            reason: None,
            failed_stage: None,
        };
        let known = |status| failed(ReportedStatus::Known(status));
        assert_eq!(known(ExecutionStatus::Terminal).exit_code(), EXIT_TERMINAL);
        assert_eq!(known(ExecutionStatus::Canceled).exit_code(), EXIT_CANCELED);
        assert_eq!(known(ExecutionStatus::Stopped).exit_code(), EXIT_OTHER_END);
        let newer = failed(ReportedStatus::from_text("QUIESCED"));
        assert_eq!(newer.exit_code(), EXIT_OTHER_END);
        assert!(
            newer
                .to_string()
                .starts_with("execution e1 ended QUIESCED. "),
            "{newer}"
        );
    }

    #[test]
    fn long_foreign_bodies_are_cut() {
        let body = "x".repeat(1000);
        let text =
            CliError::from_response(500, &body, &context(TokenSource::FlagOrEnv)).to_string();
        assert!(text.len() < 400, "{text}");
        assert!(text.contains('…'));
    }
}
