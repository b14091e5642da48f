//! The gateway's arrival times.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use guildhall_client::GatewayEvent;
use serde_json::{Value, json};

use crate::fake::{self, EARLIER_MESSAGE};

#[tokio::test]
async fn an_event_arrives_when_its_frame_is_read_not_when_it_is_asked_for() {
    const LATE: Duration = Duration::from_secs(2);
    let app =
        Router::new().route("/api/v1/users/@me", get(fake::me)).route("/gateway", get(gateway));
    let alice = fake::serve(app).await.login_with_token("alice-token").await.unwrap();
    let connecting = Instant::now();
    let mut gateway = alice.gateway().await.unwrap();
    assert_eq!(gateway.ready().user.id, *alice.user_id());

    // The server sent the message right after READY; ask for it only much later.
    tokio::time::sleep(LATE).await;
    let (event, arrival) = gateway.next_with_arrival().await.unwrap();
    let asked = Instant::now();
    let Ok(GatewayEvent::MessageCreate(message)) = event else {
        panic!("expected MESSAGE_CREATE, got {event:?}");
    };
    assert_eq!(message.id.as_str(), EARLIER_MESSAGE);
    assert!(arrival >= connecting, "arrived before the connection was made");
    let waited = asked.duration_since(arrival);
    assert!(waited >= LATE / 2, "arrival {waited:?} before asking: the read, not the arrival");
}

/// A gateway that says hello, takes the identify, sends READY and one message, then keeps the
/// connection open.
async fn gateway(upgrade: WebSocketUpgrade, headers: HeaderMap) -> Response {
    let host = headers.get("host").and_then(|host| host.to_str().ok()).unwrap_or_default();
    let alice = format!("@alice:{host}");
    upgrade.on_upgrade(move |mut socket| async move {
        send(&mut socket, json!({"op": 10, "d": {"heartbeat_interval": 45_000}})).await;
        let _identify = socket.recv().await;
        let user = json!({"id": alice, "username": "alice"});
        let ready = json!({"session_id": "s1", "user": user, "guilds": [], "seq": 1});
        send(&mut socket, json!({"op": 0, "t": "READY", "s": 1, "d": ready})).await;
        let message = fake::message(EARLIER_MESSAGE, "general", &alice, "hello");
        send(&mut socket, json!({"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": message})).await;
        while let Some(Ok(_)) = socket.recv().await {}
    })
}

async fn send(socket: &mut WebSocket, frame: Value) {
    let _ = socket.send(WsMessage::Text(frame.to_string().into())).await;
}

#[tokio::test]
async fn a_malformed_dispatch_is_skipped_and_an_odd_heartbeat_interval_is_clamped() {
    let app = Router::new()
        .route("/api/v1/users/@me", get(fake::me))
        .route("/gateway", get(gateway_with_a_bad_frame));
    let alice = fake::serve(app).await.login_with_token("alice-token").await.unwrap();
    let mut gateway = alice.gateway().await.unwrap();
    let event = gateway.next().await.expect("the stream goes on");
    let Ok(GatewayEvent::MessageCreate(message)) = event else {
        panic!("expected MESSAGE_CREATE after the bad frame, got {event:?}");
    };
    assert_eq!(message.id.as_str(), EARLIER_MESSAGE);
}

/// As [`gateway`], with a heartbeat interval no timer takes and a `TO_DEVICE` that is not an
/// inbox item before the message.
async fn gateway_with_a_bad_frame(upgrade: WebSocketUpgrade, headers: HeaderMap) -> Response {
    let host = headers.get("host").and_then(|host| host.to_str().ok()).unwrap_or_default();
    let alice = format!("@alice:{host}");
    upgrade.on_upgrade(move |mut socket| async move {
        send(&mut socket, json!({"op": 10, "d": {"heartbeat_interval": u64::MAX}})).await;
        let _identify = socket.recv().await;
        let user = json!({"id": alice, "username": "alice"});
        let ready = json!({"session_id": "s1", "user": user, "guilds": [], "seq": 1});
        send(&mut socket, json!({"op": 0, "t": "READY", "s": 1, "d": ready})).await;
        send(&mut socket, json!({"op": 0, "t": "TO_DEVICE", "s": null, "d": {"id": "x"}})).await;
        let message = fake::message(EARLIER_MESSAGE, "general", &alice, "hello");
        send(&mut socket, json!({"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": message})).await;
        while let Some(Ok(_)) = socket.recv().await {}
    })
}
