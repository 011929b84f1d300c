"""The whole path with real servers: pushctl publish -> collector -> store ->
JetStream -> dispatcher -> Redis route lookup -> pusher -> WebSocket client."""

import asyncio
import json
import unittest

from harness import ClusterTest, ws_welcome, ws_recv_json


class WalkingSkeleton(ClusterTest):
    pushers = ("pusher-a", "pusher-b")

    async def test_published_message_arrives_as_contract_frame(self):
        ws, welcome = await ws_welcome(self.c.ws_url("pusher-a", self.c.token("u1")))
        self.assertEqual(welcome["user"], "u1")
        self.assertEqual(welcome["node"], "pusher-a")
        self.assertTrue(welcome["conn"])

        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "u1", "--topic", "greeting",
                                      '{"hello":1}')
        self.assertEqual(out.returncode, 0, out.stderr)
        msg_id = json.loads(out.stdout)["id"]

        frame = await ws_recv_json(ws)
        self.assertEqual(frame, {"type": "message", "id": msg_id, "topic": "greeting",
                                 "data": {"hello": 1}})
        await ws.close()

    async def test_message_for_user_on_pusher_b_is_not_delivered_on_pusher_a(self):
        ws_a, _ = await ws_welcome(self.c.ws_url("pusher-a", self.c.token("alice")))
        ws_b, _ = await ws_welcome(self.c.ws_url("pusher-b", self.c.token("bob")))

        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "bob", '"for bob"')
        self.assertEqual(out.returncode, 0, out.stderr)
        bob_id = json.loads(out.stdout)["id"]
        frame = await ws_recv_json(ws_b)
        self.assertEqual((frame["id"], frame["data"]), (bob_id, "for bob"))

        # Then one for alice: the first and only frame alice's connection sees
        # must be hers, so bob's message never reached pusher-a's client.
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", "alice", '"for alice"')
        alice_id = json.loads(out.stdout)["id"]
        frame = await ws_recv_json(ws_a)
        self.assertEqual((frame["id"], frame["data"]), (alice_id, "for alice"))
        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(ws_a.recv(), 0.5)
        deliveries_a = self.c.scrape("pusher-a")
        self.assertIn("push_pusher_deliveries_total 1\n", deliveries_a)
        await ws_a.close()
        await ws_b.close()

    async def test_every_service_stops_with_exit_0_on_sigterm(self):
        codes = self.c.stop_all()
        for name in ("authd", "collector", "dispatcher", "pusher-a", "pusher-b"):
            self.assertEqual(codes[name], 0, f"{name} exit code on SIGTERM\n{self.c.procs[name].tail()}")


if __name__ == "__main__":
    unittest.main()
