use guildhall_spec::{MediaId, base64url};
use sha2::{Digest, Sha256};

#[test]
fn agrees_with_media_vectors() {
    let document = super::vectors("media.json");
    for case in document["ids"]["cases"].as_array().expect("ids") {
        let name = case["name"].as_str().unwrap_or("?");
        let bytes = base64url::decode(case["bytes"].as_str().expect("bytes")).expect("base64url");
        let id = MediaId::from_sha256(&Sha256::digest(&bytes).into());
        assert_eq!(Some(id.as_str()), case["media_id"].as_str(), "{name}");
        assert_eq!(MediaId::parse(id.as_str()), Ok(id.clone()), "{name}");
    }
    for case in document["parse"]["cases"].as_array().expect("parse") {
        let name = case["name"].as_str().unwrap_or("?");
        let valid = MediaId::parse(case["text"].as_str().expect("text")).is_ok();
        assert_eq!(Some(valid), case["valid"].as_bool(), "{name}");
    }
}
