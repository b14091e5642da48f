//! Forged, tampered, replayed and unauthorized traffic; server bans; trust policy; equivocation;
//! key rotation.

use std::time::Duration;

use super::*;
use crate::harness::{Server, StatusCode, Value, json};

/// Signs federation requests as a server whose key file we can read: the tests' stand-in for a
/// hostile peer that holds a real server's key.
pub(super) struct Peer {
    key: guildhall_spec::ServerSigningKey,
    http: reqwest::Client,
}

impl Peer {
    pub(super) fn of(server: &Server) -> Self {
        let text =
            std::fs::read_to_string(server.dir().join("signing-keys.json")).expect("key file");
        let file: Value = serde_json::from_str(&text).expect("key JSON");
        let seed = guildhall_spec::base64url::decode_array::<32>(
            file["current"]["seed"].as_str().expect("seed"),
        )
        .expect("32 bytes");
        let key = guildhall_spec::ServerSigningKey::from_seed(
            guildhall_spec::ServerName::parse(&server.name()).expect("name"),
            guildhall_spec::KeyId::parse(file["current"]["key_id"].as_str().expect("key id"))
                .expect("key id"),
            &seed,
        );
        Self { key, http: reqwest::Client::new() }
    }

    /// A signed request to `target`, returned unsent so tests can tamper with or replay it.
    pub(super) fn signed(
        &self,
        target: &Server,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (String, Vec<(String, String)>, Vec<u8>) {
        use guildhall_spec::request_auth::{HttpRequest, sign_request};
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let authority = target.name();
        let request = HttpRequest {
            method,
            authority: &authority,
            path,
            query: None,
            headers: &[],
            body: &body,
        };
        let nonce = guildhall_spec::base64url::encode(rand_bytes());
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let signed = sign_request(&request, &self.key, now, &nonce).expect("sign");
        let mut headers = vec![
            ("signature-input".to_owned(), signed.signature_input),
            ("signature".to_owned(), signed.signature),
        ];
        if let Some(digest) = signed.content_digest {
            headers.push(("content-digest".to_owned(), digest));
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        (format!("{}{path}", target.base_url()), headers, body)
    }

    pub(super) async fn send(
        &self,
        method: &str,
        request: &(String, Vec<(String, String)>, Vec<u8>),
    ) -> (StatusCode, Value) {
        let (url, headers, body) = request;
        let mut builder = self.http.request(method.parse().expect("method"), url);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        crate::harness::call(builder.body(body.clone())).await
    }
}

impl Peer {
    /// Sends a signed request with extra (unsigned) headers and answers the raw response.
    pub(super) async fn send_raw(
        &self,
        method: &str,
        request: &(String, Vec<(String, String)>, Vec<u8>),
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let (url, headers, body) = request;
        let mut builder = self.http.request(method.parse().expect("method"), url);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        builder.body(body.clone()).send().await.expect("send")
    }
}

/// `gh=:<base64>:` with one bit of the signature flipped.
fn flip_signature_bit(header: &str) -> String {
    use base64::Engine as _;
    let encoded = header.trim_start_matches("gh=:").trim_end_matches(':');
    let mut bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded).expect("signature base64");
    bytes[0] ^= 1;
    format!("gh=:{}:", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn rand_bytes() -> [u8; 18] {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let mut bytes = [0u8; 18];
    bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    bytes[16] = std::process::id() as u8;
    bytes
}

/// A proposal of `sender` on `guild`, signed as `origin_key`'s server.
fn proposal(
    guild: &str,
    sender: &str,
    origin: &str,
    body: &str,
    key: &guildhall_spec::ServerSigningKey,
    channel: &str,
) -> Value {
    let content = json!({"channel_id": channel, "body": body});
    signed_proposal(guild, sender, origin, "message.create", content, key)
}

/// A proposal of any type with a fresh transaction id, signed as `key`'s server.
fn signed_proposal(
    guild: &str,
    sender: &str,
    origin: &str,
    event_type: &str,
    content: Value,
    key: &guildhall_spec::ServerSigningKey,
) -> Value {
    let proposal = guildhall_spec::Proposal {
        guild_id: guildhall_spec::GuildId::parse(guild).unwrap(),
        event_type: event_type.into(),
        sender: guildhall_spec::UserId::parse(sender).unwrap(),
        origin: guildhall_spec::ServerName::parse(origin).unwrap(),
        origin_ts: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        txn_id: guildhall_spec::TxnId::parse(&format!(
            "t{}",
            u128::from_le_bytes(rand_bytes()[..16].try_into().unwrap()) % 1_000_000_007
        ))
        .unwrap(),
        content: content.as_object().unwrap().clone(),
    };
    Value::Object(proposal.sign(key).unwrap())
}

#[tokio::test]
async fn forged_tampered_replayed_unauthorized_and_denied_requests_leave_no_trace() {
    let d = federating().await;
    let a = federating_builder()
        .env("GUILDHALL_FEDERATION__DENY", &format!("[\"{}\"]", d.name()))
        .start()
        .await;
    let (b, c) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let dave = d.register("dave").await;
    let guild = alice.create_guild("Guarded").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    let submit = format!("/_guildhall/v1/guilds/{}/submit", crate::harness::encode(&guild.id));
    let before = contents(&alice, &guild.general).await;

    // A denied server cannot even join.
    let (status, body) = dave.post_empty(&format!("/invites/{code}?server={}", a.name())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "server_denied");

    // C, holding only its own key, proposes a message "from" Bob on B.
    let c_peer = Peer::of(&c);
    let forged =
        proposal(&guild.id, &bob.id, &b.name(), "forged by C", &c_peer.key, &guild.general);
    let request = c_peer.signed(&a, "POST", &submit, Some(&json!({"proposal": forged})));
    let (status, body) = c_peer.send("POST", &request).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_event")),
        "{body}"
    );
    // Nor may C put Bob's name on a proposal of its own origin.
    let mut impostor =
        proposal(&guild.id, &carol.id, &c.name(), "impostor", &c_peer.key, &guild.general);
    impostor["sender"] = json!(bob.id);
    let request = c_peer.signed(&a, "POST", &submit, Some(&json!({"proposal": impostor})));
    let (status, body) = c_peer.send("POST", &request).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_event")),
        "{body}"
    );

    // C signs a proposal for Carol correctly, but the request's signature is tampered with.
    let honest = proposal(&guild.id, &carol.id, &c.name(), "tampered", &c_peer.key, &guild.general);
    let mut request = c_peer.signed(&a, "POST", &submit, Some(&json!({"proposal": honest})));
    let signature = request.1.iter_mut().find(|(name, _)| name == "signature").unwrap();
    signature.1 = flip_signature_bit(&signature.1);
    let (status, body) = c_peer.send("POST", &request).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature")),
        "{body}"
    );

