use guildhall_spec::canonical;

#[test]
fn agrees_with_canonical_json_vectors() {
    let cases = super::vectors("canonical_json.json");
    let cases = cases.as_array().expect("an array of cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let input = case["input"].as_str().expect("input is JSON text");
        let actual = canonical::canonicalize(input);
        match (case["canonical"].as_str(), &actual) {
            (Some(expected), Ok(actual)) if expected == actual => {}
            (None, Err(error)) if case["reason"].as_str() == Some(error.code()) => {}
            (expected, _) => failures.push(format!(
                "{name}: expected {expected:?} / reason {}, got {actual:?}",
                case["reason"]
            )),
        }
    }
    super::assert_no_failures("canonical JSON", cases.len(), &failures);
}

/// Properties of the strict parser and the serializer over generated JSON: what the profile
/// allows round-trips to the one canonical text, what it forbids is refused with its code.
mod properties {
    use guildhall_spec::canonical::{self, MAX_SAFE_INTEGER};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use crate::strategies::{json_string, json_value};

    /// The canonical text, built independently of the crate: members sorted by UTF-16 code
    /// units, strings escaped by serde_json (which escapes exactly as JCS does), no whitespace.
    fn expected_canonical(value: &Value) -> String {
        match value {
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(expected_canonical).collect();
                format!("[{}]", items.join(","))
            }
            Value::Object(members) => {
                let mut members: Vec<(&String, &Value)> = members.iter().collect();
                members.sort_by_key(|(name, _)| name.encode_utf16().collect::<Vec<u16>>());
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(name, value)| format!("{}:{}", text(name), expected_canonical(value)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            other => serde_json::to_string(other).expect("a scalar serializes"),
        }
    }

    fn text(string: &str) -> String {
        serde_json::to_string(string).expect("a string serializes")
    }

    /// A tiny deterministic generator for layout choices, so one seed fixes one spelling.
    struct Layout(u64);

    impl Layout {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }

        fn whitespace(&mut self, out: &mut String) {
            out.push_str(["", "", " ", "\n", "\t", "\r\n  "][self.next(6) as usize]);
        }
    }

