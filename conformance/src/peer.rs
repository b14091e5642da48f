//! A peer server run by the suite on loopback: it has its own name and Ed25519 key, publishes
//! its key document, records what the target pushes to it, and can sign (or deliberately
//! mis-sign) requests and proposals. As its users' home server it answers for their identities
//! (`GET /identity/{user_id}`) with whatever attestation a case sets, and it serves a trust list
//! a case publishes through it. It keeps the device-list notifications (spec 17.4) the target
//! sends it, as received, so that a case can check their signatures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use guildhall_spec::event::{JsonObject, Proposal};
use guildhall_spec::request_auth::{HttpRequest, SignatureHeaders, sign_request};
use guildhall_spec::{
    GuildId, KeyId, ServerName, ServerSigningKey, TxnId, UserId, base64url, signing,
};
use serde_json::{Value, json};

use crate::target::{Answer, Target, answer};

/// A peer server.
#[derive(Clone)]
pub struct Peer {
    /// Its signing key (and name).
    pub key: ServerSigningKey,
    received: Arc<Mutex<Vec<JsonObject>>>,
    received_ephemeral: Arc<Mutex<Vec<Value>>>,
    http: reqwest::Client,
    /// Guilds this peer hosts (see [`crate::host`]).
    pub hosted: Arc<Mutex<crate::host::Hosted>>,
    /// Keys of the servers whose proposals the peer accepts as host (the target's).
    pub trusted: Arc<Mutex<guildhall_spec::PublicKeyMap>>,
    /// User id → the answer to `GET /identity/{user_id}`; users not here are `404 unknown_user`.
    identities: Arc<Mutex<BTreeMap<String, Value>>>,
    /// The text served at [`TRUST_LIST_PATH`], if any.
    trust_list: Arc<Mutex<Option<String>>>,
    /// Requests received at [`DEVICES_NOTIFY_PATH`], in order.
    device_notifications: Arc<Mutex<Vec<ReceivedRequest>>>,
}

/// Where a peer receives device-list notifications (spec 17.5).
pub const DEVICES_NOTIFY_PATH: &str = "/_guildhall/v1/user/devices/notify";

/// A request the target sent to a peer, exactly as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Header fields as received (names lowercase).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Where a peer serves the trust list a case publishes through it.
pub const TRUST_LIST_PATH: &str = "/_guildhall/v1/trust/list";