    // A valid request is accepted once; replaying it is refused.
    let once =
        proposal(&guild.id, &carol.id, &c.name(), "exactly once", &c_peer.key, &guild.general);
    let request = c_peer.signed(&a, "POST", &submit, Some(&json!({"proposal": once})));
    let (status, body) = c_peer.send("POST", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = c_peer.send("POST", &request).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed_nonce")),
        "{body}"
    );

    // A member without SEND_MESSAGES is refused by the host.
    let (status, body) = alice
        .put(
            &format!("/channels/{}/permissions/everyone", guild.general),
            json!({"kind": "role", "allow": "0", "deny": "2048"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = bob
        .post(&format!("/channels/{}/messages", guild.general), json!({"content": "muted"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission")),
        "{body}"
    );

    let mut expected = before;
    expected.push("exactly once".into());
    assert_eq!(
        contents(&alice, &guild.general).await,
        expected,
        "only the valid message was stored"
    );
    let members = alice.member_ids(&guild.id).await;
    assert!(!members.contains(&dave.id), "the denied server's user is not a member");
}

#[tokio::test]
async fn a_server_ban_removes_and_refuses_that_servers_users() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Banning").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    let guild_path = crate::harness::encode(&guild.id);
    let (status, body) = alice
        .put(&format!("/guilds/{guild_path}/server-bans/{}", b.name()), json!({"reason": "spam"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(alice.member_ids(&guild.id).await, vec![alice.id.clone()]);
    let gone = eventually(
        Duration::from_secs(10),
        || async { bob.get(&format!("/guilds/{guild_path}")).await },
        |r| r.0 == StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(gone.0, StatusCode::NOT_FOUND);
    let (status, body) = bob.post_empty(&format!("/invites/{code}?server={}", a.name())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("server_banned")),
        "{body}"
    );
}

#[tokio::test]
async fn an_operator_denies_a_server_without_restarting() {
    let (a, b) = (federating().await, federating().await);
    let admin = a.register("admin").await;
    let bob = b.register("bob").await;
    let guild = admin.create_guild("Live policy").await;
    let code = admin.invite(&guild.general).await;
    let (status, body) =
        admin.put("/admin/federation/policy", json!({"mode": "open", "deny": [b.name()]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = bob.post_empty(&format!("/invites/{code}?server={}", a.name())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("server_denied")),
        "{body}"
    );
    let (status, _) = admin.put("/admin/federation/policy", json!({"mode": "open"})).await;
    assert_eq!(status, StatusCode::OK);
    join_remote(&bob, &a, &code).await;
    let outsider = b.register("outsider").await;
    let (status, _) = outsider.get("/admin/federation/policy").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only administrators see the policy");
}

#[tokio::test]
async fn a_host_signing_two_events_for_one_seq_is_caught() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob_admin = b.register("bobadmin").await;
    let guild = alice.create_guild("Honest?").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob_admin, &a, &code).await;
    alice.send(&guild.general, "the real seq").await;
    eventually(Duration::from_secs(10), || contents(&bob_admin, &guild.general), |h| h.len() == 1)
        .await;

    // Forge, with A's own key, a different event at the seq B already holds.
    let host = Peer::of(&a);
    let (status, log) = bob_admin.get(&format!("/channels/{}/messages", guild.general)).await;
    assert_eq!(status, StatusCode::OK);
    let seq = log["messages"][0]["seq"].as_u64().expect("seq");
    let mut other =
        proposal(&guild.id, &alice.id, &a.name(), "a different past", &host.key, &guild.general);
    other.as_object_mut().unwrap().remove("signatures");
    let prev = guildhall_spec::EventId::parse(&format!(
        "${}",
        guildhall_spec::base64url::encode([7u8; 32])
    ))
    .unwrap();
    let (_, forged) = guildhall_spec::event::sequence(
        other.as_object().unwrap().clone(),
        seq,
        Some(&prev),
        &host.key,
    )
    .unwrap();
    let body = json!({"origin": a.name(), "origin_ts": 1, "events": [forged], "ephemeral": []});
    let request = host.signed(&b, "PUT", "/_guildhall/v1/send/forged1", Some(&body));
    let (status, answer) = host.send("PUT", &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let result =
        answer["results"].as_object().and_then(|r| r.values().next()).cloned().unwrap_or_default();
    assert_eq!(result["error"]["code"], "equivocation", "{answer}");
    let (status, evidence) = bob_admin.get("/admin/equivocations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(evidence["equivocations"][0]["seq"].as_u64(), Some(seq), "{evidence}");
    assert_eq!(
        contents(&bob_admin, &guild.general).await,
        vec!["the real seq"],
        "the held event stays"
    );
}

#[tokio::test]
async fn a_rotated_key_is_published_as_an_old_key() {
    let mut a = federating().await;
    let http = reqwest::Client::new();
    let document = |base: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/_guildhall/v1/keys/server"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = document(a.base_url()).await;
    let old_id = first["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();
    a.stop();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guildhall"))
        .arg("--data-dir")
        .arg(a.dir())
        .env("GUILDHALL_SERVER__LISTEN", a.name())
        .args(["keys", "rotate"])
        .output()
        .expect("run guildhall keys rotate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    a.launch().await;
    let second = document(a.base_url()).await;
    assert!(second["verify_keys"].get(&old_id).is_none(), "the old key is still current: {second}");
    assert_eq!(
        second["old_verify_keys"][&old_id]["key"], first["verify_keys"][&old_id]["key"],
        "{second}"
    );
    assert!(second["old_verify_keys"][&old_id]["expired_ts"].as_u64().is_some());
}

#[tokio::test]
async fn peers_cannot_make_a_server_connect_to_internal_addresses() {
    // A server as operators run it: plain HTTP for the loopback test, but no private addresses.
    let server = Server::builder()
        .env("GUILDHALL_FEDERATION__DANGER_ALLOW_PLAIN_HTTP", "true")
        .start()
        .await;
    let alice = server.register("alice").await;
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a probe");
    let internal = probe.local_addr().unwrap().to_string();
    let connected =
        async || tokio::time::timeout(Duration::from_millis(200), probe.accept()).await.is_ok();

    // A user naming an internal address as an invite's server.
    let (status, body) = alice.post_empty(&format!("/invites/abcdef?server={internal}")).await;
    assert!(status.is_client_error() || status.is_server_error(), "{status}: {body}");
    assert!(!connected().await, "the invite's server was contacted");

    // An unauthenticated request whose keyid names an internal address.
    let hostile = Peer {
        key: guildhall_spec::ServerSigningKey::from_seed(
            guildhall_spec::ServerName::parse(&internal).unwrap(),
            guildhall_spec::KeyId::parse("ed25519:probe").unwrap(),
            &[7; 32],
        ),
        http: reqwest::Client::new(),
    };
    let body = json!({"origin": internal, "origin_ts": 1, "events": [], "ephemeral": []});
    let request = hostile.signed(&server, "PUT", "/_guildhall/v1/send/probe1", Some(&body));
    let (status, _) = hostile.send("PUT", &request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!connected().await, "the keyid's server was contacted");
}

#[tokio::test]
async fn the_host_enforces_every_message_limit_on_proposals() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Limits").await;
    join_remote(&bob, &a, &alice.invite(&guild.general).await).await;
    let submit = format!("/_guildhall/v1/guilds/{}/submit", crate::harness::encode(&guild.id));
    let peer = Peer::of(&b);
    let propose = async |extra: Value| {
        let mut content = json!({"channel_id": guild.general, "body": "x"});
        content.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let proposal =
            signed_proposal(&guild.id, &bob.id, &b.name(), "message.create", content, &peer.key);
        let request = peer.signed(&a, "POST", &submit, Some(&json!({"proposal": proposal})));
        peer.send("POST", &request).await
    };
    let mentions: Vec<String> = (0..101).map(|i| format!("@u{i}:{}", b.name())).collect();
    let attachments: Vec<String> = (0..11).map(|i| format!("media{i}")).collect();
    let (status, body) = propose(json!({"mentions": mentions})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_event")));
    let (status, body) = propose(json!({"attachments": attachments})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_event")));

    // Within the limits, attachments still need ATTACH_FILES (1 << 15).
    let deny = json!({"kind": "role", "allow": "0", "deny": (1u64 << 15).to_string()});
    let (status, _) =
        alice.put(&format!("/channels/{}/permissions/everyone", guild.general), deny).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = propose(json!({"attachments": ["media0"]})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_permission")),
        "{body}"
    );
    let (status, body) = propose(json!({"mentions": [alice.id]})).await;
    assert_eq!(status, StatusCode::OK, "a message within every limit: {body}");
}

#[tokio::test]
async fn a_channel_id_reused_by_another_guilds_host_never_misroutes() {
    // S hosts guild A; H, a host that lies about ids, hosts guild B; Bob on S is in both.
    let s = federating().await;
    let h = federating_builder()
        .env("GUILDHALL_SERVER__DANGER_ENABLE_TEST_CONTROL", "true")
        .start()
        .await;
    let (alice, bob) = (s.register("alice").await, s.register("bob").await);
    let mallory = h.register("mallory").await;
    let a = alice.create_guild("A").await;
    bob.join(&alice.invite(&a.general).await).await;
    let b = mallory.create_guild("B").await;
    join_remote(&bob, &h, &mallory.invite(&b.general).await).await;

    // H sequences a channel in B whose id is A's #general, and pushes it to S.
    let copy = json!({"user_id": mallory.id, "type": "channel.create",
        "content": {"channel_id": a.general, "name": "general", "kind": "text", "position": 1}});
    let url = format!(
        "{}/_guildhall/test/v1/guilds/{}/events",
        h.base_url(),
        crate::harness::encode(&b.id)
    );
    let response = reqwest::Client::new().post(url).json(&copy).send().await.unwrap();
    assert!(response.status().is_success(), "H sequences the copy: {}", response.status());
    let has_copy = |guild: &Value| {
        guild["channels"].as_array().is_some_and(|c| c.iter().any(|c| c["id"] == a.general))
    };
    let guild = eventually(
        Duration::from_secs(20),
        async || bob.get(&format!("/guilds/{}", b.id)).await.1,
        has_copy,
    )
    .await;
    assert!(has_copy(&guild), "B's copied channel did not reach S");

    // For Bob the id is ambiguous: nothing is read from or sent to either guild by it.
    let path = format!("/channels/{}/messages", a.general);
    let (status, body) = bob.post(&path, json!({"content": "meant for B"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("ambiguous_channel")));
    assert!(!contents(&alice, &a.general).await.contains(&"meant for B".to_owned()));
    // For Alice, in A only, it is A's channel.
    alice.send(&a.general, "still A's").await;
    assert!(contents(&alice, &a.general).await.contains(&"still A's".to_owned()));
}

/// The `member.join` proposal of `user` (of `server`) for `guild` with `code`, as the body of a
/// `/join` request signed by `peer` (the user's server).
fn join_request(peer: &Peer, guild: &str, user: &str, server: &str, code: &str) -> Value {
    let content = json!({"invite_code": code});
    let proposal = signed_proposal(guild, user, server, "member.join", content, &peer.key);
    json!({"user_id": user, "invite_code": code, "proposal": proposal})
}

#[tokio::test]
async fn a_join_whose_answer_was_lost_is_recovered() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Lossy").await;
    let code = alice.invite(&guild.general).await;

    // B's join reaches A and is sequenced, but its answer never reaches B.
    let peer = Peer::of(&b);
    let path = format!("/_guildhall/v1/guilds/{}/join", crate::harness::encode(&guild.id));
    let body = join_request(&peer, &guild.id, &bob.id, &b.name(), &code);
    let (status, _) = peer.send("POST", &peer.signed(&a, "POST", &path, Some(&body))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(alice.member_ids(&guild.id).await.contains(&bob.id));

    // Bob tries again: B recovers the membership instead of being told he is a member of a
    // guild it knows nothing of.
    let (status, joined) = bob.post_empty(&format!("/invites/{code}?server={}", a.name())).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    alice.send(&guild.general, "welcome back").await;
    let seen = eventually(
        Duration::from_secs(20),
        async || contents(&bob, &guild.general).await,
        |seen| seen.contains(&"welcome back".to_owned()),
    )
    .await;
    assert!(seen.contains(&"welcome back".to_owned()), "bob's server receives the guild again");
    let (status, body) = bob.delete(&format!("/guilds/{}/members/@me", guild.id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "and bob can leave: {body}");
}

#[tokio::test]
async fn a_replayed_join_repeats_its_answer_and_is_refused_after_a_ban() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Replays").await;
    let code = alice.invite(&guild.general).await;
    let peer = Peer::of(&b);
    let path = format!("/_guildhall/v1/guilds/{}/join", crate::harness::encode(&guild.id));
    let body = join_request(&peer, &guild.id, &bob.id, &b.name(), &code);
    let (status, first) = peer.send("POST", &peer.signed(&a, "POST", &path, Some(&body))).await;
    assert_eq!(status, StatusCode::OK);

    // The guild moves on; a retry of the same join gets exactly the first answer.
    let (status, _) =
        alice.patch(&format!("/guilds/{}", guild.id), json!({"name": "Renamed"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = peer.send("POST", &peer.signed(&a, "POST", &path, Some(&body))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["snapshot"], first["snapshot"],
        "a replay signs no newer state under the old seq"
    );

    // Once B is banned, a retry learns nothing at all.
    let (status, _) =
        alice.put(&format!("/guilds/{}/server-bans/{}", guild.id, b.name()), json!({})).await;
    assert!(status.is_success(), "{status}");
    let (status, refused) = peer.send("POST", &peer.signed(&a, "POST", &path, Some(&body))).await;
    assert_eq!((status, refused["code"].as_str()), (StatusCode::FORBIDDEN, Some("server_banned")));
}

#[tokio::test]
async fn events_for_a_denied_member_server_are_dropped_not_retried_forever() {
    let (a, b) = (federating().await, federating().await);
    let admin = a.register("admin").await;
    let bob = b.register("bob").await;
    let guild = admin.create_guild("Denied later").await;
    join_remote(&bob, &a, &admin.invite(&guild.general).await).await;
    let (status, _) =
        admin.put("/admin/federation/policy", json!({"mode": "open", "deny": [b.name()]})).await;
    assert_eq!(status, StatusCode::OK);
    for text in ["one", "two", "three"] {
        admin.send(&guild.general, text).await;
    }
    let queued_for_b = async || {
        let (_, body) = admin.get("/admin/federation/queues").await;
        body["queues"]
            .as_array()
            .and_then(|queues| queues.iter().find(|q| q["server"] == b.name()))
            .map_or(0, |queue| queue["queued_events"].as_i64().unwrap_or(0))
    };
    let left = eventually(Duration::from_secs(20), queued_for_b, |left| *left == 0).await;
    assert_eq!(left, 0, "events for a denied server are still queued");
}
