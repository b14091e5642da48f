//! Sessions from a token, replies, and one session sending from many tasks at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use guildhall_client::{ChannelId, Message, Sent};
use serde_json::{Value, json};

use crate::fake::{self, EARLIER_MESSAGE};

/// The id of every message the fake server makes.
const NEW_MESSAGE: &str = "$BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA";

/// What the fake server was sent: `(channel in the path, body)` of each message.
type Sends = Arc<Mutex<Vec<(String, Value)>>>;

#[tokio::test]
async fn a_token_from_elsewhere_is_a_session_of_its_account() {
    let client = fake::serve(Router::new().route("/api/v1/users/@me", get(fake::me))).await;
    let bot = client.login_with_token("pingbot-token").await.unwrap();
    assert_eq!(bot.user_id().as_str(), format!("@pingbot:{}", client.server_name()));
    assert_eq!(bot.token(), "pingbot-token");
    assert_eq!(bot.server_name(), client.server_name());

    let refused = client.login_with_token("not a token").await.unwrap_err();
    assert_eq!(refused.code(), Some("unauthorized"), "{refused}");
}

#[tokio::test]
async fn a_reply_goes_to_the_messages_channel_and_names_it() {
    let sends = Sends::default();
    let client = fake::serve(messages(&sends)).await;
    let bot = client.login_with_token("pingbot-token").await.unwrap();
    let alice = format!("@alice:{}", client.server_name());
    let ping: Message =
        serde_json::from_value(fake::message(EARLIER_MESSAGE, "general", &alice, "!ping")).unwrap();

    let Sent::Delivered(pong) = bot.reply(&ping, "pong").await.unwrap() else {
        panic!("a 201 answer is a delivered message");
    };
    assert_eq!((pong.reply_to.as_ref(), pong.content.as_str()), (Some(&ping.id), "pong"));
    let sends = sends.lock().unwrap();
    let [(channel, body)] = sends.as_slice() else { panic!("one send expected: {sends:?}") };
    assert_eq!(channel, "general");
    assert_eq!((&body["content"], &body["reply_to"]), (&json!("pong"), &json!(EARLIER_MESSAGE)));
    assert!(body["nonce"].as_str().is_some_and(|nonce| !nonce.is_empty()), "{body}");
}

#[tokio::test]
async fn clones_of_a_session_send_from_many_tasks_at_once() {
    const TASKS: usize = 20;
    let sends = Sends::default();
    let client = fake::serve(messages(&sends)).await;
    let alice = client.login_with_token("alice-token").await.unwrap();
    let channel = ChannelId::parse("general").unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|index| {
            let (alice, channel) = (alice.clone(), channel.clone());
            tokio::spawn(async move { alice.send_message(&channel, &format!("{index}")).await })
        })
        .collect();
    for task in tasks {
        let sent = task.await.unwrap().unwrap();
        assert!(matches!(sent, Sent::Delivered(_)), "{sent:?}");
    }

    let sends = sends.lock().unwrap();
    let text = |body: &Value, field: &str| body[field].as_str().unwrap_or_default().to_owned();
    let contents: BTreeSet<_> = sends.iter().map(|(_, body)| text(body, "content")).collect();
    let expected: BTreeSet<_> = (0..TASKS).map(|index| index.to_string()).collect();
    assert_eq!(contents, expected, "every message once");
    // Each send is its own transaction: a shared nonce would make the server keep only one.
    let nonces: BTreeSet<_> = sends.iter().map(|(_, body)| text(body, "nonce")).collect();
    assert_eq!(nonces.len(), TASKS, "nonces: {nonces:?}");
    assert!(sends.iter().all(|(_, body)| body.get("reply_to").is_none()), "{:?}", sends[0]);
}

/// A server with accounts (see [`fake::me`]) that records each message sent and answers with
/// it, as sent by the token's account.
fn messages(sends: &Sends) -> Router {
    async fn send(
        State(sends): State<Sends>,
        Path(channel): Path<String>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let (_, Json(author)) = fake::me(headers).await;
        let content = body["content"].as_str().unwrap_or_default();
        let mut message = fake::message(
            NEW_MESSAGE,
            &channel,
            author["id"].as_str().unwrap_or_default(),
            content,
        );
        message["reply_to"] = body["reply_to"].clone();
        sends.lock().unwrap().push((channel, body));
        (StatusCode::CREATED, Json(message))
    }
    Router::new()
        .route("/api/v1/users/@me", get(fake::me))
        .route("/api/v1/channels/{channel}/messages", post(send))
        .with_state(Arc::clone(sends))
}
