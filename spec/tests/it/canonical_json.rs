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
