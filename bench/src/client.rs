//! A small REST and gateway client for driving a server under load.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A REST client for one server.
#[derive(Clone)]
pub(crate) struct Rest {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Rest {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap_or_default(),
            base: base.to_owned(),
        }
    }

    /// Registers `name` and returns its token.
    pub(crate) async fn register(&self, name: &str) -> Result<String> {
        let body = self
            .call(
                reqwest::Method::POST,
                "/auth/register",
                None,
                Some(json!({"username": name, "password": "benchmark password"})),
            )
            .await?;
        Ok(body["token"].as_str().context("token")?.to_owned())
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}/api/v1{path}", self.base));
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
}

/// A gateway connection that has identified.
pub(crate) struct Gateway {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Gateway {
    pub(crate) async fn connect(base: &str, token: &str) -> Result<Self> {
        let url = format!("{}/gateway?encoding=json", base.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        socket.send(Message::text(json!({"op": 2, "d": {"token": token}}).to_string())).await?;
        let mut gateway = Self { socket };
        loop {
            let frame = gateway.next_frame().await?;
            if frame["t"] == "READY" {
                return Ok(gateway);
            }
        }
    }

    pub(crate) async fn next_frame(&mut self) -> Result<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .context("gateway silent")?;
            match message.context("gateway closed")?? {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Close(frame) => bail!("gateway closed: {frame:?}"),
                _ => {}
            }
        }
    }
}
