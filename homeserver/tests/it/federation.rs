//! Federation between real `guildhall` processes on loopback: a guild hosted on A, members on
//! B and C, and what must (and must not) cross between them.

use std::time::{Duration, Instant};

use crate::harness::{Encoding, Gateway, Server, StatusCode, User, Value, json};

/// A server that federates over plain HTTP on loopback.
async fn federating() -> Server {
    federating_builder().start().await
}

fn federating_builder() -> crate::harness::ServerBuilder {
    Server::builder().env("GUILDHALL_FEDERATION__DANGER_ALLOW_PLAIN_HTTP", "true")
}

/// Joins `user` (on another server) to a guild hosted on `host` through an invite code.
async fn join_remote(user: &User, host: &Server, code: &str) -> Value {
    let (status, body) = user.post_empty(&format!("/invites/{code}?server={}", host.name())).await;
    assert_eq!(status, StatusCode::OK, "{} joins {code} on {}: {body}", user.name, host.name());
    body
}

/// Polls until `check` holds or `within` passes; returns the last value seen.
async fn eventually<T, F, Fut>(within: Duration, mut probe: F, check: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if check(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A channel's messages as `user`'s own server shows them, oldest first; empty while that
/// server does not (yet) know the channel or let the user see it.
async fn contents(user: &User, channel: &str) -> Vec<String> {
    let (status, body) = user.get(&format!("/channels/{channel}/messages?limit=100")).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    let mut list: Vec<String> = body["messages"]
        .as_array()
        .map(|messages| {
            messages.iter().filter_map(|m| m["content"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default();
    list.reverse();
    list
}

#[tokio::test]
async fn a_remote_member_joins_reads_and_writes() {
    let a = federating().await;
    let b = federating().await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Across").await;
    alice.send(&guild.general, "before bob").await;
    let code = alice.invite(&guild.general).await;

    let joined = join_remote(&bob, &a, &code).await;
    assert_eq!(joined["id"], guild.id.as_str());
    // Bob's server shows the history the host sent with the join.
    assert_eq!(contents(&bob, &guild.general).await, vec!["before bob"]);

    let mine = bob.get("/users/@me/guilds").await;
    assert!(
        mine.1["guilds"].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == guild.id.as_str())),
        "{mine:?}"
    );
    let (mut bob_gateway, ready) = Gateway::identified(&b, &bob.token, Encoding::Json).await;
    assert!(
        ready["guilds"].as_array().is_some_and(|g| g.iter().any(|g| g["id"] == guild.id.as_str())),
        "{ready}"
    );
    alice.send(&guild.general, "hello bob").await;
    let seen = bob_gateway.expect_dispatch("MESSAGE_CREATE", |d| d["content"] == "hello bob").await;
    assert_eq!(seen["d"]["author_id"], alice.id.as_str());

    bob.send(&guild.general, "hello alice").await;
    let on_a =
        eventually(Duration::from_secs(10), || contents(&alice, &guild.general), |c| c.len() == 3)
            .await;
    assert_eq!(on_a, vec!["before bob", "hello bob", "hello alice"]);
    assert_eq!(contents(&bob, &guild.general).await, on_a);
}

/// Collects `count` MESSAGE_CREATE contents from a gateway, in arrival order.
async fn collect_messages(gateway: &mut Gateway, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let frame = gateway.expect_dispatch("MESSAGE_CREATE", |_| true).await;
        seen.push(frame["d"]["content"].as_str().unwrap_or_default().to_owned());
    }
    seen
}

#[tokio::test]
async fn three_servers_see_one_log_in_one_order() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Three").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;

    let mut gateways = Vec::new();
    for (server, user) in [(&a, &alice), (&b, &bob), (&c, &carol)] {
        gateways.push(Gateway::identified(server, &user.token, Encoding::Json).await.0);
    }
    let mut sent = Vec::new();
    for round in 0..3 {
        for user in [&alice, &bob, &carol] {
            let text = format!("{} says {round}", user.name);
            user.send(&guild.general, &text).await;
            sent.push(text);
        }
    }
    for gateway in &mut gateways {
        assert_eq!(collect_messages(gateway, sent.len()).await, sent);
    }
    for user in [&alice, &bob, &carol] {
        let history = eventually(
            Duration::from_secs(10),
            || contents(user, &guild.general),
            |h| h.len() == sent.len(),
        )
        .await;
        assert_eq!(history, sent, "history on {}'s server", user.name);
    }
}

#[tokio::test]
async fn a_private_channel_never_reaches_a_server_without_a_viewer() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Secrets").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    let secret = crate::harness::private_channel(&alice, &guild.id, "staff").await;
    // Bob may see the channel; nobody on C may.
    let (status, body) = alice
        .put(
            &format!("/channels/{secret}/permissions/{}", bob.id),
            json!({"kind": "member", "allow": "1024", "deny": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alice.send(&secret, "the launch code is 0000").await;
    alice.send(&guild.general, "sentinel").await;

    let on_b =
        eventually(Duration::from_secs(10), || contents(&bob, &secret), |h| !h.is_empty()).await;
    assert_eq!(on_b, vec!["the launch code is 0000"]);
    eventually(
        Duration::from_secs(10),
        || contents(&carol, &guild.general),
        |h| h.contains(&"sentinel".to_owned()),
    )
    .await;
    // C holds the event (the chain stays complete) but never its content, anywhere.
    let dump = std::fs::read(c.dir().join("guildhall.sqlite3")).unwrap_or_default();
    let wal = std::fs::read(c.dir().join("guildhall.sqlite3-wal")).unwrap_or_default();
    let needle = b"launch code";
    let leaked = |bytes: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
    assert!(!leaked(&dump) && !leaked(&wal), "C's database contains the private message");
    let (status, _) = carol.get(&format!("/channels/{secret}/messages")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_stopped_member_server_catches_up_exactly() {
    let (a, mut b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Resilient").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    alice.send(&guild.general, "one").await;
    eventually(Duration::from_secs(10), || contents(&bob, &guild.general), |h| h.len() == 1).await;

    b.stop();
    let mut expected = vec!["one".to_owned()];
    for index in 0..6 {
        let (speaker, text) = if index % 2 == 0 {
            (&alice, format!("a{index}"))
        } else {
            (&carol, format!("c{index}"))
        };
        speaker.send(&guild.general, &text).await;
        expected.push(text);
    }
    b.launch().await;
    let bob = b.login("bob").await;
    let on_b = eventually(
        Duration::from_secs(20),
        || contents(&bob, &guild.general),
        |h| h.len() >= expected.len(),
    )
    .await;
    assert_eq!(on_b, expected, "B has every message once, in order");
    assert_eq!(contents(&alice, &guild.general).await, expected);
}

#[tokio::test]
async fn proposals_queued_while_the_host_is_down_arrive_after_it_restarts() {
    let (mut a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Patient").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;

    a.stop();
    for text in ["queued one", "queued two"] {
        let (status, body) = bob
            .post(&format!("/channels/{}/messages", guild.general), json!({"content": text}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["code"], "queued");
    }
    a.launch().await;
    let alice = a.login("alice").await;
    let on_a =
        eventually(Duration::from_secs(40), || contents(&alice, &guild.general), |h| h.len() == 2)
            .await;
    assert_eq!(on_a, vec!["queued one", "queued two"]);
    let on_b =
        eventually(Duration::from_secs(10), || contents(&bob, &guild.general), |h| h.len() == 2)
            .await;
    assert_eq!(on_b, on_a);
}

/// Signs federation requests as a server whose key file we can read: the tests' stand-in for a
/// hostile peer that holds a real server's key.
struct Peer {
    key: guildhall_spec::ServerSigningKey,
    http: reqwest::Client,
}

impl Peer {
    fn of(server: &Server) -> Self {
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
    fn signed(
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

    async fn send(
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
    let proposal = guildhall_spec::Proposal {
        guild_id: guildhall_spec::GuildId::parse(guild).unwrap(),
        event_type: "message.create".into(),
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
        content: json!({"channel_id": channel, "body": body}).as_object().unwrap().clone(),
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
async fn remote_members_edit_delete_react_pin_type_moderate_and_leave() {
    let (a, b, c) = (federating().await, federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Busy").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    join_remote(&carol, &a, &code).await;
    let general = guild.general.clone();
    let (mut alice_gateway, _) = Gateway::identified(&a, &alice.token, Encoding::Json).await;

    // Presence and typing of a remote member reach the host's users.
    let (_bob_gateway, _) = Gateway::identified(&b, &bob.token, Encoding::Msgpack).await;
    alice_gateway
        .expect_dispatch("PRESENCE_UPDATE", |d| {
            d["user_id"] == bob.id.as_str() && d["status"] == "online"
        })
        .await;
    let (status, _) = bob.post_empty(&format!("/channels/{general}/typing")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    alice_gateway.expect_dispatch("TYPING_START", |d| d["user_id"] == bob.id.as_str()).await;

    // Edit and delete by the remote author.
    let typo = bob.send(&general, "helo").await;
    let (status, body) = bob
        .patch(
            &format!(
                "/channels/{general}/messages/{}",
                crate::harness::encode(typo["id"].as_str().unwrap())
            ),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let doomed = bob.send(&general, "delete me").await;
    let (status, body) = bob
        .delete(&format!(
            "/channels/{general}/messages/{}",
            crate::harness::encode(doomed["id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for user in [&alice, &carol] {
        let seen = eventually(
            Duration::from_secs(10),
            || contents(user, &general),
            |h| h == &vec!["hello".to_owned()],
        )
        .await;
        assert_eq!(seen, vec!["hello"], "on {}'s server", user.name);
    }

    // A remote reaction shows on a third server.
    let announcement = alice.send(&general, "announcement").await;
    let message_id = crate::harness::encode(announcement["id"].as_str().unwrap());
    eventually(
        Duration::from_secs(10),
        || contents(&carol, &general),
        |h| h.contains(&"announcement".to_owned()),
    )
    .await;
    let (status, body) = carol
        .put_empty(&format!(
            "/channels/{general}/messages/{message_id}/reactions/{}/@me",
            crate::harness::encode("👍")
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let reacted = eventually(
        Duration::from_secs(10),
        || async { bob.history(&general).await },
        |h| h.iter().any(|m| m["content"] == "announcement" && m["reactions"][0]["count"] == 1),
    )
    .await;
    assert!(reacted.iter().any(|m| m["reactions"][0]["emoji"] == "👍"), "{reacted:?}");

    // A remote moderator pins and kicks.
    let moderator =
        alice.create_role(&guild.id, "mods", &((1u64 << 13) | (1 << 1)).to_string(), 1).await;
    alice.give_role(&guild.id, &bob.id, &moderator).await;
    eventually(
        Duration::from_secs(10),
        || async {
            bob.get(&format!(
                "/guilds/{}/members/{}",
                crate::harness::encode(&guild.id),
                crate::harness::encode(&bob.id)
            ))
            .await
        },
        |r| r.1["roles"].as_array().is_some_and(|r| !r.is_empty()),
    )
    .await;
    let (status, body) = bob.put_empty(&format!("/channels/{general}/pins/{message_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let pins = eventually(
        Duration::from_secs(10),
        || async { carol.get(&format!("/channels/{general}/pins")).await },
        |r| r.1["messages"].as_array().is_some_and(|m| m.len() == 1),
    )
    .await;
    assert_eq!(pins.1["messages"][0]["content"], "announcement");
    let (status, body) = bob
        .delete(&format!(
            "/guilds/{}/members/{}",
            crate::harness::encode(&guild.id),
            crate::harness::encode(&carol.id)
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let gone = eventually(
        Duration::from_secs(10),
        || async { carol.get(&format!("/guilds/{}", crate::harness::encode(&guild.id))).await },
        |r| r.0 == StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(gone.0, StatusCode::NOT_FOUND, "carol's server knows she was kicked");
    assert!(!alice.member_ids(&guild.id).await.contains(&carol.id));

    // A remote member leaves.
    let (status, body) =
        bob.delete(&format!("/guilds/{}/members/@me", crate::harness::encode(&guild.id))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let members = eventually(
        Duration::from_secs(10),
        || alice.member_ids(&guild.id),
        |m| !m.contains(&bob.id),
    )
    .await;
    assert_eq!(members, vec![alice.id.clone()]);
}

#[tokio::test]
async fn withheld_content_arrives_once_access_is_granted() {
    let (a, c) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let carol = c.register("carol").await;
    let guild = alice.create_guild("Later").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&carol, &a, &code).await;
    let secret = crate::harness::private_channel(&alice, &guild.id, "vault").await;
    alice.send(&secret, "written while carol could not look").await;
    alice.send(&guild.general, "sentinel").await;
    eventually(
        Duration::from_secs(10),
        || contents(&carol, &guild.general),
        |h| h.contains(&"sentinel".to_owned()),
    )
    .await;
    assert_eq!(carol.get(&format!("/channels/{secret}/messages")).await.0, StatusCode::NOT_FOUND);

    let (status, body) = alice
        .put(
            &format!("/channels/{secret}/permissions/{}", carol.id),
            json!({"kind": "member", "allow": "1024", "deny": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = eventually(
        Duration::from_secs(15),
        || async {
            let (status, body) = carol.get(&format!("/channels/{secret}/messages")).await;
            if status == StatusCode::OK {
                body["messages"].as_array().cloned().unwrap_or_default()
            } else {
                Vec::new()
            }
        },
        |messages| !messages.is_empty(),
    )
    .await;
    assert_eq!(
        seen.first().map(|m| m["content"].clone()),
        Some(json!("written while carol could not look"))
    );
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
async fn a_direct_message_between_two_servers() {
    let (a, b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let (status, dm) = alice.post("/users/@me/channels", json!({"recipient": bob.id})).await;
    assert_eq!(status, StatusCode::OK, "{dm}");
    let channel = dm["channels"][0]["id"].as_str().expect("the DM's channel").to_owned();
    // Bob's server accepts the invitation on his behalf when it arrives.
    let bobs = eventually(
        Duration::from_secs(15),
        || async { bob.get("/users/@me/channels").await },
        |r| r.1["channels"].as_array().is_some_and(|c| !c.is_empty()),
    )
    .await;
    assert_eq!(bobs.1["channels"][0]["id"], dm["id"], "{bobs:?}");
    alice.send(&channel, "hi bob, across servers").await;
    bob.send(&channel, "hi alice").await;
    for user in [&alice, &bob] {
        let seen =
            eventually(Duration::from_secs(10), || contents(user, &channel), |h| h.len() == 2)
                .await;
        assert_eq!(seen, vec!["hi bob, across servers", "hi alice"], "on {}'s server", user.name);
    }
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
async fn a_message_deleted_while_a_member_server_is_down_never_reaches_it() {
    let (a, mut b) = (federating().await, federating().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let guild = alice.create_guild("Regrets").await;
    let code = alice.invite(&guild.general).await;
    join_remote(&bob, &a, &code).await;
    b.stop();
    let message = alice.send(&guild.general, "a regrettable sentence").await;
    let (status, _) = alice
        .delete(&format!(
            "/channels/{}/messages/{}",
            guild.general,
            crate::harness::encode(message["id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    alice.send(&guild.general, "after").await;
    b.launch().await;
    let bob = b.login("bob").await;
    let seen = eventually(
        Duration::from_secs(20),
        || contents(&bob, &guild.general),
        |h| h == &vec!["after".to_owned()],
    )
    .await;
    assert_eq!(seen, vec!["after"]);
    // Give the queued delivery a moment to arrive, then look for the words anywhere on B.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let needle = b"regrettable";
    for file in ["guildhall.sqlite3", "guildhall.sqlite3-wal"] {
        let bytes = std::fs::read(b.dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{file} on B holds the deleted message"
        );
    }
}
