"""Order and no loss across failures: two and three dispatchers side by side, one
joining in the middle of a stream, one killed with SIGKILL in the middle of
a stream (restarted, or with one or two others taking over), the collector killed
between its reply and the hand-over, the stream deleted, nats-server killed
and restarted, the dispatcher's connection lost under a delivery, somebody
else's message in the stream the collector chains its hand-overs in, an
older collector's messages left on a shard this one does not use."""

import asyncio
import json
import time
import unittest

from harness import (SHARDS, SHARDS_USED, ClusterTest, eventually, fnv1a, free_port, http_post,
                     metric, pb_field, users_on_every_busy_shard, ws_welcome)

N = 1000


async def receive_data(ws, want, timeout=60.0):
    """Read message frames until every data value in want was seen; returns
    (values in arrival order, set seen). Duplicates (at-least-once) stay in
    the arrival list."""
    seen, order = set(), []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not want <= seen:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        except asyncio.TimeoutError:
            break
        if frame.get("type") == "message":
            order.append(frame["data"])
            seen.add(frame["data"])
    return order, seen


def first_arrivals(order):
    """The arrival order with repeats dropped: a message that comes again
    (at-least-once) may repeat, but a new one must never overtake an older one."""
    seen, out = set(), []
    for v in order:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


class OrderTest(ClusterTest):
    async def connect(self, users):
        wss = {}
        for u in users:
            wss[u], _ = await ws_welcome(self.c.ws_url(token=self.c.token(u)))
        return wss

    def metric_of(self, proc, name):
        return metric(self.c.scrape(proc), name)

    async def js_api(self, subject, body=b""):
        """A JetStream API request ($JS.API.<subject>); an error answer fails the test."""
        r = json.loads(await self.nats.request(f"$JS.API.{subject}", body))
        self.assertNotIn("error", r, r)
        return r

    async def publish_stored(self, user, first, last):
        """Publish data first..last-1 to user as requests, each answered with
        its id (stored), one after the other."""
        for n in range(first, last):
            r = json.loads(await self.nats.request("push.collect",
                                                   json.dumps({"to": [user], "data": n})))
            self.assertIn("id", r, r)

    def wait_shards(self, owned, timeout=20.0, any_order=False):
        """Wait until each named dispatcher owns the given number of shards
        (any_order: the counts, whichever dispatcher has which)."""
        deadline = time.monotonic() + timeout
        got = {}
        while time.monotonic() < deadline:
            got = {n: metric(self.c.scrape(n), "push_dispatch_shards_owned") for n in owned}
            if (sorted(got.values()) == sorted(owned.values()) if any_order else got == owned):
                return
            time.sleep(0.2)
        self.fail(f"shards owned {got}, wanted {owned}")

    async def check_all_in_order(self, wss, n, timeout=60.0):
        results = await asyncio.gather(*(receive_data(ws, set(range(n)), timeout) for ws in wss.values()))
        for u, (order, seen) in zip(wss, results):
            self.assertEqual(seen, set(range(n)), f"{u}: missing {sorted(set(range(n)) - seen)[:10]}...")
            self.assertEqual(first_arrivals(order), list(range(n)), f"{u}: out of order")
        for ws in wss.values():
            await ws.close()
        return results


