//! The shared vocabulary of validation output: problems, their severity and their path.
//!
//! Paths are JSONPath-like (`$.stages[2].requisiteStageRefIds[0]`, `$['odd key']`) and
//! the expression crate uses the same format, so a user sees one notation everywhere.

use std::fmt;

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The document must not be saved or run as is.
    Error,
    /// The document is saved, but something will not work or looks wrong.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One finding about a document, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Where: `$.stages[2].requisiteStageRefIds[0]`.
    pub path: String,
    /// What is wrong, in a sentence a user can act on.
    pub message: String,
    /// How to fix it, when there is something better to say than the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Problem {
    /// An error at `path`.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// The same problem with a hint attached.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.severity, self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every problem found in one document, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    /// Errors and warnings together.
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    /// True when there is no error (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    /// Adds a problem.
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Adds every problem of another report (e.g. a sub-document's).
    pub fn extend(&mut self, other: ValidationReport) {
        self.problems.extend(other.problems);
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(key: &str) -> Self {
        Self::Key(key.to_owned())
    }
}

impl From<String> for PathSegment {
    fn from(key: String) -> Self {
        Self::Key(key)
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// A location in a JSON document; cheap to extend while walking a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<PathSegment>,
}

impl JsonPath {
    /// The document root, `$`.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by an object key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        self.child(PathSegment::Key(key.to_owned()))
    }

    /// This path extended by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        self.child(PathSegment::Index(index))
    }

    /// This path extended by one segment.
    #[must_use]
    pub fn child(&self, segment: PathSegment) -> Self {
        let mut segments = self.segments.clone();
        segments.push(segment);
        Self { segments }
    }

    /// The segments from the root.
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&json_path(self.segments.iter().cloned()))
    }
}

impl From<&JsonPath> for String {
    fn from(path: &JsonPath) -> Self {
        path.to_string()
    }
}

impl From<JsonPath> for String {
    fn from(path: JsonPath) -> Self {
        path.to_string()
    }
}

/// Formats path segments: `$`, `.key` for identifier-like keys, `['key']` otherwise
/// (with `\` and `'` escaped), `[i]` for indices.
pub fn json_path<I, S>(segments: I) -> String
where
    I: IntoIterator<Item = S>,
    S: Into<PathSegment>,
{
    let mut out = String::from("$");
    for segment in segments {
        match segment.into() {
            PathSegment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            PathSegment::Key(key) if is_identifier(&key) => {
                out.push('.');
                out.push_str(&key);
            }
            PathSegment::Key(key) => {
                out.push_str("['");
                for c in key.chars() {
                    if c == '\'' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push_str("']");
            }
        }
    }
    out
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_paths() {
        let segments: Vec<PathSegment> = vec![
            "stages".into(),
            2usize.into(),
            "requisiteStageRefIds".into(),
            0usize.into(),
        ];
        assert_eq!(json_path(segments), "$.stages[2].requisiteStageRefIds[0]");
        assert_eq!(json_path(["a b", "it's"]), r"$['a b']['it\'s']");
        assert_eq!(json_path(Vec::<PathSegment>::new()), "$");
        assert_eq!(
            JsonPath::root().key("9lives").index(1).to_string(),
            "$['9lives'][1]"
        );
    }
}
