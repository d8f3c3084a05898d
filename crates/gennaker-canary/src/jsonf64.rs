//! `f64` in JSON the way Kayenta (Jackson) writes it: finite values as numbers,
//! NaN and ±∞ as the strings "NaN", "Infinity" and "-Infinity" (Jackson's
//! `QUOTE_NON_NUMERIC_NUMBERS`, on by default). Reading also accepts `null` (NaN)
//! and Prometheus' "+Inf"/"-Inf"/"Inf".

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
use serde_json::Value;

/// Parses one sample value; `None` if it is not a number at all.
pub(crate) fn from_json(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(f64::NAN),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "+Infinity" | "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
            "-Infinity" | "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
            t if t
                .chars()
                .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) =>
            {
                None
            }
            t => t.parse().ok(),
        },
        _ => None,
    }
}

/// Serializes one value (serde `with` helper).
pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v == f64::INFINITY {
        s.serialize_str("Infinity")
    } else if *v == f64::NEG_INFINITY {
        s.serialize_str("-Infinity")
    } else {
        s.serialize_f64(*v)
    }
}

/// Deserializes one value (serde `with` helper).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    from_json(&v).ok_or_else(|| D::Error::custom(format!("not a number: {v}")))
}

/// `Option<f64>` helpers: `None` is written as `null`.
pub(crate) mod option {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use serde_json::Value;

    pub(crate) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => super::from_json(&v)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("not a number: {v}"))),
        }
    }
}

/// `Vec<f64>` helpers for sample lists.
pub(crate) mod vec {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq};
    use serde_json::Value;

    struct Item(f64);

    impl serde::Serialize for Item {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(&self.0, s)
        }
    }

    pub(crate) fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&Item(*x))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let raw: Option<Vec<Value>> = Option::deserialize(d)?;
        raw.unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                super::from_json(v)
                    .ok_or_else(|| D::Error::custom(format!("value #{i} is not a number: {v}")))
            })
            .collect()
    }
}
