//! Fixtures of the `e2e` cases (spec 17): local users of the target with an identity key bound
//! and devices registered through test control (chapter 21), the signed objects they publish,
//! and the federation requests a peer makes about them.
//!
//! Device certificates (16.3) and key objects (17.2) are built here from the spec's text — the
//! canonical JSON of the object without `signatures`, signed with Ed25519 — and the device-list
//! hash is computed by 17.2's formula, not by `guildhall-identity`, so that the suite and a server
//! cannot share a mistake there.

use std::collections::BTreeMap;

use guildhall_spec::{KeyId, ServerName, ServerSigningKey, base64url, canonical};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::identity::Identity;
use crate::target::{Answer, encode};
use crate::{Context, ensure};

/// The one message type of v1 (17.8).
pub(super) const OLM_MESSAGE_TYPE: &str = "olm.v1";

/// The one algorithm of v1 (17.7).
pub(super) const OLM_ALGORITHM: &str = "olm.v1.curve25519-aes-sha2";

/// The sending device the suite's peer users send from.
pub(super) const SENDER_DEVICE: &str = "PEERDEVICE";

/// A device the suite holds the keys of.
pub(super) struct Device {
    /// Its id.
    pub(super) id: String,
    /// Its Ed25519 signing key (the server name and key id play no part in what it signs).
    key: ServerSigningKey,
    /// Its Curve25519 key, base64url (32 random bytes: servers never use it as a point).
    pub(super) curve25519: String,
}

impl Device {
    fn generate(id: &str) -> Result<Self, String> {
        let name = ServerName::parse("device.invalid").map_err(|e| e.to_string())?;
        let key_id = KeyId::parse("ed25519:device").map_err(|e| e.to_string())?;
        Ok(Self {
            id: id.to_owned(),
            key: ServerSigningKey::from_seed(name, key_id, &rand::random::<[u8; 32]>()),
            curve25519: base64url::encode(rand::random::<[u8; 32]>()),
        })
    }

    /// Its Ed25519 public key, base64url.
    pub(super) fn ed25519(&self) -> String {
        base64url::encode(self.key.verifying_key().as_bytes())
    }

    fn sign(&self, message: &[u8]) -> String {
        base64url::encode(self.key.sign_bytes(message))
    }
}

/// A local user of the target with an identity key bound and devices registered.
pub(super) struct Person {
    /// The user id.
    pub(super) user: String,
    identity: Identity,
    /// The devices, in the order they were registered (not sorted).
    pub(super) devices: Vec<Device>,
    /// Each device's certificate as registered, by device id.
    pub(super) certificates: BTreeMap<String, Value>,
}

impl Person {
    /// A fresh user named after `name`, with a fresh identity key bound through test control
    /// and `devices` registered in that order.
    pub(super) async fn new(ctx: &Context, name: &str, devices: &[&str]) -> Result<Self, String> {
        let user = ctx.target.user(name).await?;
        let identity = Identity::generate()?;
        let path = format!("/_guildhall/test/v1/users/{}/identity", encode(&user));
        let bind = json!({"identity_key": identity.public(), "binding": identity.binding(&user)});
        let (status, body) = ctx.target.call("PUT", &path, Some(&bind)).await;
        ensure!(status == 200, "test control: binding an identity key answered {status} {body}");
        let mut person =
            Self { user, identity, devices: Vec::new(), certificates: BTreeMap::new() };
        for device in devices {
            person.add_device(ctx, device).await?;
        }
        Ok(person)
    }

    /// The user's identity key, base64url.
    pub(super) fn identity_key(&self) -> String {
        self.identity.public()
    }

    /// Registers a new device through test control, which makes a new login for it.
    pub(super) async fn add_device(
        &mut self,
        ctx: &Context,
        device_id: &str,
    ) -> Result<(), String> {
        let device = Device::generate(device_id)?;
        let certificate = self.certificate(&device)?;
        let path = self.device_path(device_id);
        let (status, body) =
            ctx.target.call("PUT", &path, Some(&json!({"certificate": certificate}))).await;
        ensure!(
            status == 200 && body["device_id"] == device_id,
            "test control: registering device {device_id} of {} answered {status} {body}",
            self.user
        );
        self.certificates.insert(device_id.to_owned(), certificate);
        self.devices.push(device);
        Ok(())
    }

    /// The device certificate of 16.3 for `device`, signed by the identity key and the device.
    fn certificate(&self, device: &Device) -> Result<Value, String> {
        let body = json!({
            "user_id": self.user,
            "device_id": device.id,
            "device_keys": {"curve25519": device.curve25519, "ed25519": device.ed25519()},
            "identity_key": self.identity.public(),
        });
        let message = canonical::to_canonical_string(&body).map_err(|e| e.to_string())?;
        let mut certificate = body;
        certificate["signatures"] = json!({self.user.as_str(): {
            "ed25519:identity": self.identity.sign(message.as_bytes()),
            format!("ed25519:{}", device.id): device.sign(message.as_bytes()),
        }});
        Ok(certificate)
    }

