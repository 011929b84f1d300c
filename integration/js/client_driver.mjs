// Runs a PushClient in Node for integration/test_js_client.py and reports,
// one JSON object a line on stdout, every state, message, error, token
// request, and every raw frame received and sent. Reads commands, one JSON
// object a line, on stdin: {"cmd":"close"}, {"cmd":"subscribe","channel":C}.
//   node --experimental-websocket client_driver.mjs WS_URL TOKEN_COMMAND...
// TOKEN_COMMAND (e.g. pushctl token --sub u1) is run for every getToken.
import { execFileSync } from 'node:child_process';
import readline from 'node:readline';

import { PushClient } from '../../clients/js/push-client.mjs';

const [url, ...tokenCmd] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// The global WebSocket (Node 20: --experimental-websocket), with every frame
// reported, so the test sees what crossed the wire and not only what the
// client handed to the application.
class ReportingWebSocket extends WebSocket {
  constructor(u) {
    super(u);
    this.addEventListener('message', (e) => out({ ev: 'recv', frame: JSON.parse(e.data) }));
  }
  send(data) {
    out({ ev: 'sent', frame: JSON.parse(data) });
    super.send(data);
  }
}

const c = new PushClient(url, {
  WebSocket: ReportingWebSocket,
  getToken: async () => {
    out({ ev: 'getToken' });
    return execFileSync(tokenCmd[0], tokenCmd.slice(1)).toString().trim();
  },
});
c.on('state', (s) => out({ ev: 'state', ...s }));
c.on('message', (m) => out({ ev: 'message', frame: m }));
c.on('error', (e) => out({ ev: 'error', message: e.message, code: e.code ?? null }));

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.cmd === 'close') c.close();
  if (cmd.cmd === 'subscribe') c.subscribe(cmd.channel, (m) => out({ ev: 'channel', frame: m }));
});
rl.on('close', () => {
  c.close();
  setTimeout(() => process.exit(0), 50);
});
