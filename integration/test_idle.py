"""Pings and the idle close: a client that answers the server's pings stays
connected past 60 s; one that sends nothing (no frame, no pong) is closed
with a close frame (1000, reason "idle ...") between 60 and 70 s, counted.
This file takes about 75 s: the 60 s are the contract's."""

import asyncio
import base64
import json
import os
import struct
import time
import unittest

from harness import ClusterTest, metric, ws_recv_json, ws_welcome


async def raw_ws(port, token):
    """A WebSocket client by hand, so that it can leave pings unanswered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: push\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader):
    """(opcode, payload) of the next server frame (servers do not mask)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def answer_pings(reader, writer, seen):
    """Read frames until the connection ends, answering each ping with a
    (masked) pong; seen[0] counts the pings, seen[1] is the close frame's
    payload if one came."""
    try:
        while True:
            op, payload = await read_frame(reader)
            if op == 0x9:
                seen[0] += 1
                mask = os.urandom(4)
                writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask +
                             bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            elif op == 0x8:
                seen[1] = payload
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return


class Idle(ClusterTest):
    async def test_silent_client_is_closed_with_a_close_frame_and_a_ponging_one_is_not(self):
        port = self.c.ws_ports["pusher"]
        lively, _ = await ws_welcome(self.c.ws_url(token=self.c.token("lively")))  # answers pings
        # More quiet clients than one sweep pings (WS_PINGS_MIN): their pings
        # are queued and go out over the following ticks; every one must
        # still get its pings, and answering them keeps it connected.
        herd = []
        for i in range(300):
            r, w = await raw_ws(port, self.c.token(f"herd{i}"))
            op, payload = await read_frame(r)
            self.assertEqual((op, json.loads(payload)["type"]), (1, "welcome"))
            seen = [0, None]
            herd.append((w, seen, asyncio.ensure_future(answer_pings(r, w, seen))))
        reader, writer = await raw_ws(port, self.c.token("silent"))
        op, payload = await read_frame(reader)
        self.assertEqual((op, json.loads(payload)["type"]), (1, "welcome"))
        start = time.monotonic()
        pings = 0
        while True:
            op, payload = await asyncio.wait_for(read_frame(reader), 80)
            if op == 0x9:
                pings += 1  # left unanswered
                continue
            break
        waited = time.monotonic() - start
        self.assertEqual(op, 0x8, "expected a close frame")
        code = struct.unpack("!H", payload[:2])[0]
        self.assertEqual(code, 1000)
        self.assertIn(b"idle", payload[2:])
        self.assertGreaterEqual(pings, 1, "the server pings a quiet connection")
        self.assertGreaterEqual(waited, 59)
        self.assertLess(waited, 72)
        writer.close()
        # The client that answered the pings is still there and still served.
        mid = json.loads(await self.nats.request("push.collect",
                                                 json.dumps({"to": ["lively"], "data": "still here"})))["id"]
        frame = await ws_recv_json(lively)
        self.assertEqual((frame["id"], frame["data"]), (mid, "still here"))
        self.assertEqual(metric(self.c.scrape("pusher"), "push_pusher_idle_closed_total"), 1)
        await lively.close()
        unpinged = [i for i, (_, seen, _) in enumerate(herd) if seen[0] < 1]
        closed = [i for i, (_, seen, task) in enumerate(herd) if seen[1] is not None or task.done()]
        self.assertEqual(unpinged, [], "every quiet client is pinged")
        self.assertEqual(closed, [], "a client that answers its pings stays connected")
        for w, _, task in herd:
            w.close()
            task.cancel()


if __name__ == "__main__":
    unittest.main()
