// push-client: the JavaScript client of the push cluster, one ES module with
// no dependencies, for browsers and Node (global WebSocket, or one passed in
// options.WebSocket). The frames it speaks are the contract's ("Connecting",
// "Channels"); docs/ARCHITECTURE.md says where the server side lives.
//
// Invariants:
// - Handlers see messages one at a time, in arrival order, even when a
//   handler returns a promise: deliveries go through one queue.
// - A user message (no "channel") is acked only after every 'message'
//   handler returned (or its promise resolved); one that threw or rejected
//   is never acked, so the server hands it over again on the next connection.
// - An id already handed over is not handed over again (the last
//   options.dedupeSize ids), so at-least-once reaches the application once.
// - After a drop the client reconnects with exponential backoff and full
//   jitter, except after close() and after 4401 twice (or once without
//   getToken); every subscribed channel is resubscribed with "since" = the
//   last id seen on it.

const CLOSE_UNAUTHORIZED = 4401;

const DEFAULTS = {
  backoffBaseMs: 500, // first retry waits up to 0.5 s ...
  backoffMaxMs: 30000, // ... and no retry waits more than 30 s (the contract's range)
  stableMs: 10000, // a connection up this long resets the backoff
  // No welcome this long after opening: give up on the attempt. The pusher
  // answers within 2 s (authd's limit, then 1013), so only an attempt stuck
  // below us gets here: a WebSocket that reports neither error nor close
  // for a failed handshake (onerror below covers Node 20's refused
  // connection, which reports an error and never a close).
  connectTimeoutMs: 10000,
  ackDelayMs: 5, // acks of messages that arrive together leave as one frame
  dedupeSize: 10000,
};

export class PushClient {
  constructor(url, options = {}) {
    if (typeof url !== 'string' || !url) throw new TypeError('PushClient: url is required');
    if (!options.token && typeof options.getToken !== 'function')
      throw new TypeError('PushClient: options.token or options.getToken is required');
    this.url = url;
    this._opt = { ...DEFAULTS, ...options };
    this._WS = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== 'function')
      throw new TypeError('PushClient: no WebSocket: pass options.WebSocket (Node 20: --experimental-websocket or the ws package)');
    const g = globalThis;
    this._setTimeout = options.setTimeout || ((fn, ms) => g.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((t) => g.clearTimeout(t));
    this._now = options.now || (() => Date.now());
    this._random = options.random || Math.random;

    this._listeners = new Map(); // event -> [fn]
    this._channels = new Map(); // channel -> {handler, token, lastId}
    this._seen = new Map(); // id -> 'pending' | 'done', insertion order = age
    this._queue = Promise.resolve(); // the delivery queue (arrival order)
    this._acks = [];
    this._ackTimer = null;
    this._ws = null;
    this._state = 'disconnected';
    this._attempt = 0; // backoff exponent: failed attempts since the last stable connection
    this._retryTimer = null;
    this._stableTimer = null;
    this._connectTimer = null;
    this._authRetried = false;
    this._closed = false;
    this.welcome = null;
    // Connect once the caller had a chance to attach listeners.
    queueMicrotask(() => this._connect());
  }

