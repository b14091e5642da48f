// What the client knows: guilds as the gateway and the API show them to this user, the
// messages of the channels it has opened, unread counts and who is typing. Views subscribe to
// changes by topic ('guilds', 'channel:<id>', 'typing:<id>', ...).

/** Permission bits (spec 09; decimal strings on the wire). */
export const P = {
  CREATE_INSTANT_INVITE: 1n << 0n,
  KICK_MEMBERS: 1n << 1n,
  ADMINISTRATOR: 1n << 3n,
  MANAGE_CHANNELS: 1n << 4n,
  MANAGE_GUILD: 1n << 5n,
  ADD_REACTIONS: 1n << 6n,
  VIEW_CHANNEL: 1n << 10n,
  SEND_MESSAGES: 1n << 11n,
  MANAGE_MESSAGES: 1n << 13n,
  READ_MESSAGE_HISTORY: 1n << 16n,
};

/** Whether a permission set (a decimal string) grants `bit`. */
export function allows(permissions, bit) {
  const set = BigInt(permissions ?? '0');
  return (set & P.ADMINISTRATOR) !== 0n || (set & bit) !== 0n;
}

/** `@alice:server.example` → `alice`; the server too when it is not `home`. */
export function shortName(userId, home) {
  const match = /^@([^:]+):(.+)$/.exec(userId ?? '');
  if (!match) return userId ?? '?';
  return match[2] === home ? match[1] : `${match[1]} (${match[2]})`;
}

/** The server part of a user or guild id. */
export function serverOf(id) {
  return id.slice(id.indexOf(':') + 1);
}

export class Model {
  constructor() {
    this.me = null;
    this.guilds = new Map();
    this.messages = new Map();
    this.unread = new Map();
    this.typing = new Map();
    this.presence = new Map();
    this.listeners = new Map();
  }

  get home() {
    return this.me ? serverOf(this.me.id) : location.host;
  }

