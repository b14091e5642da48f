//! Two federating homeservers on loopback, and a conversation between their users.
//!
//! `cargo run -p guildhall-examples --example two-servers`
//!
//! Server A hosts a guild; Bob, whose account lives on server B, joins it with an invite code
//! and the name of A. From then on each server keeps its own copy of the guild's signed log:
//! Alice's messages reach B over A's delivery queue, Bob's go to A as proposals signed by B.
//! The example prints what each user's own server shows.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use guildhall_homeserver::config::Config;
use guildhall_homeserver::{AppState, DataDir, effective_server_name};
use serde_json::{Value, json};

struct Homeserver {
    url: String,
    name: String,
    http: reqwest::Client,
    data: std::path::PathBuf,
}

impl Homeserver {
    async fn start(label: &str) -> Result<Self> {
        let data = std::env::temp_dir()
            .join(format!("guildhall-two-servers-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut config = Config::default();
        config.server.listen = listener.local_addr()?;
        // Loopback has no TLS: allow plain HTTP between the two servers (never do this for real).
        config.federation.danger_allow_plain_http = true;
        config.federation.danger_allow_private_addresses = true;
        let name = effective_server_name(&config)?;
        let state = AppState::open(config.clone(), &DataDir::new(&data), name.clone()).await?;
        tokio::spawn(guildhall_homeserver::serve(state, listener, std::future::pending()));
        Ok(Self {
            url: format!("http://{}", config.server.listen),
            name: name.to_string(),
            http: reqwest::Client::new(),
            data,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}/api/v1{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: {status} {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn register(&self, name: &str) -> Result<String> {
        let body = self
            .call(
                reqwest::Method::POST,
                "/auth/register",
                None,
                Some(json!({"username": name, "password": "correct horse battery"})),
            )
            .await?;
        Ok(body["token"].as_str().context("token")?.to_owned())
    }

    async fn history(&self, token: &str, channel: &str) -> Result<Vec<String>> {
        let body = self
            .call(reqwest::Method::GET, &format!("/channels/{channel}/messages"), Some(token), None)
            .await?;
        let mut lines: Vec<String> = body["messages"]
            .as_array()
            .context("messages")?
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    m["author_id"].as_str().unwrap_or("?"),
                    m["content"].as_str().unwrap_or("")
                )
            })
            .collect();
        lines.reverse();
        Ok(lines)
    }
}

impl Drop for Homeserver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Homeserver::start("a").await?;
    let b = Homeserver::start("b").await?;
    println!("server A is {}, server B is {}", a.name, b.name);

    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let guild = a
        .call(
            reqwest::Method::POST,
            "/guilds",
            Some(&alice),
            Some(json!({"name": "Across the wire"})),
        )
        .await?;
    let channel = guild["channels"][0]["id"].as_str().context("channel")?.to_owned();
    let invite = a
        .call(reqwest::Method::POST, &format!("/channels/{channel}/invites"), Some(&alice), None)
        .await?;
    let code = invite["code"].as_str().context("code")?;
    println!("alice created {} on A; invite code {code}", guild["id"].as_str().unwrap_or("?"));

    b.call(reqwest::Method::POST, &format!("/invites/{code}?server={}", a.name), Some(&bob), None)
        .await?;
    println!("bob (on B) joined through A");

    let lines = [
        (&a, &alice, "hi bob, welcome to my server"),
        (&b, &bob, "thanks alice, I am writing from B"),
        (&a, &alice, "and I read you on A"),
    ];
    for (server, token, text) in lines {
        server
            .call(
                reqwest::Method::POST,
                &format!("/channels/{channel}/messages"),
                Some(token),
                Some(json!({"content": text})),
            )
            .await?;
    }
    // Deliveries are asynchronous; give A's queue a moment to reach B.
    let mut on_b = Vec::new();
    for _ in 0..100 {
        on_b = b.history(&bob, &channel).await?;
        if on_b.len() == lines.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let on_a = a.history(&alice, &channel).await?;
    println!("\n-- as server A shows it --");
    on_a.iter().for_each(|line| println!("{line}"));
    println!("\n-- as server B shows it --");
    on_b.iter().for_each(|line| println!("{line}"));
    if on_a != on_b {
        bail!("the two servers disagree");
    }
    println!("\nboth servers hold the same conversation, in the same order");
    Ok(())
}
