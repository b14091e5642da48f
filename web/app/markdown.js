// The message markdown Discord users write, rendered into DOM nodes. Text only ever becomes
// text nodes: no HTML from a message reaches the page.
//
//   ```code block```   `inline code`   **bold**   *italic* or _italic_   ~~strike~~
//   ||spoiler||   > quote (line)   https://links   <@@user:server> mentions

const INLINE = [
  { re: /`([^`\n]+)`/y, tag: 'code', raw: true },
  { re: /\*\*([^*\n]+?)\*\*/y, tag: 'strong' },
  { re: /~~([^~\n]+?)~~/y, tag: 's' },
  { re: /\|\|([^|\n]+?)\|\|/y, tag: 'span', className: 'spoiler' },
  { re: /\*([^*\n]+?)\*/y, tag: 'em' },
  { re: /_([^_\n]+?)_(?![A-Za-z0-9])/y, tag: 'em' },
];
const MENTION = /<@(@[^>\s]+)>/y;
const LINK = /https?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]]/y;

/**
 * Renders `text` into `parent`.
 * @param {Node} parent
 * @param {string} text
 * @param {(userId: string) => string} nameOf the name to show for a mentioned user
 * @param {string} me the viewer's user id (mentions of them are highlighted)
 */
export function render(parent, text, nameOf, me) {
  const blocks = text.split(/```/);
  blocks.forEach((block, index) => {
    if (index % 2 === 1 && index < blocks.length - 1) {
      const pre = document.createElement('pre');
      const code = document.createElement('code');
      code.textContent = block.replace(/^[a-z0-9+-]*\n/i, '');
      pre.append(code);
      parent.append(pre);
    } else {
      lines(parent, index % 2 === 1 ? '```' + block : block, nameOf, me);
    }
  });
}

function lines(parent, text, nameOf, me) {
  text.split('\n').forEach((line, index) => {
    if (index > 0) parent.append(document.createElement('br'));
    if (line.startsWith('> ')) {
      const quote = document.createElement('span');
      quote.className = 'quote';
      inline(quote, line.slice(2), nameOf, me);
      parent.append(quote);
    } else {
      inline(parent, line, nameOf, me);
    }
  });
}

function inline(parent, text, nameOf, me) {
  let plain = '';
  const flush = () => {
    if (plain) parent.append(document.createTextNode(plain));
    plain = '';
  };
  let at = 0;
  outer: while (at < text.length) {
    for (const rule of INLINE) {
      rule.re.lastIndex = at;
      const match = rule.re.exec(text);
      if (match) {
        flush();
        const node = document.createElement(rule.tag);
        if (rule.className) node.className = rule.className;
        if (rule.raw) node.textContent = match[1];
        else inline(node, match[1], nameOf, me);
        parent.append(node);
        // Not `lastIndex`: the nested call above reused these expressions.
        at += match[0].length;
        continue outer;
      }
    }
    MENTION.lastIndex = at;
    const mention = MENTION.exec(text);
    if (mention) {
      flush();
      const node = document.createElement('span');
      node.className = mention[1] === me ? 'mention me' : 'mention';
      node.textContent = `@${nameOf(mention[1])}`;
      node.title = mention[1];
      parent.append(node);
      at += mention[0].length;
      continue;
    }
    LINK.lastIndex = at;
    const link = at === 0 || /\s/.test(text[at - 1]) ? LINK.exec(text) : null;
    if (link) {
      flush();
      const node = document.createElement('a');
      node.href = link[0];
      node.textContent = link[0];
      node.target = '_blank';
      node.rel = 'noopener noreferrer nofollow';
      parent.append(node);
      at += link[0].length;
      continue;
    }
    plain += text[at];
    at += 1;
  }
  flush();
}
