//! Syntax level: turning JSON or YAML text into a [`serde_json::Value`] and back.
//!
//! Everything above this layer (typed model, validation) works on `serde_json::Value`, so
//! YAML and JSON documents are interchangeable once parsed.

use serde::Serialize;
use serde_json::Value;

/// The text format of a pipeline or application document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    /// JSON, as Front50 stores it and `spin` reads it.
    Json,
    /// YAML, the same model written for humans.
    Yaml,
}

/// A document that is not well-formed JSON or YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// 1-based line of the offending character.
    pub line: u64,
    /// 1-based column (in characters) of the offending character.
    pub column: u64,
    /// What the parser expected or found, without the position.
    pub message: String,
}

/// A value that could not be written out as YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the document as YAML: {0}")]
pub struct YamlWriteError(String);

/// Nesting deeper than this is not a pipeline: it is an attack or a mistake.
pub const MAX_DEPTH: usize = 128;

/// Aliases are legitimate in hand-written YAML but a few hundred cover every real use;
/// the limit is what stops "billion laughs" expansion.
const MAX_ALIASES: usize = 1_000;

/// Parses `text` as `format` into a JSON value.
///
/// YAML is parsed with a budget (depth, node count, aliases, scalar bytes) so a hostile
/// document cannot exhaust memory. JSON depth is bounded by serde_json's recursion limit
/// (128) which matches [`MAX_DEPTH`].
pub fn parse_document(text: &str, format: DocumentFormat) -> Result<Value, SyntaxError> {
    match format {
        DocumentFormat::Json => parse_json(text),
        DocumentFormat::Yaml => parse_yaml(text),
    }
}

fn parse_json(text: &str) -> Result<Value, SyntaxError> {
    serde_json::from_str(text).map_err(|err| {
        let full = err.to_string();
        // serde_json appends " at line L column C" to every message; the position is
        // reported separately, so strip it to keep the message readable.
        let message = match full.rfind(" at line ") {
            Some(at) => full[..at].to_owned(),
            None => full,
        };
        let (line, column) = json_position(text, err.line(), err.column());
        SyntaxError {
            line,
            column,
            message,
        }
    })
}

/// serde_json reports column 0 when the offending character is the newline ending the
/// previous line; point at that newline instead.
fn json_position(text: &str, line: usize, column: usize) -> (u64, u64) {
    if column == 0 && line > 1 {
        let previous = text.lines().nth(line - 2).unwrap_or_default();
        return ((line - 1) as u64, previous.chars().count() as u64 + 1);
    }
    (line.max(1) as u64, column.max(1) as u64)
}

/// The most documents [`parse_yaml_documents`] reads from one stream.
pub const MAX_YAML_DOCUMENTS: usize = 1_000;

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    // The largest real pipelines are a few thousand nodes; these limits leave two orders
    // of magnitude of headroom and stop alias bombs in milliseconds, not seconds.
    budget.max_events = 200_000;
    budget.max_nodes = 200_000;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_total_scalar_bytes = 32 * 1024 * 1024;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

fn parse_yaml(text: &str) -> Result<Value, SyntaxError> {
    if text.trim().is_empty() {
        return Err(SyntaxError {
            line: 1,
            column: 1,
            message: "the document is empty".to_owned(),
        });
    }
    serde_saphyr::from_str_with_options::<Value>(text, yaml_options()).map_err(|err| {
        let (line, column) = err
            .location()
            .map_or((1, 1), |loc| (loc.line().max(1), loc.column().max(1)));
        SyntaxError {
            line,
            column,
            message: yaml_message(&err, 1),
        }
    })
}

/// Parses a stream of YAML documents separated by `---` (as `kubectl apply -f` reads a
/// file of manifests) under the budget of [`parse_document`], each document a value;
/// empty and null documents are left out. More than `max_documents` (at most
/// [`MAX_YAML_DOCUMENTS`]) is an error.
pub fn parse_yaml_documents(text: &str, max_documents: usize) -> Result<Vec<Value>, SyntaxError> {
    let max_documents = max_documents.clamp(1, MAX_YAML_DOCUMENTS);
    let mut options = yaml_options();
    if let Some(budget) = options.budget.as_mut() {
        budget.max_documents = max_documents;
    }
    serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|err| {
        let (line, column) = err
            .location()
            .map_or((1, 1), |loc| (loc.line().max(1), loc.column().max(1)));
        SyntaxError {
            line,
            column,
            message: yaml_message(&err, max_documents),
        }
    })
}

