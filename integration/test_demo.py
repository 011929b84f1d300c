"""`pushctl demo` and the collector's CORS, without a browser: what the page
relies on, checked byte for byte."""

import asyncio
import json
import os
import subprocess
import urllib.request

from demo_cluster import DemoClusterTest
from harness import BIN, http_get, http_post, ws_recv_json, ws_welcome

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def request(method, url, headers=None, body=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class Demo(DemoClusterTest):

    def test_ingest_answers_a_cors_preflight_and_marks_its_answers(self):
        status, headers, body = request("OPTIONS", self.ingest_url + "/v1/messages", {
            "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual((status, body), (204, ""))
        self.assertEqual(headers["Access-Control-Allow-Origin"], "*")
        self.assertEqual(headers["Access-Control-Allow-Methods"], "POST, OPTIONS")
        self.assertEqual(headers["Access-Control-Allow-Headers"], "Content-Type")

        status, headers, body = request("POST", self.ingest_url + "/v1/messages",
                                        {"Content-Type": "application/json", "Origin": "http://x"},
                                        b'{"to":["u1"],"data":1}')
        self.assertEqual(status, 202, body)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "*")
        status, headers, body = request("POST", self.ingest_url + "/v1/messages",
                                        {"Content-Type": "application/json"}, b'{"data":1}')
        self.assertEqual(status, 400, body)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "*")

    def test_demo_serves_the_page_the_client_and_its_config(self):
        status, body = http_get(self.demo_url + "/")
        self.assertEqual(status, 200)
        self.assertIn("import { PushClient } from '/push-client.mjs';", body)
        with open(os.path.join(ROOT, "clients", "js", "push-client.mjs")) as f:
            self.assertEqual(http_get(self.demo_url + "/push-client.mjs"), (200, f.read()))
        status, body = http_get(self.demo_url + "/config.json")
        self.assertEqual((status, json.loads(body)),
                         (200, {"ws_url": self.c.ws_url("pusher"), "http_url": self.ingest_url}))
        self.assertEqual(http_get(self.demo_url + "/nope")[0], 404)
        self.assertEqual(http_post(self.demo_url + "/token?user=x", "")[0], 405)

    async def test_demo_token_is_accepted_by_the_pusher_for_that_user(self):
        status, token = http_get(self.demo_url + "/token?user=page%20user")
        self.assertEqual(status, 200)
        ws, welcome = await ws_welcome(self.c.ws_url("pusher", token.strip()))
        self.assertEqual(welcome["user"], "page user")
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "page user", '"hi"')
        frame = await ws_recv_json(ws)
        self.assertEqual((frame["id"], frame["data"]), (json.loads(out.stdout)["id"], "hi"))
        await ws.close()
        self.assertEqual(http_get(self.demo_url + "/token")[0], 400)
        self.assertEqual(http_get(self.demo_url + "/token?user=")[0], 400)

    def test_demo_flags_follow_the_contract(self):
        pushctl = os.path.join(BIN, "pushctl")
        out = subprocess.run([pushctl, "demo", "--help"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        for flag, env in (("--listen", "PUSH_DEMO_LISTEN"), ("--ws-url", "PUSH_DEMO_WS_URL"),
                          ("--http-url", "PUSH_DEMO_HTTP_URL"), ("--jwt-secret", "PUSH_JWT_SECRET"),
                          ("--token-ttl", "PUSH_DEMO_TOKEN_TTL")):
            self.assertIn(flag, out.stdout)
            self.assertIn(env, out.stdout)
        out = subprocess.run([pushctl, "demo", "--no-such-flag"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 2)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        env = {k: v for k, v in self.c.env.items() if k != "PUSH_JWT_SECRET"}
        out = subprocess.run([pushctl, "demo"], capture_output=True, text=True, env=env)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("demo ", subprocess.run([pushctl, "--help"], capture_output=True, text=True).stdout)
