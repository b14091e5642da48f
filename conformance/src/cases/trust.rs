//! Trust (spec chapter 15): the target subscribed (through test control) to a trust list the
//! suite publishes from a peer of its own, signed with that peer's key. A server the list
//! denies gets `403 server_denied` on authenticated requests while others get through; a list
//! that is badly signed or older than the one held changes nothing; unsubscribing lifts the
//! denial.
//!
//! Every case uses peers of its own, so a denial never reaches the peers other cases use.

use std::sync::Arc;

use guildhall_spec::event::JsonObject;
use guildhall_spec::{ServerSigningKey, base64url, signing};
use serde_json::{Value, json};

use crate::peer::{Peer, unix_now};
use crate::target::encode;
use crate::{CaseResult, Context, ensure};

/// A publisher of trust lists (a peer serving its list) and two member servers of a guild on
/// the target: `denied`, which the lists name, and `bystander`, which they never name.
struct Scene {
    curator: Peer,
    denied: Peer,
    bystander: Peer,
    /// `GET /guilds/{guild}/events` of a guild both are members of.
    path: String,
}

impl Scene {
    async fn new(ctx: &Context) -> Result<Self, String> {
        let start = || async { Peer::start().await.map_err(|e| format!("starting a peer: {e}")) };
        let (curator, denied, bystander) = (start().await?, start().await?, start().await?);
        let owner = ctx.target.user("owner").await?;
        let (guild, _) = ctx.target.guild(&owner).await?;
        let code = ctx.target.invite(&owner, &guild).await?;
        for member in [&denied, &bystander] {
            member.join(&ctx.target, &guild, &member.user("member"), Some(&code)).await?;
        }
        let path = format!("/_guildhall/v1/guilds/{}/events", encode(&guild));
        Ok(Self { curator, denied, bystander, path })
    }

    /// A trust list by the curator, at `updated_ts`, denying `self.denied` if `deny`, signed
    /// with `key` (the curator's own unless a case forges it).
    fn list(&self, updated_ts: u64, deny: bool, key: &ServerSigningKey) -> String {
        let mut entries = JsonObject::new();
        entries.insert("friend.example".into(), json!({"action": "allow"}));
        if deny {
            entries.insert(
                self.denied.name().to_string(),
                json!({"action": "deny", "reason": "conformance: denied by a subscribed list"}),
            );
        }
        let mut document = JsonObject::new();
        document.insert("server_name".into(), json!(self.curator.name()));
        document.insert("updated_ts".into(), json!(updated_ts));
        document.insert("entries".into(), Value::Object(entries));
        let _ = signing::sign_json(&mut document, key);
        Value::Object(document).to_string()
    }

    /// A key under the curator's name and key id that is not the curator's.
    fn forger(&self) -> ServerSigningKey {
        ServerSigningKey::from_seed(
            self.curator.name().clone(),
            self.curator.key.key_id().clone(),
            &rand::random::<[u8; 32]>(),
        )
    }

