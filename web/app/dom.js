// A few DOM helpers: elements from a tag, properties and children, and a modal dialog.

/**
 * `h('button.primary', {onclick}, 'Save')`: an element with classes from the tag, properties
 * (`on*` handlers, `dataset`, `aria-*`/other attributes) and children (strings become text).
 */
export function h(tag, props = {}, ...children) {
  const [name, ...classes] = tag.split('.');
  const node = document.createElement(name || 'div');
  if (classes.length) node.className = classes.join(' ');
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key in node && !key.includes('-')) node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/**
 * A modal dialog with a form: `fields` are inputs, `submit(form)` may throw an error whose
 * message is shown in the dialog; the dialog closes when it resolves.
 */
export function dialog({ title, fields, submitLabel, submit, extra }) {
  const error = h('p.error', { role: 'alert' });
  const form = h(
    'form.dialog',
    { method: 'dialog' },
    h('h2', {}, title),
    fields,
    extra,
    error,
    h(
      'div.buttons',
      {},
      h('button.secondary', { type: 'button', onclick: () => close() }, 'Cancel'),
      submitLabel ? h('button.primary', { type: 'submit' }, submitLabel) : null,
    ),
  );
  const backdrop = h('div.backdrop', { onclick: (e) => e.target === backdrop && close() }, form);
  const close = () => {
    backdrop.remove();
    document.removeEventListener('keydown', escape);
  };
  const escape = (event) => event.key === 'Escape' && close();
  document.addEventListener('keydown', escape);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    const button = form.querySelector('button[type=submit]');
    if (!button) return;
    button.disabled = true;
    try {
      await submit(form);
      close();
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      button.disabled = false;
    }
  });
  document.body.append(backdrop);
  form.querySelector('input, select, textarea, button.primary')?.focus();
  return { close, form };
}

/** A labelled input. */
export function field(label, props) {
  return h('label.field', {}, h('span', {}, label), h('input', props));
}

/** The theme: 'light', 'dark', or the system's (null). */
export function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
