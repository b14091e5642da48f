//! The fold: what each sequenced event does to the guild state (spec chapter 07 §7.7).

use super::*;

impl GuildState {
    /// Folds a sequenced event into the state. The event must have been authorized (by the host)
    /// and verified (by a replica); applying is then infallible.
    pub fn apply(&mut self, sender: &UserId, origin_ts: u64, content: &EventContent) {
        match content {
            EventContent::GuildCreate(_) => {}
            EventContent::GuildDelete(_) => self.deleted = true,
            EventContent::DmInvite(invite) => {
                self.dm_invites.insert(invite.user_id.clone(), sender.clone());
            }
            EventContent::GuildUpdate(update) => {
                if let Some(name) = &update.name {
                    self.name.clone_from(name);
                }
                if let Some(description) = &update.description {
                    self.description.clone_from(description);
                }
                if let Some(icon) = &update.icon {
                    self.icon.clone_from(icon);
                }
            }
            EventContent::ServerBan(ban) => {
                self.server_bans.insert(
                    ban.server.clone(),
                    Ban { reason: ban.reason.clone(), by: sender.clone() },
                );
                self.members.retain(|user, _| user.server_name() != ban.server);
            }
            EventContent::ServerUnban(unban) => {
                self.server_bans.remove(&unban.server);
            }
            EventContent::ChannelCreate(create) => {
                let channel = Channel {
                    name: create.name.clone(),
                    kind: create.kind,
                    parent_id: create.parent_id.clone(),
                    position: create.position,
                    topic: create.topic.clone(),
                    overwrites: create
                        .overwrites
                        .iter()
                        .flatten()
                        .map(|o| {
                            let overwrite = ChannelOverwrite {
                                target_kind: o.target_kind,
                                target_id: o.target_id.clone(),
                                allow: o.allow,
                                deny: o.deny,
                            };
                            (overwrite_key(o.target_kind, &o.target_id), overwrite)
                        })
                        .collect(),
                };
                self.channels.insert(create.channel_id.clone(), channel);
            }
            EventContent::ChannelUpdate(update) => {
                if let Some(channel) = self.channels.get_mut(&update.channel_id) {
                    if let Some(name) = &update.name {
                        channel.name.clone_from(name);
                    }
                    if let Some(topic) = &update.topic {
                        channel.topic = Some(topic.clone());
                    }
                    if let Some(position) = update.position {
                        channel.position = position;
                    }
                    if let Some(parent) = &update.parent_id {
                        channel.parent_id = Some(parent.clone());
                    }
                }
            }
            EventContent::ChannelDelete(delete) => {
                self.channels.remove(&delete.channel_id);
                for channel in self.channels.values_mut() {
                    if channel.parent_id.as_ref() == Some(&delete.channel_id) {
                        channel.parent_id = None;
                    }
                }
                self.invites.retain(|_, invite| invite.channel_id != delete.channel_id);
            }
            EventContent::OverwriteSet(set) => {
                if let Some(channel) = self.channels.get_mut(&set.channel_id) {
                    let overwrite = ChannelOverwrite {
                        target_kind: set.target_kind,
                        target_id: set.target_id.clone(),
                        allow: set.allow,
                        deny: set.deny,
                    };
                    channel
                        .overwrites
                        .insert(overwrite_key(set.target_kind, &set.target_id), overwrite);
                }
            }
            EventContent::OverwriteDelete(delete) => {
                if let Some(channel) = self.channels.get_mut(&delete.channel_id) {
                    channel
                        .overwrites
                        .remove(&overwrite_key(delete.target_kind, &delete.target_id));
                }
            }
            EventContent::RoleCreate(create) => {
                let role = Role {
                    name: create.name.clone(),
                    permissions: create.permissions,
                    position: create.position,
                    color: create.color.unwrap_or(0),
                    hoist: create.hoist.unwrap_or(false),
                    mentionable: create.mentionable.unwrap_or(false),
                };
                self.roles.insert(create.role_id.clone(), role);
            }
            EventContent::RoleUpdate(update) => {
                if let Some(role) = self.roles.get_mut(&update.role_id) {
                    if let Some(name) = &update.name {
                        role.name.clone_from(name);
                    }
                    if let Some(permissions) = update.permissions {
                        role.permissions = permissions;
                    }
                    if let Some(position) = update.position {
                        role.position = position;
                    }
                    if let Some(color) = update.color {
                        role.color = color;
                    }
                    if let Some(hoist) = update.hoist {
                        role.hoist = hoist;
                    }
                    if let Some(mentionable) = update.mentionable {
                        role.mentionable = mentionable;
                    }
                }
            }
            EventContent::RoleDelete(delete) => {
                self.roles.remove(&delete.role_id);
                for member in self.members.values_mut() {
                    member.roles.retain(|role| role != &delete.role_id);
                }
                let key = overwrite_key(OverwriteKind::Role, delete.role_id.as_str());
                for channel in self.channels.values_mut() {
                    channel.overwrites.remove(&key);
                }
            }
            EventContent::MemberJoin(join) => {
                self.dm_invites.remove(sender);
                if let Some(invite) =
                    join.invite_code.as_ref().and_then(|code| self.invites.get_mut(code))
                {
                    invite.uses += 1;
                }
                let moved = join.account_move.as_ref().and_then(|proof| proof.from());
                let previous = moved.as_ref().and_then(|from| self.members.get(from).cloned());
                match (moved, previous) {
                    // A move keeps the membership: roles, nickname, join time, the member's
                    // channel overwrites and, for the owner, the guild.
                    (Some(from), Some(member)) => {
                        let old_key = overwrite_key(OverwriteKind::Member, from.as_str());
                        let new_key = overwrite_key(OverwriteKind::Member, sender.as_str());
                        for channel in self.channels.values_mut() {
                            if let Some(mut overwrite) = channel.overwrites.remove(&old_key) {
                                overwrite.target_id = sender.to_string();
                                channel.overwrites.insert(new_key.clone(), overwrite);
                            }
                        }
                        if self.owner == from {
                            self.owner = sender.clone();
                        }
                        self.members.remove(&from);
                        self.members.insert(sender.clone(), member);
                    }
                    _ => {
                        self.members.insert(
                            sender.clone(),
                            Member { nick: None, roles: Vec::new(), joined_ts: origin_ts },
                        );
                    }
                }
            }
            EventContent::MemberLeave(_) => self.remove_member(sender),
            EventContent::MemberUpdate(update) => {
                if let Some(member) = self.members.get_mut(&update.user_id) {
                    if let Some(nick) = &update.nick {
                        member.nick.clone_from(nick);
                    }
                    if let Some(roles) = &update.roles {
                        member.roles.clone_from(roles);
                        member.roles.sort();
                        member.roles.dedup();
                    }
                }
            }
            EventContent::MemberKick(kick) => self.remove_member(&kick.user_id),
            EventContent::MemberBan(ban) => {
                self.remove_member(&ban.user_id);
                self.bans.insert(
                    ban.user_id.clone(),
                    Ban { reason: ban.reason.clone(), by: sender.clone() },
                );
            }
            EventContent::MemberUnban(unban) => {
                self.bans.remove(&unban.user_id);
            }
            EventContent::InviteCreate(create) => {
                let invite = Invite {
                    channel_id: create.channel_id.clone(),
                    creator: sender.clone(),
                    created_ts: origin_ts,
                    max_age_secs: create.max_age_secs,
                    max_uses: create.max_uses,
                    uses: 0,
                };
                self.invites.insert(create.code.clone(), invite);
            }
            EventContent::InviteRevoke(revoke) => {
                self.invites.remove(&revoke.code);
            }
            EventContent::MessageCreate(_)
            | EventContent::MessageEdit(_)
            | EventContent::MessageDelete(_)
            | EventContent::ReactionAdd(_)
            | EventContent::ReactionRemove(_)
            | EventContent::PinAdd(_)
            | EventContent::PinRemove(_) => {}
        }
    }

    fn remove_member(&mut self, user: &UserId) {
        self.members.remove(user);
        let key = overwrite_key(OverwriteKind::Member, user.as_str());
        for channel in self.channels.values_mut() {
            channel.overwrites.remove(&key);
        }
    }

    /// The servers with at least one member: the destinations of the guild's events.
    pub fn member_servers(&self) -> std::collections::BTreeSet<ServerName> {
        // Deduplicated by the borrowed name: one allocation per server, not per member.
        let mut servers: BTreeMap<&str, &UserId> = BTreeMap::new();
        for user in self.members.keys() {
            servers.entry(user.server_str()).or_insert(user);
        }
        servers.into_values().map(UserId::server_name).collect()
    }
}