/// A request as built, before sending: tests may tamper with it or send it twice.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Method.
    pub method: String,
    /// Path (percent-encoded) without query.
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Peer {
    /// Starts a peer on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let name = ServerName::parse(&listener.local_addr()?.to_string())?;
        let key = ServerSigningKey::from_seed(
            name,
            KeyId::parse("ed25519:peer")?,
            &rand::random::<[u8; 32]>(),
        );
        let peer = Self {
            key,
            received: Arc::new(Mutex::new(Vec::new())),
            received_ephemeral: Arc::new(Mutex::new(Vec::new())),
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?,
            hosted: Arc::new(Mutex::new(crate::host::Hosted::new())),
            trusted: Arc::new(Mutex::new(guildhall_spec::PublicKeyMap::new())),
            identities: Arc::new(Mutex::new(BTreeMap::new())),
            trust_list: Arc::new(Mutex::new(None)),
            device_notifications: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/_guildhall/v1/keys/server", get(key_document))
            .route("/_guildhall/v1/send/{txn_id}", put(receive))
            .route("/_guildhall/v1/guilds/{guild_id}/join", axum::routing::post(host_join))
            .route("/_guildhall/v1/guilds/{guild_id}/events", get(host_events))
            .route("/_guildhall/v1/identity/{user_id}", get(identity))
            .route(TRUST_LIST_PATH, get(trust_list))
            .route(DEVICES_NOTIFY_PATH, axum::routing::post(device_notification))
            .with_state(peer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(peer)
    }

    /// The peer's server name.
    pub fn name(&self) -> &ServerName {
        self.key.server_name()
    }

    /// A user id on the peer.
    pub fn user(&self, localpart: &str) -> String {
        format!("@{localpart}{}:{}", crate::context::unique(), self.name())
    }

    /// Answers `GET /identity/{user}` with `{"attestation": attestation}` from now on, whatever
    /// it holds (a valid attestation, a forged one, a revoking one); `None` answers `404`.
    pub fn serve_identity(&self, user: &str, attestation: Option<Value>) {
        if let Ok(mut identities) = self.identities.lock() {
            match attestation {
                Some(attestation) => {
                    identities.insert(user.to_owned(), json!({"attestation": attestation}));
                }
                None => {
                    identities.remove(user);
                }
            }
        }
    }

    /// An attestation (spec 16.2) of `user`, a user of this peer, binding `identity_key`, or
    /// revoking the binding, signed with this peer's key. Built from the spec's text here rather
    /// than by `guildhall-identity`, so that the suite and a server cannot share a mistake.
    ///
    /// `binding` is the identity key's consent to the binding (required by 16.2 unless
    /// revoking; `None` leaves it out).
    pub fn attestation(
        &self,
        user: &str,
        identity_key: &str,
        binding: Option<&str>,
        issued_ts: u64,
        revoked: bool,
    ) -> Value {
        self.attestation_signed_by(&self.key, user, identity_key, binding, issued_ts, revoked)
    }

    /// The same, signed with any key (a forgery when `key` is not this peer's).
    pub fn attestation_signed_by(
        &self,
        key: &ServerSigningKey,
        user: &str,
        identity_key: &str,
        binding: Option<&str>,
        issued_ts: u64,
        revoked: bool,
    ) -> Value {
        let mut object = JsonObject::new();
        object.insert("user_id".into(), json!(user));
        object.insert("identity_key".into(), json!(identity_key));
        object.insert("issued_ts".into(), json!(issued_ts));
        if revoked {
            object.insert("revoked".into(), json!(true));
        }
        if let Some(binding) = binding {
            object.insert("binding".into(), json!(binding));
        }
        let _ = signing::sign_json(&mut object, key);
        Value::Object(object)
    }

    /// Serves `text` as this peer's trust list from now on (exactly these bytes).
    pub fn publish_trust_list(&self, text: String) {
        if let Ok(mut list) = self.trust_list.lock() {
            *list = Some(text);
        }
    }

    /// The URL of the trust list this peer serves.
    pub fn trust_list_url(&self) -> String {
        format!("http://{}{TRUST_LIST_PATH}", self.name())
    }

    /// Events the target has pushed to this peer so far.
    pub fn received(&self) -> Vec<JsonObject> {
        self.received.lock().map(|events| events.clone()).unwrap_or_default()
    }

    /// Device-list notifications the target has sent to this peer so far, as received.
    pub fn device_notifications(&self) -> Vec<ReceivedRequest> {
        self.device_notifications.lock().map(|received| received.clone()).unwrap_or_default()
    }

    /// Ephemeral items the target has sent to this peer so far.
    pub fn received_ephemeral(&self) -> Vec<Value> {
        self.received_ephemeral.lock().map(|items| items.clone()).unwrap_or_default()
    }

    /// A correctly signed request to `target`.
    pub fn prepare(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Prepared {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.prepare_raw(target, &target.name, method, path, query, body, unix_now())
    }

    /// A signed request with full control over authority, body bytes and time.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_raw(
        &self,
        _target: &Target,
        authority: &str,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Vec<u8>,
        created: u64,
    ) -> Prepared {
        let nonce = base64url::encode(rand::random::<[u8; 18]>());
        let request = HttpRequest { method, authority, path, query, headers: &[], body: &body };
        let signed: SignatureHeaders = sign_request(&request, &self.key, created, &nonce)
            .unwrap_or(SignatureHeaders {
                signature_input: String::new(),
                signature: String::new(),
                content_digest: None,
            });
        let mut headers = vec![
            ("signature-input".to_owned(), signed.signature_input),
            ("signature".to_owned(), signed.signature),
        ];
        if let Some(digest) = signed.content_digest {
            headers.push(("content-digest".to_owned(), digest));
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        Prepared {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers,
            body,
        }
    }

    /// Sends a prepared request to the target.
    pub async fn send(&self, target: &Target, prepared: &Prepared) -> Answer {
        let url = match &prepared.query {
            Some(query) => format!("{}{}?{query}", target.base, prepared.path),
            None => format!("{}{}", target.base, prepared.path),
        };
        let method =
            reqwest::Method::from_bytes(prepared.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self.http.request(method, url).header("host", &target.name);
        for (name, value) in &prepared.headers {
            request = request.header(name, value);
        }
        answer(request.body(prepared.body.clone()).send().await).await
    }

    /// Signs and sends a `GET` (with an optional `Range`), answering the status, headers and
    /// raw bytes (a transport failure is status 0).
    pub async fn get_bytes(
        &self,
        target: &Target,
        path: &str,
        range: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let prepared = self.prepare(target, "GET", path, None, None);
        let mut request =
            self.http.get(format!("{}{}", target.base, prepared.path)).header("host", &target.name);
        for (name, value) in &prepared.headers {
            request = request.header(name, value);
        }
        if let Some(range) = range {
            request = request.header("range", range);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                (status, headers, response.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
            }
            Err(_) => (0, reqwest::header::HeaderMap::new(), Vec::new()),
        }
    }

    /// Signs and sends a request.
    pub async fn request(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let prepared = self.prepare(target, method, path, query, body);
        self.send(target, &prepared).await
    }

    /// A proposal by `sender` (a user of this peer), signed by this peer.
    pub fn proposal(
        &self,
        guild: &str,
        sender: &str,
        event_type: &str,
        content: Value,
    ) -> Result<JsonObject, String> {
        let proposal = Proposal {
            guild_id: GuildId::parse(guild).map_err(|e| e.to_string())?,
            event_type: event_type.to_owned(),
            sender: UserId::parse(sender).map_err(|e| e.to_string())?,
            origin: self.name().clone(),
            origin_ts: unix_now() * 1000,
            txn_id: TxnId::parse(&format!("c{}", crate::context::unique()))
                .map_err(|e| e.to_string())?,
            content: content.as_object().cloned().unwrap_or_default(),
        };
        proposal.sign(&self.key).map_err(|e| e.to_string())
    }

    /// Re-signs an object that was modified after signing (to isolate one defect in a case).
    pub fn resign_proposal(&self, proposal: &mut JsonObject) {
        proposal.remove("signatures");
        if let Ok(message) = guildhall_spec::event::proposal_signing_bytes(proposal) {
            signing::add_signature(proposal, &self.key, &message);
        }
    }

    /// Joins `user` (on this peer) to `guild` on the target with `code`.
    pub async fn join(
        &self,
        target: &Target,
        guild: &str,
        user: &str,
        code: Option<&str>,
    ) -> Result<Value, String> {
        let mut content = json!({});
        if let Some(code) = code {
            content["invite_code"] = json!(code);
        }
        let proposal = self.proposal(guild, user, "member.join", content)?;
        let mut body = json!({"user_id": user, "proposal": proposal});
        if let Some(code) = code {
            body["invite_code"] = json!(code);
        }
        let path = format!("/_guildhall/v1/guilds/{}/join", crate::target::encode(guild));
        let (status, answer) = self.request(target, "POST", &path, None, Some(&body)).await;
        if status == 200 { Ok(answer) } else { Err(format!("join answered {status} {answer}")) }
    }

    /// Submits a proposal to the target's `/submit`.
    pub async fn submit(&self, target: &Target, guild: &str, proposal: &JsonObject) -> Answer {
        let path = format!("/_guildhall/v1/guilds/{}/submit", crate::target::encode(guild));
        self.request(target, "POST", &path, None, Some(&json!({"proposal": proposal}))).await
    }

    /// The peer's public key document, self-signed.
    pub fn key_document(&self) -> Value {
        let mut document = json!({
            "server_name": self.name(),
            "verify_keys": {self.key.key_id().as_str(): {"key": base64url::encode(self.key.verifying_key().as_bytes())}},
            "old_verify_keys": {},
            "valid_until_ts": (unix_now() + 3600) * 1000,
        });
        if let Some(object) = document.as_object_mut() {
            let _ = signing::sign_json(object, &self.key);
        }
        document
    }
}

async fn key_document(State(peer): State<Peer>) -> axum::Json<Value> {
    axum::Json(peer.key_document())
}

/// `GET /identity/{user_id}`: what the case set, or `404 unknown_user`.
async fn identity(
    State(peer): State<Peer>,
    axum::extract::Path(user_id): axum::extract::Path<String>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let answer =
        peer.identities.lock().ok().and_then(|identities| identities.get(&user_id).cloned());
    match answer {
        Some(answer) => (axum::http::StatusCode::OK, axum::Json(answer)),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"code": "unknown_user", "message": "no identity key here"})),
        ),
    }
}

