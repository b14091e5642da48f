//! The server under test, as seen from outside: its base URL, its name, and its test-control
//! API (spec chapter 21).

use serde_json::{Value, json};

/// The server under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`.
    pub base: String,
    /// Its server name (the authority requests must be addressed to).
    pub name: String,
    http: reqwest::Client,
}

/// A status and a JSON body (`Null` when the body is not JSON).
pub type Answer = (u16, Value);

impl Target {
    /// The target at `base` named `name`.
    pub fn new(base: &str, name: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { base: base.trim_end_matches('/').to_owned(), name: name.to_owned(), http }
    }

    /// An unsigned request (test control, key documents, negative cases).
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        answer(request.send().await).await
    }

    /// `POST /_guildhall/test/v1/<path>`.
    pub async fn control(&self, path: &str, body: Value) -> Answer {
        self.call("POST", &format!("/_guildhall/test/v1{path}"), Some(&body)).await
    }

    /// `GET /_guildhall/test/v1/<path>`.
    pub async fn control_get(&self, path: &str) -> Answer {
        self.call("GET", &format!("/_guildhall/test/v1{path}"), None).await
    }

    /// Creates a local user; returns its id.
    pub async fn user(&self, name: &str) -> Result<String, String> {
        let unique = format!("{name}{}", crate::context::unique());
        let (status, body) = self.control("/users", json!({"username": unique})).await;
        match (status, body["user_id"].as_str()) {
            (200, Some(id)) => Ok(id.to_owned()),
            _ => Err(format!("test control: creating user {unique} answered {status} {body}")),
        }
    }

    /// Creates a guild owned by `owner`; returns (guild id, general channel id).
    pub async fn guild(&self, owner: &str) -> Result<(String, String), String> {
        let (status, body) =
            self.control("/guilds", json!({"user_id": owner, "name": "Conformance"})).await;
        match (status, body["guild_id"].as_str(), body["channel_id"].as_str()) {
            (200, Some(guild), Some(channel)) => Ok((guild.to_owned(), channel.to_owned())),
            _ => Err(format!("test control: creating a guild answered {status} {body}")),
        }
    }

    /// An unlimited invite to `guild` by `user`.
    pub async fn invite(&self, user: &str, guild: &str) -> Result<String, String> {
        let (status, body) = self
            .control(&format!("/guilds/{}/invites", encode(guild)), json!({"user_id": user}))
            .await;
        body["code"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("test control: invite answered {status} {body}"))
    }

    /// Sends a message as a local user; returns its event id.
    pub async fn send(
        &self,
        user: &str,
        guild: &str,
        channel: &str,
        text: &str,
    ) -> Result<String, String> {
        let body = json!({"user_id": user, "channel_id": channel, "body": text});
        let (status, answer) =
            self.control(&format!("/guilds/{}/messages", encode(guild)), body).await;
        answer["event_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("test control: send answered {status} {answer}"))
    }

    /// Deletes a message as a local user.
    pub async fn delete_message(
        &self,
        user: &str,
        guild: &str,
        message: &str,
    ) -> Result<(), String> {
        let path = format!("/guilds/{}/messages/{}/delete", encode(guild), encode(message));
        let (status, body) = self.control(&path, json!({"user_id": user})).await;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("test control: delete answered {status} {body}"))
        }
    }

    /// Proposes any event as a local user.
    pub async fn act(&self, user: &str, guild: &str, event_type: &str, content: Value) -> Answer {
        self.control(
            &format!("/guilds/{}/events", encode(guild)),
            json!({"user_id": user, "type": event_type, "content": content}),
        )
        .await
    }

    /// The guild's log as the target holds it.
    pub async fn log(
        &self,
        guild: &str,
        after: u64,
    ) -> Result<(Vec<serde_json::Map<String, Value>>, u64), String> {
        let (status, body) = self
            .control_get(&format!("/guilds/{}/events?after={after}&limit=500", encode(guild)))
            .await;
        let events = body["events"]
            .as_array()
            .ok_or_else(|| format!("test control: log answered {status} {body}"))?;
        let events = events.iter().filter_map(|e| e.as_object().cloned()).collect();
        Ok((events, body["head"].as_u64().unwrap_or(0)))
    }

    /// The head seq of a guild on the target.
    pub async fn head(&self, guild: &str) -> Result<u64, String> {
        Ok(self.log(guild, u64::MAX - 1).await?.1)
    }

    /// The guild state as the target holds it.
    pub async fn state(&self, guild: &str) -> Result<Value, String> {
        let (status, body) = self.control_get(&format!("/guilds/{}/state", encode(guild))).await;
        if status == 200 {
            Ok(body["state"].clone())
        } else {
            Err(format!("test control: state answered {status} {body}"))
        }
    }
}

/// Reads a response into an [`Answer`]; a transport failure is status 0.
pub async fn answer(response: Result<reqwest::Response, reqwest::Error>) -> Answer {
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(error) => (0, json!({"transport_error": error.to_string()})),
    }
}

/// Percent-encodes a path segment.
pub fn encode(segment: &str) -> String {
    let mut out = String::new();
    guildhall_spec::api::percent_encode_into(segment, &mut out);
    out
}
