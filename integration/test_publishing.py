"""The contract's "Publishing" and "Delivery guarantees" sections against real
servers: both encodings, HTTP, every bad input, offline delivery, acks, ttl 0,
idempotency and order."""

import asyncio
import json
import unittest

from harness import (ClusterTest, eventually, free_port, http_post, metric, pb_push_request,
                     pb_strings, ws_recv_json, ws_welcome)


class Publish(ClusterTest):
    async def request_json(self, body, headers=None):
        return json.loads(await self.nats.request("push.collect", body, headers=headers))

    async def test_json_publish_replies_id_and_delivers(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("u1")))
        r = await self.request_json(json.dumps({"to": ["u1"], "topic": "order.paid", "data": {"any": "json"}}))
        frame = await ws_recv_json(ws)
        self.assertEqual(frame, {"type": "message", "id": r["id"], "topic": "order.paid", "data": {"any": "json"}})
        await ws.close()

    async def test_json_by_content_type_header_with_leading_blanks(self):
        r = await self.request_json('  \n{"to":["u2"],"data":1}', headers={"Content-Type": "application/json"})
        self.assertIn("id", r)

    async def test_protobuf_publish_replies_pushreply_and_non_json_arrives_base64(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("u1")))
        raw = await self.nats.request("push.collect", pb_push_request(to=["u1"], topic="bin", data=b"\x00\x01\xff",
                                                                      content_type="application/octet-stream"))
        reply = pb_strings(raw)
        self.assertNotIn(2, reply, reply)  # no error field
        msg_id = reply[1][0].decode()
        frame = await ws_recv_json(ws)
        self.assertEqual(frame, {"type": "message", "id": msg_id, "topic": "bin", "data": "AAH/",
                                 "encoding": "base64"})
        await ws.close()

    async def test_bad_inputs_get_an_error_each_are_counted_and_service_keeps_serving(self):
        cases = {
            "garbage": b"\xff\xfe\x00garbage-not-protobuf\x07",
            "invalid json": b'{"to":["u1"],',
            "both": json.dumps({"to": ["u1"], "broadcast": True, "data": 1}).encode(),
            "neither": json.dumps({"data": 1}).encode(),
            "1001 recipients": json.dumps({"to": [f"u{i}" for i in range(1001)], "data": 1}).encode(),
            "empty user id": json.dumps({"to": [""], "data": 1}).encode(),
            "oversized user id": json.dumps({"to": ["x" * 129], "data": 1}).encode(),
            "payload over 1 MiB": json.dumps({"to": ["u1"], "data": "x" * (1024 * 1024)}).encode(),
        }
        for name, body in cases.items():
            raw = await self.nats.request("push.collect", body)
            if raw[:1] == b"{":
                r = json.loads(raw)
                self.assertIn("error", r, name)
                self.assertNotIn("id", r, name)
            else:
                self.assertIn(2, pb_strings(raw), name)
        text = self.c.scrape("collector")
        rejected = sum(float(l.split()[-1]) for l in text.splitlines()
                       if l.startswith("push_collect_rejected_total{"))
        self.assertEqual(rejected, len(cases))
        self.assertEqual(metric(text, "push_collect_accepted_total"), 0)
        self.assertEqual(metric(text, "push_collect_commits_total"), 0)  # rejected: never stored
        r = await self.request_json(json.dumps({"to": ["u1"], "data": "fine"}))
        self.assertIn("id", r)
        # the reply comes after its commit, which the writer counts first
        self.assertEqual(metric(self.c.scrape("collector"), "push_collect_commits_total"), 1)

    async def test_http_ingest(self):
        self.c.procs["collector"].stop()
        from harness import free_port
        port = free_port()
        self.c.start("collector", "collector", "--store", f"sqlite:{self.c.dir}/push.db", "--http",
                     f"127.0.0.1:{port}")
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("h1")))
        status, body = await asyncio.to_thread(http_post, f"http://127.0.0.1:{port}/v1/messages",
                                               json.dumps({"to": ["h1"], "topic": "t", "data": [1, 2]}))
        self.assertEqual(status, 202, body)
        frame = await ws_recv_json(ws)
        self.assertEqual((frame["id"], frame["data"]), (json.loads(body)["id"], [1, 2]))
        status, body = await asyncio.to_thread(http_post, f"http://127.0.0.1:{port}/v1/messages", "{nope")
        self.assertEqual(status, 400)
        self.assertIn("error", json.loads(body))
        # A body over the 1 MiB limit: 413 with a reason, counted like any rejection.
        big = json.dumps({"to": ["h1"], "data": "x" * (1024 * 1024 + 10)})
        status, body = await asyncio.to_thread(http_post, f"http://127.0.0.1:{port}/v1/messages", big)
        self.assertEqual(status, 413, body)
        self.assertIn("limit", json.loads(body)["error"])
        text = self.c.scrape("collector")
        self.assertEqual(metric(text, 'push_collect_rejected_total{reason="payload_too_large"}'), 1)
        self.assertEqual(metric(text, 'push_collect_rejected_total{reason="invalid_json"}'), 1)
        # HTTP and NATS publishes share one acceptance order (one writer).
        for n in range(20):
            if n % 2:
                status, _ = await asyncio.to_thread(http_post, f"http://127.0.0.1:{port}/v1/messages",
                                                    json.dumps({"to": ["h1"], "data": n}))
                self.assertEqual(status, 202)
            else:
                r = json.loads(await self.nats.request("push.collect", json.dumps({"to": ["h1"], "data": n})))
                self.assertIn("id", r)
        got = [(await ws_recv_json(ws))["data"] for _ in range(20)]
        self.assertEqual(got, list(range(20)))
        await ws.close()