/// The published trust list, as set, or `404 not_found`.
async fn trust_list(State(peer): State<Peer>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match peer.trust_list.lock().ok().and_then(|list| list.clone()) {
        Some(text) => {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        None => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"code": "not_found", "message": "no trust list published"})),
        )
            .into_response(),
    }
}

/// Records a device-list notification as received and accepts it (the case judges it).
async fn device_notification(
    State(peer): State<Peer>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let request = ReceivedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    if let Ok(mut received) = peer.device_notifications.lock() {
        received.push(request);
    }
    axum::Json(json!({}))
}

/// Records pushed events and accepts them all (the suite checks what arrives, not the peer).
async fn receive(State(peer): State<Peer>, body: axum::body::Bytes) -> axum::Json<Value> {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut results = serde_json::Map::new();
    if let Some(events) = parsed["events"].as_array() {
        for event in events.iter().filter_map(|e| e.as_object()) {
            if let Ok(id) = guildhall_spec::event::event_id(event) {
                results.insert(id.to_string(), json!({}));
            }
            if let Ok(mut received) = peer.received.lock() {
                received.push(event.clone());
            }
        }
    }
    if let (Some(items), Ok(mut received)) =
        (parsed["ephemeral"].as_array(), peer.received_ephemeral.lock())
    {
        received.extend(items.iter().cloned());
    }
    axum::Json(json!({"results": results}))
}

/// `/join` for a guild this peer hosts.
async fn host_join(
    State(peer): State<Peer>,
    axum::extract::Path(guild_id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let keys = peer.trusted.lock().map(|keys| keys.clone()).unwrap_or_default();
    let Ok(mut hosted) = peer.hosted.lock() else {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"code": "internal", "message": "lock"})),
        );
    };
    let Some(guild) = hosted.get_mut(&guild_id) else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"code": "unknown_guild", "message": "not hosted here"})),
        );
    };
    match guild.join(&peer.key, &keys, &body) {
        Ok(answer) => (axum::http::StatusCode::OK, axum::Json(answer)),
        Err((status, message)) => (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
            axum::Json(json!({"code": "invalid_event", "message": message})),
        ),
    }
}

/// `/events?after=` for a guild this peer hosts.
async fn host_events(
    State(peer): State<Peer>,
    axum::extract::Path(guild_id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let after = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100).min(500);
    match peer
        .hosted
        .lock()
        .ok()
        .and_then(|hosted| hosted.get(&guild_id).map(|guild| guild.events_after(after, limit)))
    {
        Some(page) => (axum::http::StatusCode::OK, axum::Json(page)),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"code": "unknown_guild", "message": "not hosted here"})),
        ),
    }
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
