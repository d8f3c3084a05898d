//! Key order and empty-value presence of a JSON object, kept so that a typed model writes
//! back the document it read.
//!
//! Typed fields lose two things serde cannot see: where a key was in the object, and
//! whether an empty value (`null`, `""`, `[]`, `{}`) was present or absent. A [`Shape`]
//! remembers both; typed structs strip empties before deserializing and restore them
//! after serializing.

use serde_json::{Map, Value};

/// The original layout of one JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Shape {
    /// Every original key in order, with its value when that value was empty.
    keys: Vec<(String, Option<Value>)>,
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

impl Shape {
    /// Records the layout of `map` and removes its empty values, so typed fields only ever
    /// see non-empty JSON (an absent `Vec` or `Option` is then the same as an empty one).
    pub(crate) fn take(map: &mut Map<String, Value>) -> Self {
        let keys = map
            .iter()
            .map(|(k, v)| (k.clone(), is_empty(v).then(|| v.clone())))
            .collect();
        map.retain(|_, v| !is_empty(v));
        Self { keys }
    }

    /// Puts a freshly serialized object back into the original key order, restoring empty
    /// values that were present. Keys the original did not have come last, in field order.
    pub(crate) fn restore(&self, value: Value) -> Value {
        let Value::Object(mut fresh) = value else {
            return value;
        };
        if self.keys.is_empty() {
            return Value::Object(fresh);
        }
        let mut out = Map::with_capacity(fresh.len().max(self.keys.len()));
        for (key, empty) in &self.keys {
            if let Some(v) = fresh.shift_remove(key) {
                out.insert(key.clone(), v);
            } else if let Some(empty) = empty {
                out.insert(key.clone(), empty.clone());
            }
        }
        out.extend(fresh);
        Value::Object(out)
    }
}

/// Implements `Serialize`/`Deserialize` for a struct declared with
/// `#[serde(remote = "Self")]` and a `#[serde(skip)] shape: Shape` field, routing both
/// through [`Shape`] so key order and empty values survive a round trip.
macro_rules! shaped_serde {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let fresh = <$ty>::serialize(self, serde_json::value::Serializer)
                    .map_err(<S::Error as serde::ser::Error>::custom)?;
                serde::Serialize::serialize(&self.shape.restore(fresh), serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let mut map =
                    <serde_json::Map<String, serde_json::Value> as serde::Deserialize>::deserialize(
                        deserializer,
                    )?;
                let shape = $crate::shape::Shape::take(&mut map);
                let mut typed = <$ty>::deserialize(serde_json::Value::Object(map))
                    .map_err(<D::Error as serde::de::Error>::custom)?;
                typed.shape = shape;
                Ok(typed)
            }
        }
    };
}

pub(crate) use shaped_serde;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restores_order_and_empties() {
        let Value::Object(mut map) = json!({"b": 1, "a": null, "c": [], "d": "x"}) else {
            unreachable!()
        };
        let shape = Shape::take(&mut map);
        assert_eq!(Value::Object(map), json!({"b": 1, "d": "x"}));
        let restored = shape.restore(json!({"d": "x", "b": 1, "new": true}));
        let keys: Vec<_> = restored.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c", "d", "new"]);
        assert_eq!(
            restored,
            json!({"b": 1, "a": null, "c": [], "d": "x", "new": true})
        );
    }
}
