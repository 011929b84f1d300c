"""The contract's "Connecting" section against real servers and a real
WebSocket client: every way a handshake can go, and what a connection gets."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import unittest

import websockets

from harness import (SECRET, ClusterTest, eventually, http_get, ws_close_code, ws_connect,
                     ws_recv_json, ws_welcome)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(payload, secret=SECRET, alg="HS256", sign=True):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    signing_input = f"{header}.{body}".encode()
    sig = b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()) if sign else ""
    return f"{header}.{body}.{sig}"


class Handshake(ClusterTest):
    async def test_good_token_gets_welcome_first(self):
        ws, w = await ws_welcome(self.c.ws_url(token=make_jwt({"sub": "u1", "exp": int(time.time()) + 60})))
        self.assertEqual(set(w), {"type", "user", "node", "conn"})
        self.assertEqual((w["user"], w["node"]), ("u1", "pusher"))
        await ws.close()

    async def test_bearer_header_is_accepted(self):
        token = make_jwt({"sub": "u-header"})
        ws, w = await ws_welcome(self.c.ws_url(), headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(w["user"], "u-header")
        await ws.close()

    async def test_missing_or_malformed_token_is_401_without_upgrade(self):
        for url in (self.c.ws_url(), self.c.ws_url(token="not-a-jwt"), self.c.ws_url(token="a.b")):
            with self.assertRaises(websockets.InvalidStatusCode) as cm:
                await ws_connect(url)
            self.assertEqual(cm.exception.status_code, 401, url)
        self.assertIn("push_pusher_http_401_total 3\n", self.c.scrape("pusher"))

    async def _refused(self, token, reason):
        ws = await ws_connect(self.c.ws_url(token=token))
        code, text = await ws_close_code(ws)
        self.assertEqual(code, 4401)
        self.assertIn(reason, text)

    async def test_bad_signature_closes_4401(self):
        await self._refused(make_jwt({"sub": "u1"}, secret="wrong"), "bad_signature")

    async def test_expired_closes_4401(self):
        await self._refused(make_jwt({"sub": "u1", "exp": int(time.time()) - 3600}), "expired")

    async def test_not_yet_valid_closes_4401(self):
        await self._refused(make_jwt({"sub": "u1", "nbf": int(time.time()) + 3600}), "not_yet_valid")

    async def test_alg_none_closes_4401(self):
        await self._refused(make_jwt({"sub": "u1"}, alg="none", sign=False), "bad_alg")

    async def test_alg_hs512_closes_4401(self):
        await self._refused(make_jwt({"sub": "u1"}, alg="HS512"), "bad_alg")
        self.assertIn('push_authd_refused_total{reason="bad_alg"} 1\n', self.c.scrape("authd"))
        self.assertIn('push_pusher_auth_refused_total{reason="bad_alg"} 1\n', self.c.scrape("pusher"))

    async def test_authd_down_closes_1013(self):
        self.assertEqual(self.c.procs["authd"].stop(), 0)
        ws = await ws_connect(self.c.ws_url(token=make_jwt({"sub": "u1"})))
        t0 = time.monotonic()
        code, _ = await ws_close_code(ws, timeout=6)
        self.assertEqual(code, 1013)
        self.assertGreater(time.monotonic() - t0, 1.5)  # the contract's 2 s wait, not an instant refusal


class Frames(ClusterTest):
    async def test_oversize_client_frame_closes_1009(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=make_jwt({"sub": "u1"})))
        await ws.send("x" * (64 * 1024 + 1))
        code, _ = await ws_close_code(ws)
        self.assertEqual(code, 1009)

    async def test_malformed_frames_are_ignored_and_counted(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=make_jwt({"sub": "u1"})))
        for bad in ("not json", "[]", '{"type":"nope"}', '{"type":"ack"}', '{"type":"ack","ids":[1]}'):
            await ws.send(bad)
        await eventually(lambda: "push_pusher_malformed_frames_total 5\n" in self.c.scrape("pusher"))
        # still served after all that
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "u1", "1")
        frame = await ws_recv_json(ws)
        self.assertEqual(frame["id"], json.loads(out.stdout)["id"])
        await ws.close()

    async def test_ack_is_forwarded_on_the_ack_subject(self):
        acks = await self.nats.sub("push.ack")
        ws, w = await ws_welcome(self.c.ws_url(token=make_jwt({"sub": "u1"})))
        await ws.send(json.dumps({"type": "ack", "id": "0123456789abcdef01234567"}))
        subject, _, data, _ = await asyncio.wait_for(acks.get(), 5)
        self.assertEqual(subject, "push.ack")
        # Ack{user=1, ids=2, node=3, conn=4} as protobuf
        self.assertIn(b"u1", data)
        self.assertIn(b"0123456789abcdef01234567", data)
        self.assertIn(w["conn"].encode(), data)
        await ws.close()

    async def test_sigterm_closes_clients_with_1001_and_exits_0(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=make_jwt({"sub": "u1"})))
        stop = asyncio.get_running_loop().run_in_executor(None, self.c.procs["pusher"].stop)
        code, _ = await ws_close_code(ws, timeout=10)
        self.assertEqual(code, 1001)
        self.assertEqual(await stop, 0)


class Cluster2(ClusterTest):
    pushers = ("pusher-a", "pusher-b")

    async def test_user_on_two_pushers_gets_each_message_on_every_connection(self):
        tok = make_jwt({"sub": "multi"})
        conns = [(await ws_welcome(self.c.ws_url(p, tok)))[0] for p in ("pusher-a", "pusher-a", "pusher-b")]
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "multi", '{"n":1}')
        msg_id = json.loads(out.stdout)["id"]
        for ws in conns:
            frame = await ws_recv_json(ws)
            self.assertEqual((frame["id"], frame["data"]), (msg_id, {"n": 1}))
        for ws in conns:
            await ws.close()

    async def test_broadcast_reaches_every_connection_on_every_pusher(self):
        conns = [(await ws_welcome(self.c.ws_url(p, make_jwt({"sub": f"b{i}"}))))[0]
                 for i, p in enumerate(("pusher-a", "pusher-b", "pusher-b"))]
        out = await asyncio.to_thread(self.c.pushctl, "broadcast", "--topic", "news", '"hello all"')
        self.assertEqual(out.returncode, 0, out.stderr)
        for ws in conns:
            frame = await ws_recv_json(ws)
            self.assertEqual((frame["topic"], frame["data"]), ("news", "hello all"))
        for ws in conns:
            await ws.close()

    async def test_presence_counts_connections_on_every_node(self):
        tok = make_jwt({"sub": "pres"})
        a, _ = await ws_welcome(self.c.ws_url("pusher-a", tok))
        b1, _ = await ws_welcome(self.c.ws_url("pusher-b", tok))
        b2, _ = await ws_welcome(self.c.ws_url("pusher-b", tok))

        async def presence():
            return json.loads(await self.nats.request("push.presence", json.dumps({"user": "pres"})))

        p = await eventually(lambda: self._if_online(presence(), 3))
        self.assertEqual(p["user"], "pres")
        self.assertEqual(sorted(p["nodes"]), ["pusher-a", "pusher-b"])
        for ws in (a, b1, b2):
            await ws.close()
        p = await eventually(lambda: self._if_online(presence(), 0))
        self.assertEqual((p["online"], p["nodes"]), (False, []))

    @staticmethod
    async def _if_online(coro, connections):
        p = await coro
        return p if p.get("connections") == connections else None

    async def test_killed_pusher_routes_stop_counting_after_route_ttl(self):
        self.c.procs["pusher-b"].stop()
        self.c.start_pusher("pusher-c", route_ttl=5)
        tok = make_jwt({"sub": "ghost"})
        a, _ = await ws_welcome(self.c.ws_url("pusher-a", tok))
        c, _ = await ws_welcome(self.c.ws_url("pusher-c", tok))
        await eventually(lambda: len(self.c.redis("ZRANGE", "push:route:ghost", "0", "-1").split()) == 2)
        self.c.procs["pusher-c"].kill9()
        now = time.time()
        live = lambda: self.c.redis("ZRANGEBYSCORE", "push:route:ghost", str(int(time.time())), "+inf").split()
        self.assertEqual(sorted(live()), ["pusher-a", "pusher-c"])
        await eventually(lambda: live() == ["pusher-a"], timeout=10)
        self.assertGreater(time.time() - now, 3)  # it took the TTL, not an instant removal
        await a.close()


class RedisRestart(ClusterTest):
    async def test_routes_come_back_after_redis_restart_without_reconnecting(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=make_jwt({"sub": "stay"})))
        await eventually(lambda: self.c.redis("ZRANGE", "push:route:stay", "0", "-1") == "pusher")
        self.c.procs["redis"].kill9()
        self.c.start_redis()  # a fresh, empty server on the same port
        await eventually(lambda: self.c.redis("ZRANGE", "push:route:stay", "0", "-1") == "pusher", timeout=30)
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "stay", '"still here"')
        frame = await ws_recv_json(ws, timeout=10)
        self.assertEqual((frame["id"], frame["data"]), (json.loads(out.stdout)["id"], "still here"))
        await ws.close()


if __name__ == "__main__":
    unittest.main()
