// Test doubles for push-client: a WebSocket class whose "server side" the
// test drives by hand, and a clock whose time moves only when told.

export class FakeWebSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0; // CONNECTING
    this.sent = []; // parsed frames the client sent
    this.closedWith = null; // {code, reason} when the client called close()
    this.onmessage = this.onclose = this.onerror = this.onopen = null;
    FakeWebSocket.instances.push(this);
  }

  static reset() {
    FakeWebSocket.instances = [];
  }

  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  send(text) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // --- the server's side ---
  open() {
    this.readyState = 1;
    if (this.onopen) this.onopen({});
  }

  frame(obj) {
    this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }

  welcome(user = 'u1') {
    this.open();
    this.frame({ type: 'welcome', user, node: 'n1', conn: 'c' + FakeWebSocket.instances.length });
  }

  /** A failed connection as Node 20 reports it: an error, and no close. */
  fail() {
    this.readyState = 0;
    if (this.onerror) this.onerror({ type: 'error' });
  }

  drop(code = 1006, reason = '') {
    this.readyState = 3;
    if (this.onclose) this.onclose({ code, reason });
  }

  acks() {
    return this.sent.filter((f) => f.type === 'ack');
  }
}

export class FakeClock {
  constructor() {
    this.t = 0;
    this.timers = new Map(); // handle -> {at, fn, ms}
    this.next = 1;
    this.setTimeout = (fn, ms) => {
      const h = this.next++;
      this.timers.set(h, { at: this.t + ms, fn, ms });
      return h;
    };
    this.clearTimeout = (h) => {
      this.timers.delete(h);
    };
    this.now = () => this.t;
  }

  /** Delays (ms) of the pending timers, in the order they were set. */
  pending() {
    return [...this.timers.values()].map((x) => x.ms);
  }

  /** Move time forward by ms, running each timer that falls due, in order. */
  async tick(ms) {
    const end = this.t + ms;
    await settle(); // timers set by work already queued count from now
    for (;;) {
      let due = null;
      for (const [h, x] of this.timers) if (x.at <= end && (!due || x.at < due[1].at)) due = [h, x];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

/** Let every queued promise job and microtask run. */
export function settle() {
  return new Promise((r) => setImmediate(r));
}
