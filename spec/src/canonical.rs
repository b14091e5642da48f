//! Canonical JSON: RFC 8785 (JCS) restricted to the Guildhall profile.
//!
//! Everything that is signed or hashed is first turned into its canonical form here. The profile
//! (spec chapter 01) narrows JCS so that every implementation agrees byte for byte without a
//! floating-point formatter:
//!
//! * numbers are integers written as `0` or `-?[1-9][0-9]*`, within ±(2^53−1);
//! * an object never repeats a key;
//! * object members are sorted by the UTF-16 code units of their names.
//!
//! Input from the network goes through [`parse_strict`], which enforces the profile while
//! parsing, so a duplicate key can never be silently collapsed before a signature is checked.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The largest magnitude an integer in signed JSON may have: 2^53 − 1.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Whether an integer is within ±(2^53−1). `unsigned_abs` cannot overflow, unlike `abs`, whose
/// result for `i64::MIN` wraps to a negative number in release builds.
fn is_safe_integer(integer: i64) -> bool {
    integer.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs()
}

/// Why a JSON text or value has no canonical form under the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalJsonError {
    /// A number with a fraction, an exponent, `-0`, or outside ±(2^53−1).
    #[error("number not allowed in signed JSON: {0}")]
    InvalidNumber(String),
    /// An object names the same member twice.
    #[error("duplicate object key: {0:?}")]
    DuplicateKey(String),
    /// The text is not JSON at all (syntax, lone surrogates, NaN, trailing data).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
}

impl CanonicalJsonError {
    /// The stable reason code used in test vectors and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidNumber(_) => "invalid_number",
            Self::DuplicateKey(_) => "duplicate_key",
            Self::InvalidJson(_) => "invalid_json",
        }
    }
}

/// Parses JSON text, enforcing the profile (no duplicate keys, integers only, in range).
pub fn parse_strict(text: &str) -> Result<Value, CanonicalJsonError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue.deserialize(&mut deserializer).map_err(classify)?;
    deserializer.end().map_err(|e| CanonicalJsonError::InvalidJson(e.to_string()))?;
    Ok(value)
}

/// Parses JSON bytes with [`parse_strict`]; bytes that are not UTF-8 are invalid JSON.
pub fn parse_strict_slice(bytes: &[u8]) -> Result<Value, CanonicalJsonError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| CanonicalJsonError::InvalidJson(e.to_string()))?;
    parse_strict(text)
}

/// Canonicalizes JSON text: strict parse, then [`to_canonical_string`].
pub fn canonicalize(text: &str) -> Result<String, CanonicalJsonError> {
    to_canonical_string(&parse_strict(text)?)
}

/// The canonical (JCS) text of a value. Fails only on numbers outside the profile.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalJsonError> {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out)?;
    Ok(out)
}

/// The canonical text of any serializable value, as bytes ready to hash or sign.
pub fn to_canonical_bytes<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, CanonicalJsonError> {
    let value =
        serde_json::to_value(value).map_err(|e| CanonicalJsonError::InvalidJson(e.to_string()))?;
    Ok(to_canonical_string(&value)?.into_bytes())
}

fn write_value(value: &Value, out: &mut String) -> Result<(), CanonicalJsonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            let integer = number
                .as_i64()
                .filter(|&n| is_safe_integer(n))
                .ok_or_else(|| CanonicalJsonError::InvalidNumber(number.to_string()))?;
            out.push_str(&integer.to_string());
        }
        Value::String(string) => write_string(string, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_object(members, out)?,
    }
    Ok(())
}

fn write_object(members: &Map<String, Value>, out: &mut String) -> Result<(), CanonicalJsonError> {
    // JCS orders members by UTF-16 code units, which differs from Rust's UTF-8 byte order for
    // names mixing characters above U+FFFF with those in U+E000..=U+FFFF.
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (index, (name, value)) in sorted.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        write_value(value, out)?;
    }
    out.push('}');
    Ok(())
}

/// Writes a JSON string exactly as ECMAScript's `JSON.stringify` does (RFC 8785 §3.2.2.2).
fn write_string(string: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for character in string.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{09}' => out.push_str("\\t"),
            '\u{0A}' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\u{0D}' => out.push_str("\\r"),
            control if u32::from(control) < 0x20 => {
                let code = u32::from(control) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[code >> 4]));
                out.push(char::from(HEX[code & 0xF]));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Maps a serde_json error back to the profile's reason, which the visitor encodes in the message.
