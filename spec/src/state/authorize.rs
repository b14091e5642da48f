//! The host's rules: whether a sender may append an event at the head of the log
//! (spec chapters 08 and 09).

use super::*;

/// Why a proposal is refused, with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    /// The stable rejection.
    pub rejection: Rejection,
    /// The explanation.
    pub message: String,
}

fn reject<T>(rejection: Rejection, message: impl Into<String>) -> Result<T, AuthError> {
    Err(AuthError { rejection, message: message.into() })
}

fn invalid<T>(message: impl Into<String>) -> Result<T, AuthError> {
    reject(Rejection::InvalidEvent, message)
}

/// Checks that a field holds a media id ([`MediaId`](crate::MediaId), spec 19.1).
fn check_media_id(field: &str, text: &str) -> Result<(), AuthError> {
    match crate::MediaId::parse(text) {
        Ok(_) => Ok(()),
        Err(_) => invalid(format!("{field}: {text:.64} is not a media id")),
    }
}

/// Checks *text*(1..max) (spec 08): not blank, no control characters but tab and newline, at
/// most `max` characters.
fn check_text(field: &str, text: &str, max: usize) -> Result<(), AuthError> {
    if text.trim().is_empty() {
        return invalid(format!("{field} must not be empty"));
    }
    check_optional_text(field, Some(text), max)
}

/// Checks *line*(1..max) (spec 08): like *text*, but on one line: no control characters at all.
fn check_line(field: &str, text: &str, max: usize) -> Result<(), AuthError> {
    if text.chars().any(char::is_control) {
        return invalid(format!("{field} must be one line without control characters"));
    }
    check_text(field, text, max)
}

/// Checks *text*(0..max) when present: no control characters but tab and newline, at most
/// `max` characters.
fn check_optional_text(field: &str, text: Option<&str>, max: usize) -> Result<(), AuthError> {
    let Some(text) = text else { return Ok(()) };
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return invalid(format!("{field} must not contain control characters"));
    }
    if text.chars().count() > max {
        return invalid(format!("{field} is longer than {max} characters"));
    }
    Ok(())
}

