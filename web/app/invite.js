// Invite links: `https://<host server>/invite/<code>` opens in any Guildhall client.

import { ApiError } from './api.js';

/** Parses what a person pastes to join: a full invite link, or a code (with a server). */
export function parseInvite(text, server) {
  const value = text.trim();
  try {
    const url = new URL(value);
    const path = /\/invite\/([^/?#]+)/.exec(url.pathname);
    if (path) return { server: url.host, code: decodeURIComponent(path[1]) };
    const join = /^#\/join\/([^/]+)\/([^/]+)$/.exec(url.hash);
    if (join) return { server: decodeURIComponent(join[1]), code: decodeURIComponent(join[2]) };
  } catch {
    // Not a link: a bare code.
  }
  if (!value) throw new ApiError(400, 'bad_invite', 'paste an invite link or code');
  return { server: server.trim() || null, code: value };
}
