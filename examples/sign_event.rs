//! Signs an event the way a remote member's server and the guild's host do, then verifies it
//! as a third server would, using nothing but `guildhall-spec`.
//!
//! Run: `cargo run -p guildhall-examples --example sign_event`

use guildhall_spec::event::{self, ChainPosition, Proposal};
use guildhall_spec::{GuildId, KeyId, PublicKeyMap, ServerName, ServerSigningKey, TxnId, UserId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = ServerSigningKey::from_seed(
        ServerName::parse("host.example")?,
        KeyId::parse("ed25519:h1")?,
        &[1; 32],
    );
    let origin = ServerSigningKey::from_seed(
        ServerName::parse("origin.example")?,
        KeyId::parse("ed25519:k1")?,
        &[2; 32],
    );
    let guild = GuildId::parse("!lobby:host.example")?;

    // 1. The host creates the guild: seq 1, signed once by the host for both roles.
    let owner = UserId::parse("@owner:host.example")?;
    let create = Proposal {
        guild_id: guild.clone(),
        event_type: "guild.create".into(),
        origin: owner.server_name(),
        sender: owner.clone(),
        origin_ts: 1_700_000_000_000,
        txn_id: TxnId::parse("create")?,
        content: serde_json::json!({"name": "Lobby", "kind": "guild", "owner": owner})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let (create_id, _) = event::sequence(create.sign(&host)?, 1, None, &host)?;

    // 2. origin.example proposes a message from its user and signs the proposal.
    let alice = UserId::parse("@alice:origin.example")?;
    let message = Proposal {
        guild_id: guild,
        event_type: "message.create".into(),
        origin: alice.server_name(),
        sender: alice,
        origin_ts: 1_700_000_000_500,
        txn_id: TxnId::parse("m1")?,
        content: serde_json::json!({"channel_id": "general", "body": "hello from origin.example"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let proposal = message.sign(&origin)?;

    // 3. The host sequences it at seq 2 after the guild.create and signs the full envelope.
    let (event_id, sequenced) = event::sequence(proposal, 2, Some(&create_id), &host)?;
    println!("{}", serde_json::to_string_pretty(&sequenced)?);

    // 4. Any replica verifies both signatures, the content hash and the chain.
    let mut keys = PublicKeyMap::new();
    keys.insert(host.server_name().clone(), host.key_id().clone(), host.verifying_key());
    keys.insert(origin.server_name().clone(), origin.key_id().clone(), origin.verifying_key());
    let verified =
        event::verify_event(&sequenced, &keys, ChainPosition::Follows(Some(&create_id)))?;
    assert_eq!(verified.event_id, event_id);
    println!("verified {event_id} at seq 2 from {}", verified.envelope.sender);
    Ok(())
}
