// Guildhall's web client: served by every homeserver at `/`, speaking only its public API
// (REST `/api/v1` and the gateway). This module starts it: the login screen, or the app for a
// remembered login, and the routes (`#/channels/<guild>/<channel>`, `#/join/<server>/<code>`,
// and `/invite/<code>`, the link a guild's host hands out).

import { Api, call, seg } from './api.js';
import { applyTheme, dialog, h, replace } from './dom.js';
import { Gateway } from './gateway.js';
import { Model } from './model.js';
import { Sidebar } from './sidebar.js';
import { Chat } from './chat.js';

const TOKEN_KEY = 'guildhall.token';
const root = document.getElementById('root');

applyTheme(localStorage.getItem('guildhall.theme'));

/** Where the page was opened: an invite link of this server, a join route, or a channel. */
function route() {
  const invite = /^\/invite\/([^/]+)$/.exec(location.pathname);
  if (invite) return { kind: 'invite', code: decodeURIComponent(invite[1]), server: location.host };
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (parts[0] === 'join' && parts.length === 3) {
    return { kind: 'invite', server: parts[1], code: parts[2] };
  }
  if (parts[0] === 'channels') return { kind: 'channel', guildId: parts[1], channelId: parts[2] };
  return { kind: 'home' };
}

function start() {
  const token = localStorage.getItem(TOKEN_KEY);
  const where = route();
  if (token) {
    new App(token, where).start();
  } else {
    showLogin(where);
  }
}

/** The login and registration screen. */
function showLogin(where) {
  let mode = 'login';
  const error = h('p.error', { role: 'alert' });
  const username = h('input', { name: 'username', autocomplete: 'username', required: true });
  const password = h('input', {
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button.primary', { type: 'submit', id: 'auth-submit' }, 'Log in');
  const toggle = h('button.link', { type: 'button', id: 'auth-toggle' }, 'Create an account');
  const heading = h('h1', {}, 'Welcome back');
  toggle.addEventListener('click', () => {
    mode = mode === 'login' ? 'register' : 'login';
    heading.textContent = mode === 'login' ? 'Welcome back' : 'Create an account';
    submit.textContent = mode === 'login' ? 'Log in' : 'Register';
    toggle.textContent = mode === 'login' ? 'Create an account' : 'I have an account';
    password.autocomplete = mode === 'login' ? 'current-password' : 'new-password';
    error.textContent = '';
  });
  const form = h(
    'form.auth',
    {},
    heading,
    h('p.server', {}, 'on ', h('strong', {}, location.host)),
    h('label.field', {}, h('span', {}, 'Username'), username),
    h('label.field', {}, h('span', {}, 'Password'), password),
    error,
    submit,
    toggle,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const path = mode === 'login' ? '/auth/login' : '/auth/register';
      const body = { username: username.value.trim(), password: password.value };
      const session = await call(null, 'POST', path, body);
      localStorage.setItem(TOKEN_KEY, session.token);
      new App(session.token, where).start();
    } catch (failure) {
      error.textContent = failure.message;
      submit.disabled = false;
    }
  });
  const screens = [form];
  if (where.kind === 'invite' && where.server === location.host) {
    screens.push(elsewhere(where));
  }
  replace(root, h('main.login', {}, h('div.brand', {}, 'Guildhall'), ...screens));
  username.focus();
}

/** On a guild host's invite page, for someone whose account is on another server. */
function elsewhere(where) {
  const server = h('input', {
    name: 'home-server',
    placeholder: 'your.server.example',
    required: true,
  });
  const form = h(
    'form.auth.elsewhere',
    {},
    h('h2', {}, 'Your account is on another server?'),
    h('p', {}, 'Open this invite there: you join with the account you already have.'),
    h('label.field', {}, h('span', {}, 'Your server'), server),
    h('button.primary', { type: 'submit', id: 'open-elsewhere' }, 'Continue'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const target = server.value.trim().replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    location.href = `${location.protocol}//${target}/#/join/${seg(where.server)}/${seg(where.code)}`;
  });
  return form;
}

/** The signed-in client. */
class App {
  constructor(token, where) {
    this.api = new Api(token);
    this.model = new Model();
    this.where = where;
    this.current = { guildId: null, channelId: null };
    this.gateway = new Gateway(token, {
      ready: (data) => this.ready(data),
      resumed: () => {},
      status: (state) => {
        document.body.dataset.connection = state;
      },
      dispatch: (name, data) => this.dispatch(name, data),
      loggedOut: () => this.loggedOut(),
    });
    this.started = false;
  }

  start() {
    replace(root, h('main.loading', {}, 'Connecting…'));
    this.gateway.start();
    window.addEventListener('hashchange', () => this.navigate(route()));
  }

  ready(data) {
    this.model.ready(data);
    if (!this.started) {
      this.started = true;
      this.layout();
      this.navigate(this.where);
    } else {
      // A new session after a disconnect: history may have moved on meanwhile.
      this.open(this.current.guildId, this.current.channelId, { reload: true });
    }
  }

  layout() {
    this.sidebar = new Sidebar(this);
    this.chat = new Chat(this);
    this.shell = h('div.app', {}, this.sidebar.element, this.chat.element);
    replace(root, this.shell);
  }

  /** Shows a route. */
  async navigate(where) {
    if (where.kind === 'invite') {
      history.replaceState(null, '', '/#/');
      await this.offerInvite(where.server, where.code);
      return;
    }
    if (where.kind === 'channel' && this.model.guilds.has(where.guildId)) {
      this.open(where.guildId, where.channelId);
      return;
    }
    const first = this.model.guilds.values().next().value;
    this.open(first?.id ?? null, null);
  }

