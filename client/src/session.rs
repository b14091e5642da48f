//! The client REST API: [`Client`] for one server before logging in, [`Session`] for an account
//! on it afterwards.
//!
//! One identity can hold a session on each of several servers: log in to the home server (or
//! register there and [`Session::bind_identity`]), then [`Client::login_with_key`] anywhere
//! else with the same [`Identity`].

use std::collections::BTreeMap;
use std::time::Duration;

use guildhall_identity::attestation::sign_binding;
use guildhall_identity::login::{self, Challenge};
use guildhall_spec::api::query_keys;
use guildhall_spec::{
    ChannelId, EventId, GuildId, InviteCode, JsonObject, ServerName, UserId, base64url,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::identity::Identity;
use crate::types::{
    Channel, DirectMessage, Guild, History, Invite, Message, NewInvite, SavedSession, Sent, User,
};

/// How long one request may take, from connecting to the last byte of the answer. Joining a
/// guild on another server waits for that server, so this is generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server, before logging in: its URL and its name.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    server_name: ServerName,
}

impl Client {
    /// Connects to the server at `url` (`https://chat.example.org`, or `http://` on a trusted
    /// network) and learns its name from its key document. The name must be the URL's host
    /// (with the same port, if the name has one): login proofs are bound to the name, and a
    /// server claiming another's name could otherwise collect proofs valid there. A server
    /// whose name is delegated to another host needs [`Client::with_server_name`].
    pub async fn connect(url: &str) -> Result<Self> {
        let base = parse_base(url)?;
        let http = http_client(url)?;
        let key_url = endpoint(&base, &["_guildhall", "v1", "keys", "server"]);
        let document: KeyDocument = answer(http.get(key_url.clone()), &key_url).await?;
        let claimed = ServerName::parse(&document.server_name).map_err(|error| {
            Error::UnexpectedAnswer { url: key_url.to_string(), detail: error.to_string() }
        })?;
        if !names_host(&claimed, &base) {
            return Err(Error::ServerNameMismatch {
                url: url.to_owned(),
                claimed: claimed.to_string(),
            });
        }
        Ok(Self { http, base, server_name: claimed })
    }

    /// A client of the server at `url` whose name is `server_name`, trusted as given (for
    /// servers whose name is delegated to another host).
    pub fn with_server_name(url: &str, server_name: ServerName) -> Result<Self> {
        Ok(Self { http: http_client(url)?, base: parse_base(url)?, server_name })
    }

    /// The server's name, as it appears in its user ids.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Creates an account with a password (`POST /api/v1/auth/register`) and logs in.
    pub async fn register(&self, username: &str, password: &str) -> Result<Session> {
        let body = Credentials { username, password };
        let answer: TokenAnswer = self
            .request(Method::POST, &["api", "v1", "auth", "register"], None, Some(&body))
            .await?;
        Ok(Session { client: self.clone(), user_id: answer.user.id, token: answer.token })
    }

    /// Logs in to an account of this server with its password (`POST /api/v1/auth/login`).
    pub async fn login(&self, username: &str, password: &str) -> Result<Session> {
        let body = Credentials { username, password };
        let answer: TokenAnswer =
            self.request(Method::POST, &["api", "v1", "auth", "login"], None, Some(&body)).await?;
        Ok(Session { client: self.clone(), user_id: answer.user.id, token: answer.token })
    }

    /// Logs in with the identity key (spec 16.4) as `user_id`, the account on the user's home
    /// server the identity is bound to. On the home server this is that account; on any other
    /// server it is the local account linked to the same identity, created on the first login
    /// with the user's own localpart, or `localpart` if given (for when it is taken there).
    pub async fn login_with_key(
        &self,
        identity: &Identity,
        user_id: &UserId,
        localpart: Option<&str>,
    ) -> Result<Session> {
        let challenge = self.challenge(user_id).await?;
        let signature = login::sign(identity.key_pair(), &self.server_name, user_id, &challenge);
        // The identity's consent to the account this server makes on the first login (it is
        // not used when the account exists).
        let account = UserId::new(localpart.unwrap_or(user_id.localpart()), &self.server_name)
            .map_err(|e| Error::UnexpectedAnswer {
                url: self.base.to_string(),
                detail: format!("no valid account name on {}: {e}", self.server_name),
            })?;
        let binding = sign_binding(identity.key_pair(), &account);
        let body = Prove {
            user_id,
            challenge: &challenge,
            signature: &signature,
            localpart,
            binding: &binding,
        };
        let answer: ProveAnswer = self
            .request(Method::POST, &["_guildhall", "v1", "identity", "prove"], None, Some(&body))
            .await?;
        Ok(Session { client: self.clone(), user_id: answer.user_id, token: answer.token })
    }

