//! Printing results: JSON and YAML pass the server's response through unchanged (fields
//! this client does not know survive), tables pick the columns people scan for.

use std::borrow::Cow;
use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets::NOTHING};
use gennaker_core::Problem;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CliError;

/// How a command prints its result.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// Pretty JSON, exactly the server's fields.
    Json,
    /// YAML, the same data as JSON.
    Yaml,
}

/// Prints `raw` as JSON or YAML, or as the table `table` builds from its typed view.
pub(crate) fn emit<T: DeserializeOwned>(
    out: &mut dyn Write,
    format: OutputFormat,
    raw: Value,
    table: impl FnOnce(&T) -> String,
) -> Result<(), CliError> {
    match format {
        OutputFormat::Table => {
            let typed: T = serde_json::from_value(raw)
                .map_err(|err| CliError::InvalidResponse(err.to_string()))?;
            writeln!(out, "{}", table(&typed))?;
        }
        OutputFormat::Json | OutputFormat::Yaml => write_structured(out, format, &raw)?,
    }
    Ok(())
}

/// Prints `value` as JSON or YAML; callers handle the table form themselves.
pub(crate) fn write_structured(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &Value,
) -> Result<(), CliError> {
    match format {
        OutputFormat::Yaml => {
            let text = gennaker_core::to_yaml_string(value).map_err(|err| {
                CliError::Output(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
            })?;
            // Keep exactly one trailing newline whatever the writer produced.
            writeln!(out, "{}", text.trim_end_matches('\n'))?;
        }
        OutputFormat::Json | OutputFormat::Table => {
            writeln!(out, "{}", gennaker_core::to_json_pretty(value))?;
        }
    }
    Ok(())
}

/// Text from the server made safe to print on a terminal: every control character
/// (an escape sequence could move the cursor, rewrite what was printed or set the
/// window title; a newline could forge a table row) and every bidirectional override
/// or mark (which could show a row's text reordered) is shown escaped, as `\u{1b}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, unsafe_to_print)
}

/// Like [`escape_controls`], keeping line breaks, for messages of several lines.
pub fn escape_controls_keep_lines(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| unsafe_to_print(c) && c != '\n')
}