    /// The device `device_id` (registered before).
    pub(super) fn device(&self, device_id: &str) -> Result<&Device, String> {
        self.devices
            .iter()
            .find(|device| device.id == device_id)
            .ok_or_else(|| format!("the case registered no device {device_id}"))
    }

    /// The device-list hash of the devices registered so far (17.2's formula).
    pub(super) fn hash(&self) -> String {
        list_hash(self.devices.iter().map(|d| (d.id.as_str(), d.curve25519.as_str(), d.ed25519())))
    }

    /// The test-control path of one of this user's devices.
    fn device_path(&self, device_id: &str) -> String {
        format!("/_guildhall/test/v1/users/{}/devices/{}", encode(&self.user), encode(device_id))
    }

    /// A key object of 17.2 for `device`, signed by it.
    pub(super) fn key_object(&self, device: &Device, key_id: &str, fallback: bool) -> Value {
        let body = json!({
            "key_id": key_id,
            "key": base64url::encode(rand::random::<[u8; 32]>()),
            "fallback": fallback,
        });
        let message = canonical::to_canonical_string(&body).unwrap_or_default();
        let mut object = body;
        object["signatures"] = json!({self.user.as_str(): {
            format!("ed25519:{}", device.id): device.sign(message.as_bytes()),
        }});
        object
    }

    /// `POST /keys/upload` as the device, through test control.
    pub(super) async fn upload(&self, ctx: &Context, device_id: &str, body: Value) -> Answer {
        ctx.target.call("POST", &format!("{}/keys", self.device_path(device_id)), Some(&body)).await
    }

    /// The device's count of unclaimed one-time keys and whether it has a fallback key.
    pub(super) async fn key_counts(
        &self,
        ctx: &Context,
        device_id: &str,
    ) -> Result<(u64, bool), String> {
        let (status, body) = self.upload(ctx, device_id, json!({})).await;
        match (status, body["one_time_key_count"].as_u64(), body["fallback_key"].as_bool()) {
            (200, Some(count), Some(fallback)) => Ok((count, fallback)),
            _ => Err(format!("test control: reading key counts answered {status} {body}")),
        }
    }

    /// The device's inbox as test control reads it (up to 100 items).
    pub(super) async fn inbox(&self, ctx: &Context, device_id: &str) -> Result<Vec<Value>, String> {
        let (status, body) = self.inbox_page(ctx, device_id, 100).await;
        match body["messages"].as_array() {
            Some(messages) if status == 200 => Ok(messages.clone()),
            _ => Err(format!(
                "test control: reading the inbox of {device_id} answered {status} {body}"
            )),
        }
    }

    /// One page of the device's inbox, `limit` items at most.
    pub(super) async fn inbox_page(&self, ctx: &Context, device_id: &str, limit: u32) -> Answer {
        let path = format!("{}/to_device?limit={limit}", self.device_path(device_id));
        ctx.target.call("GET", &path, None).await
    }

    /// Checks that none of the devices' inboxes holds anything.
    pub(super) async fn inboxes_are_empty(&self, ctx: &Context, what: &str) -> Result<(), String> {
        for device in &self.devices {
            let inbox = self.inbox(ctx, &device.id).await?;
            ensure!(
                inbox.is_empty(),
                "{what}: the inbox of {} {} holds {} item(s), the first {}",
                self.user,
                device.id,
                inbox.len(),
                inbox[0]
            );
        }
        Ok(())
    }

    /// Acknowledges the device's inbox up to `up_to`, through test control.
    pub(super) async fn ack(&self, ctx: &Context, device_id: &str, up_to: u64) -> Answer {
        let path = format!("{}/to_device/ack", self.device_path(device_id));
        ctx.target.call("POST", &path, Some(&json!({"up_to": up_to}))).await
    }

    /// A to-device message (17.3) for `device`, with `olm.v1` content for its certified key.
    pub(super) fn message(&self, device: &Device, message_id: &str) -> Value {
        json!({
            "recipient": self.user,
            "device_id": device.id,
            "message_id": message_id,
            "message_type": OLM_MESSAGE_TYPE,
            "content": olm_content(&device.curve25519),
        })
    }
}

/// The device-list hash of 17.2: base64url(SHA-256(JCS([{device_id, curve25519, ed25519}, …])))
/// with the entries sorted by device id in byte order.
pub(super) fn list_hash<'a>(
    devices: impl IntoIterator<Item = (&'a str, &'a str, String)>,
) -> String {
    let mut entries: Vec<(&str, Value)> = devices
        .into_iter()
        .map(|(id, curve25519, ed25519)| {
            (id, json!({"device_id": id, "curve25519": curve25519, "ed25519": ed25519}))
        })
        .collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let array = Value::Array(entries.into_iter().map(|(_, entry)| entry).collect());
    let bytes = canonical::to_canonical_string(&array).unwrap_or_default();
    base64url::encode(Sha256::digest(bytes.as_bytes()))
}

