"""A collector whose store is down: --store mongodb:// on a port where no
MongoDB listens. It must start, say it is alive but not ready, answer every
publish (NATS JSON, NATS protobuf, HTTP) with "store unavailable" instead of
hanging or dying, count those failures, and still shut down cleanly."""

import asyncio
import json
import time
import unittest

from harness import ClusterTest, eventually, free_port, http_get, http_post, metric, pb_push_request, pb_strings

DOWN_STORE = "mongodb://127.0.0.1:1"


class StoreUnavailable(ClusterTest):
    start_services = False

    def setUp(self):
        super().setUp()
        self.c.start_nats()
        self.http_port = free_port()
        self.c.start("collector", "collector", "--store", DOWN_STORE, "--http",
                     f"127.0.0.1:{self.http_port}", ready=False)

    def wait_alive(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assertTrue(self.c.procs["collector"].alive(), self.c.procs["collector"].tail())
            try:
                status, _ = http_get(self.c.metrics["collector"] + "/healthz", timeout=0.5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("collector /healthz never answered 200:\n" + self.c.procs["collector"].tail())

    async def test_collector_with_store_down_answers_unavailable_counts_and_exits_cleanly(self):
        await asyncio.to_thread(self.wait_alive)
        status, _ = await asyncio.to_thread(http_get, self.c.metrics["collector"] + "/readyz")
        self.assertEqual(status, 503)

        # /healthz answers before the collector has subscribed: until it has,
        # a request gets NATS's "no responders" (an empty reply). Wait for that
        # to pass (with a request nobody would store: it is refused as invalid).
        async def listening():
            raw = await self.nats.request("push.collect", "{}", timeout=2.0)
            return bool(raw)
        await eventually(listening, timeout=10)

        # JSON over NATS: an error reply, quickly (the store fails fast while down)
        started = time.monotonic()
        raw = await self.nats.request("push.collect", json.dumps({"to": ["u1"], "data": 1}),
                                      timeout=5.0)
        self.assertLess(time.monotonic() - started, 3.0)
        reply = json.loads(raw)
        self.assertNotIn("id", reply)
        self.assertIn("store is unavailable", reply["error"])

        # protobuf over NATS: a PushReply with the error field (2) and no id (1)
        raw = await self.nats.request("push.collect", pb_push_request(to=["u1"], data=b"x"),
                                      timeout=5.0)
        fields = pb_strings(raw)
        self.assertNotIn(1, fields, fields)
        self.assertIn(b"store is unavailable", fields[2][0])

        # HTTP: 503 with the same error
        status, body = await asyncio.to_thread(
            http_post, f"http://127.0.0.1:{self.http_port}/v1/messages",
            json.dumps({"to": ["u1"], "data": 1}))
        self.assertEqual(status, 503, body)
        self.assertIn("store is unavailable", json.loads(body)["error"])

        text = self.c.scrape("collector")
        self.assertEqual(metric(text, "push_collect_store_errors_total"), 3)
        self.assertEqual(metric(text, "push_collect_accepted_total"), 0)

        status, _ = await asyncio.to_thread(http_get, self.c.metrics["collector"] + "/readyz")
        self.assertEqual(status, 503)
        self.assertTrue(self.c.procs["collector"].alive())
        self.assertEqual(await asyncio.to_thread(self.c.procs["collector"].stop), 0)


if __name__ == "__main__":
    unittest.main()
