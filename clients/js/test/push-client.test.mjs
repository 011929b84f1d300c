// Unit tests of push-client against FakeWebSocket and FakeClock: no network,
// no real time. Run: node --test clients/js/test/
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

import { PushClient } from '../push-client.mjs';
import { FakeWebSocket, FakeClock, settle } from './fakes.mjs';

let clock;
beforeEach(() => {
  FakeWebSocket.reset();
  clock = new FakeClock();
});

function client(opts = {}) {
  const c = new PushClient('ws://127.0.0.1:1/ws', {
    token: 'T1',
    WebSocket: FakeWebSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 1,
    ...opts,
  });
  c.states = [];
  c.errors = [];
  c.on('state', (s) => c.states.push(s));
  c.on('error', (e) => c.errors.push(e));
  return c;
}

function msg(id, extra = {}) {
  return { type: 'message', id, topic: 't', data: { n: id }, ...extra };
}

async function connected(c, user = 'u1') {
  await settle();
  const ws = FakeWebSocket.last();
  ws.welcome(user);
  await settle();
  return ws;
}

test('connects with the token in the query and reports connecting then connected with the welcome', async () => {
  const c = client({ token: 'a b' });
  const ws = await connected(c);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(ws.url, 'ws://127.0.0.1:1/ws?token=a%20b');
  assert.deepEqual(c.states, [
    { state: 'connecting', attempt: 0 },
    { state: 'connected', welcome: { type: 'welcome', user: 'u1', node: 'n1', conn: 'c1' } },
  ]);
  assert.equal(c.state, 'connected');
  c.close();
});

test('handlers run one at a time in arrival order even when they return promises', async () => {
  const c = client();
  const log = [];
  const release = {};
  c.on('message', (m) => {
    log.push('start ' + m.id);
    return new Promise((r) => {
      release[m.id] = () => {
        log.push('end ' + m.id);
        r();
      };
    });
  });
  const ws = await connected(c);
  ws.frame(msg('m1'));
  ws.frame(msg('m2'));
  ws.frame(msg('m3'));
  await settle();
  assert.deepEqual(log, ['start m1']);
  release.m1();
  await settle();
  assert.deepEqual(log, ['start m1', 'end m1', 'start m2']);
  release.m2();
  await settle();
  release.m3();
  await settle();
  assert.deepEqual(log, ['start m1', 'end m1', 'start m2', 'end m2', 'start m3', 'end m3']);
  c.close();
});

test('messages that arrive together are acked in one frame with ids, after their handlers', async () => {
  const c = client();
  const got = [];
  c.on('message', async (m) => {
    got.push(m.id);
  });
  const ws = await connected(c);
  ws.frame(msg('m1'));
  ws.frame(msg('m2'));
  ws.frame(msg('m3'));
  await settle();
  assert.deepEqual(ws.acks(), [], 'acks wait for the batch timer');
  await clock.tick(5);
  assert.deepEqual(got, ['m1', 'm2', 'm3']);
  assert.deepEqual(ws.acks(), [{ type: 'ack', ids: ['m1', 'm2', 'm3'] }]);
  c.close();
});

test('a message alone is acked with a single id', async () => {
  const c = client();
  c.on('message', () => {});
  const ws = await connected(c);
  ws.frame(msg('m1'));
  await clock.tick(5);
  assert.deepEqual(ws.acks(), [{ type: 'ack', id: 'm1' }]);
  c.close();
});

test('a message whose handler threw or rejected is never acked, and comes to the handler again when redelivered', async () => {
  const c = client();
  const calls = [];
  let fail = new Set(['m2', 'm3']);
  c.on('message', async (m) => {
    calls.push(m.id);
    if (m.id === 'm2' && fail.has('m2')) throw new Error('boom');
    if (m.id === 'm3' && fail.has('m3')) return Promise.reject(new Error('nope'));
  });
  const ws = await connected(c);
  for (const id of ['m1', 'm2', 'm3', 'm4']) ws.frame(msg(id));
  await clock.tick(5);
  assert.deepEqual(calls, ['m1', 'm2', 'm3', 'm4']);
  assert.deepEqual(ws.acks(), [{ type: 'ack', ids: ['m1', 'm4'] }]);
  assert.equal(c.errors.length, 2);
  assert.match(c.errors[0].message, /handler failed for message m2: boom/);
  assert.match(c.errors[1].message, /handler failed for message m3: nope/);

  // The server hands m2 and m3 over again on the next connection.
  fail = new Set();
  ws.drop(1006);
  await clock.tick(500);
  const ws2 = await connected(c);
  ws2.frame(msg('m2'));
  ws2.frame(msg('m3'));
  await clock.tick(5);
  assert.deepEqual(calls, ['m1', 'm2', 'm3', 'm4', 'm2', 'm3']);
  assert.deepEqual(ws2.acks(), [{ type: 'ack', ids: ['m2', 'm3'] }]);
  c.close();
});