class Delivery(ClusterTest):
    async def publish(self, user, data, **kw):
        body = {"to": [user], "data": data, **kw}
        return json.loads(await self.nats.request("push.collect", json.dumps(body)))["id"]

    async def test_offline_user_gets_message_on_connect_oldest_first(self):
        ids = [await self.publish("late", n) for n in range(3)]
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("late")))
        got = [await ws_recv_json(ws) for _ in ids]
        self.assertEqual([f["id"] for f in got], ids)
        self.assertEqual([f["data"] for f in got], [0, 1, 2])
        await ws.close()

    async def test_acked_message_is_not_delivered_again(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("acker")))
        mid = await self.publish("acker", "once")
        self.assertEqual((await ws_recv_json(ws))["id"], mid)
        await ws.send(json.dumps({"type": "ack", "id": mid}))
        await asyncio.sleep(0.5)  # the ack travels pusher -> NATS -> collector
        await ws.close()
        later = await self.publish("acker", "marker")
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("acker")))
        frame = await ws_recv_json(ws)
        self.assertEqual(frame["id"], later)  # only the unacked marker comes again
        await ws.close()

    async def test_unacked_message_comes_again_on_reconnect(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("forgetful")))
        mid = await self.publish("forgetful", "again")
        self.assertEqual((await ws_recv_json(ws))["id"], mid)
        await ws.close()
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("forgetful")))
        self.assertEqual((await ws_recv_json(ws))["id"], mid)
        await ws.close()

    async def test_ttl_0_is_live_only(self):
        await self.publish("ephemeral", "gone", ttl=0)
        keep = await self.publish("ephemeral", "kept", ttl=60)
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("ephemeral")))
        self.assertEqual((await ws_recv_json(ws))["id"], keep)
        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await ws.close()

    async def test_same_id_stores_and_delivers_once(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("idem")))
        a = await self.publish("idem", "one", id="order-42")
        b = await self.publish("idem", "two", id="order-42")
        self.assertEqual(a, b)
        self.assertEqual((await ws_recv_json(ws))["data"], "one")
        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await ws.close()

    async def test_many_messages_to_one_user_arrive_in_acceptance_order(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("order")))
        ids = []
        for n in range(300):
            ids.append(await self.publish("order", n))
        got = [(await ws_recv_json(ws, timeout=10))["id"] for _ in ids]
        self.assertEqual(got, ids)
        await ws.close()


class OverNatsPayload(ClusterTest):
    nats_max_payload = 256 * 1024

    async def test_a_stored_message_over_the_nats_limit_is_counted_and_holds_up_nothing(self):
        # Through HTTP, which takes up to 1 MiB whatever NATS allows: stored,
        # but too large to hand to the dispatcher through this nats-server.
        self.c.procs["collector"].stop()
        port = free_port()
        self.c.start("collector", "collector", "--store", f"sqlite:{self.c.dir}/push.db", "--http",
                     f"127.0.0.1:{port}")
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("big")))
        url = f"http://127.0.0.1:{port}/v1/messages"
        for data in ("x" * (300 * 1024), "after", "and after"):
            status, body = await asyncio.to_thread(http_post, url, json.dumps({"to": ["big"], "data": data}))
            self.assertEqual(status, 202, body)
        self.assertEqual((await ws_recv_json(ws, timeout=10))["data"], "after")
        self.assertEqual((await ws_recv_json(ws, timeout=10))["data"], "and after")
        text = self.c.scrape("collector")
        self.assertEqual(metric(text, "push_collect_handover_too_large_total"), 1)
        await ws.close()


if __name__ == "__main__":
    unittest.main()
