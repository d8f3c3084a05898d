//! Evaluating every string of a JSON value, as Spinnaker's `ExpressionTransform`
//! does for a stage context: failures keep their text and are recorded.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ExprError, SummaryEntry, SummaryLevel, WarningKind};
use crate::functions::FunctionRegistry;
use crate::json_path::{Step, render};
use crate::limits::Limits;
use crate::template::Template;
use crate::value::{Style, write_value};

/// A string whose expression did not produce a value; its text was kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformFailure {
    /// Where the string is, e.g. `$.stages[2].name`.
    pub path: String,
    /// Whether the string is the map key at `path` rather than its value.
    pub in_key: bool,
    /// The template text that was kept.
    pub template: String,
    /// Spinnaker's key for this template in `expressionEvaluationSummary`.
    pub summary_key: String,
    /// `ERROR` when evaluation failed, `INFO` when it resolved to `null`.
    pub level: SummaryLevel,
    /// What happened, with the likely fix when one is known.
    pub message: String,
    /// The error, for `ERROR` failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExprError>,
}

impl TransformFailure {
    /// The `expressionEvaluationSummary` entry; `timestamp` in epoch milliseconds.
    pub fn summary_entry(&self, timestamp: i64) -> SummaryEntry {
        match &self.error {
            Some(error) => error.summary_entry(&self.path, timestamp),
            None => SummaryEntry {
                description: format!("Failed to evaluate [{}] {}", self.path, self.message),
                exception_type: None,
                level: SummaryLevel::Info,
                timestamp,
            },
        }
    }
}

/// The result of [`transform_value`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    /// The value with every evaluable string replaced by its result.
    pub value: Value,
    /// Strings that kept their text, in document order.
    pub failures: Vec<TransformFailure>,
}

impl Transformed {
    /// Spinnaker's `expressionEvaluationSummary`: summary key → list of entries.
    pub fn evaluation_summary(&self, timestamp: i64) -> Map<String, Value> {
        let mut summary = Map::new();
        for failure in &self.failures {
            let entry =
                serde_json::to_value(failure.summary_entry(timestamp)).unwrap_or(Value::Null);
            let list = summary
                .entry(failure.summary_key.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(entry);
            }
        }
        summary
    }
}

/// Evaluates every string (and map key) containing `${` inside `value`, recursively,
/// against `context`. Each string gets its own budget of `limits`.
///
/// As in Spinnaker: an error keeps the string and records an `ERROR`; a single
/// expression that resolves to `null` keeps the string and records an `INFO`; a
/// longer text keeps the `${…}` of its `null` parts and records an `INFO`. A key that
/// evaluates to a non-string is printed as Java's `toString()` would.
pub fn transform_value(
    value: &Value,
    context: &Value,
    functions: &FunctionRegistry,
    limits: &Limits,
) -> Transformed {
    let mut walker = Walker {
        context,
        functions,
        limits,
        path: Vec::new(),
        failures: Vec::new(),
    };
    let value = walker.value(value);
    Transformed {
        value,
        failures: walker.failures,
    }
}

struct Walker<'v, 'c> {
    context: &'c Value,
    functions: &'c FunctionRegistry,
    limits: &'c Limits,
    path: Vec<Step<'v>>,
    failures: Vec<TransformFailure>,
}

impl<'v> Walker<'v, '_> {
    fn value(&mut self, value: &'v Value) -> Value {
        match value {
            Value::String(s) => self.string(s, false),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    out.push(self.value(item));
                    self.path.pop();
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    self.path.push(Step::Key(key));
                    let new_key = match self.string(key, true) {
                        Value::String(s) => s,
                        other => {
                            let mut text = String::new();
                            match write_value(
                                &other,
                                Style::Java,
                                &mut text,
                                self.limits.max_string_length,
                            ) {
                                Ok(()) => text,
                                Err(_) => key.clone(),
                            }
                        }
                    };
                    out.insert(new_key, self.value(item));
                    self.path.pop();
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    fn string(&mut self, text: &str, in_key: bool) -> Value {
        if !text.contains("${") {
            return Value::String(text.to_owned());
        }
        let template = match Template::parse(text, self.limits) {
            Ok(t) => t,
            Err(error) => {
                self.error(text, text.replace("${", "{"), in_key, error);
                return Value::String(text.to_owned());
            }
        };
        match template.evaluate(self.context, self.functions, self.limits) {
            Err(error) => {
                self.error(text, template.summary_key(), in_key, error);
                Value::String(text.to_owned())
            }
            Ok(evaluation) => {
                let resolved_null = evaluation.value.is_null();
                let unresolved = evaluation
                    .warnings
                    .iter()
                    .any(|w| w.kind == WarningKind::UnresolvedPart);
                if resolved_null || unresolved {
                    let key = template.summary_key();
                    let mut message = format!(": {key} not found");
                    if let Some(w) = evaluation
                        .warnings
                        .iter()
                        .find(|w| w.kind != WarningKind::UnresolvedPart)
                    {
                        message.push_str(" (");
                        message.push_str(&w.describe());
                        message.push(')');
                    }
                    self.failures.push(TransformFailure {
                        path: render(&self.path),
                        in_key,
                        template: text.to_owned(),
                        summary_key: key,
                        level: SummaryLevel::Info,
                        message,
                        error: None,
                    });
                }
                if resolved_null {
                    Value::String(text.to_owned())
                } else {
                    evaluation.value
                }
            }
        }
    }

    fn error(&mut self, text: &str, summary_key: String, in_key: bool, error: ExprError) {
        let mut message = error.message.clone();
        if let Some(hint) = &error.hint {
            message.push_str("; ");
            message.push_str(hint);
        }
        self.failures.push(TransformFailure {
            path: render(&self.path),
            in_key,
            template: text.to_owned(),
            summary_key,
            level: SummaryLevel::Error,
            message,
            error: Some(error),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_keys_and_failures() {
        let ctx = json!({"trigger": {"tag": "v2"}, "n": 2});
        let value = json!({
            "image": "app:${trigger.tag}",
            "count": "${n}",
            "${trigger.tag}": ["${trigger.tga}", "${1/0}", "x ${nope} y"],
        });
        let out = transform_value(
            &value,
            &ctx,
            &FunctionRegistry::default(),
            &Limits::default(),
        );
        assert_eq!(
            out.value,
            json!({"image": "app:v2", "count": 2, "v2": ["${trigger.tga}", "${1/0}", "x ${nope} y"]})
        );
        let paths: Vec<_> = out
            .failures
            .iter()
            .map(|f| (f.path.as_str(), f.level))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("$['${trigger.tag}'][0]", SummaryLevel::Info),
                ("$['${trigger.tag}'][1]", SummaryLevel::Error),
                ("$['${trigger.tag}'][2]", SummaryLevel::Info),
            ]
        );
        assert!(
            out.failures[0].message.contains("did you mean 'tag'?"),
            "{}",
            out.failures[0].message
        );
        let summary = out.evaluation_summary(42);
        assert_eq!(summary["1/0"][0]["level"], json!("ERROR"));
        assert_eq!(
            summary["1/0"][0]["exceptionType"],
            json!("SpelEvaluationException")
        );
        assert_eq!(summary["trigger.tga"][0]["timestamp"], json!(42));
    }
}
