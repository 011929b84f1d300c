"""Order and no loss across dispatchers: several side by side, and one
killed with SIGKILL in the middle of a stream."""

import asyncio
import json
import unittest

from harness import ClusterTest, ws_welcome

N = 1000


async def receive_data(ws, want, timeout=40.0):
    """Read message frames until every data value in want was seen; returns
    (values in arrival order, frames counted). Duplicates (at-least-once) stay
    in the arrival list."""
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


class TwoDispatchers(ClusterTest):
    # Known gap (issue 3): two dispatchers pulling from the one durable
    # consumer each hold a batch at a time, so a user's messages can
    # interleave. With one dispatcher they arrive in order (the test below and
    # test_publishing's order test). The fix planned: shard the dispatch
    # stream by user, one dispatcher owning each shard at a time.
    @unittest.skip("known gap (issue 3): two dispatchers can interleave a user's messages; "
                   "kept to be turned on with the fix (an expectedFailure would flake when timing hides it)")
    async def test_1000_messages_to_one_user_arrive_in_order_with_two_dispatchers(self):
        self.c.start("dispatcher-2", "dispatcher")
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("ordered")))
        # One publishing connection: the collector accepts them in this order.
        for n in range(N):
            self.nats.pub("push.collect", json.dumps({"to": ["ordered"], "data": n}))
        await self.nats.flush()
        order, seen = await receive_data(ws, set(range(N)))
        self.assertEqual(seen, set(range(N)))
        self.assertEqual(order, list(range(N)))  # in order, and each once
        for name in ("dispatcher", "dispatcher-2"):
            self.assertIn("push_dispatch_messages_total", self.c.scrape(name))
        await ws.close()


class OneDispatcher(ClusterTest):
    async def test_1000_messages_to_one_user_arrive_in_order_with_one_dispatcher(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("ordered1")))
        for n in range(N):
            self.nats.pub("push.collect", json.dumps({"to": ["ordered1"], "data": n}))
        await self.nats.flush()
        order, seen = await receive_data(ws, set(range(N)))
        self.assertEqual(order, list(range(N)))
        await ws.close()


class KilledDispatcher(ClusterTest):
    async def test_dispatcher_killed_mid_stream_loses_nothing(self):
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("survivor")))
        for n in range(N):
            self.nats.pub("push.collect", json.dumps({"to": ["survivor"], "data": n}))
            if n == N // 4:
                await self.nats.flush()
                self.c.procs["dispatcher"].kill9()
        await self.nats.flush()
        await asyncio.sleep(0.5)
        self.c.start("dispatcher")  # the durable consumer resumes; unacked batches come again
        order, seen = await receive_data(ws, set(range(N)), timeout=60)
        # Every message arrives (at-least-once: a redelivered batch may repeat).
        # Order is NOT kept across the kill: the batch the dead dispatcher held
        # comes back after the consumer's AckWait (10 s), behind later ones
        # (known gap, issue 3, docs/ARCHITECTURE.md).
        self.assertEqual(seen, set(range(N)))
        self.assertGreaterEqual(len(order), N)
        await ws.close()


if __name__ == "__main__":
    unittest.main()