  /**
   * Opens a guild's channel (its first text channel if none or an unknown one is named);
   * `reload` loads its history again even if it is the one open.
   */
  open(guildId, channelId, { reload = false } = {}) {
    const guild = guildId ? this.model.guilds.get(guildId) : null;
    let channel = guild?.channels.find((c) => c.id === channelId && c.kind === 'text');
    channel ??= guild?.channels.find((c) => c.kind === 'text') ?? null;
    const same = !reload && channel && this.current.channelId === channel.id && this.chat.channel;
    this.current = { guildId: guild?.id ?? null, channelId: channel?.id ?? null };
    const hash = guild ? `#/channels/${seg(guild.id)}/${seg(channel?.id ?? '')}` : '#/';
    if (location.hash !== hash) history.replaceState(null, '', hash);
    if (channel) this.model.markRead(channel.id);
    this.shell?.classList.remove('show-nav');
    this.sidebar.render();
    // The same channel again (its guild changed): keep the history, the draft and the scroll.
    if (same) this.chat.refresh(guild, channel);
    else this.chat.show(guild, channel);
  }

  dispatch(name, data) {
    const model = this.model;
    switch (name) {
      case 'GUILD_CREATE':
      case 'GUILD_UPDATE':
        model.putGuild(data);
        if (!this.current.guildId) this.open(data.id, null);
        break;
      case 'GUILD_DELETE':
        model.dropGuild(data.id);
        if (this.current.guildId === data.id) this.navigate({ kind: 'home' });
        break;
      case 'CHANNEL_CREATE':
      case 'CHANNEL_UPDATE':
        model.putChannel(data);
        if (data.id === this.current.channelId) this.open(data.guild_id, data.id);
        break;
      case 'CHANNEL_DELETE':
        model.dropChannel(data.guild_id, data.id);
        if (data.id === this.current.channelId) this.open(data.guild_id, null);
        break;
      case 'GUILD_ROLE_CREATE':
      case 'GUILD_ROLE_UPDATE':
      case 'GUILD_ROLE_DELETE':
        this.refreshGuild(data.guild_id);
        break;
      case 'GUILD_MEMBER_ADD':
      case 'GUILD_MEMBER_UPDATE':
        model.putMember(data);
        if (data.user_id === model.me.id) this.refreshGuild(data.guild_id);
        break;
      case 'GUILD_MEMBER_REMOVE':
        model.dropMember(data.guild_id, data.user_id);
        break;
      case 'MESSAGE_CREATE':
        model.messageCreated(data, this.viewing(data.channel_id));
        break;
      case 'MESSAGE_UPDATE':
        model.messageUpdated(data);
        break;
      case 'MESSAGE_DELETE':
        model.messageDeleted(data.channel_id, data.id);
        break;
      case 'MESSAGE_REACTION_ADD':
      case 'MESSAGE_REACTION_REMOVE':
        model.reaction(data, name === 'MESSAGE_REACTION_ADD');
        break;
      case 'CHANNEL_PINS_UPDATE':
        model.messageUpdated({ channel_id: data.channel_id, id: data.message_id, pinned: data.pinned });
        break;
      case 'TYPING_START':
        model.typingStarted(data.channel_id, data.user_id);
        break;
      case 'PRESENCE_UPDATE':
        model.presence.set(data.user_id, data.status);
        model.emit('presence');
        break;
    }
  }

  viewing(channelId) {
    return this.current.channelId === channelId && document.visibilityState === 'visible';
  }

  /** Reloads a guild as this user sees it (their permissions may have changed). */
  async refreshGuild(guildId) {
    try {
      const guild = await this.api.get(`/guilds/${seg(guildId)}`);
      this.model.putGuild(guild);
      if (guildId === this.current.guildId) this.open(guildId, this.current.channelId);
    } catch {
      // The gateway will tell us if the guild is gone.
    }
  }

  /** Asks whether to join the guild an invite leads to, then joins it. */
  async offerInvite(server, code) {
    const local = server === this.model.home;
    let preview = null;
    if (local) {
      try {
        preview = await this.api.get(`/invites/${seg(code)}`);
      } catch (failure) {
        this.notice(`This invite cannot be used: ${failure.message}`);
        return;
      }
    }
    const what = preview
      ? h('p', {}, 'Join ', h('strong', {}, preview.guild_name), ` (${preview.member_count} members)?`)
      : h('p', {}, 'Join the guild of invite ', h('code', {}, code), ' on ', h('strong', {}, server), '?');
    dialog({
      title: 'You are invited',
      fields: [what],
      submitLabel: 'Join',
      submit: () => this.join(server, code),
    });
  }

  async join(server, code) {
    const query = server && server !== this.model.home ? `?server=${seg(server)}` : '';
    const guild = await this.api.post(`/invites/${seg(code)}${query}`);
    this.model.putGuild(guild);
    this.open(guild.id, null);
  }

  notice(text) {
    dialog({ title: 'Guildhall', fields: [h('p', {}, text)], submit: async () => {} });
  }

  async logout() {
    this.gateway.stop();
    try {
      await this.api.post('/auth/logout');
    } catch {
      // The token is forgotten here either way.
    }
    this.loggedOut();
  }

  loggedOut() {
    this.gateway.stop();
    localStorage.removeItem(TOKEN_KEY);
    history.replaceState(null, '', '/');
    showLogin({ kind: 'home' });
  }
}

start();