class SeveralDispatchers(OrderTest):
    async def test_1000_messages_to_one_user_arrive_in_order_with_two_dispatchers(self):
        self.c.start("dispatcher-2", "dispatcher")
        self.wait_shards({"dispatcher": SHARDS // 2, "dispatcher-2": SHARDS // 2})
        await self.every_busy_shard_in_order("ordered", ("dispatcher", "dispatcher-2"))

    async def every_busy_shard_in_order(self, stem, names):
        """N messages to a user on each busy shard, in order; every named
        dispatcher did part of the work, and nothing came twice."""
        users = users_on_every_busy_shard(stem)
        wss = await self.connect(users)
        # One publishing connection: the collector accepts them in this order.
        for n in range(N):
            for u in users:
                self.nats.pub("push.collect", json.dumps({"to": [u], "data": n}))
        await self.nats.flush()
        results = await self.check_all_in_order(wss, N)
        for name in names:
            self.assertGreater(metric(self.c.scrape(name), "push_dispatch_messages_total"), 0, name)
        for u, (order, _) in zip(users, results):
            self.assertEqual(len(order), N, f"{u}: repeats with healthy dispatchers")

    async def test_three_dispatchers_carry_2_1_and_1_busy_shards_and_keep_order(self):
        self.c.start("dispatcher-2", "dispatcher")
        self.c.start("dispatcher-3", "dispatcher")
        names = ("dispatcher", "dispatcher-2", "dispatcher-3")
        deadline = time.monotonic() + 20
        while True:
            busy = sorted(metric(self.c.scrape(n), "push_dispatch_busy_shards_owned") for n in names)
            owned = sorted(metric(self.c.scrape(n), "push_dispatch_shards_owned") for n in names)
            if (busy, owned) == ([1, 1, 2], [5, 5, 6]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual((busy, owned), ([1, 1, 2], [5, 5, 6]))
        # Not an announcement of theirs on push.dispatchers: counted, ignored.
        self.nats.pub("push.dispatchers", b"\x00 not json")
        await self.nats.flush()
        for name in names:
            await eventually(lambda: metric(self.c.scrape(name),
                                            "push_dispatch_bad_announcements_total") == 1,
                             timeout=10)
        await self.every_busy_shard_in_order("three", names)

    async def test_a_dispatcher_joining_mid_stream_keeps_order(self):
        users = users_on_every_busy_shard("joiner")
        wss = await self.connect(users)
        for n in range(N):
            for u in users:
                self.nats.pub("push.collect", json.dumps({"to": [u], "data": n}))
            if n == N // 4:
                await self.nats.flush()
                self.c.start("dispatcher-2", "dispatcher", ready=False)  # shards move while it runs
        await self.nats.flush()
        await self.check_all_in_order(wss, N)
        self.wait_shards({"dispatcher": SHARDS // 2, "dispatcher-2": SHARDS // 2})

    async def test_a_multi_recipient_message_reaches_users_of_every_shard_once(self):
        self.c.start("dispatcher-2", "dispatcher")
        users = users_on_every_busy_shard("multi", per_shard=2)
        wss = await self.connect(users)
        for n in range(50):
            self.nats.pub("push.collect", json.dumps({"to": users, "data": n}))
        await self.nats.flush()
        results = await self.check_all_in_order(wss, 50)
        for u, (order, _) in zip(users, results):
            self.assertEqual(len(order), 50, u)


class OneDispatcher(OrderTest):
    async def test_1000_messages_to_one_user_arrive_in_order_with_one_dispatcher(self):
        wss = await self.connect(["ordered1"])
        for n in range(N):
            self.nats.pub("push.collect", json.dumps({"to": ["ordered1"], "data": n}))
        await self.nats.flush()
        await self.check_all_in_order(wss, N)


class KilledDispatcher(OrderTest):
    async def test_dispatcher_killed_mid_stream_and_restarted_loses_nothing_and_keeps_order(self):
        wss = await self.connect(["survivor"])
        for n in range(N):
            self.nats.pub("push.collect", json.dumps({"to": ["survivor"], "data": n}))
            if n == N // 4:
                await self.nats.flush()
                self.c.procs["dispatcher"].kill9()
        await self.nats.flush()
        await asyncio.sleep(0.5)
        # The new one waits for the dead one's leases to run out (5 s), then
        # starts each shard right after what was acked: what the dead one held
        # comes first, so order holds (a message may come twice).
        self.c.start("dispatcher")
        await self.check_all_in_order(wss, N)

    async def test_one_of_two_dispatchers_killed_the_other_takes_over_in_order(self):
        self.c.start("dispatcher-2", "dispatcher")
        self.wait_shards({"dispatcher": SHARDS // 2, "dispatcher-2": SHARDS // 2})
        await self.kill_mid_stream("takeover", "dispatcher-2")
        self.wait_shards({"dispatcher": SHARDS})

    async def test_one_of_three_dispatchers_killed_the_two_left_share_its_shards_in_order(self):
        # The two left rank themselves again: shards move between them too,
        # while the dead one's leases run out.
        self.c.start("dispatcher-2", "dispatcher")
        self.c.start("dispatcher-3", "dispatcher")
        self.wait_shards({"dispatcher": 5, "dispatcher-2": 5, "dispatcher-3": 6}, any_order=True)
        await self.kill_mid_stream("three", "dispatcher-2")
        self.wait_shards({"dispatcher": SHARDS // 2, "dispatcher-3": SHARDS // 2})
        for name in ("dispatcher", "dispatcher-3"):
            self.assertEqual(metric(self.c.scrape(name), "push_dispatch_busy_shards_owned"), 2, name)

    async def kill_mid_stream(self, stem, victim):
        """N messages to users on every busy shard; the victim is killed with
        SIGKILL a quarter of the way in; all arrive, in order."""
        wss = await self.connect(users_on_every_busy_shard(stem))
        for n in range(N):
            for u in wss:
                self.nats.pub("push.collect", json.dumps({"to": [u], "data": n}))
            if n == N // 4:
                await self.nats.flush()
                self.c.procs[victim].kill9()
        await self.nats.flush()
        await self.check_all_in_order(wss, N)


class KilledCollector(OrderTest):
    async def test_collector_killed_between_its_reply_and_the_hand_over_loses_nothing(self):
        ws = await self.connect(["patient"])
        # Make the hand-over fail for as long as this collector lives: no
        # dispatcher, the stream deleted, and in its place one that holds
        # its subjects, is full and refuses more (so the collector can
        # neither hand over nor create its stream again).
        self.c.procs["dispatcher"].stop()
        await self.js_api("STREAM.DELETE.PUSH_DISPATCH")
        await self.js_api("STREAM.CREATE.BLOCKER", json.dumps({
            "name": "BLOCKER", "subjects": ["push.dispatch.*"], "storage": "memory",
            "max_msgs": 1, "discard": "new"}).encode())
        self.assertIn("seq", json.loads(await self.nats.request("push.dispatch.15", b"filler")))
        await self.publish_stored("patient", 0, 20)  # stored: the collector answered
        m = self.c.scrape("collector")
        self.assertGreater(metric(m, "push_collect_handover_errors_total"), 0)
        self.assertEqual(metric(m, "push_collect_handed_over_total"), 0)
        self.c.procs["collector"].kill9()  # replied, never handed over
        await self.js_api("STREAM.DELETE.BLOCKER")
        self.c.start("collector", "collector", "--store", f"sqlite:{self.c.dir}/push.db")
        self.c.start("dispatcher")
        order, seen = await receive_data(ws["patient"], set(range(20)), timeout=30)
        self.assertEqual(seen, set(range(20)))
        self.assertEqual(first_arrivals(order), list(range(20)))
        m = self.c.scrape("collector")
        self.assertGreaterEqual(metric(m, "push_collect_handed_over_total"), 20)
        await ws["patient"].close()


class LostStream(OrderTest):
    async def test_stream_deleted_under_running_services_comes_back_and_delivery_resumes(self):
        ws = await self.connect(["phoenix"])
        reply = json.loads(await self.nats.request("$JS.API.STREAM.DELETE.PUSH_DISPATCH", b""))
        self.assertTrue(reply.get("success"), reply)
        for n in range(20):
            r = json.loads(await self.nats.request("push.collect",
                                                   json.dumps({"to": ["phoenix"], "data": n})))
            self.assertIn("id", r, r)
        # The collector creates the stream again and re-sends what it stored;
        # the dispatcher sees its consumers gone and creates them again.
        order, seen = await receive_data(ws["phoenix"], set(range(20)), timeout=40)
        self.assertEqual(seen, set(range(20)))
        self.assertEqual(first_arrivals(order), list(range(20)))
        await ws["phoenix"].close()


class NatsRestarted(OrderTest):
    async def test_nats_killed_and_restarted_mid_stream_every_message_arrives_in_order(self):
        # HTTP ingest, so that publishing goes on while nats-server is away.
        self.c.procs["collector"].stop()
        port = free_port()
        self.c.start("collector", "collector", "--store", f"sqlite:{self.c.dir}/push.db", "--http",
                     f"127.0.0.1:{port}")
        ws = await self.connect(["steady"])
        url = f"http://127.0.0.1:{port}/v1/messages"

        async def post(first, last):
            for n in range(first, last):
                status, body = await asyncio.to_thread(http_post, url,
                                                       json.dumps({"to": ["steady"], "data": n}))
                self.assertEqual(status, 202, body)  # stored, whatever NATS is doing

        await post(0, 100)
        await self.nats.close()
        self.nats = None
        self.c.procs["nats"].kill9()  # connections drop mid-stream; the stream is on disk
        await post(100, 200)
        self.c.start_nats()  # same port, same store directory
        await post(200, 300)
        order, seen = await receive_data(ws["steady"], set(range(300)), timeout=90)
        self.assertEqual(seen, set(range(300)), f"missing {sorted(set(range(300)) - seen)[:10]}")
        self.assertEqual(first_arrivals(order), list(range(300)))
        await ws["steady"].close()


class Cutter:
    """A TCP proxy to nats-server that can cut its clients off (close their
    connections and refuse new ones) and let them back: one process loses
    NATS while the server and everyone else stay up. swallow() makes what
    its clients send vanish while the server's messages still reach them,
    as on a connection whose server just died: the client's writes succeed
    and nothing arrives."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.open = True
        self.swallowing = False
        self.conns = set()
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader, writer):
        if not self.open:
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        pair = (writer, up_w)
        self.conns.add(pair)

        async def pipe(r, w, upstream):
            try:
                while data := await r.read(65536):
                    if upstream and self.swallowing:
                        continue
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))
        self.conns.discard(pair)

    def swallow(self):
        self.swallowing = True

    def cut(self):
        self.open = False
        for a, b in list(self.conns):
            a.transport.abort()
            b.transport.abort()

    def resume(self):
        self.open = True
        self.swallowing = False


class PusherCutOff(OrderTest):
    async def test_a_pusher_cut_off_from_nats_catches_up_also_when_the_collector_returns_after_it(self):
        # Only the pusher loses NATS: deliveries to its node go nowhere
        # meanwhile, and they are handed over already, so only the pusher's
        # catch-up from the store can bring them. When it is back, no
        # collector is there to answer; it asks again until one is.
        proxy = await Cutter(self.c.nats_port).start()
        self.c.procs["pusher"].stop()
        await asyncio.to_thread(self.c.start_pusher, "pusher", None, "--nats",
                                f"nats://127.0.0.1:{proxy.port}")
        ws = (await self.connect(["cutoff"]))["cutoff"]
        for n in range(50):
            self.nats.pub("push.collect", json.dumps({"to": ["cutoff"], "data": n}))
        _, seen = await receive_data(ws, set(range(50)), timeout=30)
        self.assertEqual(seen, set(range(50)))
        proxy.cut()
        await asyncio.sleep(0.5)
        for n in range(50, 100):
            self.nats.pub("push.collect", json.dumps({"to": ["cutoff"], "data": n}))
        await eventually(lambda: metric(self.c.scrape("dispatcher"), "push_dispatch_messages_total") >= 100,
                         timeout=20)
        self.c.procs["collector"].stop()
        proxy.resume()
        await asyncio.sleep(1.5)  # the pusher is back and asks; nobody answers yet
        await asyncio.to_thread(self.c.start, "collector", "collector", "--store",
                                f"sqlite:{self.c.dir}/push.db")
        order, seen = await receive_data(ws, set(range(50, 100)), timeout=30)
        self.assertEqual(seen, set(range(50, 100)), f"missing {sorted(set(range(50, 100)) - seen)[:10]}")
        self.assertEqual(first_arrivals(order), list(range(50, 100)))
        m = self.c.scrape("pusher")
        self.assertGreaterEqual(metric(m, "push_pusher_nats_catchups_total"), 1)
        await ws.close()


class DispatcherLosesItsConnection(OrderTest):
    async def test_deliveries_lost_with_the_dispatchers_connection_come_before_newer_ones(self):
        # The dispatcher's nats-server "dies" under a batch: its deliveries
        # and acks vanish, it reconnects, and the stream goes on pushing the
        # next messages. Those must not overtake the lost one (which
        # JetStream would bring again only after the 10 s ack wait).
        proxy = await Cutter(self.c.nats_port).start()
        self.c.procs["dispatcher"].stop()
        await asyncio.to_thread(self.c.start, "dispatcher", "dispatcher", "--nats",
                                f"nats://127.0.0.1:{proxy.port}")
        self.wait_shards({"dispatcher": SHARDS})
        ws = (await self.connect(["unlucky"]))["unlucky"]

        def dispatcher(name):
            return self.metric_of("dispatcher", name)

        async def publish(first, last):
            await self.publish_stored("unlucky", first, last)

        async def reconnect(disconnects):
            proxy.cut()
            proxy.resume()
            await eventually(lambda: dispatcher("push_nats_disconnects_total") >= disconnects,
                             timeout=20)

        await publish(0, 10)
        order, seen = await receive_data(ws, set(range(10)), timeout=30)
        self.assertEqual(seen, set(range(10)))
        resets = dispatcher("push_dispatch_consumer_resets_total")

        # A clean break first: everything taken was delivered and acked, so
        # the shard goes on, on the new connection, without re-creating its
        # consumer.
        await reconnect(1)
        await publish(10, 15)
        more, seen = await receive_data(ws, set(range(10, 15)), timeout=30)
        self.assertEqual(seen, set(range(10, 15)))
        order += more
        self.assertGreaterEqual(dispatcher("push_dispatch_connection_resumes_total"), 1)
        self.assertEqual(dispatcher("push_dispatch_consumer_resets_total"), resets)

        # Now message 15's delivery and ack vanish with the connection.
        taken = dispatcher("push_dispatch_messages_total")
        proxy.swallow()
        await publish(15, 16)
        await eventually(lambda: dispatcher("push_dispatch_messages_total") > taken, timeout=20)
        await reconnect(2)
        await publish(16, 30)
        more, seen = await receive_data(ws, set(range(15, 30)), timeout=60)
        self.assertEqual(seen, set(range(15, 30)), f"missing {sorted(set(range(15, 30)) - seen)[:10]}")
        self.assertEqual(first_arrivals(order + more), list(range(30)))
        self.assertGreaterEqual(dispatcher("push_dispatch_connection_changes_total"), 1)
        self.assertGreater(dispatcher("push_dispatch_consumer_resets_total"), resets)
        await ws.close()


class StreamRefusesOneHandOver(OrderTest):
    async def test_a_hand_over_the_stream_refuses_is_not_overtaken_by_the_next(self):
        # The stream refuses one hand-over (here: over its max_msg_size for
        # a while) and would take the next: the next must not be stored
        # ahead of it. Message 0 fills a chunk on its own (CHUNK_MAX_BYTES,
        # collector/chunk.h) and 1 does not fit with it, so 1 goes in the
        # next chunk: in the same round, or in the next one, which goes out
        # before the stream answered the first.
        ws = (await self.connect(["refused"]))["refused"]

        def collector(name):
            return self.metric_of("collector", name)

        config = (await self.js_api("STREAM.INFO.PUSH_DISPATCH"))["config"]
        await self.js_api("STREAM.UPDATE.PUSH_DISPATCH",
                     json.dumps(dict(config, max_msg_size=200_000)).encode())
        errors = collector("push_collect_handover_errors_total")
        # Others' messages first: the writer is busy storing them while the
        # ten queue up, so they tend to be stored, and handed over, together.
        for n in range(500):
            self.nats.pub("push.collect", json.dumps({"to": [f"bystander{n % 50}"], "data": n}))
        for n in range(10):
            pad = "x" * (261_000 if n == 0 else 2_000)
            self.nats.pub("push.collect", json.dumps({"to": ["refused"], "data": {"n": n, "pad": pad}}))
        await self.nats.flush()
        await eventually(lambda: collector("push_collect_handover_errors_total") >= errors + 2,
                         timeout=20)
        await asyncio.sleep(0.5)
        await self.js_api("STREAM.UPDATE.PUSH_DISPATCH", json.dumps(config).encode())
        order = []
        while set(order) != set(range(10)):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame.get("type") == "message":
                order.append(frame["data"]["n"])
        self.assertEqual(first_arrivals(order), list(range(10)))
        await ws.close()


class AnotherPublisherOnTheStream(OrderTest):
    async def test_somebody_elses_message_in_the_stream_breaks_the_chain_and_loses_nothing(self):
        # With a sqlite: store the collector is the stream's only publisher
        # and chains its hand-overs: each expects the one before it to be the
        # stream's last message, so none is stored after one that was lost.
        # Somebody else's message in between breaks the chain: the stream
        # refuses the next hand-over, the retry pass sends it again in order,
        # and the collector hands over unchained for a while.
        ws = (await self.connect(["chained"]))["chained"]

        def collector(name):
            return self.metric_of("collector", name)

        async def publish(first, last):
            await self.publish_stored("chained", first, last)

        async def receive(first, last):
            order, seen = await receive_data(ws, set(range(first, last)), timeout=30)
            self.assertEqual(seen, set(range(first, last)),
                             f"missing {sorted(set(range(first, last)) - seen)[:10]}")
            return order

        await publish(0, 20)
        order = await receive(0, 20)
        self.assertEqual(collector("push_collect_handover_chain_refused_total"), 0)
        ack = json.loads(await self.nats.request("push.dispatch.3", b"not a Dispatch",
                                                 headers={"Nats-Msg-Id": "somebody-else-1"}))
        self.assertEqual(ack.get("stream"), "PUSH_DISPATCH", ack)

        await publish(20, 40)
        order += await receive(20, 40)
        self.assertEqual(first_arrivals(order), list(range(40)))
        self.assertGreaterEqual(collector("push_collect_handover_chain_refused_total"), 1)
        self.assertGreaterEqual(collector("push_collect_handover_retries_total"), 1)
        with open(self.c.procs["collector"].log_path) as f:
            self.assertIn("last message ('somebody-else-1') is not one of ours", f.read())
        self.assertEqual(metric(self.c.scrape("dispatcher"), "push_dispatch_malformed_total"), 1)

        # Unchained now: nothing more is refused.
        refused = collector("push_collect_handover_chain_refused_total")
        await publish(40, 60)
        order += await receive(40, 60)
        self.assertEqual(first_arrivals(order), list(range(60)))
        self.assertEqual(collector("push_collect_handover_chain_refused_total"), refused)
        await ws.close()


class OlderCollectorsShards(OrderTest):
    async def test_what_an_older_collector_left_on_another_shard_goes_first(self):
        # A collector before JSX_SHARDS_USED put a user on shard FNV mod 16;
        # this one puts the user on FNV mod 4 times 4. What an older one
        # handed over and no dispatcher took yet must reach the user before
        # anything this one stores: it waits for those shards to drain.
        spacing = SHARDS // SHARDS_USED  # a user whose old shard this collector does not use
        user = next(u for u in (f"veteran{i}" for i in range(1000)) if fnv1a(u) % SHARDS % spacing)
        old = fnv1a(user) % SHARDS
        ws = (await self.connect([user]))[user]
        self.wait_shards({"dispatcher": SHARDS})
        consumer = f"CONSUMER.INFO.PUSH_DISPATCH.dispatch-{old}"

        async def consumer_exists():
            return "error" not in json.loads(await self.nats.request(f"$JS.API.{consumer}", b""))

        await eventually(consumer_exists, timeout=20)
        self.c.procs["dispatcher"].stop()
        self.c.procs["collector"].stop()
        # What the older collector handed over: one Dispatch per message,
        # ids of its own that sort before this collector's.
        t = int(time.time() * 1000) - 1000
        for n in range(20):
            mid = f"{t:012x}01d0{n:08x}"
            message = (pb_field(1, mid) + pb_field(2, "t") + pb_field(3, str(n)) +
                       pb_field(4, "application/json") + pb_field(5, t) + pb_field(6, 3600))
            ack = json.loads(await self.nats.request(
                f"push.dispatch.{old}", pb_field(1, message) + pb_field(2, user),
                headers={"Nats-Msg-Id": f"{mid}.{old}.1"}))
            self.assertEqual(ack.get("stream"), "PUSH_DISPATCH", ack)
        self.assertEqual((await self.js_api(consumer))["num_pending"], 20)

        self.c.start("collector", "collector", "--store", f"sqlite:{self.c.dir}/push.db")
        await self.publish_stored(user, 20, 40)  # stored, and held back

        def log():
            with open(self.c.procs["collector"].log_path) as f:
                return f.read()

        await eventually(lambda: "has 20 message(s) to dispatch that an older collector" in log(),
                         timeout=10)
        self.assertEqual(self.metric_of("collector", "push_collect_handed_over_total"), 0)

        self.c.start("dispatcher")
        order, seen = await receive_data(ws, set(range(40)), timeout=40)
        self.assertEqual(seen, set(range(40)), f"missing {sorted(set(range(40)) - seen)[:10]}")
        self.assertEqual(first_arrivals(order), list(range(40)))
        self.assertIn("the shards an older collector used are dispatched", log())
        self.assertEqual(self.metric_of("collector", "push_collect_handed_over_total"), 20)
        await ws.close()


if __name__ == "__main__":
    unittest.main()
