//! Execution statuses as the client reads them from a server and takes them as arguments.

use std::ffi::OsStr;
use std::fmt;

use clap::builder::{PossibleValue, TypedValueParser};
use gennaker_core::{ALL_STATUSES, ExecutionStatus};
use serde::{Deserialize, Deserializer};

/// A status a server reported for an execution, stage or task.
///
/// A newer server may send a status this client does not know. Failing the whole
/// read over one field would leave `execution get` and `watch` useless against it, so
/// such a status is kept as its raw text: shown as sent, never "complete" by itself
/// (see [`ReportedStatus::is_complete`]), and an end that is not success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportedStatus {
    /// One of Spinnaker's statuses.
    Known(ExecutionStatus),
    /// A status this client does not know, as the server spelled it.
    Unknown(String),
}

impl ReportedStatus {
    /// Reads a status as a server spells it. Matching is exact (servers send
    /// `RUNNING`), so the text shown is always the text received.
    pub fn from_text(text: &str) -> Self {
        match ALL_STATUSES.iter().find(|s| s.as_str() == text) {
            Some(status) => ReportedStatus::Known(*status),
            None => ReportedStatus::Unknown(text.to_owned()),
        }
    }

    /// Whether this is exactly `status`.
    pub fn is(&self, status: ExecutionStatus) -> bool {
        *self == ReportedStatus::Known(status)
    }

    /// Whether nothing more will happen. An unknown status is not: whether it is final
    /// cannot be told from its name.
    pub fn is_complete(&self) -> bool {
        matches!(self, ReportedStatus::Known(s) if s.is_complete())
    }
}

impl fmt::Display for ReportedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportedStatus::Known(status) => f.write_str(status.as_str()),
            ReportedStatus::Unknown(text) => f.write_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for ReportedStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(ReportedStatus::from_text(&text))
    }
}

/// Parses `--status` values: Spinnaker's names, any case; help and errors list them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusParser;

impl TypedValueParser for StatusParser {
    type Value = ExecutionStatus;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<ExecutionStatus, clap::Error> {
        let text = value.to_string_lossy();
        ExecutionStatus::parse(&text).ok_or_else(|| {
            let valid: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
            let arg = arg.map_or_else(|| "--status".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "invalid value '{text}' for '{arg}': not a status; valid statuses (any case) are {}\n",
                    valid.join(", ")
                ),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            ALL_STATUSES.iter().map(|s| PossibleValue::new(s.as_str())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long, value_delimiter = ',', value_parser = StatusParser)]
        status: Vec<ExecutionStatus>,
    }

    #[test]
    fn unknown_statuses_keep_their_text() {
        let status: ReportedStatus = serde_json::from_str("\"AWAITING_QUORUM\"").unwrap();
        assert_eq!(status, ReportedStatus::Unknown("AWAITING_QUORUM".into()));
        assert_eq!(status.to_string(), "AWAITING_QUORUM");
        assert!(!status.is_complete());
        let status: ReportedStatus = serde_json::from_str("\"FAILED_CONTINUE\"").unwrap();
        assert!(status.is(ExecutionStatus::FailedContinue));
        assert!(status.is_complete());
        assert_eq!(status.to_string(), "FAILED_CONTINUE");
    }

    #[test]
    fn status_arguments_parse_in_any_case_and_errors_list_the_valid_ones() {
        let args =
            Args::try_parse_from(["t", "--status", "running,Terminal", "--status", "PAUSED"])
                .unwrap();
        assert_eq!(
            args.status,
            [
                ExecutionStatus::Running,
                ExecutionStatus::Terminal,
                ExecutionStatus::Paused
            ]
        );
        let err = Args::try_parse_from(["t", "--status", "done"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid value 'done' for '--status"), "{err}");
        assert!(err.contains("NOT_STARTED, RUNNING,"), "{err}");
        assert!(err.contains("BUFFERED"), "{err}");
    }
}