/// `olm.v1` content (17.7) from a random sender key to `target_key`: a pre-key message whose
/// body is random bytes (servers see ciphertext only).
pub(super) fn olm_content(target_key: &str) -> Value {
    json!({
        "algorithm": OLM_ALGORITHM,
        "sender_key": base64url::encode(rand::random::<[u8; 32]>()),
        "ciphertext": {target_key: {"type": 0, "body": base64url::encode(rand::random::<[u8; 32]>())}},
    })
}

/// The body of a federated send (17.5) by the peer's `sender`.
pub(super) fn send_body(sender: &str, messages: Vec<Value>, device_lists: Value) -> Value {
    json!({
        "sender": sender,
        "sender_device": SENDER_DEVICE,
        "messages": messages,
        "device_lists": device_lists,
    })
}

/// `PUT /_guildhall/v1/user/to_device/{txn_id}`, signed by the peer.
pub(super) async fn send(ctx: &Context, txn_id: &str, body: &Value) -> Answer {
    let path = format!("/_guildhall/v1/user/to_device/{}", encode(txn_id));
    ctx.peer.request(&ctx.target, "PUT", &path, None, Some(body)).await
}

/// A transaction id nobody used before.
pub(super) fn txn() -> String {
    format!("e2e{:08x}{}", rand::random::<u32>(), crate::context::unique())
}

/// `POST /_guildhall/v1/user/keys/query` for `users`, signed by the peer.
pub(super) async fn query(ctx: &Context, users: &[&str]) -> Answer {
    let body = json!({"users": users});
    ctx.peer.request(&ctx.target, "POST", "/_guildhall/v1/user/keys/query", None, Some(&body)).await
}

/// `POST /_guildhall/v1/user/keys/claim` of `devices` of `user` for `claimer`, signed by the
/// peer.
pub(super) async fn claim(ctx: &Context, claimer: &str, user: &str, devices: &[&str]) -> Answer {
    let body = json!({"claimer": claimer, "one_time_keys": {user: devices}});
    ctx.peer.request(&ctx.target, "POST", "/_guildhall/v1/user/keys/claim", None, Some(&body)).await
}

/// Checks a key-query answer for `person` (17.5): their current attestation, signed by the
/// target; exactly the certificates registered; and the hash of 17.2 over them.
pub(super) async fn check_device_list(
    ctx: &Context,
    served: &Value,
    person: &Person,
) -> Result<(), String> {
    let attestation = (200, json!({"attestation": served["attestation"]}));
    super::identity::check_attestation(
        ctx,
        &attestation,
        &person.user,
        &person.identity_key(),
        false,
    )
    .await?;
    let devices = served["devices"].as_array().cloned().unwrap_or_default();
    let by_id: BTreeMap<String, Value> = devices
        .iter()
        .map(|device| (device["device_id"].as_str().unwrap_or_default().to_owned(), device.clone()))
        .collect();
    ensure!(
        devices.len() == by_id.len() && by_id == person.certificates,
        "the devices served for {} are not the {} certificates registered: {} served, ids {:?}",
        person.user,
        person.certificates.len(),
        devices.len(),
        by_id.keys().collect::<Vec<_>>()
    );
    ensure!(
        served["device_list_hash"] == person.hash(),
        "device_list_hash {} is not 17.2's hash of the devices, {}",
        served["device_list_hash"],
        person.hash()
    );
    Ok(())
}

/// Checks that an inbox holds exactly the messages with `message_ids`, in that order, as sent by
/// `sender` in `sent` (17.3's inbox item); returns their ids.
pub(super) fn check_inbox(
    inbox: &[Value],
    sender: &str,
    sent: &[&Value],
) -> Result<Vec<u64>, String> {
    let got: Vec<&Value> = inbox.iter().map(|item| &item["message_id"]).collect();
    let wanted: Vec<&Value> = sent.iter().map(|message| &message["message_id"]).collect();
    ensure!(got == wanted, "the inbox holds message ids {got:?}, expected {wanted:?}");
    let now = crate::peer::unix_now() * 1000;
    let mut ids = Vec::new();
    for (item, message) in inbox.iter().zip(sent) {
        let id = item["id"].as_u64().filter(|id| *id > 0);
        ensure!(id.is_some(), "an inbox item's id is not a positive integer: {item}");
        ensure!(
            item["sender"] == sender
                && item["sender_device"] == SENDER_DEVICE
                && item["message_type"] == OLM_MESSAGE_TYPE
                && item["content"] == message["content"],
            "the inbox item is not the message sent by {sender} {SENDER_DEVICE}: {item}"
        );
        let received = item["received_ts"].as_u64().unwrap_or(0);
        ensure!(
            received + 600_000 > now && received < now + 60_000,
            "received_ts {received} is not near now ({now}): {item}"
        );
        ids.push(id.unwrap_or(0));
    }
    ensure!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "inbox ids do not increase in the order received: {ids:?}"
    );
    Ok(ids)
}
