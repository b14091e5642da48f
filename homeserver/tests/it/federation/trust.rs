//! Operators' trust lists (spec chapter 15): subscribed signed lists applied both ways and
//! removed without restarts, a badly signed list refused with the previous copy kept, pinned
//! keys, changes from the command line, and the audit log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use guildhall_spec::{KeyId, ServerName, ServerSigningKey};

use super::*;
use crate::harness::{StatusCode, Value, json};

/// A server's current key id and public key, from its key document.
async fn server_key(server: &Server) -> (String, String) {
    let url = format!("{}/_guildhall/v1/keys/server", server.base_url());
    let document: Value =
        reqwest::get(url).await.expect("key document").json().await.expect("JSON");
    let (key_id, key) = document["verify_keys"]
        .as_object()
        .and_then(|keys| keys.iter().next())
        .expect("a current key");
    (key_id.clone(), key["key"].as_str().expect("a key").to_owned())
}

/// Whether `user` can join a guild hosted on `host` through `code`: the status and error code.
async fn try_join(user: &User, host: &Server, code: &str) -> (StatusCode, Option<String>) {
    let (status, body) = user.post_empty(&format!("/invites/{code}?server={}", host.name())).await;
    (status, body["code"].as_str().map(str::to_owned))
}

/// What `admin`'s server says about `server`.
async fn why(admin: &User, server: &Server) -> Value {
    let (status, body) = admin.get(&format!("/admin/trust/why/{}", server.name())).await;
    assert_eq!(status, StatusCode::OK, "why: {body}");
    body
}