/// Control characters, and the characters that change the direction text is shown in
/// (marks U+200E/F, embeddings and overrides U+202A–E, isolates U+2066–9).
fn unsafe_to_print(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            safe.extend(c.escape_default());
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// A table with a header row; cells are escaped ([`escape_controls`]).
pub(crate) fn table<const N: usize>(header: [&str; N], rows: Vec<[String; N]>) -> String {
    let mut table = new_table();
    table.set_header(header);
    for row in rows {
        table.add_row(row.map(|cell| escape_controls(&cell).into_owned()));
    }
    trimmed(&table)
}

/// A two-column table of labelled values, for a single record; values are escaped.
pub(crate) fn details(rows: Vec<(&str, String)>) -> String {
    let mut table = new_table();
    for (label, value) in rows {
        table.add_row([label.to_owned(), escape_controls(&value).into_owned()]);
    }
    trimmed(&table)
}

/// The table without the cell padding at line starts and ends, which only gets in the
/// way of `grep`, `awk` and copy-paste.
fn trimmed(table: &Table) -> String {
    table
        .lines()
        .map(|line| {
            let line = line.strip_prefix(' ').unwrap_or(&line);
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// Epoch milliseconds as a UTC time; `-` when absent, the raw number if out of range.
pub(crate) fn time(millis: Option<i64>) -> String {
    match millis {
        None => "-".to_owned(),
        Some(ms) => match jiff::Timestamp::from_millisecond(ms) {
            Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            Err(_) => ms.to_string(),
        },
    }
}

/// A list of names, or `-` for none.
pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// An optional text, or `-`.
pub(crate) fn text(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => "-".to_owned(),
    }
}

/// Any JSON scalar as plain text (ids may be numbers or strings depending on the store).
pub(crate) fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One problem as two aligned lines:
/// `error    $.stages[1].requisiteStageRefIds[0]: no stage has refId 9`
/// `         hint: …`
pub(crate) fn problem(problem: &Problem) -> String {
    let mut line = format!(
        "{:<7}  {}: {}",
        problem.severity.to_string(),
        escape_controls(&problem.path),
        escape_controls(&problem.message)
    );
    if let Some(hint) = &problem.hint {
        line.push_str("\n         hint: ");
        line.push_str(&escape_controls(hint));
    }
    line
}

/// Every problem, each on its own line(s), preceded by a newline; empty for none.
pub(crate) fn problem_lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n{}", problem(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Row {
        name: String,
        #[serde(rename = "createdAt")]
        created_at: Option<i64>,
    }

    fn render(format: OutputFormat, raw: Value) -> String {
        let mut out = Vec::new();
        emit(&mut out, format, raw, |rows: &Vec<Row>| {
            table(
                ["NAME", "CREATED"],
                rows.iter()
                    .map(|r| [r.name.clone(), time(r.created_at)])
                    .collect(),
            )
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sample() -> Value {
        json!([{"name": "shop", "createdAt": 1_700_000_000_000_i64, "extra": {"kept": true}}])
    }

    #[test]
    fn control_characters_from_the_server_are_printed_escaped() {
        // A pipeline named to clear the screen and forge a line of output.
        let hostile = "deploy\u{1b}[2J\u{1b}]0;pwned\u{7}\nshop  SUCCEEDED";
        let text = render(
            OutputFormat::Table,
            json!([{ "name": hostile, "createdAt": null }]),
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("deploy\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\nshop  SUCCEEDED"),
            "{text}"
        );
        assert_eq!(
            text.lines().count(),
            2,
            "a row of its own was forged: {text}"
        );
        assert_eq!(escape_controls_keep_lines("a\nb\u{1b}"), "a\nb\\u{1b}");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed("plain")));
        // A right-to-left override cannot show a name reversed.
        assert_eq!(escape_controls("ok\u{202e}gnp.exe"), "ok\\u{202e}gnp.exe");
        assert_eq!(escape_controls("ünïcödé"), "ünïcödé");
    }

    #[test]
    fn json_passes_the_response_through() {
        let text = render(OutputFormat::Json, sample());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sample());
        assert!(text.ends_with("}\n]\n"), "{text:?}");
    }

    #[test]
    fn yaml_round_trips_to_the_same_value() {
        let text = render(OutputFormat::Yaml, sample());
        let back =
            gennaker_core::parse_document(&text, gennaker_core::DocumentFormat::Yaml).unwrap();
        assert_eq!(back, sample());
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{text:?}");
    }

    #[test]
    fn table_shows_columns_and_readable_times() {
        let text = render(OutputFormat::Table, sample());
        assert!(text.contains("NAME"), "{text}");
        assert!(text.contains("shop"), "{text}");
        assert!(text.contains("2023-11-14 22:13:20 UTC"), "{text}");
        assert!(!text.contains("kept"), "{text}");
    }

    #[test]
    fn table_of_an_unexpected_shape_is_an_error() {
        let mut out = Vec::new();
        let err = emit(
            &mut out,
            OutputFormat::Table,
            json!({"oops": 1}),
            |_: &Vec<Row>| String::new(),
        )
        .unwrap_err();
        assert!(matches!(err, CliError::InvalidResponse(_)), "{err:?}");
    }

    #[test]
    fn small_formatters() {
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(i64::MAX)), i64::MAX.to_string());
        assert_eq!(list(&[]), "-");
        assert_eq!(list(&["a".to_owned(), "b".to_owned()]), "a, b");
        assert_eq!(text(Some("")), "-");
        assert_eq!(scalar(&json!(7)), "7");
        assert_eq!(scalar(&json!("tok-1")), "tok-1");
    }

    #[test]
    fn problems_are_aligned_with_hints_below() {
        let p = Problem::error("$.stages[0].type", "unknown stage type `deplyo`")
            .with_hint("did you mean `deploy`?");
        assert_eq!(
            problem(&p),
            "error    $.stages[0].type: unknown stage type `deplyo`\n         hint: did you mean `deploy`?"
        );
        let w = Problem::warning("$.triggers[0]", "not run yet");
        assert_eq!(problem(&w), "warning  $.triggers[0]: not run yet");
        assert_eq!(problem_lines(&[]), "");
    }
}
