//! This server's side of federation: the pieces of `guildhall-federation` wired to our storage
//! and guild service, the durable delivery queues, relaying ephemeral events, and our own key
//! document.

mod delivery;
mod ephemeral;

use std::sync::Arc;

use guildhall_federation::policy::TrustRules;
use guildhall_federation::{
    FederationClient, InboundAuth, KeyFetcher, Resolver, ResolverSettings, TrustPolicy,
};
use guildhall_identity::server_keys::ServerKeys;
use guildhall_spec::api::get_server_keys::{OldVerifyKey, ServerKeys as KeyDocument, VerifyKey};
use guildhall_spec::event::JsonObject;
use guildhall_spec::{KeyId, ServerName, base64url, signing};

pub use delivery::Delivery;
pub use ephemeral::relay_ephemeral;

use crate::config::FederationConfig;
use crate::store::Store;
use crate::trust::Trust;

/// How long peers may cache our key document.
const KEY_DOCUMENT_VALIDITY_MS: u64 = 24 * 3600 * 1000;

/// Federation services shared by handlers and the guild service.
#[derive(Debug, Clone)]
pub struct Federation {
    /// Signed requests to peers.
    pub client: FederationClient,
    /// Peers' keys.
    pub keys: KeyFetcher,
    /// Authentication of incoming requests.
    pub inbound: InboundAuth,
    /// Durable outbound queues.
    pub delivery: Delivery,
    /// Our key document, signed (served at `/_guildhall/v1/keys/server`).
    pub key_document: Arc<JsonObject>,
    /// Whether federation is on at all.
    pub enabled: bool,
    /// The live trust policy and subscribed lists.
    pub trust: Arc<Trust>,
    /// Whether `/trust/list` publishes our local entries.
    pub publish_trust_list: bool,
}

impl Federation {
    /// Builds the federation services for `server_name` from the configuration.
    pub async fn new(
        config: &FederationConfig,
        server_name: &ServerName,
        keys: &ServerKeys,
        store: Store,
    ) -> anyhow::Result<Self> {
        let resolver = Resolver::new(&ResolverSettings {
            danger_allow_plain_http: config.danger_allow_plain_http,
            danger_allow_private_addresses: config.danger_allow_private_addresses,
            dns_servers: config.dns_servers.clone(),
        });
        let fetcher_policy = Arc::new(TrustPolicy::new(TrustRules::default()));
        let fetcher = KeyFetcher::new(resolver.clone(), Arc::clone(&fetcher_policy));
        let key_document = Arc::new(key_document(server_name, keys)?);
        let typed: KeyDocument =
            serde_json::from_value(serde_json::Value::Object((*key_document).clone()))?;
        fetcher.insert_local(typed, (*key_document).clone()).await;
        let parse_all =
            |names: &[String]| -> anyhow::Result<std::collections::BTreeSet<ServerName>> {
                names
                    .iter()
                    .map(|name| ServerName::parse(name).map_err(|e| anyhow::anyhow!("{name}: {e}")))
                    .collect()
            };
        let configured = TrustRules::from_lists(
            config.mode,
            parse_all(&config.allow)?,
            parse_all(&config.deny)?,
        );
        let mut authorities = vec![server_name.to_string()];
        authorities.extend(config.public_addresses.iter().cloned());
        // The stored changes apply at once; with federation switched off, the policy is closed
        // both ways.
        let policy = fetcher_policy;
        let trust = Arc::new(
            Trust::new(
                store.clone(),
                Arc::clone(&policy),
                fetcher.clone(),
                configured,
                config.enabled,
                resolver.clone(),
            )
            .await?,
        );
        let client =
            FederationClient::new(resolver.clone(), keys.current.clone(), Arc::clone(&policy));
        let inbound = InboundAuth::new(authorities, fetcher.clone(), policy);
        let lease = std::time::Duration::from_secs(config.delivery_lease_secs.max(1));
        let delivery = Delivery::new(store, client.clone(), lease);
        Ok(Self {
            client,
            keys: fetcher,
            inbound,
            delivery,
            key_document,
            enabled: config.enabled,
            trust,
            publish_trust_list: config.publish_trust_list,
        })
    }
}

/// Our self-signed key document: the current key, retired keys as `old_verify_keys`.
pub fn key_document(server_name: &ServerName, keys: &ServerKeys) -> anyhow::Result<JsonObject> {
    let mut document = KeyDocument {
        server_name: server_name.clone(),
        verify_keys: [(
            keys.current.key_id().clone(),
            VerifyKey { key: base64url::encode(keys.current.verifying_key().as_bytes()) },
        )]
        .into(),
        old_verify_keys: Default::default(),
        valid_until_ts: crate::store::now_ms() + KEY_DOCUMENT_VALIDITY_MS,
        signatures: Default::default(),
    };
    for retired in &keys.retired {
        let key_id = KeyId::parse(&retired.key_id)?;
        document.old_verify_keys.insert(
            key_id,
            OldVerifyKey { key: retired.public_key.clone(), expired_ts: retired.expired_ts },
        );
    }
    let serde_json::Value::Object(mut object) = serde_json::to_value(&document)? else {
        anyhow::bail!("key document is not an object");
    };
    object.remove("signatures");
    signing::sign_json(&mut object, &keys.current)?;
    Ok(object)
}