    /// The session a bearer token obtained elsewhere stands for (a bot's token, say, or one
    /// kept by another program). Nothing is created on the server: it is asked whose token it
    /// is (`GET /api/v1/users/@me`), so an invalid or revoked token is refused here
    /// (`unauthorized`) rather than at the first call.
    pub async fn login_with_token(&self, token: &str) -> Result<Session> {
        let user: User = self
            .request(Method::GET, &["api", "v1", "users", "@me"], Some(token), None::<&()>)
            .await?;
        Ok(Session { client: self.clone(), user_id: user.id, token: token.to_owned() })
    }

    /// A single-use login challenge for `user_id` from this server.
    async fn challenge(&self, user_id: &UserId) -> Result<Challenge> {
        let answer: ChallengeAnswer = self
            .request(
                Method::POST,
                &["_guildhall", "v1", "identity", "challenge"],
                None,
                Some(&ChallengeRequest { user_id }),
            )
            .await?;
        Ok(answer.challenge)
    }

    /// Sends a request to `segments` under the server's URL and decodes the answer.
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        token: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let url = endpoint(&self.base, segments);
        answer(self.builder(method, url.clone(), token, body), &url).await
    }

    fn builder(
        &self,
        method: Method,
        url: Url,
        token: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> RequestBuilder {
        let mut builder = self.http.request(method, url);
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        builder
    }

    /// The gateway's WebSocket URL (`ws` for `http`, `wss` for `https`), JSON encoding.
    pub(crate) fn gateway_url(&self) -> Url {
        let mut url = endpoint(&self.base, &["gateway"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // http ↔ ws and https ↔ wss are all special schemes, which `set_scheme` swaps freely.
        let _ = url.set_scheme(scheme);
        url.query_pairs_mut().append_pair("encoding", "json");
        url
    }
}

/// An account on one server: its token, and every call made as it.
///
/// Clones are cheap and share one connection pool, so a program can make calls as the same
/// account from many tasks at once, each holding its own clone.
#[derive(Debug, Clone)]
pub struct Session {
    client: Client,
    user_id: UserId,
    token: String,
}

impl Session {
    /// A session saved earlier with [`Session::saved`]. Nothing is checked until the first
    /// call; a revoked token then answers `unauthorized`.
    pub fn restore(saved: &SavedSession) -> Result<Self> {
        Ok(Self {
            client: Client::with_server_name(&saved.url, saved.server_name.clone())?,
            user_id: saved.user_id.clone(),
            token: saved.token.clone(),
        })
    }

    /// What [`Session::restore`] needs.
    pub fn saved(&self) -> SavedSession {
        SavedSession {
            url: self.url().to_owned(),
            server_name: self.client.server_name.clone(),
            user_id: self.user_id.clone(),
            token: self.token.clone(),
        }
    }

    /// The account.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The server's name.
    pub fn server_name(&self) -> &ServerName {
        &self.client.server_name
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// The bearer token (a secret).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The account (`GET /api/v1/users/@me`).
    pub async fn me(&self) -> Result<User> {
        self.get(&["users", "@me"]).await
    }

    /// Binds `identity` to this account (`PUT /api/v1/users/@me/identity`), proving possession
    /// with a login proof over a challenge from this server. Only an account without a bound
    /// key can take one (a bound key is replaced by rotation); afterwards the identity logs in
    /// as this account anywhere with [`Client::login_with_key`].
    pub async fn bind_identity(&self, identity: &Identity) -> Result<()> {
        let challenge = self.client.challenge(&self.user_id).await?;
        let signature =
            login::sign(identity.key_pair(), &self.client.server_name, &self.user_id, &challenge);
        let body = BindIdentity {
            identity_key: &identity.public_key(),
            challenge: &challenge,
            signature: &signature,
            binding: &sign_binding(identity.key_pair(), &self.user_id),
        };
        let _: serde_json::Value =
            self.call(Method::PUT, &["users", "@me", "identity"], &body).await?;
        Ok(())
    }

    /// The guilds the account is a member of, direct messages included
    /// (`GET /api/v1/users/@me/guilds`).
    pub async fn guilds(&self) -> Result<Vec<Guild>> {
        let answer: Guilds = self.get(&["users", "@me", "guilds"]).await?;
        Ok(answer.guilds)
    }

    /// One guild (`GET /api/v1/guilds/{id}`).
    pub async fn guild(&self, guild_id: &GuildId) -> Result<Guild> {
        self.get(&["guilds", guild_id.as_str()]).await
    }

    /// Creates a guild hosted on this server, with `@everyone` and a `#general` text channel
    /// (`POST /api/v1/guilds`).
    pub async fn create_guild(&self, name: &str) -> Result<Guild> {
        self.call(Method::POST, &["guilds"], &Named { name }).await
    }

    /// The guild's channels the account can see (`GET /api/v1/guilds/{id}/channels`).
    pub async fn channels(&self, guild_id: &GuildId) -> Result<Vec<Channel>> {
        let answer: Channels = self.get(&["guilds", guild_id.as_str(), "channels"]).await?;
        Ok(answer.channels)
    }

    /// One channel (`GET /api/v1/channels/{id}`).
    pub async fn channel(&self, channel_id: &ChannelId) -> Result<Channel> {
        self.get(&["channels", channel_id.as_str()]).await
    }

    /// Creates a text channel (`POST /api/v1/guilds/{id}/channels`).
    pub async fn create_channel(&self, guild_id: &GuildId, name: &str) -> Result<Channel> {
        self.call(Method::POST, &["guilds", guild_id.as_str(), "channels"], &Named { name }).await
    }

    /// Creates an invite to a channel (`POST /api/v1/channels/{id}/invites`).
    pub async fn create_invite(&self, channel_id: &ChannelId, limits: NewInvite) -> Result<Invite> {
        self.call(Method::POST, &["channels", channel_id.as_str(), "invites"], &limits).await
    }

    /// Joins a guild by invite (`POST /api/v1/invites/{code}`). `host` is the server hosting
    /// the guild ([`Invite::server`]); when it is another server, this account's server joins
    /// there on the account's behalf and keeps a replica of the guild.
    pub async fn accept_invite(
        &self,
        code: &InviteCode,
        host: Option<&ServerName>,
    ) -> Result<Guild> {
        let mut url = self.api(&["invites", code.as_str()]);
        if let Some(host) = host.filter(|host| **host != self.client.server_name) {
            url.query_pairs_mut().append_pair("server", host.as_str());
        }
        let request =
            self.client.builder(Method::POST, url.clone(), Some(&self.token), None::<&()>);
        answer(request, &url).await
    }

    /// Sends a text message (`POST /api/v1/channels/{id}/messages`). A random nonce makes it
    /// safe to retry; [`Sent::Queued`] names it.
    pub async fn send_message(&self, channel_id: &ChannelId, content: &str) -> Result<Sent> {
        self.send(channel_id, content, None).await
    }

    /// Answers `message` with a text message in its channel, marked as a reply to it
    /// (`reply_to`); otherwise as [`Session::send_message`].
    pub async fn reply(&self, message: &Message, content: &str) -> Result<Sent> {
        self.send(&message.channel_id, content, Some(&message.id)).await
    }

    async fn send(
        &self,
        channel_id: &ChannelId,
        content: &str,
        reply_to: Option<&EventId>,
    ) -> Result<Sent> {
        let nonce = base64url::encode(rand::random::<[u8; 16]>());
        let url = self.api(&["channels", channel_id.as_str(), "messages"]);
        let body = NewMessage { content, nonce: &nonce, reply_to };
        let request =
            self.client.builder(Method::POST, url.clone(), Some(&self.token), Some(&body));
        let response = request.send().await.map_err(|source| unreachable(&url, source))?;
        if response.status() == StatusCode::ACCEPTED {
            return Ok(Sent::Queued { nonce });
        }
        decode(response, &url).await.map(Sent::Delivered)
    }

    /// Messages of a channel, newest first (`GET /api/v1/channels/{id}/messages`).
    pub async fn messages(
        &self,
        channel_id: &ChannelId,
        history: &History,
    ) -> Result<Vec<Message>> {
        let mut url = self.api(&["channels", channel_id.as_str(), "messages"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(before) = &history.before {
                query.append_pair("before", before.as_str());
            }
            if let Some(after) = &history.after {
                query.append_pair("after", after.as_str());
            }
            if let Some(limit) = history.limit {
                query.append_pair("limit", &limit.to_string());
            }
        }
        let request = self.client.builder(Method::GET, url.clone(), Some(&self.token), None::<&()>);
        let answer: Messages = answer(request, &url).await?;
        Ok(answer.messages)
    }

    /// The account's direct-message conversations (`GET /api/v1/users/@me/channels`).
    pub async fn direct_messages(&self) -> Result<Vec<DirectMessage>> {
        let answer: DirectMessages = self.get(&["users", "@me", "channels"]).await?;
        Ok(answer
            .channels
            .into_iter()
            .filter_map(|guild| DirectMessage::from_guild(guild, &self.user_id))
            .collect())
    }

    /// Opens the conversation with `recipient`, on this server or another, or returns the one
    /// already open (`POST /api/v1/users/@me/channels`).
    pub async fn open_direct_message(&self, recipient: &UserId) -> Result<DirectMessage> {
        let path = ["users", "@me", "channels"];
        let guild: Guild = self.call(Method::POST, &path, &OpenDirectMessage { recipient }).await?;
        let url = self.api(&path);
        DirectMessage::from_guild(guild, &self.user_id).ok_or_else(|| Error::UnexpectedAnswer {
            url: url.to_string(),
            detail: "the direct message has no channel".into(),
        })
    }

    /// Connects to the server's gateway as this account.
    pub async fn gateway(&self) -> Result<Gateway> {
        Gateway::connect(self.client.gateway_url(), &self.token).await
    }

    /// Ends the session: the token stops working, here and on the gateway
    /// (`POST /api/v1/auth/logout`).
    pub async fn logout(self) -> Result<()> {
        let url = self.api(&["auth", "logout"]);
        let request =
            self.client.builder(Method::POST, url.clone(), Some(&self.token), None::<&()>);
        let response = request.send().await.map_err(|source| unreachable(&url, source))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(refusal(response, &url).await)
    }

    fn api(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        endpoint(&self.client.base, &all)
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.get_with_query(segments, &[]).await
    }

    /// A `GET` under `/api/v1` with query parameters.
    pub(crate) async fn get_with_query<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T> {
        let mut url = self.api(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        answer(self.client.builder(Method::GET, url.clone(), Some(&self.token), None::<&()>), &url)
            .await
    }

    /// Key documents of `servers`, as this server's notary holds them
    /// (`POST /_guildhall/v1/keys/query`, spec 04 §4.5), unverified.
    pub(crate) async fn notary_keys(&self, servers: &[ServerName]) -> Result<Vec<JsonObject>> {
        let request = query_keys::Request {
            server_keys: servers.iter().map(|server| (server.clone(), BTreeMap::new())).collect(),
        };
        let answer: query_keys::Response = self
            .client
            .request(Method::POST, &["_guildhall", "v1", "keys", "query"], None, Some(&request))
            .await?;
        Ok(answer.server_keys)
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        let url = self.api(segments);
        answer(self.client.builder(method, url.clone(), Some(&self.token), Some(body)), &url).await
    }
}

/// Parses and checks a server URL: `http` or `https`, a host, no query or fragment.
fn parse_base(text: &str) -> Result<Url> {
    let invalid = |reason: &str| Error::InvalidUrl { url: text.to_owned(), reason: reason.into() };
    let url = Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none() || url.cannot_be_a_base() {
        return Err(invalid("there is no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a server URL has no query or fragment"));
    }
    Ok(url)
}

fn http_client(url: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("guildhall-client/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|source| Error::Unreachable { url: url.to_owned(), source })
}

/// `base` with `segments` appended to its path, each percent-encoded as one segment.
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // `parse_base` admitted only URLs that can be a base, which always have segments.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Whether `name` is the server name of the host `url` points to: the same host and, if the
/// name has a port, the same port.
fn names_host(name: &ServerName, url: &Url) -> bool {
    let same_host = url.host_str().is_some_and(|host| host.eq_ignore_ascii_case(name.host()));
    same_host && name.port().is_none_or(|port| url.port_or_known_default() == Some(port))
}

/// Sends `request` and decodes a successful answer as `T`.
async fn answer<T: DeserializeOwned>(request: RequestBuilder, url: &Url) -> Result<T> {
    let response = request.send().await.map_err(|source| unreachable(url, source))?;
    decode(response, url).await
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response, url: &Url) -> Result<T> {
    if !response.status().is_success() {
        return Err(refusal(response, url).await);
    }
    let bytes = response.bytes().await.map_err(|source| unreachable(url, source))?;
    serde_json::from_slice(&bytes).map_err(|error| Error::UnexpectedAnswer {
        url: url.to_string(),
        detail: error.to_string(),
    })
}

/// The error an unsuccessful answer stands for: the server's `{code, message}` when it sent
/// one.
async fn refusal(response: reqwest::Response, url: &Url) -> Error {
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(source) => return unreachable(url, source),
    };
    match serde_json::from_slice::<ErrorAnswer>(&bytes) {
        Ok(body) => Error::Refused {
            status: status.as_u16(),
            code: body.code,
            message: body.message,
            retry_after_ms: body.retry_after_ms,
        },
        Err(_) => Error::UnexpectedAnswer {
            url: url.to_string(),
            detail: format!("HTTP {status} without an error body"),
        },
    }
}

fn unreachable(url: &Url, source: reqwest::Error) -> Error {
    Error::Unreachable { url: url.to_string(), source }
}

#[derive(Deserialize)]
struct KeyDocument {
    server_name: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    code: String,
    message: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

#[derive(Serialize)]
struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    user: User,
}

#[derive(Serialize)]
struct ChallengeRequest<'a> {
    user_id: &'a UserId,
}

#[derive(Deserialize)]
struct ChallengeAnswer {
    challenge: Challenge,
}

#[derive(Serialize)]
struct Prove<'a> {
    user_id: &'a UserId,
    challenge: &'a Challenge,
    signature: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    localpart: Option<&'a str>,
    binding: &'a str,
}

#[derive(Deserialize)]
struct ProveAnswer {
    user_id: UserId,
    token: String,
}

#[derive(Serialize)]
struct BindIdentity<'a> {
    identity_key: &'a str,
    challenge: &'a Challenge,
    signature: &'a str,
    binding: &'a str,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct NewMessage<'a> {
    content: &'a str,
    nonce: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a EventId>,
}

#[derive(Serialize)]
struct OpenDirectMessage<'a> {
    recipient: &'a UserId,
}

#[derive(Deserialize)]
struct Guilds {
    guilds: Vec<Guild>,
}

#[derive(Deserialize)]
struct Channels {
    channels: Vec<Channel>,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct DirectMessages {
    channels: Vec<Guild>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked() {
        assert!(parse_base("https://chat.example.org").is_ok());
        assert!(parse_base("http://127.0.0.1:8008/").is_ok());
        for bad in ["ftp://example.org", "example.org", "http://x.org/?a=b", "mailto:a@b"] {
            assert!(matches!(parse_base(bad), Err(Error::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn endpoints_encode_each_segment() {
        let base = parse_base("http://127.0.0.1:8008/").unwrap();
        let url = endpoint(&base, &["api", "v1", "invites", "a/b?"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:8008/api/v1/invites/a%2Fb%3F");
        let prefixed = parse_base("https://example.org/guildhall").unwrap();
        assert_eq!(
            endpoint(&prefixed, &["gateway"]).as_str(),
            "https://example.org/guildhall/gateway"
        );
    }

    #[test]
    fn the_server_name_must_be_the_urls_host() {
        let check = |name: &str, url: &str, expected: bool| {
            let name = ServerName::parse(name).unwrap();
            assert_eq!(names_host(&name, &parse_base(url).unwrap()), expected, "{name} at {url}");
        };
        check("127.0.0.1:8008", "http://127.0.0.1:8008", true);
        check("127.0.0.1:8009", "http://127.0.0.1:8008", false);
        check("chat.example.org", "https://chat.example.org", true);
        check("chat.example.org", "https://CHAT.example.org:8448", true);
        check("chat.example.org:443", "https://chat.example.org", true);
        check("other.example.org", "https://chat.example.org", false);
    }

    #[test]
    fn the_gateway_url_follows_the_scheme() {
        let client = Client::with_server_name(
            "https://example.org",
            ServerName::parse("example.org").unwrap(),
        )
        .unwrap();
        assert_eq!(client.gateway_url().as_str(), "wss://example.org/gateway?encoding=json");
        let plain = Client::with_server_name(
            "http://127.0.0.1:1",
            ServerName::parse("127.0.0.1:1").unwrap(),
        )
        .unwrap();
        assert_eq!(plain.gateway_url().as_str(), "ws://127.0.0.1:1/gateway?encoding=json");
    }
}
