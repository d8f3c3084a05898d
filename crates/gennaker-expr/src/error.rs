//! Errors, warnings and Spinnaker's `expressionEvaluationSummary` entries.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of failure an [`ExprError`] reports.
///
/// Serialized in `snake_case` (`"null_reference"`), which engines persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The template or expression is malformed.
    Syntax,
    /// A SpEL construct the sandbox refuses: `T()`, `new`, bean references, assignment.
    Unsupported,
    /// A `#name(...)` call to a function the registry does not hold.
    UnknownFunction,
    /// A property, index, method or selection applied to `null` without `?.`.
    NullReference,
    /// An operand or target of the wrong type.
    Type,
    /// A list or string index out of range.
    Index,
    /// A method that is not allow-listed, or called with wrong arguments.
    Method,
    /// Division by zero, integer overflow, or a non-finite number.
    Arithmetic,
    /// A regular expression that does not compile or is too large.
    Regex,
    /// A helper function reported a failure.
    Function,
    /// [`Limits::max_steps`](crate::Limits::max_steps) was exceeded.
    StepLimit,
    /// [`Limits::max_depth`](crate::Limits::max_depth) was exceeded.
    DepthLimit,
    /// [`Limits::max_collection_size`](crate::Limits::max_collection_size) was exceeded.
    CollectionLimit,
    /// [`Limits::max_string_length`](crate::Limits::max_string_length) was exceeded.
    OutputLimit,
    /// [`Limits::max_expression_length`](crate::Limits::max_expression_length) was exceeded.
    LengthLimit,
}

impl ErrorKind {
    /// The `snake_case` name used in serialized errors and the corpus files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Unsupported => "unsupported",
            Self::UnknownFunction => "unknown_function",
            Self::NullReference => "null_reference",
            Self::Type => "type",
            Self::Index => "index",
            Self::Method => "method",
            Self::Arithmetic => "arithmetic",
            Self::Regex => "regex",
            Self::Function => "function",
            Self::StepLimit => "step_limit",
            Self::DepthLimit => "depth_limit",
            Self::CollectionLimit => "collection_limit",
            Self::OutputLimit => "output_limit",
            Self::LengthLimit => "length_limit",
        }
    }

    /// The Java exception class Spinnaker would report for this failure, so that
    /// `exceptionType` in an evaluation summary reads the same as it does in Deck.
    pub fn exception_type(self) -> &'static str {
        match self {
            Self::Syntax | Self::Unsupported | Self::LengthLimit => "SpelParseException",
            Self::Function => "SpelHelperFunctionException",
            _ => "SpelEvaluationException",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parse or evaluation failure, positioned in the text the user wrote.
///
/// `expression` is the whole template (`"deploy ${trigger.tga}"`), so `offset` and
/// `column` point where the user looks. `Display` renders the offending line with a
/// caret under the position, then the hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExprError {
    /// What failed.
    pub kind: ErrorKind,
    /// The cause, in one sentence.
    pub message: String,
    /// The template or expression text the position refers to.
    pub expression: String,
    /// Byte offset into `expression`.
    pub offset: usize,
    /// 1-based line of the position (templates may span lines in YAML).
    pub line: usize,
    /// 1-based column of the position, counted in characters within its line.
    pub column: usize,
    /// A suggestion, e.g. `did you mean 'tag'?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ExprError {
    /// Builds an error at a byte offset of `expression`, computing line and column.
    pub fn new(
        kind: ErrorKind,
        message: impl Into<String>,
        expression: &str,
        offset: usize,
    ) -> Self {
        let offset = clamp_to_char_boundary(expression, offset);
        let (line, column) = line_column(expression, offset);
        Self {
            kind,
            message: message.into(),
            expression: expression.to_owned(),
            offset,
            line,
            column,
            hint: None,
        }
    }

    /// Attaches a hint shown after the caret.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches a hint when there is one.
    #[must_use]
    pub(crate) fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    /// The entry Spinnaker stores in a stage's `expressionEvaluationSummary` for this
    /// failure; `timestamp` is epoch milliseconds, supplied by the host (no clock here).
    pub fn summary_entry(&self, field: &str, timestamp: i64) -> SummaryEntry {
        let mut description = format!("Failed to evaluate [{field}] {}", self.message);
        if let Some(hint) = &self.hint {
            description.push_str("; ");
            description.push_str(hint);
        }
        SummaryEntry {
            description,
            exception_type: Some(self.kind.exception_type().to_owned()),
            level: SummaryLevel::Error,
            timestamp,
        }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.expression.contains('\n') {
            write!(
                f,
                "{} (line {}, column {})",
                self.message, self.line, self.column
            )?;
        } else {
            write!(f, "{} (column {})", self.message, self.column)?;
        }
        let text = self
            .expression
            .lines()
            .nth(self.line.saturating_sub(1))
            .unwrap_or("");
        let shown: String = text
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        write!(
            f,
            "\n  {shown}\n  {}^",
            " ".repeat(self.column.saturating_sub(1))
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why an evaluation produced a value the user may not have meant, without failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningKind {
    /// A map had no such key, so the access read `null` (Spinnaker's rule).
    MissingProperty,
    /// `#name` named no variable, so it read `null`.
    UndefinedVariable,
    /// A `${…}` inside a longer text evaluated to `null`; its source text was kept.
    UnresolvedPart,
}

/// A non-fatal finding from an evaluation, e.g. a key read as `null` that was
/// probably misspelt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    /// What happened.
    pub kind: WarningKind,
    /// The finding, in one sentence.
    pub message: String,
    /// Byte offset into the template.
    pub offset: usize,
    /// 1-based column of `offset` within its line.
    pub column: usize,
    /// A suggestion, e.g. `did you mean 'tag'?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Warning {
    pub(crate) fn new(
        kind: WarningKind,
        message: String,
        source: &str,
        offset: usize,
        hint: Option<String>,
    ) -> Self {
        let offset = clamp_to_char_boundary(source, offset);
        let (_, column) = line_column(source, offset);
        Self {
            kind,
            message,
            offset,
            column,
            hint,
        }
    }

    /// The message followed by the hint, as one line.
    pub fn describe(&self) -> String {
        match &self.hint {
            Some(hint) => format!("{}; {hint}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Level of a summary entry, as Spinnaker writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SummaryLevel {
    /// The expression failed; the raw text was kept.
    Error,
    /// The expression resolved to `null`; the raw text was kept.
    Info,
}

/// One entry of Spinnaker's `expressionEvaluationSummary[expression]` list:
/// `{description, exceptionType, level, timestamp}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryEntry {
    /// Human-readable cause, `Failed to evaluate [field] …`.
    pub description: String,
    /// Spinnaker's Java exception class name; `null` for `INFO` entries.
    pub exception_type: Option<String>,
    /// `ERROR` or `INFO`.
    pub level: SummaryLevel,
    /// Epoch milliseconds, supplied by the host.
    pub timestamp: i64,
}

fn clamp_to_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_points_a_caret_at_the_column() {
        let err = ExprError::new(ErrorKind::Syntax, "unexpected ')'", "${ a + ) }", 7)
            .with_hint("remove it");
        assert_eq!(
            err.to_string(),
            "unexpected ')' (column 8)\n  ${ a + ) }\n         ^\n  hint: remove it"
        );
    }

    #[test]
    fn columns_count_characters_and_lines() {
        let err = ExprError::new(ErrorKind::Type, "bad", "é\n  ${x}", 7);
        assert_eq!((err.line, err.column), (2, 5));
        assert!(
            err.to_string()
                .starts_with("bad (line 2, column 5)\n    ${x}\n      ^")
        );
    }
}