fn yaml_message(err: &serde_saphyr::Error, max_documents: usize) -> String {
    use serde_saphyr::budget::BudgetBreach;
    let mut inner = err;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::Budget { breach, .. } = inner {
        return match breach {
            BudgetBreach::Depth { .. } => {
                format!("the document is nested more than {MAX_DEPTH} levels deep")
            }
            BudgetBreach::Aliases { .. } | BudgetBreach::Anchors { .. } => {
                format!("the document uses more than {MAX_ALIASES} anchors or aliases")
            }
            BudgetBreach::Events { .. }
            | BudgetBreach::Nodes { .. }
            | BudgetBreach::RecordedAnchorEvents { .. } => {
                "the document is too large once its aliases are expanded".to_owned()
            }
            BudgetBreach::Documents { .. } if max_documents == 1 => {
                "the file holds more than one YAML document ('---'); put one document per file"
                    .to_owned()
            }
            BudgetBreach::Documents { .. } => {
                format!("the file holds more than {max_documents} YAML documents ('---')")
            }
            other => format!("the document exceeds a size limit ({other:?})"),
        };
    }
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    };
    let rendered = err.without_snippet().render_with_options(options);
    let message = strip_yaml_location(&rendered);
    if message.contains("recursion limit") {
        return format!("the document is nested more than {MAX_DEPTH} levels deep");
    }
    // The library's hint names its own API, which means nothing to a pipeline author.
    match message.find(", set DuplicateKeyPolicy") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// serde-saphyr renders "message at line L, column C"; the position is reported in its own
/// fields.
fn strip_yaml_location(rendered: &str) -> String {
    let first_line = rendered.lines().next().unwrap_or(rendered).trim();
    match first_line.rfind(" at line ") {
        Some(at) => first_line[..at].to_owned(),
        None => first_line.to_owned(),
    }
}

/// Guesses the format of a document: by file extension first, else by its first
/// non-blank character (`{` or `[` means JSON).
pub fn detect_format(file_name: &str, text: &str) -> DocumentFormat {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        return DocumentFormat::Json;
    }
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return DocumentFormat::Yaml;
    }
    match text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .next()
    {
        Some('{' | '[') => DocumentFormat::Json,
        _ => DocumentFormat::Yaml,
    }
}

/// Writes a JSON value as a YAML document that [`parse_document`] reads back to an equal
/// value.
pub fn to_yaml_string(value: &Value) -> Result<String, YamlWriteError> {
    serde_saphyr::to_string(value).map_err(|err| YamlWriteError(err.to_string()))
}

/// Writes a JSON value as pretty JSON text (two-space indent, key order kept).
pub fn to_json_pretty(value: &Value) -> String {
    // Serializing a `Value` to a String cannot fail: its keys are strings and it holds no
    // non-finite floats.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_yaml_stream_is_read_document_by_document_skipping_empty_ones() {
        let text = "a: 1\n---\n---\n# only a comment\n---\nb: [x, z]\n...\n";
        assert_eq!(
            parse_yaml_documents(text, 10).unwrap(),
            vec![json!({"a": 1}), json!({"b": ["x", "z"]})]
        );
        assert!(parse_yaml_documents("", 10).unwrap().is_empty());
    }

    #[test]
    fn a_yaml_stream_is_bounded_in_documents_and_reports_where_it_is_broken() {
        let three = "a: 1\n---\nb: 2\n---\nc: 3\n";
        let err = parse_yaml_documents(three, 2).unwrap_err();
        assert!(err.message.contains("more than 2 YAML documents"), "{err}");
        let err = parse_yaml_documents("a: 1\n---\nb: [1, 2\n", 10).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        assert!(parse_yaml_documents(bomb, 10).is_err());
    }
}
