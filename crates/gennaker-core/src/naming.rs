//! Server group and cluster names (Netflix Frigga / Spinnaker monikers):
//! `app[-stack[-detail]]-vNNN`.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The longest pipeline name accepted (in characters): enough for any real name, short
/// enough to fit a URL, a table and a log line.
pub const MAX_PIPELINE_NAME_LEN: usize = 256;

/// What is wrong with a name people will read (in a terminal, a log, a web page), if
/// anything: a control character (which could rewrite the reader's terminal) or more
/// than `max` characters. `kind` names it in the message ("pipeline name").
pub fn display_name_problem(kind: &str, name: &str, max: usize) -> Option<String> {
    if let Some(bad) = name.chars().find(|c| c.is_control()) {
        return Some(format!(
            "the {kind} contains the control character U+{:04X}; names may not contain control characters (newlines, tabs, escape sequences)",
            u32::from(bad)
        ));
    }
    let length = name.chars().count();
    (length > max)
        .then(|| format!("the {kind} is {length} characters long; at most {max} are allowed"))
}

/// Sequences wrap after this many versions (`v999` is followed by `v000`).
pub const SEQUENCE_MODULUS: u32 = 1000;

static PUSH: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^(.*)-v([0-9]{3,6})$").ok());

/// The parts of a server group or cluster name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Moniker {
    /// The application.
    pub app: String,
    /// The stack (`prod`, `staging`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Free-form detail; may contain `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The version of a server group (`v007` → 7); none for a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u32>,
}

/// A name part with characters Frigga cannot parse back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// The application part is empty.
    #[error("the application name is empty")]
    EmptyApp,
    /// A part holds a character outside its allowed set.
    #[error(
        "{part} '{value}' contains '{character}'; only letters, digits, '.' and '_'{dash} are allowed"
    )]
    InvalidCharacter {
        /// `application`, `stack` or `detail`.
        part: &'static str,
        /// The offending value.
        value: String,
        /// The first character not allowed.
        character: char,
        /// ", and '-'" for the detail, which allows it.
        dash: &'static str,
    },
}

/// Which part of a name is checked: the detail alone may contain `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    /// The application.
    App,
    /// The stack.
    Stack,
    /// The free-form detail.
    Detail,
}

impl NamePart {
    fn label(self) -> &'static str {
        match self {
            Self::App => "application",
            Self::Stack => "stack",
            Self::Detail => "detail",
        }
    }
}

/// Checks the characters of one name part (§8: `[a-zA-Z0-9._]`, plus `-` in the detail).
pub fn validate_name_part(part: NamePart, value: &str) -> Result<(), NamingError> {
    if part == NamePart::App && value.is_empty() {
        return Err(NamingError::EmptyApp);
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || c == '.' || c == '_' || (part == NamePart::Detail && c == '-')
    };
    match value.chars().find(|c| !allowed(*c)) {
        None => Ok(()),
        Some(character) => Err(NamingError::InvalidCharacter {
            part: part.label(),
            value: value.to_owned(),
            character,
            dash: if part == NamePart::Detail {
                ", and '-'"
            } else {
                ""
            },
        }),
    }
}

impl Moniker {
    /// A cluster moniker; empty stack/detail are treated as absent.
    pub fn new(app: &str, stack: Option<&str>, detail: Option<&str>) -> Result<Self, NamingError> {
        let stack = stack.filter(|s| !s.is_empty());
        let detail = detail.filter(|s| !s.is_empty());
        validate_name_part(NamePart::App, app)?;
        if let Some(stack) = stack {
            validate_name_part(NamePart::Stack, stack)?;
        }
        if let Some(detail) = detail {
            validate_name_part(NamePart::Detail, detail)?;
        }
        Ok(Self {
            app: app.to_owned(),
            stack: stack.map(str::to_owned),
            detail: detail.map(str::to_owned),
            sequence: None,
        })
    }

    /// The same moniker with a server group sequence.
    #[must_use]
    pub fn with_sequence(mut self, sequence: u32) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// `app`, `app-stack`, `app-stack-detail` or `app--detail`.
    pub fn cluster(&self) -> String {
        cluster_name(&self.app, self.stack.as_deref(), self.detail.as_deref())
    }

    /// The server group name (`app-stack-v007`), or the cluster name without a sequence.
    pub fn name(&self) -> String {
        match self.sequence {
            Some(sequence) => server_group_name(&self.cluster(), sequence),
            None => self.cluster(),
        }
    }

    /// The moniker of the next server group of this cluster: sequence + 1, wrapping
    /// `999` to `000`; `000` when this one has no sequence.
    #[must_use]
    pub fn next(&self) -> Self {
        let mut next = self.clone();
        next.sequence = Some(next_sequence(self.sequence));
        next
    }
}

impl fmt::Display for Moniker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Builds a cluster name the way Frigga does; a detail without a stack gives `app--detail`.
pub fn cluster_name(app: &str, stack: Option<&str>, detail: Option<&str>) -> String {
    let stack = stack.unwrap_or_default();
    let detail = detail.unwrap_or_default();
    if stack.is_empty() && detail.is_empty() {
        app.to_owned()
    } else if detail.is_empty() {
        format!("{app}-{stack}")
    } else {
        format!("{app}-{stack}-{detail}")
    }
}

/// `cluster-vNNN` with at least three digits.
pub fn server_group_name(cluster: &str, sequence: u32) -> String {
    format!("{cluster}-v{sequence:03}")
}

/// The sequence after `previous` (none → 0), wrapping after 999 like Clouddriver's
/// `AbstractServerGroupNameResolver`.
pub fn next_sequence(previous: Option<u32>) -> u32 {
    previous.map_or(0, |p| (p % SEQUENCE_MODULUS + 1) % SEQUENCE_MODULUS)
}

/// Parses a server group or cluster name. Like Frigga it never fails: a name that is not
/// made of moniker parts is returned as the application. Parts are split on the first two
/// `-`; a trailing `-vNNN` (3 to 6 digits) is the sequence.
pub fn parse_name(name: &str) -> Moniker {
    let (cluster, sequence) = match PUSH.as_ref().and_then(|re| re.captures(name)) {
        Some(caps) => {
            let cluster = caps.get(1).map_or("", |m| m.as_str());
            let sequence = caps.get(2).and_then(|m| m.as_str().parse::<u32>().ok());
            (cluster, sequence)
        }
        None => (name, None),
    };
    let mut parts = cluster.splitn(3, '-');
    let app = parts.next().unwrap_or_default().to_owned();
    let stack = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let detail = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    Moniker {
        app,
        stack,
        detail,
        sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert_eq!(cluster_name("app", None, None), "app");
        assert_eq!(cluster_name("app", Some("prod"), None), "app-prod");
        assert_eq!(cluster_name("app", None, Some("canary")), "app--canary");
        assert_eq!(
            cluster_name("app", Some("prod"), Some("a-b")),
            "app-prod-a-b"
        );
    }
}

#[cfg(test)]
mod display_name_tests {
    use super::*;

    #[test]
    fn display_names_refuse_control_characters_and_length() {
        assert_eq!(
            display_name_problem("pipeline name", "deploy prod", 256),
            None
        );
        let escape = display_name_problem("pipeline name", "x\u{1b}[2J", 256).unwrap_or_default();
        assert!(escape.contains("control character U+001B"), "{escape}");
        let long = display_name_problem("pipeline name", &"a".repeat(257), 256).unwrap_or_default();
        assert_eq!(
            long,
            "the pipeline name is 257 characters long; at most 256 are allowed"
        );
    }
}