  /** 'connecting' | 'connected' | 'disconnected' */
  get state() {
    return this._state;
  }

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(fn);
    return this;
  }

  off(event, fn) {
    const l = this._listeners.get(event);
    if (l) {
      const i = l.indexOf(fn);
      if (i >= 0) l.splice(i, 1);
    }
    return this;
  }

  /** Subscribe to a channel; fn gets its messages in order. options: {token, since}. */
  subscribe(channel, fn, options = {}) {
    if (typeof channel !== 'string' || !channel) throw new TypeError('subscribe: channel name required');
    const sub = { handler: fn, token: options.token, lastId: options.since };
    this._channels.set(channel, sub);
    if (this._state === 'connected') this._sendSubscribe(channel, sub);
    return this;
  }

  unsubscribe(channel) {
    if (!this._channels.delete(channel)) return this;
    if (this._state === 'connected') this._send({ type: 'unsubscribe', channel });
    return this;
  }

  /** Close for good: no reconnect after this. Acks already due are sent first. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._clearTimers();
    this._flushAcks();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(1000, 'client closed');
      } catch (_) {
        /* already closing */
      }
    }
    this._setState('disconnected', { code: 1000, reason: 'client closed', final: true });
  }

  // --- connection ---------------------------------------------------------
  async _connect() {
    if (this._closed) return;
    this._setState('connecting', { attempt: this._attempt });
    let token = this._opt.token;
    if (typeof this._opt.getToken === 'function') {
      try {
        token = await this._opt.getToken();
      } catch (e) {
        this._emit('error', wrapError('getToken failed', e));
        this._scheduleReconnect({ code: 0, reason: 'getToken failed' });
        return;
      }
      if (this._closed) return;
    }
    const sep = this.url.includes('?') ? '&' : '?';
    let ws;
    try {
      ws = new this._WS(this.url + sep + 'token=' + encodeURIComponent(token));
    } catch (e) {
      this._emit('error', wrapError('cannot open WebSocket', e));
      this._scheduleReconnect({ code: 0, reason: 'cannot open WebSocket' });
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason || '');
    ws.onerror = () => {
      // Browsers follow an error with a close event at once, and that one
      // carries the code. Node 20's WebSocket reports a refused connection
      // with an error and then never a close (it stays CONNECTING), so an
      // error not followed by a close right away counts as one.
      this._setTimeout(() => {
        if (ws !== this._ws) return;
        try {
          ws.close();
        } catch (_) {
          /* some implementations refuse close() before open */
        }
        this._onClose(ws, 1006, 'connection failed');
      }, 0);
    };
    this._connectTimer = this._setTimeout(() => {
      this._connectTimer = null;
      if (ws !== this._ws) return;
      try {
        ws.close(4000, 'no welcome');
      } catch (_) {
        /* not open yet: close() of a CONNECTING socket may throw in some implementations */
      }
      // 1006 is what a browser reports for a connection that failed.
      this._onClose(ws, 1006, `no welcome within ${this._opt.connectTimeoutMs} ms`);
    }, this._opt.connectTimeoutMs);
  }

  _detach(ws) {
    ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._detach(ws);
    this._clearTimer('_stableTimer');
    this._clearTimer('_connectTimer');
    if (code === CLOSE_UNAUTHORIZED) {
      if (typeof this._opt.getToken === 'function' && !this._authRetried) {
        // The token may just have expired: ask for a fresh one, once, now.
        this._authRetried = true;
        this._setState('disconnected', { code, reason, final: false, retryInMs: 0 });
        this._retryTimer = this._setTimeout(() => {
          this._retryTimer = null;
          this._connect();
        }, 0);
        return;
      }
      const err = new Error(`unauthorized (4401): ${reason}`);
      err.code = code;
      this._closed = true;
      this._emit('error', err);
      this._setState('disconnected', { code, reason, final: true });
      return;
    }
    this._scheduleReconnect({ code, reason });
  }

  _scheduleReconnect({ code, reason }) {
    if (this._closed) return;
    const cap = Math.min(this._opt.backoffMaxMs, this._opt.backoffBaseMs * 2 ** this._attempt);
    const delay = this._random() * cap;
    this._attempt++;
    this._setState('disconnected', { code, reason, final: false, retryInMs: delay });
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      this._connect();
    }, delay);
  }

  _onWelcome(frame) {
    this._clearTimer('_connectTimer');
    this.welcome = frame;
    this._authRetried = false;
    this._setState('connected', { welcome: frame });
    this._stableTimer = this._setTimeout(() => {
      this._stableTimer = null;
      this._attempt = 0;
    }, this._opt.stableMs);
    for (const [channel, sub] of this._channels) this._sendSubscribe(channel, sub);
  }

  _sendSubscribe(channel, sub) {
    const f = { type: 'subscribe', channel };
    if (sub.lastId !== undefined && sub.lastId !== null) f.since = sub.lastId;
    if (sub.token) f.token = sub.token;
    this._send(f);
  }

  _send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  // --- frames -------------------------------------------------------------
  _onFrame(data) {
    let f;
    try {
      f = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch (e) {
      this._emit('error', wrapError('frame is not JSON', e));
      return;
    }
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'welcome':
        this._onWelcome(f);
        break;
      case 'message':
        this._onMessage(f);
        break;
      case 'subscribed':
      case 'unsubscribed':
        this._emit(f.type, f);
        break;
      case 'error': {
        const err = new Error(`channel ${f.channel}: ${f.code}: ${f.reason || ''}`);
        err.channel = f.channel;
        err.code = f.code;
        err.frame = f;
        // A refused subscription is not retried on the next connection.
        if (f.channel && f.code !== undefined) this._channels.delete(f.channel);
        this._emit('error', err);
        break;
      }
      default:
        break; // frames of later versions: ignored
    }
  }

  _onMessage(f) {
    if (typeof f.id !== 'string') return;
    const channel = typeof f.channel === 'string' ? f.channel : null;
    if (channel) {
      const sub = this._channels.get(channel);
      if (!sub) return; // unsubscribed meanwhile
      sub.lastId = f.id;
    }
    const seen = this._seen.get(f.id);
    if (seen !== undefined) {
      // Handed over before. A user message handled already was evidently not
      // acked in time (the connection dropped): ack it again, silently.
      if (!channel && seen === 'done') this._ack(f.id);
      return;
    }
    this._remember(f.id, 'pending');
    this._queue = this._queue.then(() => this._deliver(f, channel));
  }

  async _deliver(f, channel) {
    try {
      if (channel) {
        const sub = this._channels.get(channel);
        if (sub && sub.handler) await sub.handler(f);
      } else {
        for (const fn of (this._listeners.get('message') || []).slice()) await fn(f);
      }
    } catch (e) {
      // Not acked, and forgotten, so the server's next hand-over reaches
      // the application again.
      this._seen.delete(f.id);
      this._emit('error', wrapError(`handler failed for message ${f.id}`, e));
      return;
    }
    this._seen.set(f.id, 'done');
    if (!channel) this._ack(f.id);
  }

  _remember(id, st) {
    this._seen.set(id, st);
    while (this._seen.size > this._opt.dedupeSize) this._seen.delete(this._seen.keys().next().value);
  }

  _ack(id) {
    this._acks.push(id);
    if (this._ackTimer === null)
      this._ackTimer = this._setTimeout(() => {
        this._ackTimer = null;
        this._flushAcks();
      }, this._opt.ackDelayMs);
  }

  _flushAcks() {
    this._clearTimer('_ackTimer');
    if (this._acks.length === 0) return;
    const ids = this._acks;
    this._acks = [];
    // Not connected: the acks are dropped; the server hands those messages
    // over again and they are acked again then (see _onMessage).
    this._send(ids.length === 1 ? { type: 'ack', id: ids[0] } : { type: 'ack', ids });
  }

  // --- events and timers --------------------------------------------------
  _setState(state, detail) {
    this._state = state;
    this._emit('state', { state, ...detail });
  }

  _emit(event, arg) {
    const l = this._listeners.get(event);
    if (!l || l.length === 0) {
      if (event === 'error' && typeof console !== 'undefined') console.error('PushClient:', arg);
      return;
    }
    for (const fn of l.slice()) {
      try {
        fn(arg);
      } catch (e) {
        if (event !== 'error') this._emit('error', wrapError(`'${event}' listener threw`, e));
      }
    }
  }

  _clearTimer(name) {
    if (this[name] !== null) {
      this._clearTimeout(this[name]);
      this[name] = null;
    }
  }

  _clearTimers() {
    this._clearTimer('_retryTimer');
    this._clearTimer('_stableTimer');
    this._clearTimer('_ackTimer');
    this._clearTimer('_connectTimer');
  }
}

function wrapError(what, cause) {
  const e = new Error(`${what}: ${cause && cause.message ? cause.message : cause}`);
  e.cause = cause;
  return e;
}

export default PushClient;
