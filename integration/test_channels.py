"""The contract's "Channels" section against real servers: permission (claim,
prefix, subscription token, refusal), delivery only to the nodes and
connections that subscribed, unsubscribe, recovery with since (and
recovered:false past --channel-history), order, presence, routes after a
pusher dies and after Redis is flushed, bad subscribe frames and bad
publishes.

"Nothing arrived" is never a wait: a marker message on a channel of the same
shard (so the same dispatcher worker, in stream order) is published after
the one that must not arrive, and the first frame seen must be the marker.
"""

import asyncio
import json
import os
import signal
import time
import unittest

from harness import (ClusterTest, eventually, http_post, metric, pb_field, pb_strings,
                     shard_of, ws_recv_json, ws_welcome)


def same_shard(name, stem):
    """A channel called stem.<n> on the shard of name."""
    for i in range(1000):
        cand = f"{stem}.{i}"
        if shard_of(cand) == shard_of(name):
            return cand
    raise AssertionError("no channel on that shard")


class ChannelTest(ClusterTest):
    async def publish(self, channel, data, ttl=None, topic="t"):
        body = {"channel": channel, "topic": topic, "data": data}
        if ttl is not None:
            body["ttl"] = ttl
        r = json.loads(await self.nats.request("push.collect", json.dumps(body)))
        self.assertIn("id", r, r)
        return r["id"]

    async def connect(self, user, pusher="pusher", channels=None):
        ws, _ = await ws_welcome(self.c.ws_url(pusher, self.c.token(user, channels=channels)))
        return ws

    async def subscribe(self, ws, channel, since=None, token=None, want="subscribed"):
        frame = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        if token is not None:
            frame["token"] = token
        await ws.send(json.dumps(frame))
        answer = await ws_recv_json(ws)
        if want == "subscribed":
            self.assertEqual(answer["type"], "subscribed", answer)
            self.assertEqual(answer["channel"], channel)
        return answer

    def message(self, msg_id, channel, data, topic="t"):
        return {"type": "message", "id": msg_id, "channel": channel, "topic": topic, "data": data}


class Permission(ChannelTest):
    async def test_claim_grants_exact_names_and_prefixes_and_refuses_the_rest(self):
        ws = await self.connect("u1", channels=["room.1", "news.*"])
        self.assertEqual(await self.subscribe(ws, "room.1"),
                         {"type": "subscribed", "channel": "room.1", "recovered": True})
        await self.subscribe(ws, "news.eu")
        refused = await self.subscribe(ws, "room.2", want="error")
        self.assertEqual(refused["type"], "error")
        self.assertEqual(refused["channel"], "room.2")
        self.assertEqual(refused["code"], "forbidden")
        self.assertTrue(refused["reason"])
        refused = await self.subscribe(ws, "news", want="error")  # "news.*" is not "news"
        self.assertEqual(refused["code"], "forbidden")
        # the connection and its subscriptions still work
        m1 = await self.publish("news.eu", {"n": 1})
        self.assertEqual(await ws_recv_json(ws), self.message(m1, "news.eu", {"n": 1}))
        text = self.c.scrape("pusher")
        self.assertEqual(metric(text, 'push_pusher_subscribe_refused_total{reason="forbidden"}'), 2)
        self.assertEqual(metric(text, "push_pusher_subscriptions"), 2)
        await ws.close()

    async def test_subscription_token_checked_by_authd_grants_one_channel_of_one_user(self):
        ws = await self.connect("u1")  # no channels claim at all
        refused = await self.subscribe(ws, "room.9", want="error")
        self.assertEqual(refused["code"], "forbidden")
        ok = await self.subscribe(ws, "room.9", token=self.c.token("u1", channel="room.9"))
        self.assertEqual(ok, {"type": "subscribed", "channel": "room.9", "recovered": True})
        for token, why in ((self.c.token("u1", channel="room.8"), "another channel"),
                           (self.c.token("u2", channel="room.7"), "another user"),
                           (self.c.token("u1", channel="room.7")[:-2] + "AA", "bad signature")):
            channel = "room.7"
            refused = await self.subscribe(ws, channel, token=token, want="error")
            self.assertEqual(refused["type"], "error", why)
            self.assertEqual(refused["code"], "forbidden", why)
            self.assertEqual(refused["channel"], channel, why)
        m1 = await self.publish("room.9", "hi")
        self.assertEqual(await ws_recv_json(ws), self.message(m1, "room.9", "hi"))
        text = self.c.scrape("authd")
        self.assertEqual(metric(text, "push_authd_subscription_requests_total"), 4)
        self.assertEqual(metric(text, "push_authd_subscription_forbidden_total"), 1)
        await ws.close()


