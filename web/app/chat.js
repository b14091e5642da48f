// The open channel: its header, its history (loaded as you scroll up, kept in place while new
// messages arrive), who is typing, and the composer. Messages are edited, deleted, replied to
// and reacted to from their own row.

import { seg } from './api.js';
import { h, replace } from './dom.js';
import { render } from './markdown.js';
import { P, allows } from './model.js';
import { initials } from './sidebar.js';

/** Messages fetched per page of history. */
const PAGE = 50;
/** Typing is announced at most this often (the server shows it for 10 s). */
const TYPING_EVERY_MS = 8000;
/** The reactions offered by the picker. */
const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '👀'];

export class Chat {
  constructor(app) {
    this.app = app;
    this.guild = null;
    this.channel = null;
    this.replyTo = null;
    this.lastTyping = 0;
    this.unsubscribe = [];
    this.title = h('h1', { id: 'channel-name' });
    this.topic = h('span.topic');
    this.list = h('div.messages', { id: 'messages', role: 'log', 'aria-live': 'polite', tabIndex: 0 });
    this.typingLine = h('div.typing', { id: 'typing', 'aria-live': 'polite' });
    this.replyLine = h('div.replying');
    this.input = h('textarea', { id: 'composer', rows: 1, 'aria-label': 'Message', maxLength: 4000 });
    this.composer = h('form.composer', {}, this.replyLine, this.input);
    this.element = h(
      'main.chat',
      {},
      h('header.chat-header', {},
        h('button.icon-button.menu', { title: 'Channels', 'aria-label': 'Channels', onclick: () => app.shell.classList.toggle('show-nav') }, '☰'),
        this.title, this.topic),
      this.list,
      this.typingLine,
      this.composer,
    );
    this.list.addEventListener('scroll', () => {
      if (this.list.scrollTop < 200) this.loadOlder();
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.input.addEventListener('input', () => this.typed());
    this.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.channel) app.model.markRead(this.channel.id);
    });
  }

  /** Shows a channel (or the empty state). */
  async show(guild, channel) {
    this.unsubscribe.forEach((stop) => stop());
    this.unsubscribe = [];
    this.guild = guild;
    this.channel = channel;
    this.replyTo = null;
    this.replyLine.replaceChildren();
    this.header();
    replace(this.list);
    this.typingLine.textContent = '';
    if (!channel) {
      this.composer.hidden = true;
      this.list.append(h('p.empty', {}, guild ? 'No text channel here yet.' : 'Welcome to Guildhall.'));
      return;
    }
    const model = this.app.model;
    this.unsubscribe.push(
      model.on(`channel:${channel.id}`, (change) => this.changed(change)),
      model.on(`typing:${channel.id}`, () => this.showTyping()),
    );
    this.composer.hidden = false;
    this.allowSending();
    const history = model.history(channel.id);
    if (history.loaded) {
      this.renderAll();
    } else {
      await this.loadOlder();
    }
    this.input.focus();
  }

  /** The open channel, changed (renamed, or the user's permissions in it). */
  refresh(guild, channel) {
    this.guild = guild;
    this.channel = channel;
    this.header();
    this.allowSending();
  }

  allowSending() {
    const canSend = allows(this.channel.permissions ?? this.guild.permissions, P.SEND_MESSAGES);
    this.input.disabled = !canSend;
    this.input.placeholder = canSend ? `Message #${this.channel.name}` : 'You may not send messages here';
  }

  header() {
    this.title.textContent = this.channel ? `#${this.channel.name}` : (this.guild?.name ?? '');
    this.topic.textContent = this.channel?.topic ?? '';
  }

  async loadOlder() {
    const channel = this.channel;
    const history = channel && this.app.model.history(channel.id);
    if (!history || history.loading || history.complete) return;
    history.loading = true;
    try {
      const oldest = history.list[0]?.id;
      const query = `limit=${PAGE}${oldest ? `&before=${seg(oldest)}` : ''}`;
      const page = await this.app.api.get(`/channels/${seg(channel.id)}/messages?${query}`);
      // Kept even if another channel is open by now: the history is the channel's.
      this.app.model.prepend(channel.id, page.messages, page.messages.length < PAGE);
    } catch (failure) {
      if (this.channel?.id === channel.id) {
        this.list.append(h('p.error', {}, `History could not be loaded: ${failure.message}`));
      }
    } finally {
      history.loading = false;
    }
  }

  changed(change) {
    const history = this.app.model.history(this.channel.id);
    switch (change.kind) {
      case 'prepend': {
        // Keep what the reader is looking at in place while older messages appear above it.
        const fromBottom = this.list.scrollHeight - this.list.scrollTop;
        const first = !this.list.querySelector('.message');
        this.renderAll();
        this.list.scrollTop = first ? this.list.scrollHeight : this.list.scrollHeight - fromBottom;
        if (!history.complete && this.list.scrollHeight <= this.list.clientHeight) this.loadOlder();
        break;
      }
      case 'append': {
        const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
        this.list.append(this.row(change.message));
        if (atBottom || change.message.author_id === this.app.model.me.id) {
          this.list.scrollTop = this.list.scrollHeight;
        }
        break;
      }
      case 'update': {
        const old = this.list.querySelector(`[data-id="${CSS.escape(change.message.id)}"]`);
        old?.replaceWith(this.row(change.message));
        break;
      }
      case 'delete':
        this.list.querySelector(`[data-id="${CSS.escape(change.id)}"]`)?.remove();
        break;
    }
  }

  renderAll() {
    const history = this.app.model.history(this.channel.id);
    replace(
      this.list,
      history.complete ? h('p.beginning', {}, `This is the beginning of #${this.channel.name}.`) : null,
      history.list.map((message) => this.row(message)),
    );
  }

  /** One message's row. */
  row(message) {
    const { model, api } = this.app;
    const me = model.me.id;
    const guildId = this.guild.id;
    const mine = message.author_id === me;
    const canManage = allows(this.channel.permissions ?? this.guild.permissions, P.MANAGE_MESSAGES);
    const path = `/channels/${seg(message.channel_id)}/messages/${seg(message.id)}`;
    const content = h('div.content');
    render(content, message.content ?? '', (id) => model.nameOf(id, guildId), me);
    const replied = message.reply_to ? model.find(message.channel_id, message.reply_to) : null;
    const reactions = (message.reactions ?? []).map((reaction) =>
      h('button.reaction', {
        className: reaction.me ? 'reaction me' : 'reaction',
        dataset: { emoji: reaction.emoji },
        'aria-pressed': reaction.me ? 'true' : 'false',
        onclick: () => this.react(path, reaction.emoji, !reaction.me),
      }, `${reaction.emoji} ${reaction.count}`),
    );
    const picker = h('div.picker', { hidden: true },
      QUICK_REACTIONS.map((emoji) =>
        h('button.pick', { type: 'button', dataset: { emoji }, onclick: () => {
          picker.hidden = true;
          this.react(path, emoji, true);
        } }, emoji)));
    const actions = h('div.actions', {},
      h('button.action', { title: 'Add reaction', dataset: { action: 'react' }, onclick: () => { picker.hidden = !picker.hidden; } }, '☺'),
      h('button.action', { title: 'Reply', dataset: { action: 'reply' }, onclick: () => this.startReply(message) }, '↩'),
      mine ? h('button.action', { title: 'Edit', dataset: { action: 'edit' }, onclick: () => this.edit(row, message, content) }, '✎') : null,
      mine || canManage
        ? h('button.action.danger', { title: 'Delete', dataset: { action: 'delete' }, onclick: async (event) => {
            const button = event.currentTarget;
            if (button.dataset.armed !== 'yes') {
              button.dataset.armed = 'yes';
              button.textContent = 'Delete?';
              return;
            }
            await api.delete(path).catch((failure) => this.flash(failure.message));
          } }, '🗑')
        : null,
    );
    const author = model.nameOf(message.author_id, guildId);
    const row = h(
      'article.message',
      { dataset: { id: message.id, author: message.author_id }, className: `message${(message.mentions ?? []).includes(me) ? ' mentions-me' : ''}` },
      h('span.avatar', { 'aria-hidden': 'true' }, initials(author)),
      h('div.body', {},
        replied || message.reply_to
          ? h('div.reply-to', {}, '↪ ', replied ? `${model.nameOf(replied.author_id, guildId)}: ${replied.content.slice(0, 80)}` : 'an earlier message')
          : null,
        h('header', {},
          h('span.author', { title: message.author_id }, author),
          h('time', { dateTime: new Date(message.created_ts).toISOString() }, formatTime(message.created_ts)),
          message.edited_ts ? h('span.edited', { title: new Date(message.edited_ts).toLocaleString() }, '(edited)') : null,
          message.pinned ? h('span.pinned', { title: 'Pinned' }, '📌') : null),
        content,
        reactions.length ? h('div.reactions', {}, reactions) : null,
        picker),
      actions,
    );
    return row;
  }

  async react(path, emoji, add) {
    const url = `${path}/reactions/${seg(emoji)}/@me`;
    try {
      if (add) await this.app.api.put(url);
      else await this.app.api.delete(url);
    } catch (failure) {
      this.flash(failure.message);
    }
  }

  startReply(message) {
    this.replyTo = message.id;
    replace(this.replyLine,
      h('span', {}, 'Replying to ', h('strong', {}, this.app.model.nameOf(message.author_id, this.guild.id))),
      h('button.icon-button', { type: 'button', title: 'Cancel reply', onclick: () => {
        this.replyTo = null;
        this.replyLine.replaceChildren();
      } }, '×'));
    this.input.focus();
  }

  edit(row, message, content) {
    const box = h('textarea.edit-box', { value: message.content, rows: 2, 'aria-label': 'Edit message' });
    const done = () => box.replaceWith(content);
    box.addEventListener('keydown', async (event) => {
      if (event.key === 'Escape') done();
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        const text = box.value.trim();
        if (!text || text === message.content) return done();
        try {
          const path = `/channels/${seg(message.channel_id)}/messages/${seg(message.id)}`;
          const updated = await this.app.api.patch(path, { content: text });
          this.app.model.messageUpdated(updated);
        } catch (failure) {
          this.flash(failure.message);
          done();
        }
      }
    });
    content.replaceWith(box);
    box.focus();
  }

  async send() {
    const text = this.input.value.trim();
    if (!text || !this.channel) return;
    const channel = this.channel;
    const body = { content: text, nonce: crypto.randomUUID() };
    if (this.replyTo) body.reply_to = this.replyTo;
    this.input.value = '';
    this.replyTo = null;
    this.replyLine.replaceChildren();
    this.lastTyping = 0;
    try {
      const message = await this.app.api.post(`/channels/${seg(channel.id)}/messages`, body);
      this.app.model.messageCreated(message, true);
    } catch (failure) {
      // Keep the text so nothing typed is lost.
      if (!this.input.value) this.input.value = text;
      this.flash(failure.message);
    }
  }

  typed() {
    const now = Date.now();
    if (!this.channel || !this.input.value || now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.app.api.post(`/channels/${seg(this.channel.id)}/typing`).catch(() => {});
  }

  showTyping() {
    const names = this.app.model.typists(this.channel.id).map((id) => this.app.model.nameOf(id, this.guild.id));
    this.typingLine.textContent =
      names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
  }

  flash(text) {
    const note = h('p.flash', { role: 'alert' }, text);
    this.element.append(note);
    setTimeout(() => note.remove(), 5000);
  }
}

function formatTime(ts) {
  const date = new Date(ts);
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}
