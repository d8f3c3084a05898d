//! Field types for JSON whose form varies in the wild.
//!
//! Spinnaker is written on Jackson, which coerces freely: `"stageTimeoutMs": "3600000"`,
//! `"limitConcurrent": "true"` and numeric refIds are all accepted and stored as given.
//! These types accept every form and write back exactly what came in.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// A typed value, or the raw JSON when it does not have the expected type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Lenient<T> {
    /// The value had the expected JSON type.
    Typed(T),
    /// Anything else, kept verbatim.
    Raw(Value),
}

impl<T> Lenient<T> {
    /// The typed value, when the JSON had the expected type.
    pub fn typed(&self) -> Option<&T> {
        match self {
            Self::Typed(value) => Some(value),
            Self::Raw(_) => None,
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(value: T) -> Self {
        Self::Typed(value)
    }
}

impl Lenient<bool> {
    /// The boolean, also read from the strings `"true"`/`"false"` (any case) as Jackson
    /// does.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Typed(b) => Some(*b),
            Self::Raw(Value::String(s)) => parse_bool(s),
            Self::Raw(_) => None,
        }
    }
}

impl Lenient<u64> {
    /// The number, also read from a numeric string or an integral float.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Typed(n) => Some(*n),
            Self::Raw(value) => value_as_u64(value),
        }
    }
}

/// Reads a boolean the way Jackson coerces one: a JSON boolean or the string
/// `true`/`false` in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Reads a non-negative integer from a number, an integral float or a numeric string.
pub fn value_as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => number_as_u64(n),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

fn number_as_u64(n: &Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    // Integral floats like 3600000.0 are what some UIs write for integers.
    (f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
}

/// Spinnaker's lenient booleans: `true`, `"true"` (any case).
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A signed integer from a number (floats truncated) or a numeric string, as Jackson
/// coerces one.
pub fn value_as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A stage's `refId`: Deck writes strings, older pipelines and hand-written ones use
/// numbers. Orca compares them as strings, so `1` and `"1"` name the same stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RefId {
    /// `"refId": "1"`.
    Text(String),
    /// `"refId": 1`.
    Number(Number),
}

impl RefId {
    /// The id as Orca sees it (numbers in their decimal form).
    pub fn key(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Number(n) => n.to_string(),
        }
    }

    /// Reads a refId from any JSON value: strings and numbers only.
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(Self::Text(s.clone())),
            Value::Number(n) => Some(Self::Number(n.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl From<&str> for RefId {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_keeps_what_came_in() {
        for raw in [
            json!(true),
            json!("true"),
            json!("yes"),
            json!(null),
            json!(1),
        ] {
            let parsed: Lenient<bool> = serde_json::from_value(raw.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), raw);
        }
        let s: Lenient<bool> = serde_json::from_value(json!("TRUE")).unwrap();
        assert_eq!(s.as_bool(), Some(true));
        let n: Lenient<u64> = serde_json::from_value(json!("3600000")).unwrap();
        assert_eq!(n.as_u64(), Some(3_600_000));
        let f: Lenient<u64> = serde_json::from_value(json!(5.0)).unwrap();
        assert_eq!(f.as_u64(), Some(5));
        assert_eq!(serde_json::to_value(&f).unwrap(), json!(5.0));
        let neg: Lenient<u64> = serde_json::from_value(json!(-1)).unwrap();
        assert_eq!(neg.as_u64(), None);
    }

    #[test]
    fn ref_ids_compare_as_strings() {
        let n: RefId = serde_json::from_value(json!(3)).unwrap();
        assert_eq!(n.key(), "3");
        assert_eq!(serde_json::to_value(&n).unwrap(), json!(3));
        assert_eq!(RefId::from_json(&json!(true)), None);
    }
}
