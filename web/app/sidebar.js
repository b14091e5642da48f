// The navigation column: the guild rail, the open guild's channels by category with unread
// markers, and the signed-in user's panel; and the dialogs they open.

import { seg } from './api.js';
import { applyTheme, dialog, field, h, replace } from './dom.js';
import { parseInvite } from './invite.js';
import { P, allows } from './model.js';

export class Sidebar {
  constructor(app) {
    this.app = app;
    this.rail = h('nav.rail', { 'aria-label': 'Guilds' });
    this.channels = h('nav.channels', { 'aria-label': 'Channels' });
    this.user = h('div.me');
    this.element = h('div.sidebar', {}, this.rail, h('div.column', {}, this.channels, this.user));
    app.model.on('guilds', () => this.render());
    app.model.on('unread', () => this.render());
  }

  render() {
    const { model, current } = this.app;
    const guilds = [...model.guilds.values()].filter((g) => g.kind !== 'dm');
    replace(
      this.rail,
      guilds.map((guild) => {
        const unread = guild.channels.some((c) => model.unread.has(c.id));
        return h(
          'button.guild',
          {
            title: guild.name,
            'aria-label': guild.name,
            'aria-current': guild.id === current.guildId ? 'page' : null,
            dataset: { guild: guild.id, unread: unread ? 'yes' : 'no' },
            onclick: () => this.app.open(guild.id, null),
          },
          initials(guild.name),
        );
      }),
      h('button.guild.add', { id: 'create-guild', title: 'Create a guild', onclick: () => this.createGuild() }, '+'),
      h('button.guild.add', { id: 'join-guild', title: 'Join a guild', onclick: () => this.joinGuild() }, '⇥'),
    );
    this.renderChannels();
    this.renderUser();
  }

  renderChannels() {
    const { model, current } = this.app;
    const guild = current.guildId ? model.guilds.get(current.guildId) : null;
    if (!guild) {
      replace(this.channels, h('p.empty', {}, 'Create a guild or join one with an invite.'));
      return;
    }
    const canManage = allows(guild.permissions, P.MANAGE_CHANNELS);
    const row = (channel) => {
      const unread = model.unread.get(channel.id);
      const icon = channel.kind === 'voice' ? '🔊' : '#';
      return h(
        'a.channel',
        {
          href: `#/channels/${seg(guild.id)}/${seg(channel.id)}`,
          'aria-current': channel.id === current.channelId ? 'page' : null,
          dataset: { channel: channel.id, name: channel.name, unread: unread ? 'yes' : 'no' },
          onclick: (event) => {
            event.preventDefault();
            if (channel.kind === 'text') this.app.open(guild.id, channel.id);
          },
        },
        h('span.icon', { 'aria-hidden': 'true' }, icon),
        h('span.name', {}, channel.name),
        unread?.mentions ? h('span.badge', { title: 'mentions' }, String(unread.mentions)) : null,
      );
    };
    const loose = guild.channels.filter((c) => c.kind !== 'category' && !c.parent_id);
    const categories = guild.channels.filter((c) => c.kind === 'category');
    const groups = categories.map((category) =>
      h(
        'section.category',
        {},
        h('h3', {}, category.name),
        guild.channels.filter((c) => c.parent_id === category.id).map(row),
      ),
    );
    replace(
      this.channels,
      h(
        'header.guild-header',
        {},
        h('h2', { id: 'guild-name' }, guild.name),
        allows(guild.permissions, P.CREATE_INSTANT_INVITE)
          ? h('button.icon-button', { id: 'invite-people', title: 'Invite people', onclick: () => this.invite(guild) }, 'Invite')
          : null,
      ),
      loose.map(row),
      groups,
      canManage
        ? h('button.link', { id: 'create-channel', onclick: () => this.createChannel(guild) }, '+ Create channel')
        : null,
    );
  }

  renderUser() {
    const { model } = this.app;
    if (!model.me) return;
    const dark = document.documentElement.dataset.theme === 'dark';
    replace(
      this.user,
      h('span.avatar', { 'aria-hidden': 'true' }, initials(model.me.display_name || model.me.username)),
      h('span.who', { id: 'me', title: model.me.id }, model.me.display_name || model.me.username),
      h('button.icon-button', {
        title: dark ? 'Light theme' : 'Dark theme',
        onclick: () => {
          const theme = dark ? 'light' : 'dark';
          localStorage.setItem('guildhall.theme', theme);
          applyTheme(theme);
          this.renderUser();
        },
      }, dark ? '☀' : '☾'),
      h('button.icon-button', { title: 'Sessions', id: 'sessions', onclick: () => this.sessions() }, '⚙'),
      h('button.icon-button', { title: 'Log out', id: 'logout', onclick: () => this.app.logout() }, 'Log out'),
    );
  }