class Delivery(ChannelTest):
    pushers = ("p1", "p2", "p3")

    async def test_subscribers_on_two_pushers_get_it_and_nobody_else_does(self):
        room = "room.42"
        marker = same_shard(room, "marker")
        p3_node = await self.nats.sub("push.node.p3")
        a = await self.connect("ua", "p1", channels=[room])
        b = await self.connect("ub", "p2", channels=[room])
        idle = await self.connect("uc", "p1", channels=[marker])  # on p1, not subscribed to room
        other = await self.connect("ud", "p3", channels=[marker])
        await self.subscribe(a, room)
        await self.subscribe(b, room)
        await self.subscribe(idle, marker)
        await self.subscribe(other, marker)
        mid = await self.publish(room, {"x": 1})
        mk = await self.publish(marker, "mark")
        self.assertEqual(await ws_recv_json(a), self.message(mid, room, {"x": 1}))
        self.assertEqual(await ws_recv_json(b), self.message(mid, room, {"x": 1}))
        # the first thing p3 and the idle connection see is the marker
        self.assertEqual(await ws_recv_json(idle), self.message(mk, marker, "mark"))
        self.assertEqual(await ws_recv_json(other), self.message(mk, marker, "mark"))
        subj, _, data, _ = await asyncio.wait_for(p3_node.get(), 5)
        self.assertIn(mk.encode(), data)
        self.assertNotIn(mid.encode(), data)
        self.assertTrue(p3_node.empty())
        text = self.c.scrape("dispatcher")
        self.assertEqual(metric(text, "push_dispatch_channel_messages_total"), 2)
        for ws in (a, b, idle, other):
            await ws.close()

    async def test_unsubscribe_stops_delivery_and_the_last_one_removes_the_route(self):
        room = "room.u"
        marker = same_shard(room, "marker")
        ws = await self.connect("u1", "p1", channels=[room, marker])
        await self.subscribe(ws, room)
        await self.subscribe(ws, marker)
        self.assertEqual(self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1"), "p1")
        m1 = await self.publish(room, 1)
        self.assertEqual(await ws_recv_json(ws), self.message(m1, room, 1))
        await ws.send(json.dumps({"type": "unsubscribe", "channel": room}))
        self.assertEqual(await ws_recv_json(ws), {"type": "unsubscribed", "channel": room})
        await eventually(lambda: self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1") == "")
        await self.publish(room, 2)
        mk = await self.publish(marker, "mark")
        self.assertEqual(await ws_recv_json(ws), self.message(mk, marker, "mark"))
        # unsubscribing again is answered and harmless
        await ws.send(json.dumps({"type": "unsubscribe", "channel": room}))
        self.assertEqual(await ws_recv_json(ws), {"type": "unsubscribed", "channel": room})
        await ws.close()

    async def test_300_channel_messages_arrive_in_acceptance_order(self):
        room = "room.order"
        a = await self.connect("ua", "p1", channels=[room])
        b = await self.connect("ub", "p2", channels=[room])
        await self.subscribe(a, room)
        await self.subscribe(b, room)
        for i in range(300):  # one NATS connection: the collector accepts them in this order
            self.nats.pub("push.collect", json.dumps({"channel": room, "data": i}))
        await self.nats.flush()
        for ws in (a, b):
            got = [(await ws_recv_json(ws, timeout=20))["data"] for _ in range(300)]
            self.assertEqual(got, list(range(300)))
            await ws.close()

    async def test_presence_counts_subscribers_and_nodes_before_and_after(self):
        room = "room.p"

        async def presence():
            return json.loads(await self.nats.request("push.presence", json.dumps({"channel": room})))

        self.assertEqual(await presence(), {"channel": room, "subscribers": 0, "nodes": []})
        a = await self.connect("ua", "p1", channels=[room])
        b = await self.connect("ub", "p1", channels=[room])
        c = await self.connect("uc", "p2", channels=[room])
        for ws in (a, b, c):
            await self.subscribe(ws, room)
        p = await presence()
        self.assertEqual((p["subscribers"], sorted(p["nodes"])), (3, ["p1", "p2"]))
        await c.close()
        await eventually(lambda: self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1") == "p1")
        self.assertEqual(await presence(), {"channel": room, "subscribers": 2, "nodes": ["p1"]})
        bad = json.loads(await self.nats.request("push.presence", json.dumps({"channel": "a b"})))
        self.assertIn("error", bad)
        for ws in (a, b):
            await ws.close()


class Recovery(ChannelTest):
    collector_args = ("--channel-history", "3")

    async def test_since_recovers_what_was_published_while_away_then_live(self):
        room = "room.r"
        ws = await self.connect("u1", channels=[room])
        await self.subscribe(ws, room)
        m1 = await self.publish(room, 1, ttl=60)
        self.assertEqual(await ws_recv_json(ws), self.message(m1, room, 1))
        await ws.close()
        m2 = await self.publish(room, 2, ttl=60)
        await self.publish(room, "live only", ttl=0)  # never history
        m3 = await self.publish(room, 3, ttl=60)
        ws = await self.connect("u1", channels=[room])
        self.assertEqual(await self.subscribe(ws, room, since=m1),
                         {"type": "subscribed", "channel": room, "recovered": True})
        self.assertEqual(await ws_recv_json(ws), self.message(m2, room, 2))
        self.assertEqual(await ws_recv_json(ws), self.message(m3, room, 3))
        m4 = await self.publish(room, 4, ttl=60)
        self.assertEqual(await ws_recv_json(ws), self.message(m4, room, 4))
        # since the newest: nothing to recover, still recovered
        ws2 = await self.connect("u2", channels=[room])
        self.assertEqual(await self.subscribe(ws2, room, since=m4),
                         {"type": "subscribed", "channel": room, "recovered": True})
        m5 = await self.publish(room, 5, ttl=60)
        self.assertEqual(await ws_recv_json(ws2), self.message(m5, room, 5))
        self.assertEqual(await ws_recv_json(ws), self.message(m5, room, 5))
        await ws.close()
        await ws2.close()

    async def test_since_older_than_the_history_bound_says_recovered_false(self):
        room = "room.b"
        first = await self.publish(room, 0, ttl=60)
        ids = [await self.publish(room, i, ttl=60) for i in range(1, 6)]
        ws = await self.connect("u1", channels=[room])
        self.assertEqual(await self.subscribe(ws, room, since=first),
                         {"type": "subscribed", "channel": room, "recovered": False})
        for i, mid in zip(range(3, 6), ids[2:]):  # --channel-history 3: the newest three
            self.assertEqual(await ws_recv_json(ws), self.message(mid, room, i))
        m6 = await self.publish(room, 6, ttl=60)
        self.assertEqual(await ws_recv_json(ws), self.message(m6, room, 6))
        await ws.close()


class Routes(ChannelTest):
    pushers = ("p1",)
    route_ttl = 5  # the pusher's floor; refreshed every 5/3 s

    async def test_killed_pusher_stops_counting_after_the_route_ttl(self):
        self.c.start_pusher("p2", route_ttl=5)
        room = "room.k"
        ws = await self.connect("u1", "p2", channels=[room])
        await self.subscribe(ws, room)
        self.assertEqual(self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1"), "p2")
        self.c.procs["p2"].kill9()
        # the member stays (nobody removed it) but stops counting once its score passed
        self.assertEqual(self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1"), "p2")

        async def gone():
            r = json.loads(await self.nats.request("push.presence", json.dumps({"channel": room})))
            live = self.c.redis("ZRANGEBYSCORE", f"push:chan:{room}", str(int(time.time())), "+inf")
            return r["nodes"] == [] and live == ""
        await eventually(gone, timeout=15, interval=0.5)
        # and the dispatcher sends nothing to p2 for it any more
        p2_node = await self.nats.sub("push.node.p2")
        marker = same_shard(room, "marker")
        watcher = await self.connect("u9", "p1", channels=[marker])
        await self.subscribe(watcher, marker)
        await self.publish(room, 1)
        mk = await self.publish(marker, "mark")
        self.assertEqual(await ws_recv_json(watcher), self.message(mk, marker, "mark"))
        self.assertTrue(p2_node.empty())
        await watcher.close()

    async def test_flushed_redis_gets_the_channel_routes_again_without_resubscribing(self):
        room = "room.f"
        ws = await self.connect("u1", "p1", channels=[room])
        await self.subscribe(ws, room)
        self.assertEqual(self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1"), "p1")
        self.c.redis("FLUSHALL")
        self.assertEqual(self.c.redis("EXISTS", f"push:chan:{room}"), "0")
        await eventually(lambda: self.c.redis("ZRANGE", f"push:chan:{room}", "0", "-1") == "p1",
                         timeout=15, interval=0.2)
        m1 = await self.publish(room, "back")
        self.assertEqual(await ws_recv_json(ws), self.message(m1, room, "back"))
        await ws.close()


class NatsCutOff(ChannelTest):
    async def test_a_pusher_cut_off_from_nats_recovers_channel_messages_in_order_once(self):
        # Deliveries to the node go nowhere while the pusher is away from
        # NATS; when it is back each subscription asks the collector for the
        # history after the last message it had.
        from test_pipeline_failures import Cutter
        proxy = await Cutter(self.c.nats_port).start()
        self.c.procs["pusher"].stop()
        await asyncio.to_thread(self.c.start_pusher, "pusher", None, "--nats",
                                f"nats://127.0.0.1:{proxy.port}")
        room = "room.cut"
        ws = await self.connect("u1", channels=[room])
        await self.subscribe(ws, room)
        m0 = await self.publish(room, 0, ttl=60)
        self.assertEqual(await ws_recv_json(ws), self.message(m0, room, 0))
        proxy.cut()
        ids = [await self.publish(room, n, ttl=60) for n in range(1, 21)]
        await eventually(lambda: metric(self.c.scrape("dispatcher"),
                                        "push_dispatch_channel_messages_total") >= 21, timeout=20)
        proxy.resume()
        got = [await ws_recv_json(ws, timeout=20) for _ in range(20)]
        self.assertEqual(got, [self.message(i, room, n) for n, i in zip(range(1, 21), ids)])
        m21 = await self.publish(room, 21, ttl=60)
        self.assertEqual(await ws_recv_json(ws, timeout=10), self.message(m21, room, 21))
        await ws.close()


class SlowCollector(ChannelTest):
    async def test_history_that_does_not_come_in_time_gives_recovered_false_and_live_frames(self):
        room = "room.slow"
        ws = await self.connect("u1", channels=[room])
        await self.subscribe(ws, room)
        m1 = await self.publish(room, 1, ttl=60)
        self.assertEqual(await ws_recv_json(ws), self.message(m1, room, 1))
        collector = self.c.procs["collector"].p
        collector.send_signal(signal.SIGSTOP)  # subscribed to push.history, answers nothing
        try:
            ws2 = await self.connect("u2", channels=[room])
            await ws2.send(json.dumps({"type": "subscribe", "channel": room, "since": m1}))
            # WS_SUB_TIMEOUT_S later
            self.assertEqual(await ws_recv_json(ws2, timeout=20),
                             {"type": "subscribed", "channel": room, "recovered": False})
        finally:
            collector.send_signal(signal.SIGCONT)
        m2 = await self.publish(room, 2, ttl=60)
        self.assertEqual(await ws_recv_json(ws2), self.message(m2, room, 2))  # the late history is dropped
        self.assertEqual(await ws_recv_json(ws), self.message(m2, room, 2))
        await ws.close()
        await ws2.close()


class Http(ChannelTest):
    async def test_http_channel_publish_is_delivered_and_a_bad_one_is_400(self):
        self.c.procs["collector"].stop()
        from harness import free_port
        port = free_port()
        self.c.start("collector", "collector", "--store", f"sqlite:{self.c.dir}/push.db", "--http",
                     f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}/v1/messages"
        ws = await self.connect("u1", channels=["room.h"])
        await self.subscribe(ws, "room.h")
        status, body = await asyncio.to_thread(http_post, url, json.dumps(
            {"channel": "room.h", "topic": "t", "data": [1, 2]}))
        self.assertEqual(status, 202, body)
        self.assertEqual(await ws_recv_json(ws), self.message(json.loads(body)["id"], "room.h", [1, 2]))
        status, body = await asyncio.to_thread(http_post, url, json.dumps(
            {"channel": "room.h", "broadcast": True}))
        self.assertEqual(status, 400, body)
        self.assertEqual(list(json.loads(body)), ["error"])
        await ws.close()


class Cli(ChannelTest):
    async def test_pushctl_connect_publish_and_presence_with_a_channel(self):
        room = "room.cli"
        token = self.c.token("u1", channels=["room.*"])
        proc = await asyncio.create_subprocess_exec(
            os.path.join(os.environ.get("PUSH_BIN", ""), "pushctl"), "connect", "--token", token,
            "--url", self.c.ws_url(), "--channel", room, "--count", "1",
            stdout=asyncio.subprocess.PIPE, env=self.c.env)
        try:
            welcome = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
            self.assertEqual(welcome["type"], "welcome")
            self.assertEqual(json.loads(await asyncio.wait_for(proc.stdout.readline(), 10)),
                             {"type": "subscribed", "channel": room, "recovered": True})
            out = await asyncio.to_thread(self.c.pushctl, "presence", "--channel", room)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout),
                             {"channel": room, "subscribers": 1, "nodes": ["pusher"]})
            out = await asyncio.to_thread(self.c.pushctl, "publish", "--channel", room, "--topic",
                                          "news", '{"k":1}')
            self.assertEqual(out.returncode, 0, out.stderr)
            mid = json.loads(out.stdout)["id"]
            self.assertEqual(json.loads(await asyncio.wait_for(proc.stdout.readline(), 10)),
                             self.message(mid, room, {"k": 1}, topic="news"))
            self.assertEqual(await asyncio.wait_for(proc.wait(), 10), 0)  # --count 1
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--channel", room, "--to", "u1", "x")
        self.assertEqual(out.returncode, 2)


class BadInput(ChannelTest):
    pusher_args = ("--max-channels", "2")

    async def test_bad_subscribe_frames_are_refused_with_a_code_and_the_connection_stays(self):
        ws = await self.connect("u1", channels=["*"])
        long_name = "x" * 256
        cases = [
            ({"type": "subscribe"}, None),
            ({"type": "subscribe", "channel": 7}, None),
            ({"type": "subscribe", "channel": ""}, ""),
            ({"type": "subscribe", "channel": "bad name"}, "bad name"),
            ({"type": "subscribe", "channel": "room*"}, "room*"),
            ({"type": "subscribe", "channel": long_name}, None),
            ({"type": "subscribe", "channel": "ok", "since": 5}, "ok"),
            ({"type": "subscribe", "channel": "ok", "token": ["x"]}, "ok"),
            ({"type": "unsubscribe", "channel": "a/b"}, "a/b"),
        ]
        for frame, echoed in cases:
            await ws.send(json.dumps(frame))
            answer = await ws_recv_json(ws)
            self.assertEqual(answer["type"], "error", frame)
            self.assertEqual(answer["code"], "bad_channel", frame)
            self.assertEqual(answer.get("channel"), echoed, frame)
        # --max-channels 2, and subscribing twice changes nothing
        await self.subscribe(ws, "a")
        self.assertEqual(await self.subscribe(ws, "a"),
                         {"type": "subscribed", "channel": "a", "recovered": True})
        await self.subscribe(ws, "b")
        refused = await self.subscribe(ws, "c", want="error")
        self.assertEqual((refused["code"], refused["channel"]), ("too_many", "c"))
        m1 = await self.publish("a", 1)
        m2 = await self.publish("b", 2)
        got = {(await ws_recv_json(ws))["id"] for _ in range(2)}
        self.assertEqual(got, {m1, m2})  # one frame each, although "a" was asked twice
        text = self.c.scrape("pusher")
        self.assertEqual(metric(text, 'push_pusher_subscribe_refused_total{reason="bad_channel"}'), 9)
        self.assertEqual(metric(text, 'push_pusher_subscribe_refused_total{reason="too_many"}'), 1)
        self.assertEqual(metric(text, "push_pusher_subscriptions"), 2)
        await ws.close()

    async def test_bad_channel_publishes_are_refused_counted_and_not_stored(self):
        cases = {
            "channel_and_other": [{"channel": "a", "to": ["u1"]}, {"channel": "a", "to": []},
                                  {"channel": "a", "broadcast": True}],
            "bad_channel": [{"channel": ""}, {"channel": "a b"}, {"channel": "x" * 256},
                            {"channel": 5}],
        }
        for reason, bodies in cases.items():
            for body in bodies:
                r = json.loads(await self.nats.request("push.collect", json.dumps(body)))
                self.assertEqual(list(r), ["error"], body)
        raw = await self.nats.request("push.collect", pb_field(1, "u1") + pb_field(8, "room"))
        self.assertIn(2, pb_strings(raw))
        text = self.c.scrape("collector")
        self.assertEqual(metric(text, 'push_collect_rejected_total{reason="channel_and_other"}'), 4)
        self.assertEqual(metric(text, 'push_collect_rejected_total{reason="bad_channel"}'), 4)
        self.assertEqual(metric(text, "push_collect_accepted_total"), 0)
        # a good one in protobuf is accepted
        raw = await self.nats.request("push.collect", pb_field(8, "room") + pb_field(4, b"x"))
        self.assertNotIn(2, pb_strings(raw))
        self.assertEqual(metric(self.c.scrape("collector"), "push_collect_accepted_total"), 1)


if __name__ == "__main__":
    unittest.main()
