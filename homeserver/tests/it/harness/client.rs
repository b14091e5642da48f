//! A REST client for `/api/v1` whose calls answer `(status, JSON body)`, and a signed-in user
//! with the few scenario steps most tests share.

use std::ops::Deref;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// A client of one server, with or without a bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().no_proxy().build().expect("build the HTTP client");
        Self { http, base: base.to_owned(), token: None }
    }

    /// The same client using `token`.
    pub fn with_token(&self, token: &str) -> Self {
        Self { token: Some(token.to_owned()), ..self.clone() }
    }

    /// A request to `/api/v1<path>`, authenticated when the client has a token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}/api/v1{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// `POST` to a path outside `/api/v1` (e.g. `/_guildhall/v1/identity/challenge`).
    pub async fn post_at(&self, path: &str, body: Value) -> (StatusCode, Value) {
        call(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    /// `GET` a path outside `/api/v1` (e.g. `/ready`).
    pub async fn get_absolute(&self, path: &str) -> (StatusCode, Value) {
        call(self.http.get(format!("{}{path}", self.base))).await
    }

    /// `GET`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        call(self.request(Method::GET, path)).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        call(self.request(Method::POST, path).json(&body)).await
    }

    /// `POST` without a body.
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        call(self.request(Method::POST, path)).await
    }

    /// `PUT` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        call(self.request(Method::PUT, path).json(&body)).await
    }

    /// `PUT` without a body.
    pub async fn put_empty(&self, path: &str) -> (StatusCode, Value) {
        call(self.request(Method::PUT, path)).await
    }

    /// `PATCH` with a JSON body.
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        call(self.request(Method::PATCH, path).json(&body)).await
    }

    /// `DELETE` without a body.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        call(self.request(Method::DELETE, path)).await
    }

    /// `DELETE` with a JSON body.
    pub async fn delete_with(&self, path: &str, body: Value) -> (StatusCode, Value) {
        call(self.request(Method::DELETE, path).json(&body)).await
    }
}

/// Sends a request; the body is parsed as JSON, `null` when empty, a string when not JSON.
pub async fn call(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("send the request");
    let status = response.status();
    let text = response.text().await.expect("read the body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a path segment or a
/// query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `path?k=v&...` with every value encoded.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> =
        pairs.iter().map(|(key, value)| format!("{key}={}", encode(value))).collect();
    format!("{path}?{}", query.join("&"))
}

/// Asserts a refusal: the status and the stable error `code`.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "expected {status} {code}, got {response:?}");
    assert_eq!(response.1["code"], code, "expected {status} {code}, got {response:?}");
}

/// A guild as most tests need it: its id and its first channel, `general`.
#[derive(Debug, Clone)]
pub struct Guild {
    /// The guild id.
    pub id: String,
    /// The `general` text channel.
    pub general: String,
}

/// A signed-in user.
#[derive(Clone)]
pub struct User {
    /// `@name:server`.
    pub id: String,
    /// The localpart.
    pub name: String,
    /// The bearer token.
    pub token: String,
    client: Client,
}

impl Deref for User {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl User {
    /// The user of a `register` or `login` answer.
    pub fn from_auth(anonymous: Client, body: &Value) -> Self {
        let token = body["token"].as_str().expect("a token").to_owned();
        Self {
            id: body["user"]["id"].as_str().expect("a user id").to_owned(),
            name: body["user"]["username"].as_str().expect("a username").to_owned(),
            client: anonymous.with_token(&token),
            token,
        }
    }

    /// Creates a guild and finds its `general` channel.
    pub async fn create_guild(&self, name: &str) -> Guild {
        let (status, body) = self.post("/guilds", json!({"name": name})).await;
        assert_eq!(status, StatusCode::CREATED, "create guild: {body}");
        let general = body["channels"]
            .as_array()
            .and_then(|channels| channels.iter().find(|c| c["name"] == "general"))
            .and_then(|c| c["id"].as_str())
            .expect("a general channel")
            .to_owned();
        Guild { id: body["id"].as_str().expect("a guild id").to_owned(), general }
    }

    /// Creates an unlimited invite to `channel` and returns its code.
    pub async fn invite(&self, channel: &str) -> String {
        let (status, body) = self.post_empty(&format!("/channels/{channel}/invites")).await;
        assert_eq!(status, StatusCode::CREATED, "create invite: {body}");
        body["code"].as_str().expect("an invite code").to_owned()
    }

    /// Joins with an invite code.
    pub async fn join(&self, code: &str) {
        let (status, body) = self.post_empty(&format!("/invites/{code}")).await;
        assert_eq!(status, StatusCode::OK, "{} joins with {code}: {body}", self.name);
    }

    /// Sends a message and returns it.
    pub async fn send(&self, channel: &str, content: &str) -> Value {
        let (status, body) =
            self.post(&format!("/channels/{channel}/messages"), json!({"content": content})).await;
        assert_eq!(status, StatusCode::CREATED, "{} sends {content:?}: {body}", self.name);
        body
    }

    /// The latest messages of a channel (up to 100), newest first.
    pub async fn history(&self, channel: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/channels/{channel}/messages?limit=100")).await;
        assert_eq!(status, StatusCode::OK, "history of {channel}: {body}");
        body["messages"].as_array().expect("a message list").clone()
    }

    /// The contents of [`User::history`].
    pub async fn history_contents(&self, channel: &str) -> Vec<String> {
        self.history(channel)
            .await
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Creates a role and returns its id.
    pub async fn create_role(
        &self,
        guild: &str,
        name: &str,
        permissions: &str,
        position: i64,
    ) -> String {
        let body = json!({"name": name, "permissions": permissions, "position": position});
        let (status, body) = self.post(&format!("/guilds/{guild}/roles"), body).await;
        assert_eq!(status, StatusCode::CREATED, "create role {name}: {body}");
        body["id"].as_str().expect("a role id").to_owned()
    }

    /// Gives `user` a role.
    pub async fn give_role(&self, guild: &str, user: &str, role: &str) {
        let (status, body) =
            self.put_empty(&format!("/guilds/{guild}/members/{user}/roles/{role}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "give {role} to {user}: {body}");
    }

    /// The ids of the guild's members, in the server's order.
    pub async fn member_ids(&self, guild: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/guilds/{guild}/members?limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "members: {body}");
        ids(&body["members"], "user_id")
    }
}

/// The `key` of every object in a JSON array.
pub fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items.iter().filter_map(|item| item[key].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}