#[tokio::test]
async fn a_server_denied_by_a_subscribed_list_is_refused_both_ways_until_unsubscribed() {
    let publisher =
        federating_builder().env("GUILDHALL_FEDERATION__PUBLISH_TRUST_LIST", "true").start().await;
    let (s, x) = (federating().await, federating().await);
    let curator = publisher.register("curator").await;
    let (status, body) = curator
        .put(
            &format!("/admin/trust/entries/{}", x.name()),
            json!({"action": "deny", "reason": "unsolicited bulk messages"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "publisher denies x: {body}");

    let admin = s.register("admin").await;
    let xavier = x.register("xavier").await;
    let s_guild = admin.create_guild("On S").await;
    let s_code = admin.invite(&s_guild.general).await;
    let x_guild = xavier.create_guild("On X").await;
    let x_code = xavier.invite(&x_guild.general).await;

    let (key_id, key) = server_key(&publisher).await;
    let url = format!("{}/_guildhall/v1/trust/list", publisher.base_url());
    let (status, body) = admin
        .post(
            "/admin/trust/subscriptions",
            json!({"url": url, "publisher": publisher.name(), "key_id": key_id, "key": key}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "subscribe: {body}");
    assert_eq!(body["fetch"]["ok"], true, "first fetch: {body}");
    let subscription = body["id"].as_str().expect("an id").to_owned();

    let verdict = why(&admin, &x).await;
    assert_eq!(
        (verdict["allowed"].as_bool(), verdict["rule"].as_str()),
        (Some(false), Some("list"))
    );
    assert_eq!(verdict["reason"], "unsolicited bulk messages");
    // In: X's user cannot join S's guild (S refuses X's request). Out: S's user cannot join
    // X's guild (S sends nothing to X).
    assert_eq!(
        try_join(&xavier, &s, &s_code).await,
        (StatusCode::FORBIDDEN, Some("server_denied".into()))
    );
    assert_eq!(
        try_join(&admin, &x, &x_code).await,
        (StatusCode::FORBIDDEN, Some("server_denied".into()))
    );
    let (_, stats) = admin.get("/admin/trust/stats").await;
    let refused = &stats["peers"][x.name()]["refused"]["server_denied"];
    assert!(refused.as_u64().unwrap_or(0) >= 1, "S counted X's refused request: {stats}");

    let (status, _) = admin.delete(&format!("/admin/trust/subscriptions/{subscription}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(why(&admin, &x).await["allowed"], true);
    join_remote(&xavier, &s, &s_code).await;
    join_remote(&admin, &x, &x_code).await;

    let (_, audit) = admin.get("/admin/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["trust.subscribe", "trust.list_accepted", "trust.unsubscribe"] {
        assert!(actions.contains(&action), "{action} is in the audit log: {actions:?}");
    }
}

/// A trust list served by the test itself, so it can serve what no honest publisher would.
struct ListServer {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
}

impl ListServer {
    async fn start() -> Self {
        let body = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::clone(&body);
        let app = axum::Router::new().route(
            "/list",
            axum::routing::get(move || {
                let served = Arc::clone(&served);
                async move { served.lock().expect("lock").clone() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/list", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, body }
    }

    fn serve(&self, document: &Value) {
        *self.body.lock().expect("lock") = document.to_string().into_bytes();
    }
}

fn signed_list(key: &ServerSigningKey, updated_ts: u64, deny: &[String]) -> Value {
    let entries: serde_json::Map<String, Value> =
        deny.iter().map(|server| (server.clone(), json!({"action": "deny"}))).collect();
    let mut list =
        json!({"server_name": key.server_name(), "updated_ts": updated_ts, "entries": entries});
    guildhall_spec::signing::sign_json(list.as_object_mut().expect("object"), key).expect("sign");
    list
}

#[tokio::test]
async fn a_list_with_a_bad_signature_is_refused_and_the_previous_copy_stays() {
    let (s, x) = (federating().await, federating().await);
    let admin = s.register("admin").await;
    let xavier = x.register("xavier").await;
    let code = admin.invite(&admin.create_guild("On S").await.general).await;
    let publisher = ServerName::parse("lists.example").expect("name");
    let key = ServerSigningKey::from_seed(
        publisher.clone(),
        KeyId::parse("ed25519:l1").expect("id"),
        &[3; 32],
    );
    let impostor =
        ServerSigningKey::from_seed(publisher, KeyId::parse("ed25519:l1").expect("id"), &[4; 32]);
    let lists = ListServer::start().await;
    lists.serve(&signed_list(&key, 1_000, &[x.name()]));

    let public = guildhall_spec::base64url::encode(key.verifying_key().as_bytes());
    let (status, body) = admin
        .post(
            "/admin/trust/subscriptions",
            json!({"url": lists.url, "publisher": "lists.example", "key_id": "ed25519:l1", "key": public}),
        )
        .await;
    assert_eq!((status, &body["fetch"]["ok"]), (StatusCode::CREATED, &json!(true)), "{body}");
    let id = body["id"].as_str().expect("an id").to_owned();
    assert_eq!(try_join(&xavier, &s, &code).await.1.as_deref(), Some("server_denied"));

    // A newer version that clears the list, signed by someone else: refused, and X stays denied.
    lists.serve(&signed_list(&impostor, 2_000, &[]));
    let (_, refreshed) =
        admin.post_empty(&format!("/admin/trust/subscriptions/{id}/refresh")).await;
    assert_eq!(refreshed["fetch"]["ok"], false, "{refreshed}");
    assert!(
        refreshed["fetch"]["error"].as_str().unwrap_or_default().contains("signature"),
        "{refreshed}"
    );
    assert_eq!(try_join(&xavier, &s, &code).await.1.as_deref(), Some("server_denied"));
    // An older version, even properly signed, cannot roll the list back.
    lists.serve(&signed_list(&key, 500, &[]));
    let (_, refreshed) =
        admin.post_empty(&format!("/admin/trust/subscriptions/{id}/refresh")).await;
    assert_eq!(refreshed["fetch"], json!({"ok": true, "updated": false}), "{refreshed}");
    let (_, view) = admin.get("/admin/trust").await;
    let held =
        view["subscriptions"].as_array().and_then(|subs| subs.first()).cloned().unwrap_or_default();
    assert_eq!(
        (held["updated_ts"].as_u64(), held["entries"].as_u64()),
        (Some(1_000), Some(1)),
        "{held}"
    );
    // The publisher's real newer version applies.
    lists.serve(&signed_list(&key, 3_000, &[]));
    let (_, refreshed) =
        admin.post_empty(&format!("/admin/trust/subscriptions/{id}/refresh")).await;
    assert_eq!(refreshed["fetch"], json!({"ok": true, "updated": true}), "{refreshed}");
    join_remote(&xavier, &s, &code).await;
}

#[tokio::test]
async fn a_pinned_key_is_the_only_key_accepted() {
    let (s, b) = (federating().await, federating().await);
    let admin = s.register("admin").await;
    let bob = b.register("bob").await;
    let code = admin.invite(&admin.create_guild("Pinned").await.general).await;
    // Pin a key b does not have: b's requests are refused.
    let stranger = ServerSigningKey::from_seed(
        ServerName::parse("x.example").expect("name"),
        KeyId::parse("ed25519:k1").expect("id"),
        &[9; 32],
    );
    let wrong_key = guildhall_spec::base64url::encode(stranger.verifying_key().as_bytes());
    let (key_id, key) = server_key(&b).await;
    // S holds b's document (it answers for it as a notary) from before any pin: b has asked it
    // something.
    let peer = super::security::Peer::of(&b);
    let path = format!("/_guildhall/v1/invites/{code}");
    let (status, _) = peer.send("GET", &peer.signed(&s, "GET", &path, None)).await;
    assert_eq!(status, StatusCode::OK);
    let query = json!({"server_keys": {b.name(): {}}});
    let notary = async || {
        let (status, answer) = s.client().post_at("/_guildhall/v1/keys/query", query.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["server_keys"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(notary().await, 1);
    let pin = |key: &str| json!({"action": "allow", "key": {"key_id": key_id, "key": key}});
    let (status, body) =
        admin.put(&format!("/admin/trust/entries/{}", b.name()), pin(&wrong_key)).await;
    assert_eq!(status, StatusCode::OK, "pin: {body}");
    assert_eq!(body["pinned_key"]["key"], wrong_key);
    let (status, body) = bob.post_empty(&format!("/invites/{code}?server={}", s.name())).await;
    assert_ne!(
        status,
        StatusCode::OK,
        "a request signed with an unpinned key went through: {body}"
    );
    // Nor does S vouch any more for the document it held, which lacks the pinned key.
    assert_eq!(notary().await, 0, "a document without the pinned key was served");
    // Pin b's real key: it is accepted again.
    let (status, _) = admin.put(&format!("/admin/trust/entries/{}", b.name()), pin(&key)).await;
    assert_eq!(status, StatusCode::OK);
    join_remote(&bob, &s, &code).await;
}

#[tokio::test]
async fn the_command_line_changes_a_running_servers_policy() {
    let (mut s, x) = (federating().await, federating().await);
    let admin = s.register("admin").await;
    let xavier = x.register("xavier").await;
    let code = admin.invite(&admin.create_guild("Run by CLI").await.general).await;
    let output = s.admin(&["trust", "deny", &x.name(), "--reason", "testing"]);
    assert!(output.status.success(), "trust deny: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("refused"));
    // The running server notices the stored change within seconds.
    let verdict =
        eventually(Duration::from_secs(20), || why(&admin, &x), |why| why["allowed"] == false)
            .await;
    assert_eq!(verdict["source"], "operator", "{verdict}");
    assert_eq!(try_join(&xavier, &s, &code).await.1.as_deref(), Some("server_denied"));
    let output = s.admin(&["trust", "why", &x.name()]);
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(printed.contains("refused") && printed.contains("testing"), "why: {printed}");
    let output = s.admin(&["trust", "remove", &x.name()]);
    assert!(output.status.success());
    eventually(Duration::from_secs(20), || why(&admin, &x), |why| why["allowed"] == true).await;
    join_remote(&xavier, &s, &code).await;
    assert!(s.admin(&["make-admin", "admin"]).status.success());
    let output = s.admin(&["audit"]);
    let audit = String::from_utf8_lossy(&output.stdout).into_owned();
    for action in ["cli trust.entry", "cli trust.remove", "cli admin.make_admin"] {
        assert!(audit.contains(action), "{action} is not in the audit log: {audit}");
    }
}