  on(topic, listener) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic).add(listener);
    return () => this.listeners.get(topic)?.delete(listener);
  }

  emit(topic, detail) {
    for (const listener of this.listeners.get(topic) ?? []) listener(detail);
  }

  /** A fresh READY: everything known is replaced by what it says. */
  ready(data) {
    this.me = data.user;
    this.guilds = new Map(data.guilds.map((guild) => [guild.id, normalise(guild)]));
    // History may have moved on while disconnected: views reload what they show.
    this.messages.clear();
    this.emit('guilds');
  }

  putGuild(guild) {
    const known = this.guilds.get(guild.id);
    const merged = normalise({ ...known, ...guild, members: guild.members ?? known?.members ?? [] });
    this.guilds.set(guild.id, merged);
    this.emit('guilds');
    return merged;
  }

  dropGuild(guildId) {
    this.guilds.delete(guildId);
    this.emit('guilds');
  }

  channel(channelId) {
    for (const guild of this.guilds.values()) {
      const channel = guild.channels.find((c) => c.id === channelId);
      if (channel) return channel;
    }
    return null;
  }

  putChannel(channel) {
    const guild = this.guilds.get(channel.guild_id);
    if (!guild) return;
    guild.channels = guild.channels.filter((c) => c.id !== channel.id).concat([channel]);
    sortChannels(guild.channels);
    this.emit('guilds');
  }

  dropChannel(guildId, channelId) {
    const guild = this.guilds.get(guildId);
    if (!guild) return;
    guild.channels = guild.channels.filter((c) => c.id !== channelId);
    this.emit('guilds');
  }

  putMember(member) {
    const guild = this.guilds.get(member.guild_id);
    if (!guild) return;
    const index = guild.members.findIndex((m) => m.user_id === member.user_id);
    if (index >= 0) guild.members[index] = member;
    else {
      guild.members.push(member);
      guild.member_count = (guild.member_count ?? 0) + 1;
    }
    this.emit(`members:${member.guild_id}`);
  }

  dropMember(guildId, userId) {
    const guild = this.guilds.get(guildId);
    if (!guild) return;
    const before = guild.members.length;
    guild.members = guild.members.filter((m) => m.user_id !== userId);
    if (guild.members.length < before) guild.member_count = Math.max(0, guild.member_count - 1);
    this.emit(`members:${guildId}`);
  }

  /** The name shown for a user in a guild: their nickname there, else their user name. */
  nameOf(userId, guildId) {
    const member = this.guilds.get(guildId)?.members.find((m) => m.user_id === userId);
    return member?.nick || shortName(userId, this.home);
  }

  /** The loaded history of a channel, oldest first. */
  history(channelId) {
    if (!this.messages.has(channelId)) {
      this.messages.set(channelId, { list: [], loaded: false, loading: false, complete: false });
    }
    return this.messages.get(channelId);
  }

  /** Older messages (a page, newest first as the API sends them) before what is loaded. */
  prepend(channelId, page, complete) {
    const history = this.history(channelId);
    const known = new Set(history.list.map((m) => m.id));
    const older = page.filter((m) => !known.has(m.id)).reverse();
    history.list = older.concat(history.list);
    history.loaded = true;
    history.complete = complete;
    this.emit(`channel:${channelId}`, { kind: 'prepend', count: older.length });
  }

  messageCreated(message, viewing) {
    const history = this.messages.get(message.channel_id);
    // While the first page is on its way a message is kept too: the page may predate it.
    const tracked = history?.loaded || history?.loading;
    if (tracked && !history.list.some((m) => m.id === message.id)) {
      history.list.push(message);
      this.emit(`channel:${message.channel_id}`, { kind: 'append', message });
    }
    this.clearTyping(message.channel_id, message.author_id);
    if (!viewing && message.author_id !== this.me?.id) {
      const unread = this.unread.get(message.channel_id) ?? { count: 0, mentions: 0 };
      unread.count += 1;
      if ((message.mentions ?? []).includes(this.me?.id)) unread.mentions += 1;
      this.unread.set(message.channel_id, unread);
      this.emit('unread');
    }
  }

  messageUpdated(patch) {
    const message = this.find(patch.channel_id, patch.id);
    if (!message) return;
    Object.assign(message, patch);
    this.emit(`channel:${patch.channel_id}`, { kind: 'update', message });
  }

  messageDeleted(channelId, messageId) {
    const history = this.messages.get(channelId);
    if (!history) return;
    history.list = history.list.filter((m) => m.id !== messageId);
    this.emit(`channel:${channelId}`, { kind: 'delete', id: messageId });
  }

  reaction(data, added) {
    const message = this.find(data.channel_id, data.message_id);
    if (!message) return;
    const reactions = message.reactions ?? [];
    let entry = reactions.find((r) => r.emoji === data.emoji);
    if (!entry && added) {
      entry = { emoji: data.emoji, count: 0, me: false };
      reactions.push(entry);
    }
    if (!entry) return;
    entry.count += added ? 1 : -1;
    if (data.user_id === this.me?.id) entry.me = added;
    message.reactions = reactions.filter((r) => r.count > 0);
    this.emit(`channel:${data.channel_id}`, { kind: 'update', message });
  }

  find(channelId, messageId) {
    return this.messages.get(channelId)?.list.find((m) => m.id === messageId) ?? null;
  }

  markRead(channelId) {
    if (this.unread.delete(channelId)) this.emit('unread');
  }

  typingStarted(channelId, userId) {
    if (userId === this.me?.id) return;
    if (!this.typing.has(channelId)) this.typing.set(channelId, new Map());
    this.typing.get(channelId).set(userId, Date.now() + 10_000);
    this.emit(`typing:${channelId}`);
    setTimeout(() => this.emit(`typing:${channelId}`), 10_100);
  }

  clearTyping(channelId, userId) {
    if (this.typing.get(channelId)?.delete(userId)) this.emit(`typing:${channelId}`);
  }

  /** Who is typing in a channel now. */
  typists(channelId) {
    const now = Date.now();
    return [...(this.typing.get(channelId) ?? new Map())]
      .filter(([, until]) => until > now)
      .map(([userId]) => userId);
  }
}

function normalise(guild) {
  const channels = [...(guild.channels ?? [])];
  sortChannels(channels);
  return { ...guild, channels, members: guild.members ?? [] };
}

function sortChannels(channels) {
  channels.sort((a, b) => a.position - b.position || (a.id < b.id ? -1 : 1));
}
