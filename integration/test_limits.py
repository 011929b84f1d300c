"""The pusher at its open-file limit (lowered with prlimit): it closes new
connections past its cap at once and counts them instead of spinning on
accept, keeps serving the clients it has, takes new ones again when some
leave, and stops cleanly."""

import asyncio
import json
import os
import unittest

from harness import BIN, ClusterTest, Proc, free_port, metric, ws_connect, ws_recv_json, ws_welcome

NOFILE = 120  # the pusher keeps 64 back: lws gets descriptor numbers below 56, shared with
              # the process's own low ones (stdio, NATS, Redis, ...): about 40 connections


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class FdLimit(ClusterTest):
    pushers = ()

    def setUp(self):
        super().setUp()
        port, mport = free_port(), free_port()
        argv = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", os.path.join(BIN, "pusher"), "--metrics",
                f"127.0.0.1:{mport}", "--listen", f"127.0.0.1:{port}", "--node-id", "small"]
        self.c.procs["pusher"] = Proc("pusher", argv, self.c.env, self.c.dir)
        self.c.metrics["pusher"] = f"http://127.0.0.1:{mport}"
        self.c.ws_ports["pusher"] = port
        self.c.wait_ready("pusher")

    async def try_connect(self, user):
        try:
            ws, _ = await asyncio.wait_for(ws_welcome(self.c.ws_url(token=self.c.token(user)), timeout=1), 1.5)
            return ws
        except (asyncio.TimeoutError, OSError, Exception):
            return None

    async def test_out_of_descriptors_refuses_without_spinning_and_recovers(self):
        keep, _ = await ws_welcome(self.c.ws_url(token=self.c.token("keep")))
        opened, refused = [], 0
        for i in range(70):
            ws = await self.try_connect(f"x{i}")
            if ws:
                opened.append(ws)
            else:
                refused += 1
        self.assertGreater(refused, 0, "the lowered limit was never reached")
        self.assertGreater(len(opened), 20)
        counted = metric(self.c.scrape("pusher"), "push_pusher_fd_limit_refused_total")
        self.assertGreater(counted, 0, "refusals at the cap are not counted")

        pid = self.c.procs["pusher"].pid
        before = cpu_ticks(pid)
        await asyncio.sleep(2)
        spent = cpu_ticks(pid) - before
        # An accept busy-loop burns ~200 ticks (a whole core) in 2 s.
        self.assertLess(spent, 50, f"pusher used {spent} CPU ticks in 2 s while full: spinning on accept?")

        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "keep", '"still served"')
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((await ws_recv_json(keep))["data"], "still served")

        for ws in opened[:10]:
            await ws.close()
        await asyncio.sleep(0.5)
        again = await self.try_connect("after")
        self.assertIsNotNone(again, "no new connection accepted after others left")
        await again.close()
        await keep.close()
        self.assertEqual(self.c.procs["pusher"].stop(), 0)


if __name__ == "__main__":
    unittest.main()


class SlowClient(ClusterTest):
    async def test_client_that_stops_reading_is_closed_and_others_get_everything(self):
        import websockets
        reader, _ = await ws_welcome(self.c.ws_url(token=self.c.token("reader")))
        # max_queue=1: the client library stops reading the socket after one
        # queued message, so TCP backpressure reaches the pusher.
        stuck = await websockets.connect(self.c.ws_url(token=self.c.token("stuck")), max_queue=1,
                                         max_size=2 ** 22, ping_interval=None, open_timeout=5)
        n, size = 300, 100_000  # 30 MB in all, past the 8 MiB queue bound and the socket buffers
        got = 0
        body = json.dumps({"broadcast": True, "topic": "bulk", "data": "x" * size})
        for i in range(n):
            self.nats.pub("push.collect", body)
            if i % 10 == 9:
                await self.nats.flush()
            while True:  # keep the reader reading
                try:
                    await asyncio.wait_for(reader.recv(), 0.001)
                    got += 1
                except asyncio.TimeoutError:
                    break
        while got < n:
            await asyncio.wait_for(reader.recv(), 10)
            got += 1
        self.assertEqual(got, n)
        text = self.c.scrape("pusher")
        self.assertIn("push_pusher_slow_clients_closed_total 1\n", text)
        await reader.close()
        await stuck.close()
