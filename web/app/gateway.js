// The gateway connection (`/gateway?encoding=json`): identify, heartbeat, and after a
// disconnect reconnect by itself, resuming the session so nothing sent meanwhile is lost.

const OP = { DISPATCH: 0, HEARTBEAT: 1, IDENTIFY: 2, RESUME: 6, INVALID_SESSION: 9, HELLO: 10, ACK: 11 };

/** Close codes after which reconnecting cannot help: the login is gone. */
const FATAL = new Set([4004]);

/** Delays between reconnection attempts (ms); the last repeats. */
const BACKOFF = [250, 1000, 2000, 5000, 10000];

export class Gateway {
  /**
   * @param {string} token the login's bearer token
   * @param {{dispatch(name: string, data: any, replayed: boolean): void,
   *          status(state: 'connecting'|'online'|'offline'): void,
   *          ready(data: any): void, resumed(): void, loggedOut(): void}} handlers
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    this.session = null;
    this.seq = null;
    this.attempt = 0;
    this.stopped = false;
    this.socket = null;
    this.heartbeat = null;
    this.acked = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.heartbeat);
    this.socket?.close(1000);
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/gateway?encoding=json`);
    this.socket = socket;
    this.handlers.status('connecting');
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (close) => this.closed(socket, close.code);
  }

  send(op, d) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ op, d }));
  }

  receive(frame) {
    switch (frame.op) {
      case OP.HELLO:
        this.beat(frame.d.heartbeat_interval);
        if (this.session) {
          this.send(OP.RESUME, { token: this.token, session_id: this.session, seq: this.seq });
        } else {
          this.send(OP.IDENTIFY, { token: this.token });
        }
        break;
      case OP.ACK:
        this.acked = true;
        break;
      case OP.HEARTBEAT:
        this.send(OP.HEARTBEAT, this.seq);
        break;
      case OP.INVALID_SESSION:
        this.session = null;
        this.seq = null;
        this.send(OP.IDENTIFY, { token: this.token });
        break;
      case OP.DISPATCH:
        if (frame.s !== null && frame.s !== undefined) this.seq = frame.s;
        if (frame.t === 'READY') {
          this.session = frame.d.session_id;
          this.seq = frame.d.seq ?? this.seq;
          this.attempt = 0;
          this.handlers.status('online');
          this.handlers.ready(frame.d);
        } else if (frame.t === 'RESUMED') {
          this.attempt = 0;
          this.handlers.status('online');
          this.handlers.resumed();
        } else {
          this.handlers.dispatch(frame.t, frame.d);
        }
        break;
    }
  }

  beat(interval) {
    clearInterval(this.heartbeat);
    this.acked = true;
    this.heartbeat = setInterval(() => {
      if (!this.acked) {
        // No answer to the last heartbeat: the connection is dead even if the socket says not.
        this.socket?.close(4000);
        return;
      }
      this.acked = false;
      this.send(OP.HEARTBEAT, this.seq);
    }, interval);
  }

  closed(socket, code) {
    if (socket !== this.socket) return;
    clearInterval(this.heartbeat);
    this.handlers.status('offline');
    if (FATAL.has(code)) {
      this.handlers.loggedOut();
      return;
    }
    if (this.stopped) return;
    const delay = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    setTimeout(() => {
      if (!this.stopped) this.connect();
    }, delay);
  }
}
