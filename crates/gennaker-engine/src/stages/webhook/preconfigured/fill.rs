//! `${parameterValues.name}` in a preconfigured webhook's settings, filled in before
//! the stage's expressions are evaluated. A value that holds an expression itself
//! (`${trigger.tag}`) is thereby evaluated in place; any other expression over
//! `parameterValues` is left to the evaluator, which sees the same values.

use serde_json::{Map, Value};

/// `value` with every placeholder whose parameter has a value filled in. A string that
/// is one placeholder becomes the value itself (a number stays a number); inside text,
/// the value's text is spliced in.
pub(super) fn fill(value: &Value, values: &Map<String, Value>) -> Value {
    match value {
        Value::String(text) => fill_text(text, values),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, values)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| (key.clone(), fill(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fill_text(text: &str, values: &Map<String, Value>) -> Value {
    if let Some(inner) = text
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        && !inner.contains('}')
        && let Some(value) = parameter(inner).and_then(|name| values.get(name))
    {
        return value.clone();
    }
    let mut filled = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(length) = rest[start..].find('}') else {
            break;
        };
        let end = start + length;
        filled.push_str(&rest[..start]);
        match parameter(&rest[start + 2..end]).and_then(|name| values.get(name)) {
            Some(Value::String(value)) => filled.push_str(value),
            Some(Value::Null) => {}
            Some(value) => filled.push_str(&value.to_string()),
            // Not a parameter: left as written, for the evaluator.
            None => filled.push_str(&rest[start..=end]),
        }
        rest = &rest[end + 1..];
    }
    filled.push_str(rest);
    Value::String(filled)
}

/// The parameter named by `parameterValues.name`, `parameterValues['name']` or
/// `parameterValues["name"]`.
fn parameter(expression: &str) -> Option<&str> {
    let rest = expression.trim().strip_prefix("parameterValues")?;
    let name = match rest.strip_prefix('.') {
        Some(name) => name,
        None => {
            let quoted = rest.strip_prefix('[')?.strip_suffix(']')?;
            quoted
                .strip_prefix('\'')
                .and_then(|q| q.strip_suffix('\''))
                .or_else(|| quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')))?
        }
    };
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn placeholders_take_the_values_and_the_rest_stays_as_written() {
        let values = json!({"env": "prod", "replicas": 3, "tag": "${trigger.tag}"});
        let values = values.as_object().unwrap_or_else(|| panic!("an object"));
        let settings = json!({
            "url": "https://ci.example.com/${parameterValues.env}/deploy?n=${parameterValues['replicas']}",
            "payload": {
                "replicas": "${parameterValues.replicas}",
                "tag": "${ parameterValues[\"tag\"] }",
                "by": "${trigger.user}",
                "missing": "${parameterValues.nope}",
                "map": "${ {'a': 1}['a'] } and ${parameterValues.env}",
                "list": ["${parameterValues.env}", 1]
            }
        });
        assert_eq!(
            fill(&settings, values),
            json!({
                "url": "https://ci.example.com/prod/deploy?n=3",
                "payload": {
                    "replicas": 3,
                    "tag": "${trigger.tag}",
                    "by": "${trigger.user}",
                    "missing": "${parameterValues.nope}",
                    "map": "${ {'a': 1}['a'] } and prod",
                    "list": ["prod", 1]
                }
            })
        );
    }
}