impl GuildState {
    fn require(&self, sender: &UserId, needed: Permissions) -> Result<(), AuthError> {
        if self.base_permissions(sender).contains(needed) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, format!("requires {needed:?}"))
        }
    }

    fn require_in(
        &self,
        sender: &UserId,
        channel_id: &ChannelId,
        needed: Permissions,
    ) -> Result<(), AuthError> {
        if !self.channels.contains_key(channel_id) {
            return invalid(format!("unknown channel {channel_id}"));
        }
        if self.channel_permissions(sender, channel_id).contains(needed) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, format!("requires {needed:?} in {channel_id}"))
        }
    }

    /// The gate every proposal passes first, and a retried proposal passes again before the
    /// host repeats its answer (spec 11.3): the guild exists, and neither the sender's server
    /// nor the sender is banned.
    pub fn admits(&self, sender: &UserId) -> Result<(), AuthError> {
        if self.deleted {
            return reject(Rejection::UnknownGuild, "the guild was deleted");
        }
        if self.server_bans.contains_key(&sender.server_name()) {
            return reject(
                Rejection::ServerBanned,
                format!("{} is banned from this guild", sender.server_name()),
            );
        }
        if self.bans.contains_key(sender) {
            return reject(Rejection::Banned, "you are banned from this guild");
        }
        Ok(())
    }

    /// Decides whether `sender` may append `content` at the head of the log, at time `now_ms`.
    /// `message` describes the message the event acts on, for edits, deletes, reactions and pins.
    pub fn authorize(
        &self,
        sender: &UserId,
        content: &EventContent,
        now_ms: u64,
        message: Option<&MessageFacts>,
    ) -> Result<(), AuthError> {
        self.admits(sender)?;
        if let EventContent::MemberJoin(join) = content {
            if let Some(proof) = &join.account_move {
                return self.authorize_move(sender, join.invite_code.as_ref(), proof);
            }
            return self.authorize_join(sender, join.invite_code.as_ref(), now_ms);
        }
        if !self.members.contains_key(sender) {
            return reject(Rejection::NotMember, "not a member of this guild");
        }
        let allowed_in_kind = match self.kind {
            GuildKind::Dm => matches!(
                content,
                EventContent::GuildUpdate(_)
                    | EventContent::GuildDelete(_)
                    | EventContent::DmInvite(_)
                    | EventContent::ChannelCreate(_)
                    | EventContent::MemberLeave(_)
                    | EventContent::MemberKick(_)
                    | EventContent::MessageCreate(_)
                    | EventContent::MessageEdit(_)
                    | EventContent::MessageDelete(_)
                    | EventContent::ReactionAdd(_)
                    | EventContent::ReactionRemove(_)
                    | EventContent::PinAdd(_)
                    | EventContent::PinRemove(_)
            ),
            GuildKind::Guild => !matches!(content, EventContent::DmInvite(_)),
        };
        if !allowed_in_kind {
            return invalid(format!(
                "{} is not allowed in this kind of guild",
                content.event_type()
            ));
        }
        match content {
            EventContent::GuildCreate(_) => invalid("guild.create is only valid at seq 1"),
            EventContent::GuildUpdate(update) => {
                self.require(sender, Permissions::MANAGE_GUILD)?;
                if let Some(name) = &update.name {
                    check_line("name", name, MAX_NAME_CHARS)?;
                }
                if let Some(Some(icon)) = &update.icon {
                    check_media_id("icon", icon)?;
                }
                check_optional_text(
                    "description",
                    update.description.as_ref().and_then(Option::as_deref),
                    MAX_TOPIC_CHARS,
                )
            }
            EventContent::GuildDelete(_) => {
                if sender == &self.owner {
                    Ok(())
                } else {
                    reject(Rejection::MissingPermission, "only the owner can delete the guild")
                }
            }
            EventContent::DmInvite(invite) => {
                if sender != &self.owner {
                    return reject(
                        Rejection::MissingPermission,
                        "only the conversation's creator can invite",
                    );
                }
                if self.members.contains_key(&invite.user_id)
                    || self.dm_invites.contains_key(&invite.user_id)
                {
                    return invalid("already a member or invited");
                }
                if self.members.len() + self.dm_invites.len() >= MAX_DM_MEMBERS {
                    return invalid(format!(
                        "a direct message has at most {MAX_DM_MEMBERS} members"
                    ));
                }
                Ok(())
            }
            EventContent::ServerBan(ban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                if ban.server == self.guild_id.host() || ban.server == self.owner.server_name() {
                    return invalid("neither the host nor the owner's server can be banned");
                }
                for member in
                    self.members.keys().filter(|member| member.server_name() == ban.server)
                {
                    self.require_outranks_member(sender, member)?;
                }
                check_optional_text("reason", ban.reason.as_deref(), MAX_REASON_CHARS)
            }
            EventContent::ServerUnban(unban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                if self.server_bans.contains_key(&unban.server) {
                    Ok(())
                } else {
                    invalid("server is not banned")
                }
            }
            EventContent::ChannelCreate(create) => {
                self.require(sender, Permissions::MANAGE_CHANNELS)?;
                self.check_channel_create(create)?;
                self.check_initial_overwrites(sender, create.overwrites.as_deref().unwrap_or(&[]))
            }
            EventContent::ChannelUpdate(update) => {
                self.require(sender, Permissions::MANAGE_CHANNELS)?;
                self.check_channel_update(update)
            }
            EventContent::ChannelDelete(channel) => {
                self.require(sender, Permissions::MANAGE_CHANNELS)?;
                if self.channels.contains_key(&channel.channel_id) {
                    Ok(())
                } else {
                    invalid("unknown channel")
                }
            }
            EventContent::OverwriteSet(set) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                if !self.channels.contains_key(&set.channel_id) {
                    return invalid("unknown channel");
                }
                self.check_overwrite_target(set.target_kind, &set.target_id)?;
                // Nobody may grant or deny through an overwrite bits they do not hold themselves.
                let own = self.base_permissions(sender);
                if !own.contains(set.allow) || !own.contains(set.deny) {
                    return reject(
                        Rejection::MissingPermission,
                        "an overwrite may only use permissions you have",
                    );
                }
                Ok(())
            }
            EventContent::OverwriteDelete(delete) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                let key = overwrite_key(delete.target_kind, &delete.target_id);
                match self.channels.get(&delete.channel_id) {
                    Some(channel) if channel.overwrites.contains_key(&key) => Ok(()),
                    Some(_) => invalid("no such overwrite"),
                    None => invalid("unknown channel"),
                }
            }
            EventContent::RoleCreate(create) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                self.check_role_create(sender, create)
            }
            EventContent::RoleUpdate(update) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                self.check_role_update(sender, update)
            }
            EventContent::RoleDelete(role) => {
                self.require(sender, Permissions::MANAGE_ROLES)?;
                let Some(existing) = self.roles.get(&role.role_id) else {
                    return invalid("unknown role");
                };
                if role.role_id.is_everyone() {
                    return invalid("@everyone cannot be deleted");
                }
                self.require_outranks_role(sender, existing.position)
            }
            EventContent::MemberJoin(_) => Ok(()),
            EventContent::MemberLeave(_) => {
                if sender == &self.owner {
                    invalid("the owner cannot leave; transfer or delete the guild")
                } else {
                    Ok(())
                }
            }
            EventContent::MemberUpdate(update) => self.authorize_member_update(sender, update),
            EventContent::MemberKick(kick) => {
                self.require(sender, Permissions::KICK_MEMBERS)?;
                check_optional_text("reason", kick.reason.as_deref(), MAX_REASON_CHARS)?;
                if !self.members.contains_key(&kick.user_id) {
                    return invalid("not a member");
                }
                self.require_outranks_member(sender, &kick.user_id)
            }
            EventContent::MemberBan(ban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                check_optional_text("reason", ban.reason.as_deref(), MAX_REASON_CHARS)?;
                if self.bans.contains_key(&ban.user_id) {
                    return invalid("already banned");
                }
                if ban.user_id == self.owner {
                    return reject(Rejection::MissingPermission, "the owner cannot be banned");
                }
                if self.members.contains_key(&ban.user_id) || ban.user_id == self.owner {
                    self.require_outranks_member(sender, &ban.user_id)?;
                }
                Ok(())
            }
            EventContent::MemberUnban(unban) => {
                self.require(sender, Permissions::BAN_MEMBERS)?;
                if self.bans.contains_key(&unban.user_id) { Ok(()) } else { invalid("not banned") }
            }
            EventContent::InviteCreate(invite) => {
                self.require_in(sender, &invite.channel_id, Permissions::CREATE_INSTANT_INVITE)?;
                if invite.max_age_secs.is_some_and(|age| age == 0 || age > MAX_INVITE_AGE_SECS) {
                    return invalid(format!("max_age_secs must be 1 to {MAX_INVITE_AGE_SECS}"));
                }
                if invite.max_uses.is_some_and(|uses| uses == 0 || uses > MAX_INVITE_USES) {
                    return invalid(format!("max_uses must be 1 to {MAX_INVITE_USES}"));
                }
                if self
                    .channels
                    .get(&invite.channel_id)
                    .is_some_and(|c| c.kind == ChannelKind::Category)
                {
                    return invalid("invites lead to text or voice channels");
                }
                if self.invites.contains_key(&invite.code) {
                    invalid("invite code already in use")
                } else {
                    Ok(())
                }
            }
            EventContent::InviteRevoke(revoke) => {
                let Some(invite) = self.invites.get(&revoke.code) else {
                    return invalid("unknown invite");
                };
                if &invite.creator == sender {
                    Ok(())
                } else {
                    self.require(sender, Permissions::MANAGE_GUILD)
                }
            }
            EventContent::MessageCreate(create) => {
                self.require_in(
                    sender,
                    &create.channel_id,
                    Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES,
                )?;
                if self
                    .channels
                    .get(&create.channel_id)
                    .is_some_and(|c| c.kind != ChannelKind::Text)
                {
                    return invalid("messages can only be sent in text channels");
                }
                if let Some(attachments) = &create.attachments {
                    self.require_in(sender, &create.channel_id, Permissions::ATTACH_FILES)?;
                    if attachments.len() > MAX_ATTACHMENTS {
                        return invalid(format!(
                            "a message has at most {MAX_ATTACHMENTS} attachments"
                        ));
                    }
                    for (i, attachment) in attachments.iter().enumerate() {
                        check_media_id("attachments", attachment)?;
                        if attachments[..i].contains(attachment) {
                            return invalid("an attachment is listed twice");
                        }
                    }
                }
                if create.mentions.as_ref().is_some_and(|m| m.len() > MAX_MENTIONS) {
                    return invalid(format!("a message mentions at most {MAX_MENTIONS} users"));
                }
                check_text("body", &create.body, MAX_MESSAGE_CHARS)
            }
            EventContent::MessageEdit(edit) => {
                let message = live_message(message, &edit.channel_id)?;
                if &message.author != sender {
                    return reject(
                        Rejection::MissingPermission,
                        "only the author can edit a message",
                    );
                }
                self.require_in(sender, &edit.channel_id, Permissions::VIEW_CHANNEL)?;
                check_text("body", &edit.body, MAX_MESSAGE_CHARS)
            }
            EventContent::MessageDelete(delete) => {
                let message = live_message(message, &delete.channel_id)?;
                if &message.author == sender {
                    Ok(())
                } else {
                    self.require_in(
                        sender,
                        &delete.channel_id,
                        Permissions::VIEW_CHANNEL | Permissions::MANAGE_MESSAGES,
                    )
                }
            }
            EventContent::ReactionAdd(reaction) => {
                live_message(message, &reaction.channel_id)?;
                check_line("emoji", &reaction.emoji, MAX_EMOJI_CHARS)?;
                self.require_in(
                    sender,
                    &reaction.channel_id,
                    Permissions::VIEW_CHANNEL
                        | Permissions::READ_MESSAGE_HISTORY
                        | Permissions::ADD_REACTIONS,
                )
            }
            EventContent::ReactionRemove(reaction) => {
                live_message(message, &reaction.channel_id)?;
                self.require_in(sender, &reaction.channel_id, Permissions::VIEW_CHANNEL)
            }
            EventContent::PinAdd(pin) | EventContent::PinRemove(pin) => {
                live_message(message, &pin.channel_id)?;
                self.require_in(
                    sender,
                    &pin.channel_id,
                    Permissions::VIEW_CHANNEL | Permissions::MANAGE_MESSAGES,
                )
            }
        }
    }

    fn authorize_join(
        &self,
        sender: &UserId,
        code: Option<&InviteCode>,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        if self.members.contains_key(sender) {
            return invalid("already a member");
        }
        if self.kind == GuildKind::Dm {
            if code.is_some() {
                return invalid("direct messages have no invites");
            }
            return if self.dm_invites.contains_key(sender) {
                Ok(())
            } else {
                reject(
                    Rejection::MissingPermission,
                    "direct messages are joined by invitation only",
                )
            };
        }
        let Some(code) = code else { return invalid("an invite code is required") };
        match self.invites.get(code) {
            Some(invite) if invite.is_usable(now_ms) => Ok(()),
            Some(_) => invalid("the invite has expired or is used up"),
            None => invalid("unknown invite"),
        }
    }

    /// A join that takes over the membership of the sender's previous account. The host has
    /// checked the move's signatures (spec 16.5); here only its parties count.
    fn authorize_move(
        &self,
        sender: &UserId,
        code: Option<&InviteCode>,
        proof: &crate::content::MoveProof,
    ) -> Result<(), AuthError> {
        if self.members.contains_key(sender) {
            return invalid("already a member");
        }
        if code.is_some() {
            return invalid("an account move uses no invite");
        }
        let (Some(from), Some(to)) = (proof.from(), proof.to()) else {
            return invalid("the move names no valid accounts");
        };
        if &to != sender || &from == sender {
            return invalid("the move is not to the sender");
        }
        if !self.members.contains_key(&from) {
            return invalid("the account moved from is not a member");
        }
        Ok(())
    }

    fn authorize_member_update(
        &self,
        sender: &UserId,
        update: &crate::content::MemberUpdate,
    ) -> Result<(), AuthError> {
        let Some(target) = self.members.get(&update.user_id) else {
            return invalid("not a member");
        };
        if let Some(nick) = &update.nick {
            if let Some(nick) = nick {
                check_line("nick", nick, MAX_NICK_CHARS)?;
            }
            if sender == &update.user_id {
                self.require(sender, Permissions::CHANGE_NICKNAME)?;
            } else {
                self.require(sender, Permissions::MANAGE_NICKNAMES)?;
                self.require_outranks_member(sender, &update.user_id)?;
            }
        }
        if let Some(roles) = &update.roles {
            self.require(sender, Permissions::MANAGE_ROLES)?;
            if sender != &update.user_id {
                self.require_outranks_member(sender, &update.user_id)?;
            }
            // Every role added or removed must rank below the actor.
            let mut changed: Vec<&RoleId> =
                roles.iter().filter(|r| !target.roles.contains(r)).collect();
            changed.extend(target.roles.iter().filter(|r| !roles.contains(r)));
            for role_id in changed {
                let Some(role) = self.roles.get(role_id) else {
                    return invalid(format!("unknown role {role_id}"));
                };
                if role_id.is_everyone() {
                    return invalid("@everyone cannot be assigned");
                }
                self.require_outranks_role(sender, role.position)?;
            }
        }
        Ok(())
    }

    fn require_outranks_member(&self, actor: &UserId, target: &UserId) -> Result<(), AuthError> {
        if self.outranks_member(actor, target) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, "the target's highest role is not below yours")
        }
    }

    fn require_outranks_role(&self, actor: &UserId, position: i64) -> Result<(), AuthError> {
        if self.outranks_position(actor, position) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, "the role is not below your highest role")
        }
    }

    fn check_channel_create(&self, create: &ChannelCreate) -> Result<(), AuthError> {
        check_line("name", &create.name, MAX_NAME_CHARS)?;
        if self.channels.len() >= MAX_CHANNELS {
            return invalid(format!("a guild has at most {MAX_CHANNELS} channels"));
        }
        check_optional_text("topic", create.topic.as_deref(), MAX_TOPIC_CHARS)?;
        if self.channels.contains_key(&create.channel_id) {
            return invalid("channel id already in use");
        }
        self.check_parent(create.kind, create.parent_id.as_ref())
    }

    fn check_channel_update(&self, update: &ChannelUpdate) -> Result<(), AuthError> {
        let Some(channel) = self.channels.get(&update.channel_id) else {
            return invalid("unknown channel");
        };
        if let Some(name) = &update.name {
            check_line("name", name, MAX_NAME_CHARS)?;
        }
        check_optional_text("topic", update.topic.as_deref(), MAX_TOPIC_CHARS)?;
        if update.parent_id.as_ref() == Some(&update.channel_id) {
            return invalid("a channel cannot be its own parent");
        }
        self.check_parent(channel.kind, update.parent_id.as_ref())
    }

    fn check_parent(&self, kind: ChannelKind, parent: Option<&ChannelId>) -> Result<(), AuthError> {
        let Some(parent) = parent else { return Ok(()) };
        if kind == ChannelKind::Category {
            return invalid("categories cannot be nested");
        }
        match self.channels.get(parent) {
            Some(channel) if channel.kind == ChannelKind::Category => Ok(()),
            Some(_) => invalid("parent is not a category"),
            None => invalid("unknown parent channel"),
        }
    }

    /// A new channel's overwrites pass the checks of `channel.overwrite.set`, each target once.
    fn check_initial_overwrites(
        &self,
        sender: &UserId,
        overwrites: &[InitialOverwrite],
    ) -> Result<(), AuthError> {
        if overwrites.is_empty() {
            return Ok(());
        }
        self.require(sender, Permissions::MANAGE_ROLES)?;
        if overwrites.len() > MAX_OVERWRITES {
            return invalid(format!("a channel has at most {MAX_OVERWRITES} overwrites"));
        }
        let own = self.base_permissions(sender);
        let mut targets = BTreeSet::new();
        for overwrite in overwrites {
            self.check_overwrite_target(overwrite.target_kind, &overwrite.target_id)?;
            if !targets.insert(overwrite_key(overwrite.target_kind, &overwrite.target_id)) {
                return invalid("an overwrite target appears twice");
            }
            if !own.contains(overwrite.allow) || !own.contains(overwrite.deny) {
                return reject(
                    Rejection::MissingPermission,
                    "an overwrite may only use permissions you have",
                );
            }
        }
        Ok(())
    }

    fn check_overwrite_target(&self, kind: OverwriteKind, target: &str) -> Result<(), AuthError> {
        let known = match kind {
            OverwriteKind::Role => {
                RoleId::parse(target).is_ok_and(|id| self.roles.contains_key(&id))
            }
            OverwriteKind::Member => {
                UserId::parse(target).is_ok_and(|id| self.members.contains_key(&id))
            }
        };
        if known { Ok(()) } else { invalid("unknown overwrite target") }
    }

    fn check_role_create(&self, sender: &UserId, create: &RoleCreate) -> Result<(), AuthError> {
        check_line("name", &create.name, MAX_NAME_CHARS)?;
        if self.roles.len() >= MAX_ROLES {
            return invalid(format!("a guild has at most {MAX_ROLES} roles"));
        }
        if self.roles.contains_key(&create.role_id) {
            return invalid("role id already in use");
        }
        if create.position < 1 {
            return invalid("role positions start at 1 (@everyone is 0)");
        }
        self.require_outranks_role(sender, create.position)?;
        self.check_grants(sender, create.permissions)
    }

    fn check_role_update(&self, sender: &UserId, update: &RoleUpdate) -> Result<(), AuthError> {
        let Some(role) = self.roles.get(&update.role_id) else { return invalid("unknown role") };
        if let Some(name) = &update.name {
            check_line("name", name, MAX_NAME_CHARS)?;
        }
        if !update.role_id.is_everyone() {
            self.require_outranks_role(sender, role.position)?;
        } else if update.position.is_some_and(|p| p != 0) {
            return invalid("@everyone stays at position 0");
        }
        if let Some(position) = update.position {
            if !update.role_id.is_everyone() && position < 1 {
                return invalid("role positions start at 1 (@everyone is 0)");
            }
            self.require_outranks_role(sender, position)?;
        }
        match update.permissions {
            Some(permissions) => self.check_grants(sender, permissions),
            None => Ok(()),
        }
    }

    /// Nobody may give a role permissions they do not hold themselves.
    fn check_grants(&self, sender: &UserId, permissions: Permissions) -> Result<(), AuthError> {
        if self.base_permissions(sender).contains(permissions) {
            Ok(())
        } else {
            reject(Rejection::MissingPermission, "a role may only grant permissions you have")
        }
    }
}

fn live_message<'a>(
    message: Option<&'a MessageFacts>,
    channel_id: &ChannelId,
) -> Result<&'a MessageFacts, AuthError> {
    match message {
        Some(message) if message.deleted => invalid("the message was deleted"),
        Some(message) if &message.channel_id == channel_id => Ok(message),
        _ => invalid("unknown message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(checker: fn(&str, &str, usize) -> Result<(), AuthError>, input: &str, ok: bool) {
        assert_eq!(checker("field", input, 5).is_ok(), ok, "{input:?}");
    }

    #[test]
    fn lines_and_texts_follow_the_spec_grammar() {
        check(check_line, "name", true);
        check(check_line, "two\nlines", false);
        check(check_line, "tab\there", false);
        check(check_line, " \u{3000} ", false);
        check(check_line, "sixsix", false);
        check(check_line, "bell\u{7}", false);
        check(check_line, "c1\u{85}", false);
        check(check_text, "a\nb\tc", true);
        check(check_text, "\u{1b}[2J", false);
        check(check_text, "   ", false);
        let optional = |input: &str| check_optional_text("topic", Some(input), 5).is_ok();
        assert!(optional(""), "an empty topic is fine");
        assert!(!optional("\u{0}"), "but not a control character");
    }
}
