"""/readyz follows each dependency also on an idle node: a pusher that holds
no connection and a dispatcher with nothing to dispatch turn 503 soon after
Redis is killed (they ping it; nothing else would tell them), and 200 again
once it is back. The collector (SQLite store) does not use Redis and stays
ready throughout. NATS: every service (authd too) turns 503 when
nats-server is killed (nats.c sees the connection drop) and 200 once it is
back."""

import os
import time
import unittest

from harness import ClusterTest, http_get

LOSS_BOUND_S = 3.0  # the contract asks for 2 s; polled with some slack, not timed
BACK_BOUND_S = 15.0


def readyz(c, name):
    try:
        return http_get(c.metrics[name] + "/readyz", timeout=0.5)[0]
    except OSError:
        return None


def poll_until(c, names, status, bound_s):
    """Poll each named service's /readyz until all answer status or bound_s
    passes; returns {name: last status}."""
    deadline = time.monotonic() + bound_s
    last = {}
    while True:
        last = {n: readyz(c, n) for n in names}
        if all(s == status for s in last.values()) or time.monotonic() >= deadline:
            return last
        time.sleep(0.05)


class IdleReadiness(ClusterTest):
    start_services = False

    def setUp(self):
        super().setUp()
        self.c.start_nats()
        self.c.start_redis()
        self.c.start("collector", "collector", "--store",
                     f"sqlite:{os.path.join(self.c.dir, 'push.db')}")
        self.c.start("dispatcher")
        self.c.start("authd")
        self.c.start_pusher()

    async def test_idle_pusher_and_dispatcher_are_not_ready_without_redis_and_ready_again_after(self):
        idle = ["pusher", "dispatcher"]
        self.assertEqual(poll_until(self.c, idle + ["collector"], 200, 5.0),
                         {"pusher": 200, "dispatcher": 200, "collector": 200})
        time.sleep(1.5)  # idle for a while: nothing in flight that could notice by chance

        self.c.procs["redis"].kill9()
        self.assertEqual(poll_until(self.c, idle, 503, LOSS_BOUND_S),
                         {"pusher": 503, "dispatcher": 503})
        self.assertEqual(readyz(self.c, "collector"), 200)  # it does not use Redis

        self.c.start_redis()  # the same port
        self.assertEqual(poll_until(self.c, idle, 200, BACK_BOUND_S),
                         {"pusher": 200, "dispatcher": 200})
        for name in idle + ["collector"]:
            self.assertTrue(self.c.procs[name].alive(), self.c.procs[name].tail())


    async def test_idle_services_are_not_ready_without_nats_and_ready_again_after(self):
        every = ["pusher", "dispatcher", "collector", "authd"]
        self.assertEqual(poll_until(self.c, every, 200, 5.0), {n: 200 for n in every})
        if self.nats:
            await self.nats.close()
            self.nats = None
        self.c.procs["nats"].kill9()
        self.assertEqual(poll_until(self.c, every, 503, LOSS_BOUND_S), {n: 503 for n in every})
        self.c.start_nats()  # the same port and JetStream folder
        self.assertEqual(poll_until(self.c, every, 200, BACK_BOUND_S), {n: 200 for n in every})


if __name__ == "__main__":
    unittest.main()