    /// Subscribes the target to the curator's list; returns the subscription id.
    async fn subscribe(&self, ctx: &Context) -> Result<String, String> {
        let body = json!({
            "url": self.curator.trust_list_url(),
            "publisher": self.curator.name(),
            "key_id": self.curator.key.key_id(),
            "key": base64url::encode(self.curator.key.verifying_key().as_bytes()),
        });
        let (status, answer) = ctx.target.control("/trust/subscriptions", body).await;
        ensure!(
            status == 200 && answer["fetch"]["ok"] == true,
            "test control: subscribing to a valid list answered {status} {answer}"
        );
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("test control: the subscription has no id: {answer}"))
    }

    /// Fetches the list now; returns the `fetch` outcome.
    async fn refresh(&self, ctx: &Context, id: &str) -> Result<Value, String> {
        let path = format!("/trust/subscriptions/{}/refresh", encode(id));
        let (status, answer) = ctx.target.control(&path, json!({})).await;
        ensure!(status == 200, "test control: refreshing answered {status} {answer}");
        Ok(answer["fetch"].clone())
    }

    async fn unsubscribe(&self, ctx: &Context, id: &str) -> CaseResult {
        let path = format!("/_guildhall/test/v1/trust/subscriptions/{}", encode(id));
        let (status, answer) = ctx.target.call("DELETE", &path, None).await;
        ensure!(status == 200, "test control: unsubscribing answered {status} {answer}");
        Ok(())
    }

    /// Checks that the denied peer is refused with `403 server_denied` (or gets through, when
    /// `denied` is false) and that the bystander always gets through.
    async fn expect(&self, ctx: &Context, denied: bool, when: &str) -> CaseResult {
        let (status, body) =
            self.denied.request(&ctx.target, "GET", &self.path, Some("after=0"), None).await;
        if denied {
            ensure!(
                status == 403 && body["code"] == "server_denied",
                "{when}: a server the list denies expected 403 server_denied, got {status} {body}"
            );
        } else {
            ensure!(status == 200, "{when}: a member server not denied got {status} {body}");
        }
        let (status, body) =
            self.bystander.request(&ctx.target, "GET", &self.path, Some("after=0"), None).await;
        ensure!(status == 200, "{when}: a server no list names got {status} {body}");
        Ok(())
    }
}

fn now_ms() -> u64 {
    unix_now() * 1000
}

pub(super) async fn subscribed_list_denies(ctx: Arc<Context>) -> CaseResult {
    let scene = Scene::new(&ctx).await?;
    scene.expect(&ctx, false, "before any list").await?;
    scene.curator.publish_trust_list(scene.list(now_ms(), true, &scene.curator.key));
    let id = scene.subscribe(&ctx).await?;
    scene.expect(&ctx, true, "subscribed to a list that denies it").await?;
    scene.unsubscribe(&ctx, &id).await?;
    scene.expect(&ctx, false, "after unsubscribing").await
}

pub(super) async fn bad_signature_keeps_previous(ctx: Arc<Context>) -> CaseResult {
    let scene = Scene::new(&ctx).await?;
    let first = now_ms();
    scene.curator.publish_trust_list(scene.list(first, true, &scene.curator.key));
    let id = scene.subscribe(&ctx).await?;
    scene.expect(&ctx, true, "subscribed to a list that denies it").await?;
    // A newer version without the denial, signed by a key that is not the curator's.
    scene.curator.publish_trust_list(scene.list(first + 1000, false, &scene.forger()));
    let fetch = scene.refresh(&ctx, &id).await?;
    ensure!(fetch["ok"] == false, "a badly signed list was not refused: {fetch}");
    scene.expect(&ctx, true, "after a badly signed newer list").await?;
    // The same version signed properly is taken: the refusal was for the signature alone.
    scene.curator.publish_trust_list(scene.list(first + 1000, false, &scene.curator.key));
    let fetch = scene.refresh(&ctx, &id).await?;
    ensure!(fetch["ok"] == true, "a well-signed newer list was refused: {fetch}");
    scene.expect(&ctx, false, "after a well-signed newer list without the denial").await?;
    scene.unsubscribe(&ctx, &id).await
}

pub(super) async fn older_list_keeps_previous(ctx: Arc<Context>) -> CaseResult {
    let scene = Scene::new(&ctx).await?;
    let first = now_ms();
    scene.curator.publish_trust_list(scene.list(first, true, &scene.curator.key));
    let id = scene.subscribe(&ctx).await?;
    scene.expect(&ctx, true, "subscribed to a list that denies it").await?;
    // A properly signed version without the denial, but older (a rollback), then one as old.
    for (updated_ts, what) in [(first - 1000, "an older list"), (first, "a list as old")] {
        scene.curator.publish_trust_list(scene.list(updated_ts, false, &scene.curator.key));
        scene.refresh(&ctx, &id).await?;
        scene.expect(&ctx, true, &format!("after {what} than the one held")).await?;
    }
    scene.unsubscribe(&ctx, &id).await
}
