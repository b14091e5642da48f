//! A device's inbox read against a server that does not keep its word.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use guildhall_client::Identity;
use guildhall_client::e2e::{Device, Incoming};
use serde_json::{Value, json};

use crate::fake;

#[tokio::test]
async fn a_read_stops_when_the_server_ignores_acknowledgements() {
    let reads = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/api/v1/users/@me", get(fake::me))
        .route("/api/v1/users/@me/devices/{device_id}", put(|| async { Json(json!({})) }))
        .route(
            "/api/v1/keys/upload",
            post(|| async { Json(json!({"one_time_key_count": 100, "fallback_key": true})) }),
        )
        .route("/api/v1/users/@me/to_device", get(same_page))
        .route("/api/v1/users/@me/to_device/ack", post(|| async { Json(json!({"deleted": 0})) }))
        .with_state(reads.clone());
    let alice = fake::serve(app).await.login_with_token("alice-token").await.unwrap();
    let dir = std::env::temp_dir().join(format!("guildhall-client-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut device =
        Device::create(&alice, &Identity::generate(), &dir.join("e2e.json")).await.unwrap();

    // The server answers every read with the same item and "more", whatever was acknowledged.
    let read = device.receive(&alice).await.unwrap();
    assert!(matches!(read.as_slice(), [Incoming::Undecryptable(_)]), "{read:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 2, "one page, and one that brought nothing new");
    assert!(device.receive(&alice).await.unwrap().is_empty(), "the item is not read twice");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One inbox item that is not a valid message, always with `"more": true`.
async fn same_page(State(reads): State<Arc<AtomicUsize>>) -> Json<Value> {
    reads.fetch_add(1, Ordering::SeqCst);
    let item = json!({"id": 1, "sender": "@bob:b.example", "sender_device": "PHONE",
                      "message_id": "m1", "message_type": "olm.v1", "content": {}});
    Json(json!({"messages": [item], "more": true}))
}