    /// Writes `value` as valid but non-canonical JSON: random whitespace, random member order,
    /// characters randomly escaped (`\uXXXX` in either case, surrogate pairs, `\/`).
    fn write_messy(value: &Value, layout: &mut Layout, out: &mut String) {
        layout.whitespace(out);
        match value {
            Value::String(string) => write_messy_string(string, layout, out),
            Value::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write_messy(item, layout, out);
                }
                layout.whitespace(out);
                out.push(']');
            }
            Value::Object(members) => {
                let mut members: Vec<(&String, &Value)> = members.iter().collect();
                for index in (1..members.len()).rev() {
                    members.swap(index, layout.next(index as u64 + 1) as usize);
                }
                out.push('{');
                for (index, (name, value)) in members.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    layout.whitespace(out);
                    write_messy_string(name, layout, out);
                    layout.whitespace(out);
                    out.push(':');
                    write_messy(value, layout, out);
                }
                layout.whitespace(out);
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
        layout.whitespace(out);
    }

    fn write_messy_string(string: &str, layout: &mut Layout, out: &mut String) {
        out.push('"');
        for character in string.chars() {
            let must_escape = matches!(character, '"' | '\\') || u32::from(character) < 0x20;
            match layout.next(4) {
                0 => {
                    let mut units = [0; 2];
                    for unit in character.encode_utf16(&mut units) {
                        if layout.next(2) == 0 {
                            out.push_str(&format!("\\u{unit:04x}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                }
                1 if character == '/' => out.push_str("\\/"),
                _ if must_escape => {
                    let escaped = text(&character.to_string());
                    out.push_str(&escaped[1..escaped.len() - 1]);
                }
                _ => out.push(character),
            }
        }
        out.push('"');
    }

    fn messy(value: &Value, seed: u64) -> String {
        let mut out = String::new();
        write_messy(value, &mut Layout(seed | 1), &mut out);
        out
    }

    /// Integers as text, concentrated on the edges: ±(2^53−1) and ±2^53, the i64 and u64
    /// limits (i64::MIN has no positive counterpart), and far beyond.
    fn integer() -> impl Strategy<Value = i128> {
        let safe = i128::from(MAX_SAFE_INTEGER);
        let min = i128::from(i64::MIN);
        let max = i128::from(i64::MAX);
        let u64_max = i128::from(u64::MAX);
        prop_oneof![
            any::<i64>().prop_map(i128::from),
            -safe..=safe,
            safe - 3..=safe + 3,
            -safe - 3..=-safe + 3,
            min..=min + 3,
            max - 3..=max + 3,
            u64_max - 3..=u64_max + 3,
            any::<i128>(),
        ]
    }

    proptest! {
        #![proptest_config(super::super::config(256))]

        #[test]
        fn any_spelling_canonicalizes_to_the_profile_form(value in json_value(), seed in any::<u64>()) {
            let input = messy(&value, seed);
            prop_assert_eq!(canonical::parse_strict(&input), Ok(value.clone()), "input {}", input);
            let canonical_text = canonical::canonicalize(&input);
            prop_assert_eq!(canonical_text.clone(), Ok(expected_canonical(&value)));
            let canonical_text = canonical_text.expect("checked above");
            // Canonical text is a fixed point and parses back to the same value.
            prop_assert_eq!(canonical::canonicalize(&canonical_text), Ok(canonical_text.clone()));
            prop_assert_eq!(canonical::parse_strict(&canonical_text), Ok(value));
        }

        #[test]
        fn integers_are_accepted_exactly_within_the_safe_range(
            integer in integer(),
            nested in any::<bool>(),
        ) {
            let input = if nested {
                format!("{{\"a\":[0,{{\"n\":{integer}}}]}}")
            } else {
                integer.to_string()
            };
            let safe = integer.unsigned_abs() <= u128::from(MAX_SAFE_INTEGER.unsigned_abs());
            match canonical::canonicalize(&input) {
                Ok(output) => {
                    prop_assert!(safe, "accepted {input}");
                    prop_assert_eq!(output, input);
                }
                Err(error) => {
                    prop_assert!(!safe, "refused {input}: {error}");
                    prop_assert_eq!(error.code(), "invalid_number", "{}", input);
                }
            }
            // The serializer holds the same line for values built in memory.
            if let Ok(integer) = i64::try_from(integer) {
                let built = canonical::to_canonical_string(&Value::from(integer));
                prop_assert_eq!(built.is_ok(), safe, "serialized {}", integer);
            }
        }

        #[test]
        fn a_repeated_member_name_is_refused(
            members in prop::collection::btree_map(json_string(), json_value(), 1..5),
            repeat in any::<prop::sample::Index>(),
            repeated_value in json_value(),
            wrap in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let name = repeat.get(&members.keys().collect::<Vec<_>>()).to_string();
            let mut layout = Layout(seed | 1);
            let mut object = String::new();
            write_messy(&Value::Object(members.into_iter().collect::<Map<_, _>>()), &mut layout, &mut object);
            // Append the repeated member before the closing brace, its name spelled afresh.
            let closing = object.rfind('}').expect("an object");
            let mut member = String::from(",");
            write_messy_string(&name, &mut layout, &mut member);
            member.push(':');
            write_messy(&repeated_value, &mut layout, &mut member);
            object.insert_str(closing, &member);
            let input = if wrap { format!("[1,{{\"x\":{object}}}]") } else { object };
            let error = canonical::parse_strict(&input).expect_err(&input);
            prop_assert_eq!(error.code(), "duplicate_key", "{}", input);
        }

        #[test]
        fn whatever_is_accepted_has_a_canonical_fixed_point(
            tokens in prop::collection::vec(
                prop::sample::select(&[
                    "{", "}", "[", "]", ",", ":", " ", "\"a\"", "\"b\"", "\"\\u0061\"",
                    "\"\\ud800\"", "\"\\ud83d\\ude00\"", "0", "-", "1", "-0", "1.5", "1e3",
                    "9007199254740991", "9007199254740992", "-9223372036854775808",
                    "18446744073709551616", "null", "true", "NaN", "\u{feff}", "\"\u{1}\"",
                ][..]),
                0..24,
            ),
        ) {
            let input = tokens.concat();
            if let Ok(value) = canonical::parse_strict(&input) {
                let canonical_text = canonical::to_canonical_string(&value);
                prop_assert!(canonical_text.is_ok(), "accepted {input} without a canonical form");
                let canonical_text = canonical_text.expect("checked above");
                prop_assert_eq!(canonical::parse_strict(&canonical_text), Ok(value));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = canonical::parse_strict_slice(&bytes);
        }
    }
}
