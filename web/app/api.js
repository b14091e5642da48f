// The REST API (`/api/v1`) of the server that served this page, and nothing else.

/** An error the API answered with: `{"code", "message"}` and the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API. `body` is sent as JSON; answers are JSON (or null for 204). */
export async function call(token, method, path, body) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'unreachable', 'the server cannot be reached');
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      data?.code ?? 'http_error',
      data?.message ?? `the server answered ${response.status}`,
    );
  }
  return data;
}

/** A client bound to one login's token. */
export class Api {
  constructor(token) {
    this.token = token;
  }

  get(path) {
    return call(this.token, 'GET', path);
  }
  post(path, body = {}) {
    return call(this.token, 'POST', path, body);
  }
  put(path, body = {}) {
    return call(this.token, 'PUT', path, body);
  }
  patch(path, body) {
    return call(this.token, 'PATCH', path, body);
  }
  delete(path) {
    return call(this.token, 'DELETE', path);
  }
}

/** Path segments are always escaped: ids hold `@`, `!`, `:` and emoji. */
export const seg = encodeURIComponent;
