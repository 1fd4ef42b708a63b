//! The lenient scalar types of the YAML model (numbers and booleans written as strings),
//! and the field lists of the model's structs.
//!
//! Why lenient: LiteLLM reads its config with Python, where `"300"` and `"True"` often pass
//! for numbers and booleans (and `os.environ/NAME` values are always strings), so real
//! configs carry them. We accept exactly those spellings and reject anything else with a
//! message that names what was expected.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned},
};
use serde_json::Value;

use crate::secret::Secret;

// === scalar types ===

/// An integer: a YAML integer, an integral float (`5.0`) or a string holding one (`"300"`).
/// Range checks (negative, zero, too large) happen at conversion, where the field is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Int(pub(super) i64);

/// A number: a YAML number or a string holding one (`"1.5"`, `".inf"`). Non-finite values
/// pass here and are rejected at conversion with the field's name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Float(pub(super) f64);

/// A boolean: `true`/`false`, or one of the strings `true`, `True`, `TRUE`, `false`,
/// `False`, `FALSE` (YAML 1.2's spellings, which Python configs also produce).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Flag(pub(super) bool);

/// Text: a string, or a number or boolean taken as its text (`id: 1`, `api_version: 2024`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Text(pub(super) String);

/// Text that is a credential; held as a [`Secret`] from the moment it is read.
#[derive(Clone, PartialEq)]
pub(super) struct SecretText(pub(super) Secret);

/// What a value is, for messages; never the value itself unless it is short and plain.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// Parses a string the way YAML and Python spell floats, including `.inf`/`.nan`.
fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

impl Int {
    pub(super) fn from_value(v: &Value) -> Result<Self, String> {
        let bad = || format!("expected an integer, got {}", describe(v));
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Self(i))
                } else if n.is_u64() {
                    Err(format!("the number {n} is too large"))
                } else {
                    match n.as_f64() {
                        // `i64::MAX as f64` rounds up to 2^63, which is out of range.
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Self(f as i64)),
                        _ => Err(bad()),
                    }
                }
            }
            Value::String(s) => s.trim().parse().map(Self).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl Float {
    pub(super) fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => n.as_f64().map(Self),
            Value::String(s) => parse_float(s).map(Self),
            _ => None,
        }
        .ok_or_else(|| format!("expected a number, got {}", describe(v)))
    }
}

impl Flag {
    pub(super) fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(Self(*b)),
            Value::String(s) => match s.as_str() {
                "true" | "True" | "TRUE" => Ok(Self(true)),
                "false" | "False" | "FALSE" => Ok(Self(false)),
                _ => Err(format!("expected true or false, got {}", describe(v))),
            },
            _ => Err(format!("expected true or false, got {}", describe(v))),
        }
    }
}

impl Text {
    pub(super) fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(Self(s.clone())),
            Value::Number(n) => Ok(Self(n.to_string())),
            Value::Bool(b) => Ok(Self(b.to_string())),
            _ => Err(format!("expected a string, got {}", describe(v))),
        }
    }
}

impl SecretText {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(Self(Secret::new(s.as_str()))),
            Value::Number(n) => Ok(Self(Secret::new(n.to_string()))),
            // Describe the shape only: this is a credential field.
            Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(format!(
                "expected a string, got {}",
                match v {
                    Value::Bool(_) => "a boolean",
                    Value::Array(_) => "a list",
                    Value::Object(_) => "a mapping",
                    _ => "nothing (null)",
                }
            )),
        }
    }
}

macro_rules! deserialize_via_value {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                Self::from_value(&v).map_err(de::Error::custom)
            }
        }
    )*};
}
deserialize_via_value!(Int, Float, Flag, Text, SecretText);

/// For sections and entries written as `key:` with nothing after it (YAML null): the default.
pub(super) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// === field names ===

/// The field names a derived `Deserialize` struct knows, read from the struct itself (serde
/// passes them to `deserialize_struct`), so the lists of known keys can never drift from
/// the structs. Empty for a type that is not a plain struct.
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe always answers with an error once it has seen the field list.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self
    }
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.0 = fields;
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_numbers_accept_numbers_and_numeric_strings() {
        assert_eq!(Float::from_value(&json!(300)), Ok(Float(300.0)));
        assert_eq!(Float::from_value(&json!(0.25)), Ok(Float(0.25)));
        assert_eq!(Float::from_value(&json!("300")), Ok(Float(300.0)));
        assert_eq!(Float::from_value(&json!(" 1.5 ")), Ok(Float(1.5)));
        assert_eq!(Float::from_value(&json!("-2")), Ok(Float(-2.0)));
        assert_eq!(
            Float::from_value(&json!("-.inf")),
            Ok(Float(f64::NEG_INFINITY))
        );
        assert!(Float::from_value(&json!(".nan")).unwrap().0.is_nan());
        let e = Float::from_value(&json!("5m")).unwrap_err();
        assert_eq!(e, "expected a number, got the string \"5m\"");
        assert_eq!(
            Float::from_value(&json!([1])).unwrap_err(),
            "expected a number, got a list"
        );
        assert_eq!(
            Float::from_value(&json!(true)).unwrap_err(),
            "expected a number, got the boolean true"
        );
    }

    #[test]
    fn integers_accept_integral_values_only() {
        assert_eq!(Int::from_value(&json!(10)), Ok(Int(10)));
        assert_eq!(Int::from_value(&json!(-3)), Ok(Int(-3)));
        assert_eq!(Int::from_value(&json!("300")), Ok(Int(300)));
        assert_eq!(Int::from_value(&json!(5.0)), Ok(Int(5)));
        assert_eq!(
            Int::from_value(&json!(1.5)).unwrap_err(),
            "expected an integer, got the number 1.5"
        );
        assert_eq!(
            Int::from_value(&json!("ten")).unwrap_err(),
            "expected an integer, got the string \"ten\""
        );
        assert_eq!(
            Int::from_value(&json!(u64::MAX)).unwrap_err(),
            format!("the number {} is too large", u64::MAX)
        );
        assert!(Int::from_value(&json!({"a": 1})).is_err());
    }

    #[test]
    fn booleans_accept_python_spellings_and_nothing_else() {
        for (v, want) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), true),
            (json!("True"), true),
            (json!("TRUE"), true),
            (json!("false"), false),
            (json!("False"), false),
            (json!("FALSE"), false),
        ] {
            assert_eq!(Flag::from_value(&v), Ok(Flag(want)), "{v}");
        }
        for v in [
            json!("yes"),
            json!("1"),
            json!(1),
            json!("tru"),
            json!(null),
        ] {
            let e = Flag::from_value(&v).unwrap_err();
            assert!(e.starts_with("expected true or false, got "), "{e}");
        }
    }

    #[test]
    fn text_takes_scalars_and_secret_text_never_echoes() {
        assert_eq!(Text::from_value(&json!(1)), Ok(Text("1".into())));
        assert_eq!(Text::from_value(&json!("a")), Ok(Text("a".into())));
        assert!(Text::from_value(&json!([])).is_err());
        let s = SecretText::from_value(&json!("sk-x")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.0.expose(), "sk-x");
        let Err(e) = SecretText::from_value(&json!({"k": "sk-inner"})) else {
            panic!("a mapping is not a key");
        };
        assert_eq!(e, "expected a string, got a mapping");
    }

    #[test]
    fn field_names_come_from_the_struct() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct S {
            a: u8,
            #[serde(rename = "b_b")]
            b: u8,
        }
        assert_eq!(field_names::<S>(), ["a", "b_b"]);
        assert!(field_names::<u8>().is_empty());
    }
}