fn classify(error: serde_json::Error) -> CanonicalJsonError {
    let message = error.to_string();
    if let Some(rest) = message.strip_prefix(DUPLICATE_PREFIX) {
        CanonicalJsonError::DuplicateKey(strip_position(rest))
    } else if let Some(rest) = message.strip_prefix(NUMBER_PREFIX) {
        CanonicalJsonError::InvalidNumber(strip_position(rest))
    } else {
        CanonicalJsonError::InvalidJson(message)
    }
}

const DUPLICATE_PREFIX: &str = "guildhall:duplicate_key:";
const NUMBER_PREFIX: &str = "guildhall:invalid_number:";

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// A `Value` deserializer that enforces the profile while it reads.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value in the Guildhall canonical profile")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        if !is_safe_integer(value) {
            return Err(E::custom(format_args!("{NUMBER_PREFIX}{value}")));
        }
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        match i64::try_from(value) {
            Ok(small) if small <= MAX_SAFE_INTEGER => Ok(Value::from(small)),
            _ => Err(E::custom(format_args!("{NUMBER_PREFIX}{value}"))),
        }
    }

    // serde_json reports fractions, exponents and `-0` as floats: none is allowed.
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Err(E::custom(format_args!("{NUMBER_PREFIX}{value}")))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format_args!("{DUPLICATE_PREFIX}{name}")));
            }
            let value = map.next_value_seed(StrictValue)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(canonicalize(input).as_deref(), Ok(expected), "input: {input}");
    }

    fn check_error(input: &str, code: &str) {
        let error = canonicalize(input).expect_err(input);
        assert_eq!(error.code(), code, "input: {input}, error: {error}");
    }

    #[test]
    fn orders_members_and_drops_whitespace() {
        check(
            r#" { "b" : [1, 2, {"z":null,"a":true}], "a": "x" } "#,
            r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#,
        );
    }

    #[test]
    fn orders_by_utf16_code_units() {
        // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB01 in UTF-16
        // although its UTF-8 encoding sorts after.
        check(r#"{"\ufb01":1,"\ud83d\ude00":2}"#, "{\"\u{1F600}\":2,\"\u{FB01}\":1}");
    }

    #[test]
    fn escapes_like_ecmascript() {
        check(r#""\u0041\/\u00e9\u001f\n\u2028""#, "\"A/é\\u001f\\n\u{2028}\"");
    }

    #[test]
    fn serializer_refuses_integers_outside_the_profile() {
        for integer in
            [i64::MIN, i64::MIN + 1, -MAX_SAFE_INTEGER - 1, MAX_SAFE_INTEGER + 1, i64::MAX]
        {
            let error = to_canonical_string(&Value::from(integer)).expect_err("out of range");
            assert_eq!(error.code(), "invalid_number", "{integer}");
        }
        assert_eq!(
            to_canonical_string(&Value::from(u64::MAX)).map_err(|e| e.code()),
            Err("invalid_number")
        );
        assert_eq!(
            to_canonical_string(&Value::from(-MAX_SAFE_INTEGER)).as_deref(),
            Ok("-9007199254740991")
        );
    }

    #[test]
    fn keeps_safe_integers() {
        check("[9007199254740991,-9007199254740991,0]", "[9007199254740991,-9007199254740991,0]");
    }

    #[test]
    fn rejects_what_the_profile_forbids() {
        check_error("1.0", "invalid_number");
        check_error("1e2", "invalid_number");
        check_error("-0", "invalid_number");
        check_error("9007199254740992", "invalid_number");
        check_error("-9007199254740992", "invalid_number");
        check_error("9223372036854775807", "invalid_number");
        check_error("-9223372036854775808", "invalid_number");
        check_error("[1,{\"n\":-9223372036854775808}]", "invalid_number");
        check_error("18446744073709551615", "invalid_number");
        check_error(r#"{"a":1,"a":2}"#, "duplicate_key");
        check_error(r#"{"a":{"b":1,"b":1}}"#, "duplicate_key");
        check_error("NaN", "invalid_json");
        check_error(r#""\ud800""#, "invalid_json");
        check_error("{} {}", "invalid_json");
    }
}
