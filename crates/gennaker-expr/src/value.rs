//! Values during evaluation and Java's rules for comparing and printing them.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// A value during evaluation. Reads from the context stay borrowed, so walking
/// `execution.stages[0].context` copies nothing; selections keep borrowed elements in
/// [`Val::List`] until something needs a real JSON value.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Ref(&'a Value),
    Own(Value),
    List(Vec<Val<'a>>),
}

impl<'a> Val<'a> {
    pub(crate) fn null() -> Self {
        Val::Own(Value::Null)
    }

    /// The JSON value, unless this is a [`Val::List`].
    pub(crate) fn json(&self) -> Option<&Value> {
        match self {
            Val::Ref(v) => Some(v),
            Val::Own(v) => Some(v),
            Val::List(_) => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.json(), Some(Value::Null))
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        self.json().and_then(Value::as_str)
    }

    pub(crate) fn as_num(&self) -> Option<Num> {
        self.json().and_then(Num::of)
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self.json() {
            None => "list",
            Some(v) => type_name(v),
        }
    }
}

/// Names of JSON types as users see them in messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "decimal",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// A number as Java would hold it: a `long` or a `double`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(crate) fn of(value: &Value) -> Option<Num> {
        let Value::Number(n) = value else {
            return None;
        };
        match n.as_i64() {
            Some(i) => Some(Num::Int(i)),
            None => n.as_f64().map(Num::Float),
        }
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// The JSON number, or `None` for NaN and infinities (JSON cannot hold them).
    pub(crate) fn to_value(self) -> Option<Value> {
        match self {
            Num::Int(i) => Some(Value::from(i)),
            Num::Float(f) => Number::from_f64(f).map(Value::Number),
        }
    }
}

fn compare_nums(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        _ => a.as_f64().partial_cmp(&b.as_f64()),
    }
}

/// SpEL's ordering: `null` sorts before everything; numbers compare by value across
/// integer and decimal; strings and booleans among themselves. `None` when the two
/// cannot be compared (a string and a number).
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => compare_nums(Num::of(a)?, Num::of(b)?),
    }
}

/// SpEL's `==`: numbers by value (`1 == 1.0`), everything else structurally; never
/// an error, values of different types are simply unequal.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b).is_some_and(|o| o == Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// Java's `Double.toString`: `1.0`, `0.001`, `1.0E7`, `1.5E-5`.
pub(crate) fn java_double(f: f64) -> String {
    let abs = f.abs();
    if f == 0.0 || (1e-3..1e7).contains(&abs) {
        let mut text = format!("{f}");
        if !text.contains('.') {
            text.push_str(".0");
        }
        return text;
    }
    let text = format!("{f:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    if mantissa.contains('.') {
        format!("{mantissa}E{exponent}")
    } else {
        format!("{mantissa}.0E{exponent}")
    }
}

/// Raised when a printed value would exceed the output limit.
#[derive(Debug)]
pub(crate) struct TooLong;

/// How a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Java's `toString()`: `[a, b]`, `{k=v}`.
    Java,
    /// Spring's conversion to `String`, used by `+` and template text: a list becomes
    /// `a,b` (its `CollectionToStringConverter`); maps fall back to `toString()`.
    Convert,
}

/// Appends `value` printed in `style` to `out`, failing once `out` exceeds `max` bytes.
pub(crate) fn write_value(
    value: &Value,
    style: Style,
    out: &mut String,
    max: usize,
) -> Result<(), TooLong> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(_) => match Num::of(value) {
            Some(Num::Int(i)) => out.push_str(&i.to_string()),
            Some(Num::Float(f)) => out.push_str(&java_double(f)),
            None => out.push_str("null"),
        },
        Value::String(s) => {
            if out.len() + s.len() > max {
                return Err(TooLong);
            }
            out.push_str(s);
        }
        Value::Array(items) => {
            let (open, sep, close) = match style {
                Style::Java => ("[", ", ", "]"),
                Style::Convert => ("", ",", ""),
            };
            out.push_str(open);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                write_value(item, style, out, max)?;
            }
            out.push_str(close);
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push('=');
                write_value(item, Style::Java, out, max)?;
                if out.len() > max {
                    return Err(TooLong);
                }
            }
            out.push('}');
        }
    }
    if out.len() > max {
        return Err(TooLong);
    }
    Ok(())
}

/// Counts JSON nodes, stopping once `cap` is passed: the price of copying a value.
pub(crate) fn count_nodes(value: &Value, cap: u64) -> u64 {
    let mut count = 0u64;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        count += 1;
        if count > cap {
            break;
        }
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// Spring's `String` → `Boolean` conversion, which SpEL applies to conditions:
/// pipelines pass booleans as parameter strings such as `"true"`.
pub(crate) fn string_to_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(123456.789), "123456.789");
        assert_eq!(java_double(-2.0), "-2.0");
    }

    #[test]
    fn printing_styles() {
        let v = json!({"a": [1, "x", null], "b": {"c": 2.5}});
        let mut out = String::new();
        write_value(&v, Style::Java, &mut out, 100).unwrap();
        assert_eq!(out, "{a=[1, x, null], b={c=2.5}}");
        let mut out = String::new();
        write_value(&json!(["a", "b"]), Style::Convert, &mut out, 100).unwrap();
        assert_eq!(out, "a,b");
        assert!(write_value(&json!("abcdef"), Style::Java, &mut String::new(), 3).is_err());
    }

    #[test]
    fn equality_and_order() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert!(equal(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2}])));
        assert!(!equal(&json!("1"), &json!(1)));
        assert_eq!(compare(&json!(null), &json!(0)), Some(Ordering::Less));
        assert_eq!(compare(&json!("a"), &json!(1)), None);
    }
}
