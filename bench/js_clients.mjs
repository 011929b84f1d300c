// N PushClients (clients/js) in one Node process, for bench/jsclients.sh.
// Each client is user <prefix><n> and expects the pubload messages with
// seq % users == n (pubload cycles its recipients), seq < count. Counts what
// reached the application (handed), what came on the wire (including the
// duplicates the client dropped), order per user, and every reconnection.
// Prints {"ev":"ready"} once all are connected, then one JSON report when
// every message has been handed over or --timeout seconds have passed.
//   node --experimental-websocket js_clients.mjs --url WS --users N --count C --secret S
import { createHmac } from 'node:crypto';

import { PushClient } from '../clients/js/push-client.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : def;
};
const url = arg('url');
const users = Number(arg('users', 1000));
const count = Number(arg('count', 100000));
const secret = arg('secret');
const prefix = arg('prefix', 'u');
const timeoutS = Number(arg('timeout', 300));

const b64u = (b) => Buffer.from(b).toString('base64url');
function token(sub) {
  // The HS256 JWT pushctl token makes, minted here so 1,000 clients do
  // not start 1,000 processes.
  const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64u(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = createHmac('sha256', secret).update(head + '.' + body).digest('base64url');
  return `${head}.${body}.${sig}`;
}

let wireMessages = 0;
class CountingWebSocket extends WebSocket {
  constructor(u) {
    super(u);
    this.addEventListener('message', (e) => {
      if (e.data.startsWith('{"type":"message"')) wireMessages++;
    });
  }
}

const expectedPerUser = (n) => Math.floor(count / users) + (n < count % users ? 1 : 0);
const expectedTotal = count;
let handed = 0;
let duplicates = 0;
let orderViolations = 0;
let errors = 0;
let connectedOnce = 0;
const reconnectMs = [];
const reconnectedAt = [];
const clients = [];

for (let n = 0; n < users; n++) {
  const user = prefix + n;
  const st = { seen: new Set(), last: -1, downSince: null, everConnected: false, done: false };
  const c = new PushClient(url, { getToken: async () => token(user), WebSocket: CountingWebSocket });
  c.on('message', (m) => {
    const seq = m.data.seq;
    if (st.seen.has(seq)) duplicates++;
    st.seen.add(seq);
    if (seq <= st.last) orderViolations++;
    st.last = Math.max(st.last, seq);
    handed++;
  });
  c.on('state', (s) => {
    if (process.env.JS_BENCH_DEBUG && n === 0) console.error(Date.now(), JSON.stringify(s));
    const now = Date.now();
    if (s.state === 'connected') {
      if (!st.everConnected) {
        st.everConnected = true;
        connectedOnce++;
        if (connectedOnce === users) console.log(JSON.stringify({ ev: 'ready' }));
      } else if (st.downSince !== null) {
        reconnectMs.push(now - st.downSince);
        reconnectedAt.push(now);
      }
      st.downSince = null;
    } else if (s.state === 'disconnected' && st.everConnected && st.downSince === null) {
      st.downSince = now;
    }
  });
  c.on('error', () => errors++);
  clients.push({ c, st, n });
}

function pct(a, p) {
  if (a.length === 0) return null;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const started = Date.now();
const timer = setInterval(() => {
  const complete = clients.every(({ st, n }) => st.seen.size >= expectedPerUser(n));
  if (!complete && Date.now() - started < timeoutS * 1000) return;
  clearInterval(timer);
  let missing = 0;
  for (const { st, n } of clients) missing += Math.max(0, expectedPerUser(n) - st.seen.size);
  console.log(JSON.stringify({
    ev: 'report',
    clients: users,
    expected: expectedTotal,
    handed,
    handed_twice: duplicates,
    missing,
    out_of_order: orderViolations,
    wire_messages: wireMessages,
    wire_duplicates_dropped: wireMessages - handed,
    reconnections: reconnectMs.length,
    reconnect_p50_ms: pct(reconnectMs, 50),
    reconnect_p99_ms: pct(reconnectMs, 99),
    reconnect_max_ms: pct(reconnectMs, 100),
    reconnected_at_ms: reconnectedAt,
    errors,
    complete,
  }));
  for (const { c } of clients) c.close();
  setTimeout(() => process.exit(0), 200);
}, 200);
