//! Point payloads: flat JSON objects whose values are scalars or arrays of
//! scalars (API.md §5 and the §12 array extension). Nested objects and `null`
//! are rejected while parsing, so a stored payload is always valid.

pub mod filter;
pub mod index;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One scalar payload value.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A payload value: a scalar, or an array of scalars.
#[derive(Clone, Debug, PartialEq)]
pub enum PayloadValue {
    One(Scalar),
    Many(Vec<Scalar>),
}

/// A point's payload. Keys are kept sorted so output is deterministic.
pub type Payload = BTreeMap<String, PayloadValue>;

impl Scalar {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Approximate heap + inline bytes, for memory accounting.
    pub fn mem_bytes(&self) -> usize {
        std::mem::size_of::<Scalar>()
            + match self {
                Scalar::Str(s) => s.capacity(),
                _ => 0,
            }
    }
}

impl PayloadValue {
    pub fn scalars(&self) -> &[Scalar] {
        match self {
            PayloadValue::One(s) => std::slice::from_ref(s),
            PayloadValue::Many(v) => v,
        }
    }

    pub fn mem_bytes(&self) -> usize {
        match self {
            PayloadValue::One(s) => s.mem_bytes(),
            PayloadValue::Many(v) => {
                std::mem::size_of::<PayloadValue>() + v.iter().map(Scalar::mem_bytes).sum::<usize>()
            }
        }
    }
}

/// Approximate bytes a payload occupies (keys, values, tree nodes).
pub fn payload_mem_bytes(p: &Payload) -> usize {
    p.iter().map(|(k, v)| k.capacity() + v.mem_bytes() + 32).sum()
}

/// First blank key of a payload, if any (blank keys are rejected).
pub fn blank_key(p: &Payload) -> Option<&str> {
    p.keys().find(|k| k.trim().is_empty()).map(String::as_str)
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::Str(v) => s.serialize_str(v),
            Scalar::Int(v) => s.serialize_i64(*v),
            Scalar::Float(v) => s.serialize_f64(*v),
            Scalar::Bool(v) => s.serialize_bool(*v),
        }
    }
}

impl Serialize for PayloadValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PayloadValue::One(v) => v.serialize(s),
            PayloadValue::Many(vs) => {
                let mut seq = s.serialize_seq(Some(vs.len()))?;
                for v in vs {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(v).map(Scalar::Int).unwrap_or(Scalar::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Err(E::custom("null is not a valid payload value"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Err(E::custom("null is not a valid payload value"))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = PayloadValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or an array of those")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<PayloadValue, E> {
        ScalarVisitor.visit_bool(v).map(PayloadValue::One)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PayloadValue, E> {
        ScalarVisitor.visit_i64(v).map(PayloadValue::One)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PayloadValue, E> {
        ScalarVisitor.visit_u64(v).map(PayloadValue::One)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<PayloadValue, E> {
        ScalarVisitor.visit_f64(v).map(PayloadValue::One)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<PayloadValue, E> {
        ScalarVisitor.visit_str(v).map(PayloadValue::One)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<PayloadValue, E> {
        ScalarVisitor.visit_string(v).map(PayloadValue::One)
    }
    fn visit_unit<E: de::Error>(self) -> Result<PayloadValue, E> {
        Err(E::custom("null is not a valid payload value"))
    }
    fn visit_none<E: de::Error>(self) -> Result<PayloadValue, E> {
        Err(E::custom("null is not a valid payload value"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PayloadValue, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element::<Scalar>()? {
            out.push(v);
        }
        Ok(PayloadValue::Many(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<PayloadValue, A::Error> {
        Err(de::Error::custom("nested objects are not valid payload values"))
    }
}

impl<'de> Deserialize<'de> for PayloadValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_arrays_round_trip() {
        let text = r#"{"a":"x","b":3,"c":2.5,"d":true,"e":[1,"y",false]}"#;
        let p: Payload = serde_json::from_str(text).unwrap();
        assert_eq!(p["b"], PayloadValue::One(Scalar::Int(3)));
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
    }

    #[test]
    fn null_nested_objects_and_nested_arrays_are_rejected() {
        for bad in [r#"{"a":null}"#, r#"{"a":{"b":1}}"#, r#"{"a":[[1]]}"#, r#"{"a":[null]}"#] {
            assert!(serde_json::from_str::<Payload>(bad).is_err(), "{bad}");
        }
    }
}
