//! Generators shared by the property tests.

use guildhall_spec::canonical::MAX_SAFE_INTEGER;
use proptest::prelude::*;
use serde_json::Value;

/// Profile-valid JSON values: safe integers, any strings, objects with distinct keys.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).prop_map(Value::from),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_string(), inner, 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Strings weighted towards the characters JCS treats specially: controls, quotes,
/// backslashes, the BMP private-use area and characters above U+FFFF (UTF-16 ordering).
pub(crate) fn json_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::char::range('\0', '\x7f'),
            1 => any::<char>(),
            1 => prop::char::range('\u{e000}', '\u{ffff}'),
            1 => prop::char::range('\u{10000}', '\u{10ffff}'),
        ],
        0..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}
