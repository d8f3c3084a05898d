//! Small typed readers over `serde_json::Value` that report a problem when a field has
//! the wrong JSON type. Every check here mirrors what the typed model accepts, so a
//! document without errors always loads.

use serde_json::{Map, Value};

use crate::lenient::parse_bool;
use crate::problems::{JsonPath, Problem, ValidationReport};

/// One JSON object being checked (a stage, a cluster, a trigger), with its JSON path, and
/// readers that report a problem at that path when a field has the wrong type.
pub struct Fields<'a> {
    /// The object's fields.
    pub map: &'a Map<String, Value>,
    /// Where the object is in the document.
    pub path: JsonPath,
}

/// True for a string holding a `${…}` expression: its value is only known at run time.
pub fn is_expression(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.contains("${"))
}

/// `null`, `""`, `[]` and `{}` count as absent, as in the typed model.
pub fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The JSON type of `value`, as messages name it ("a string", "an array").
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    /// Reads `map`, found at `path`.
    pub fn new(map: &'a Map<String, Value>, path: JsonPath) -> Self {
        Self { map, path }
    }

    /// The path of `key` in this object.
    pub fn at(&self, key: &str) -> JsonPath {
        self.path.key(key)
    }

    /// The value of `key` unless absent or blank.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !is_blank(v))
    }

    /// Whether `key` is present and not blank.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// An optional string field; other JSON types are an error.
    pub fn string(&self, key: &str, report: &mut ValidationReport) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            other => {
                report.push(Problem::error(
                    self.at(key),
                    format!("{key} must be a string, not {}", type_name(other)),
                ));
                None
            }
        }
    }

    /// A required, non-empty string field.
    pub fn required_string(
        &self,
        key: &str,
        what: &str,
        report: &mut ValidationReport,
    ) -> Option<&'a str> {
        if !self.has(key) {
            report.push(Problem::error(
                self.at(key),
                format!("{what} is missing ('{key}')"),
            ));
            return None;
        }
        self.string(key, report)
    }

    /// A boolean that Jackson would read: `true`, `false`, `"true"`, `"false"` or an
    /// expression.
    pub fn boolean(&self, key: &str, report: &mut ValidationReport) -> Option<bool> {
        let value = self.get(key)?;
        match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if parse_bool(s).is_some() => parse_bool(s),
            v if is_expression(v) => None,
            other => {
                report.push(Problem::error(
                    self.at(key),
                    format!("{key} must be true or false, not {other}"),
                ));
                None
            }
        }
    }

    /// Reads a boolean without reporting: for rules that depend on a flag whose own type
    /// problem is reported elsewhere.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s),
            _ => None,
        }
    }

    /// A non-negative integer, a numeric string or an expression.
    pub fn non_negative(&self, key: &str, report: &mut ValidationReport) -> Option<u64> {
        let value = self.get(key)?;
        if let Some(n) = crate::lenient::value_as_u64(value) {
            return Some(n);
        }
        if !is_expression(value) {
            report.push(Problem::error(
                self.at(key),
                format!("{key} must be a non-negative whole number, not {value}"),
            ));
        }
        None
    }

    /// A number (integer or float, or numeric string) or an expression.
    pub fn number(&self, key: &str, report: &mut ValidationReport) -> Option<f64> {
        let value = self.get(key)?;
        let parsed = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        if parsed.is_none() && !is_expression(value) {
            report.push(Problem::error(
                self.at(key),
                format!("{key} must be a number, not {value}"),
            ));
        }
        parsed
    }

    /// An optional array; other JSON types are an error.
    pub fn array(&self, key: &str, report: &mut ValidationReport) -> Option<&'a Vec<Value>> {
        match self.get(key)? {
            Value::Array(items) => Some(items),
            other => {
                report.push(Problem::error(
                    self.at(key),
                    format!("{key} must be an array, not {}", type_name(other)),
                ));
                None
            }
        }
    }

    /// An optional object; other JSON types are an error.
    pub fn object(&self, key: &str, report: &mut ValidationReport) -> Option<Fields<'a>> {
        match self.get(key)? {
            Value::Object(map) => Some(Fields::new(map, self.at(key))),
            other => {
                report.push(Problem::error(
                    self.at(key),
                    format!("{key} must be an object, not {}", type_name(other)),
                ));
                None
            }
        }
    }

    /// An optional string that must be one of `allowed` (compared case-sensitively;
    /// expressions pass).
    pub fn one_of(
        &self,
        key: &str,
        allowed: &[&str],
        report: &mut ValidationReport,
    ) -> Option<&'a str> {
        let value = self.string(key, report)?;
        if allowed.contains(&value) || value.contains("${") {
            return Some(value);
        }
        report.push(
            Problem::error(
                self.at(key),
                format!(
                    "{key} '{value}' is not one of {}{}",
                    allowed.join(", "),
                    crate::suggest::did_you_mean(value, allowed.iter().copied())
                ),
            )
            .with_hint(format!("use one of: {}", allowed.join(", "))),
        );
        None
    }

    /// Each element of an optional array, as an object; non-objects are an error.
    pub fn objects(
        &self,
        key: &str,
        what: &str,
        report: &mut ValidationReport,
    ) -> Vec<(usize, Fields<'a>)> {
        let Some(items) = self.array(key, report) else {
            return Vec::new();
        };
        let path = self.at(key);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::Object(map) => Some((i, Fields::new(map, path.index(i)))),
                other => {
                    report.push(Problem::error(
                        path.index(i),
                        format!("{what} must be an object, not {}", type_name(other)),
                    ));
                    None
                }
            })
            .collect()
    }

    /// An optional array whose elements must all be strings.
    pub fn strings(&self, key: &str, report: &mut ValidationReport) -> Vec<(usize, &'a str)> {
        let Some(items) = self.array(key, report) else {
            return Vec::new();
        };
        let path = self.at(key);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some((i, s.as_str())),
                other => {
                    report.push(Problem::error(
                        path.index(i),
                        format!("expected a string, not {}", type_name(other)),
                    ));
                    None
                }
            })
            .collect()
    }

    /// `account` or its older name `credentials`, which every cloud stage needs.
    pub fn require_account(&self, report: &mut ValidationReport) {
        if self.has("account") {
            self.string("account", report);
        } else if self.has("credentials") {
            self.string("credentials", report);
        } else {
            report.push(
                Problem::error(
                    self.at("account"),
                    "no account to deploy to ('account' or 'credentials')",
                )
                .with_hint("e.g. \"account\": \"local\" or the name of a Kubernetes account"),
            );
        }
    }
}
