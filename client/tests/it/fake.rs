//! A fake server: an axum router on a free loopback port, answering with canned shapes and
//! recording what it was sent.

use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router};
use guildhall_client::{Client, ServerName};
use serde_json::{Value, json};

/// The same 43-character event id every test message uses as what it answers.
pub(crate) const EARLIER_MESSAGE: &str = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Serves `app` on a free loopback port and returns a client of it, named after its address.
pub(crate) async fn serve(app: Router) -> Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let name = ServerName::parse(&address.to_string()).unwrap();
    Client::with_server_name(&format!("http://{address}"), name).unwrap()
}

/// A message as the server shows it, in `channel_id`, by `author_id`.
pub(crate) fn message(id: &str, channel_id: &str, author_id: &str, content: &str) -> Value {
    let server = author_id.split_once(':').map_or("", |(_, server)| server);
    json!({
        "id": id,
        "guild_id": format!("!guild:{server}"),
        "channel_id": channel_id,
        "author_id": author_id,
        "content": content,
        "created_ts": 1_700_000_000_000_u64,
    })
}

/// `GET /api/v1/users/@me` for the token `<name>-token`: the account `@<name>:<host>`, the host
/// being the one the request was addressed to. Any other token is refused.
pub(crate) async fn me(headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let name = header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| token.strip_suffix("-token"));
    match (name, header("host")) {
        (Some(name), Some(host)) => {
            (StatusCode::OK, Json(json!({"id": format!("@{name}:{host}"), "username": name})))
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": "unauthorized", "message": "invalid or expired token"})),
        ),
    }
}