test('an id already handed over is dropped; one handled already is acked again without the handler', async () => {
  const c = client();
  const calls = [];
  c.on('message', (m) => calls.push(m.id));
  const ws = await connected(c);
  ws.frame(msg('m1'));
  ws.frame(msg('m1')); // while m1 is still queued
  await clock.tick(5);
  assert.deepEqual(calls, ['m1']);
  assert.deepEqual(ws.acks(), [{ type: 'ack', id: 'm1' }]);

  // Redelivered on a new connection (the ack was lost): no handler call, acked again.
  ws.drop(1006);
  await clock.tick(500);
  const ws2 = await connected(c);
  ws2.frame(msg('m1'));
  ws2.frame(msg('m2'));
  await clock.tick(5);
  assert.deepEqual(calls, ['m1', 'm2']);
  assert.deepEqual(ws2.acks(), [{ type: 'ack', ids: ['m1', 'm2'] }]);
  c.close();
});

test('the set of recent ids is bounded: an id older than dedupeSize ids is handed over again', async () => {
  const c = client({ dedupeSize: 3 });
  const calls = [];
  c.on('message', (m) => calls.push(m.id));
  const ws = await connected(c);
  for (const id of ['a', 'b', 'c', 'd', 'a', 'd']) ws.frame(msg(id));
  await clock.tick(5);
  assert.deepEqual(calls, ['a', 'b', 'c', 'd', 'a']);
  c.close();
});

