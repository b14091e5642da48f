//! Relaying ephemeral events between servers: typing goes through the guild's host, which
//! passes it to the servers whose users may view the channel; presence goes from a user's home
//! server to every server it shares a guild with. Nothing here is queued or retried.

use std::collections::BTreeSet;

use guildhall_spec::ServerName;
use serde_json::json;

use crate::AppState;
use crate::bus::BusMessage;
use crate::guilds::server_can_view;

/// Forwards local bus messages that other servers should hear about, until the bus closes.
pub async fn relay_ephemeral(state: AppState) {
    let mut bus = state.bus.subscribe();
    let me = state.server_name.clone();
    loop {
        let message = match bus.recv().await {
            Ok(message) => message,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        match message {
            BusMessage::Typing { guild_id, channel_id, user_id, ts: _, state: guild } => {
                let edu = json!({"type": "typing", "content": {"guild_id": guild_id, "channel_id": channel_id, "user_id": user_id, "active": true}});
                let destinations: BTreeSet<ServerName> = if guild_id.host() == me {
                    // As host: to every other server whose users may see the channel, except the typist's.
                    guild
                        .member_servers()
                        .into_iter()
                        .filter(|server| server != &me && server != &user_id.server_name())
                        .filter(|server| server_can_view(&guild, server, &channel_id))
                        .collect()
                } else if user_id.server_name() == me {
                    // A local user typing in a remote guild: tell the host.
                    [guild_id.host()].into()
                } else {
                    BTreeSet::new()
                };
                for destination in destinations {
                    state.federation.delivery.send_ephemeral(destination, vec![edu.clone()]);
                }
            }
            BusMessage::VoiceState { voice_state, state: guild, from } => {
                let user_server = voice_state.user_id.server_name();
                let destinations: BTreeSet<ServerName> = if voice_state.guild_id.host() == me {
                    // As host: to every other member server, except the one it came from. A
                    // state the host made itself (enforcement, its LiveKit's reports, a
                    // moderator's action, a correction) goes to the user's server too, even
                    // when it is no longer a member server (a kicked or banned user's).
                    let mut destinations: BTreeSet<ServerName> = guild
                        .member_servers()
                        .into_iter()
                        .filter(|server| server != &me && server != &from)
                        .collect();
                    if from == me && user_server != me {
                        destinations.insert(user_server);
                    }
                    destinations
                } else if user_server == me && from == me {
                    [voice_state.guild_id.host()].into()
                } else {
                    BTreeSet::new()
                };
                let edu = json!({"type": "voice_state", "content": voice_state});
                for destination in destinations {
                    state.federation.delivery.send_ephemeral(destination, vec![edu.clone()]);
                }
            }
            BusMessage::Presence { user_id, status } if user_id.server_name() == me => {
                let edu = json!({"type": "presence", "content": {"user_id": user_id, "status": status, "last_active_ts": crate::store::now_ms()}});
                let mut destinations = BTreeSet::new();
                for guild_id in state.store.guilds_of(&user_id).await.unwrap_or_default() {
                    if let Ok(guild) = state.guilds.state(&guild_id).await {
                        destinations.extend(guild.member_servers());
                    }
                }
                destinations.remove(&me);
                for destination in destinations {
                    state.federation.delivery.send_ephemeral(destination, vec![edu.clone()]);
                }
            }
            _ => {}
        }
    }
}