  createGuild() {
    const name = field('Name', { name: 'guild-name', required: true, maxLength: 100 });
    dialog({
      title: 'Create a guild',
      fields: [name],
      submitLabel: 'Create',
      submit: async (form) => {
        const guild = await this.app.api.post('/guilds', { name: form.elements['guild-name'].value.trim() });
        this.app.model.putGuild(guild);
        this.app.open(guild.id, null);
      },
    });
  }

  joinGuild() {
    dialog({
      title: 'Join a guild',
      fields: [
        field('Invite link or code', { name: 'invite', required: true, placeholder: 'https://example.org/invite/AbC123' }),
        field('Server (for a bare code from another server)', { name: 'server', placeholder: 'example.org' }),
      ],
      submitLabel: 'Join',
      submit: async (form) => {
        const { server, code } = parseInvite(form.elements.invite.value, form.elements.server.value);
        await this.app.join(server, code);
      },
    });
  }

  async invite(guild) {
    const channel = this.app.current.channelId ?? guild.channels.find((c) => c.kind === 'text')?.id;
    const invite = await this.app.api.post(`/channels/${seg(channel)}/invites`, { max_age_secs: 7 * 24 * 3600 });
    const link = `${location.protocol}//${invite.server}/invite/${encodeURIComponent(invite.code)}`;
    const input = h('input', { id: 'invite-link', readOnly: true, value: link });
    dialog({
      title: `Invite people to ${guild.name}`,
      fields: [
        h('p', {}, 'Anyone with this link can join for 7 days, from this server or their own.'),
        input,
      ],
      extra: h('button.secondary', { type: 'button', onclick: () => navigator.clipboard?.writeText(link) }, 'Copy'),
      submit: async () => {},
    });
    input.select();
  }

  createChannel(guild) {
    const categories = guild.channels.filter((c) => c.kind === 'category');
    dialog({
      title: 'Create a channel',
      fields: [
        field('Name', { name: 'channel-name', required: true, maxLength: 100 }),
        h('label.field', {}, h('span', {}, 'Kind'),
          h('select', { name: 'kind' },
            h('option', { value: 'text' }, 'Text'),
            h('option', { value: 'voice' }, 'Voice'),
            h('option', { value: 'category' }, 'Category'))),
        categories.length
          ? h('label.field', {}, h('span', {}, 'Category'),
              h('select', { name: 'parent' }, h('option', { value: '' }, 'None'),
                categories.map((c) => h('option', { value: c.id }, c.name))))
          : null,
        h('label.check', {}, h('input', { type: 'checkbox', name: 'private' }), ' Private: only roles given access see it'),
      ],
      submitLabel: 'Create',
      submit: async (form) => {
        const body = { name: form.elements['channel-name'].value.trim(), kind: form.elements.kind.value };
        if (form.elements.parent?.value) body.parent_id = form.elements.parent.value;
        if (form.elements.private.checked) {
          body.overwrites = [{ kind: 'role', id: 'everyone', allow: '0', deny: String(P.VIEW_CHANNEL) }];
        }
        const channel = await this.app.api.post(`/guilds/${seg(guild.id)}/channels`, body);
        this.app.model.putChannel(channel);
        if (channel.kind === 'text') this.app.open(guild.id, channel.id);
      },
    });
  }

  async sessions() {
    const list = h('ul.sessions');
    const load = async () => {
      const { sessions } = await this.app.api.get('/auth/sessions');
      replace(
        list,
        sessions.map((session) =>
          h('li', {},
            h('span', {}, session.user_agent || 'unknown client', session.current ? ' (this one)' : ''),
            h('small', {}, ` since ${new Date(session.created_ts).toLocaleString()}`),
            session.current
              ? null
              : h('button.secondary', {
                  type: 'button',
                  onclick: async () => {
                    await this.app.api.delete(`/auth/sessions/${seg(session.id)}`);
                    await load();
                  },
                }, 'Revoke')),
        ),
      );
    };
    await load();
    dialog({ title: 'Your sessions', fields: [list], submit: async () => {} });
  }
}

/** Up to two initials of a name, for an icon. */
export function initials(name) {
  // A remote user's name carries its server in parentheses: not part of the initials.
  const words = (name ?? '').replace(/\(.*\)/, '').trim().split(/\s+/);
  return words.slice(0, 2).map((w) => [...w][0]?.toUpperCase() ?? '').join('') || '?';
}
