//! What the benchmarks share about driving servers through the client library
//! (`guildhall-client`): their accounts' password, reading send times back off a gateway, and
//! the one lower-level path the timed loops keep, [`PlainSender`].

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use guildhall_client::{ChannelId, Gateway, GatewayEvent, Message, Session};
use serde::Serialize;

/// The password of every benchmark account.
pub(crate) const PASSWORD: &str = "benchmark password";

/// How long a gateway may stay silent before a measurement gives up on it.
const SILENCE: Duration = Duration::from_secs(30);

/// Microseconds from `epoch` to `instant`: the clock message contents carry.
pub(crate) fn micros_since(epoch: Instant, instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// Reads `count` `MESSAGE_CREATE`s from `gateway`, each carrying its send time as its content
/// ([`micros_since`] `epoch`), and returns their latencies in microseconds: from that send
/// time to when the frame was read from the connection, so time the event then spends waiting
/// for this task to take it is not counted. A connection that dropped ends the measurement
/// with an error, as a resume's replay would skew it.
pub(crate) async fn latencies(
    mut gateway: Gateway,
    epoch: Instant,
    count: u64,
) -> Result<Vec<u64>> {
    let mut latencies = Vec::with_capacity(usize::try_from(count).unwrap_or_default());
    while (latencies.len() as u64) < count {
        let (event, arrival) = tokio::time::timeout(SILENCE, gateway.next_with_arrival())
            .await
            .context("gateway silent")?
            .context("gateway closed")?;
        match event? {
            GatewayEvent::MessageCreate(message) => {
                let sent: u64 = message.content.parse().context("timestamp content")?;
                latencies.push(micros_since(epoch, arrival).saturating_sub(sent));
            }
            GatewayEvent::Ready(_) | GatewayEvent::Resumed => {
                bail!("the gateway connection dropped during the measurement")
            }
            _ => {}
        }
    }
    Ok(latencies)
}

/// Posts messages to one channel as one account with `content` alone, as these benchmarks
/// always have. Clones share one connection pool.
///
/// The client library sends every message with a random nonce, so that a retry cannot post it
/// twice, and the server then looks the nonce up twice per message, once under the guild's
/// write lock. That is real work for the server, but different from what these figures have
/// always measured: it took about 7% off `rest_send_msgs_per_sec_20_senders` on a 2-core
/// machine. So the timed send loops post through this, and all else goes through the library.
#[derive(Clone)]
pub(crate) struct PlainSender {
    http: reqwest::Client,
    url: String,
    health: String,
    token: String,
}

impl PlainSender {
    /// Sends to `channel` as `session`'s account, on `session`'s server.
    pub(crate) fn new(session: &Session, channel: &ChannelId) -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().build()?,
            url: format!("{}/api/v1/channels/{channel}/messages", session.url()),
            health: format!("{}/health", session.url()),
            token: session.token().to_owned(),
        })
    }

    /// `POST /api/v1/channels/{id}/messages`, reading the answer as a client would.
    pub(crate) async fn send(&self, content: &str) -> Result<Message> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&Plain { content })
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!("sending a message: {status} {}", response.text().await?);
        }
        Ok(response.json().await?)
    }
}

impl PlainSender {
    /// `GET /health` through the same connection pool: a round trip that does no work, the
    /// floor a send's time is read against.
    pub(crate) async fn round_trip(&self) -> Result<()> {
        let response = self.http.get(&self.health).send().await?;
        if !response.status().is_success() {
            bail!("health: {}", response.status());
        }
        response.bytes().await?;
        Ok(())
    }
}

#[derive(Serialize)]
struct Plain<'a> {
    content: &'a str,
}