test('backoff after drops is random() * min(30 s, 0.5 s * 2^attempt)', async () => {
  const c = client({ random: () => 0.5 });
  await settle();
  const delays = [];
  for (let i = 0; i < 9; i++) {
    FakeWebSocket.last().drop(i % 2 ? 1013 : 1006, 'x');
    const st = c.states[c.states.length - 1];
    assert.equal(st.state, 'disconnected');
    assert.equal(st.final, false);
    delays.push(st.retryInMs);
    assert.deepEqual(clock.pending(), [st.retryInMs]);
    const before = FakeWebSocket.instances.length;
    await clock.tick(st.retryInMs - 1);
    assert.equal(FakeWebSocket.instances.length, before, 'not before the delay');
    await clock.tick(1);
    assert.equal(FakeWebSocket.instances.length, before + 1, 'a new attempt after the delay');
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  c.close();
});

test('the backoff starts again after a connection that stayed up 10 s, not after a shorter one', async () => {
  const c = client({ random: () => 1 });
  await settle();
  FakeWebSocket.last().drop(1006);
  await clock.tick(500);
  FakeWebSocket.last().drop(1006);
  assert.equal(c.states[c.states.length - 1].retryInMs, 1000);
  await clock.tick(1000);
  // Up, but dropped after 9.999 s: the exponent keeps growing.
  let ws = await connected(c);
  await clock.tick(9999);
  ws.drop(1001, 'going away');
  assert.deepEqual(c.states[c.states.length - 1], {
    state: 'disconnected',
    code: 1001,
    reason: 'going away',
    final: false,
    retryInMs: 2000,
  });
  await clock.tick(2000);
  ws = await connected(c);
  await clock.tick(10000);
  ws.drop(1006);
  assert.equal(c.states[c.states.length - 1].retryInMs, 500);
  c.close();
});

test('an attempt with no welcome within connectTimeoutMs is given up and retried', async () => {
  const c = client();
  await settle();
  const ws = FakeWebSocket.last();
  ws.open(); // TCP and upgrade fine, but no welcome ever comes
  await clock.tick(9999);
  assert.equal(c.state, 'connecting');
  await clock.tick(1);
  assert.deepEqual(ws.closedWith, { code: 4000, reason: 'no welcome' });
  assert.deepEqual(c.states[c.states.length - 1], {
    state: 'disconnected',
    code: 1006,
    reason: 'no welcome within 10000 ms',
    final: false,
    retryInMs: 500,
  });
  ws.drop(1006); // the old socket's late close event changes nothing
  assert.deepEqual(clock.pending(), [500]);
  await clock.tick(500);
  const ws2 = await connected(c);
  assert.notEqual(ws2, ws);
  await clock.tick(20000);
  assert.equal(c.state, 'connected', 'a welcome stops the timer');
  c.close();
});

test('an error with no close after it (Node 20, connection refused) counts as a 1006 close', async () => {
  const c = client();
  await settle();
  const ws = FakeWebSocket.last();
  ws.fail();
  await clock.tick(0);
  assert.deepEqual(c.states[c.states.length - 1], {
    state: 'disconnected',
    code: 1006,
    reason: 'connection failed',
    final: false,
    retryInMs: 500,
  });
  assert.deepEqual(ws.closedWith, { code: undefined, reason: undefined });
  ws.drop(1006); // a close event after all: already handled, no second retry
  assert.deepEqual(clock.pending(), [500]);
  await clock.tick(500);
  assert.equal(FakeWebSocket.instances.length, 2);
  c.close();
});

test('an error followed by its close event is one drop, with the close event\'s code', async () => {
  const c = client();
  await settle();
  const ws = FakeWebSocket.last();
  ws.fail();
  ws.drop(1006, 'refused');
  await clock.tick(0);
  const drops = c.states.filter((s) => s.state === 'disconnected');
  assert.deepEqual(drops, [{ state: 'disconnected', code: 1006, reason: 'refused', final: false, retryInMs: 500 }]);
  c.close();
});

test('a normal close by the server is also followed by a reconnect', async () => {
  const c = client();
  const ws = await connected(c);
  ws.drop(1000, 'bye');
  await clock.tick(500);
  assert.equal(FakeWebSocket.instances.length, 2);
  c.close();
});

test('4401 asks getToken once more and retries at once; 4401 again stops with an error', async () => {
  const tokens = ['old', 'new'];
  let asked = 0;
  const c = client({ token: undefined, getToken: async () => tokens[asked++] });
  await settle();
  assert.equal(FakeWebSocket.last().url, 'ws://127.0.0.1:1/ws?token=old');
  FakeWebSocket.last().drop(4401, 'token expired');
  await clock.tick(0);
  assert.equal(asked, 2);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(FakeWebSocket.last().url, 'ws://127.0.0.1:1/ws?token=new');
  FakeWebSocket.last().drop(4401, 'bad signature');
  await clock.tick(120000);
  assert.equal(FakeWebSocket.instances.length, 2, 'no attempt after the second 4401');
  assert.equal(asked, 2);
  assert.equal(c.errors.length, 1);
  assert.equal(c.errors[0].code, 4401);
  assert.match(c.errors[0].message, /bad signature/);
  assert.deepEqual(c.states[c.states.length - 1], {
    state: 'disconnected',
    code: 4401,
    reason: 'bad signature',
    final: true,
  });
  assert.deepEqual(clock.pending(), []);
});

test('4401 after a welcome earlier is retried once again (the budget resets on each welcome)', async () => {
  let asked = 0;
  const c = client({ token: undefined, getToken: async () => 'tok' + asked++ });
  let ws = await connected(c);
  ws.drop(4401, 'expired');
  await clock.tick(0);
  ws = await connected(c);
  ws.drop(4401, 'expired');
  await clock.tick(0);
  assert.equal(FakeWebSocket.instances.length, 3);
  assert.equal(asked, 3);
  assert.equal(c.errors.length, 0);
  c.close();
});

test('4401 with a fixed token stops at once with an error', async () => {
  const c = client();
  await settle();
  FakeWebSocket.last().drop(4401, 'bad signature');
  await clock.tick(120000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(c.errors.length, 1);
  assert.equal(c.state, 'disconnected');
  assert.equal(c.states[c.states.length - 1].final, true);
});

test('a getToken that rejects is an error and a backed-off retry', async () => {
  let asked = 0;
  const c = client({
    token: undefined,
    getToken: async () => {
      if (asked++ === 0) throw new Error('auth server down');
      return 'ok';
    },
  });
  await settle();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.match(c.errors[0].message, /getToken failed: auth server down/);
  assert.equal(c.states[c.states.length - 1].retryInMs, 500);
  await clock.tick(500);
  assert.equal(FakeWebSocket.last().url, 'ws://127.0.0.1:1/ws?token=ok');
  c.close();
});

test('after close() there is no reconnect, whatever happens', async () => {
  const c = client();
  const ws = await connected(c);
  c.close();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'client closed' });
  assert.deepEqual(c.states[c.states.length - 1], {
    state: 'disconnected',
    code: 1000,
    reason: 'client closed',
    final: true,
  });
  ws.drop(1006); // a late close event from the socket
  await clock.tick(120000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.deepEqual(clock.pending(), []);
});

test('close() during the retry wait cancels the retry', async () => {
  const c = client();
  await settle();
  FakeWebSocket.last().drop(1006);
  c.close();
  await clock.tick(120000);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('channels: subscribe on welcome, messages to their handler only, no acks, resubscribe with since', async () => {
  const c = client();
  const room = [];
  const user = [];
  c.on('message', (m) => user.push(m.id));
  c.subscribe('room.42', (m) => room.push(m.id));
  c.subscribe('secret', (m) => room.push(m.id), { token: 'SUBTOKEN' });
  const ws = await connected(c);
  assert.deepEqual(ws.sent, [
    { type: 'subscribe', channel: 'room.42' },
    { type: 'subscribe', channel: 'secret', token: 'SUBTOKEN' },
  ]);
  ws.frame({ type: 'subscribed', channel: 'room.42', recovered: true });
  ws.frame(msg('c1', { channel: 'room.42' }));
  ws.frame(msg('u1'));
  ws.frame(msg('c2', { channel: 'room.42' }));
  ws.frame(msg('x1', { channel: 'not-subscribed' }));
  await clock.tick(5);
  assert.deepEqual(room, ['c1', 'c2']);
  assert.deepEqual(user, ['u1']);
  assert.deepEqual(ws.acks(), [{ type: 'ack', id: 'u1' }]);

  ws.drop(1006);
  await clock.tick(500);
  const ws2 = await connected(c);
  assert.deepEqual(ws2.sent, [
    { type: 'subscribe', channel: 'room.42', since: 'c2' },
    { type: 'subscribe', channel: 'secret', token: 'SUBTOKEN' },
  ]);
  // History after c2 replays; an id seen before is not handed over twice.
  ws2.frame(msg('c2', { channel: 'room.42' }));
  ws2.frame(msg('c3', { channel: 'room.42' }));
  await clock.tick(5);
  assert.deepEqual(room, ['c1', 'c2', 'c3']);
  assert.deepEqual(ws2.acks(), []);
  c.close();
});

test('subscribe while connected sends at once; unsubscribe sends and stops delivery and resubscription', async () => {
  const c = client();
  const room = [];
  const ws = await connected(c);
  c.subscribe('room.1', (m) => room.push(m.id), { since: 'c0' });
  assert.deepEqual(ws.sent, [{ type: 'subscribe', channel: 'room.1', since: 'c0' }]);
  ws.frame(msg('c1', { channel: 'room.1' }));
  await settle();
  c.unsubscribe('room.1');
  assert.deepEqual(ws.sent[1], { type: 'unsubscribe', channel: 'room.1' });
  ws.frame(msg('c2', { channel: 'room.1' }));
  await settle();
  assert.deepEqual(room, ['c1']);
  ws.drop(1006);
  await clock.tick(500);
  const ws2 = await connected(c);
  assert.deepEqual(ws2.sent, []);
  c.close();
});

test('a channel error frame is an error event and that channel is not resubscribed', async () => {
  const c = client();
  c.subscribe('vip', () => {});
  const ws = await connected(c);
  ws.frame({ type: 'error', channel: 'vip', code: 'forbidden', reason: 'no grant' });
  assert.equal(c.errors.length, 1);
  assert.equal(c.errors[0].channel, 'vip');
  assert.equal(c.errors[0].code, 'forbidden');
  assert.equal(c.state, 'connected', 'the connection stays open');
  ws.drop(1006);
  await clock.tick(500);
  const ws2 = await connected(c);
  assert.deepEqual(ws2.sent, []);
  c.close();
});

test('options must name a token source and a WebSocket', () => {
  assert.throws(() => new PushClient('ws://x/ws', { WebSocket: FakeWebSocket }), /token or options.getToken/);
  assert.throws(() => new PushClient('ws://x/ws', { token: 't', WebSocket: 42 }), /no WebSocket/);
});
