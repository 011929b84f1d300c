"""The JavaScript client (clients/js) in Node against the real cluster: a
token from `pushctl token`, a message from `pushctl publish` handed over and
acked, a pusher killed and restarted, and what was published meanwhile
replayed from the store, all without the test touching the client."""

import asyncio
import json
import os
import unittest

from harness import BIN, ClusterTest, eventually, metric
from jsdriver import JsDriver


def is_state(state, **kw):
    return lambda e: e.get("ev") == "state" and e.get("state") == state and \
        all(e.get(k) == v for k, v in kw.items())


class JsClient(ClusterTest):

    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.drivers = []

    async def asyncTearDown(self):
        for d in self.drivers:
            await d.stop()
        await super().asyncTearDown()

    async def driver(self, user, *token_args):
        d = JsDriver()
        self.drivers.append(d)
        await d.start("client_driver.mjs", self.c.ws_url(),
                      os.path.join(BIN, "pushctl"), "token", "--sub", user, *token_args,
                      env=self.c.env)
        return d

    async def publish(self, user, topic, data):
        out = await asyncio.to_thread(self.c.pushctl, "publish", "--to", user, "--topic", topic, data)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)["id"]

    async def test_acked_message_is_not_replayed_and_a_restarted_pusher_is_rejoined_by_itself(self):
        d = await self.driver("jsu")
        _, st = await d.wait_for(is_state("connected"))
        self.assertEqual(st["welcome"]["user"], "jsu")
        self.assertEqual(st["welcome"]["node"], "pusher")

        id1 = await self.publish("jsu", "t1", '{"n":1}')
        _, m = await d.wait_for(lambda e: e.get("ev") == "message")
        self.assertEqual(m["frame"], {"type": "message", "id": id1, "topic": "t1", "data": {"n": 1}})
        await d.wait_for(lambda e: e.get("ev") == "sent" and e["frame"] == {"type": "ack", "id": id1})
        # The ack has reached the collector (it counts, then records it).
        await eventually(lambda: metric(self.c.scrape("collector"), "push_collect_acks_total") == 1)

        # Kill the pusher without a goodbye; the client sees 1006 and retries.
        port = self.c.ws_ports["pusher"]
        self.c.procs["pusher"].kill9()
        mark = len(d.events)
        _, st = await d.wait_for(is_state("disconnected"), after=mark)
        self.assertEqual((st["code"], st["final"]), (1006, False))

        id2 = await self.publish("jsu", "t2", '"while away"')
        self.c.start("pusher", "pusher", "--listen", f"127.0.0.1:{port}", "--node-id", "pusher")

        i, st = await d.wait_for(is_state("connected"), timeout=60, after=mark)
        _, m = await d.wait_for(lambda e: e.get("ev") == "message", after=i)
        self.assertEqual(m["frame"], {"type": "message", "id": id2, "topic": "t2", "data": "while away"})
        id3 = await self.publish("jsu", "t3", "3")
        await d.wait_for(lambda e: e.get("ev") == "message" and e["frame"]["id"] == id3, after=i)
        await d.wait_for(lambda e: e.get("ev") == "sent" and e["frame"].get("type") == "ack" and
                         id3 in (e["frame"].get("ids") or [e["frame"].get("id")]), after=i)

        # What the new connection got on the wire: the welcome, the message
        # published while away, the live one; not the acked id1.
        recv = [e["frame"] for e in d.events[mark:] if e.get("ev") == "recv"]
        self.assertEqual([f["type"] for f in recv], ["welcome", "message", "message"])
        self.assertEqual([f["id"] for f in recv[1:]], [id2, id3])
        # Every message reached the application exactly once, in order.
        handed = [e["frame"]["id"] for e in d.events if e.get("ev") == "message"]
        self.assertEqual(handed, [id1, id2, id3])
        acked = []
        for e in d.events:
            if e.get("ev") == "sent" and e["frame"].get("type") == "ack":
                acked += e["frame"].get("ids") or [e["frame"]["id"]]
        self.assertEqual(acked, [id1, id2, id3])

    async def test_a_token_authd_refuses_twice_stops_the_client_with_an_error(self):
        d = await self.driver("jsbad", "--jwt-secret", "not-the-secret")
        await d.wait_for(is_state("disconnected", final=True))
        errors = [e for e in d.events if e.get("ev") == "error"]
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual(errors[0]["code"], 4401)
        states = [(e["state"], e.get("code"), e.get("final")) for e in d.events if e.get("ev") == "state"]
        self.assertEqual(states, [("connecting", None, None), ("disconnected", 4401, False),
                                  ("connecting", None, None), ("disconnected", 4401, True)])
        self.assertEqual(sum(1 for e in d.events if e.get("ev") == "getToken"), 2)


if __name__ == "__main__":
    unittest.main()
