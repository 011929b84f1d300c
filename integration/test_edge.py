"""The pusher's door against hostile and careless clients: thousands of
sockets that stall their request head (slowloris), valid tokens up to the
product's 8 KiB limit, heads over the bound, and client frames over 64 KiB
whatever their announced length and however slowly they arrive."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import resource
import socket
import struct
import time
import unittest

from harness import SECRET, ClusterTest, eventually, metric, ws_close_code, ws_welcome

STALLED = 5000


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_of_size(size, sub="u1"):
    """A valid HS256 token of exactly `size` bytes (a padding claim fills it)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())

    def make(pad):
        body = b64url(json.dumps({"sub": sub, "pad": "p" * pad}).encode())
        sig = b64url(hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest())
        return f"{header}.{body}.{sig}"

    pad = max(0, (size - len(make(0))) * 3 // 4)
    tok = make(pad)
    while len(tok) < size:
        pad += 1
        tok = make(pad)
    while len(tok) > size:
        pad -= 1
        tok = make(pad)
    return tok


def raw_request(port, head, timeout=5.0):
    """Send head bytes on a fresh socket; return the status line the server answers
    (or b"" when it hangs up without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]
    finally:
        s.close()


def upgrade_head(path, extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: push\r\n{extra}\r\n").encode()


class Door(ClusterTest):
    def port(self):
        return self.c.ws_ports["pusher"]

    def counter(self, name):
        return metric(self.c.scrape("pusher"), name)

    async def test_thousands_of_stalled_heads_do_not_delay_a_real_client(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < STALLED + 200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, STALLED + 1000), hard))
        stalled = []
        try:
            for i in range(STALLED):
                s = socket.create_connection(("127.0.0.1", self.port()), timeout=5)
                s.sendall(b"GET /ws?token=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")  # half a head
                stalled.append(s)
            await eventually(lambda: self.counter("push_pusher_heads_pending") == STALLED, timeout=5)
            # A real client is welcomed while every stalled socket still holds its
            # place: none was dropped to make room for it.
            ws, welcome = await ws_welcome(self.c.ws_url(token=self.c.token("real")), timeout=2)
            self.assertEqual(welcome["user"], "real")
            self.assertEqual(self.counter("push_pusher_head_timeouts_total"), 0)
            await ws.close()
            # Past the deadline every stalled socket is closed by the server, counted and logged.
            await eventually(lambda: self.counter("push_pusher_head_timeouts_total") == STALLED,
                             timeout=10)
            self.assertEqual(self.counter("push_pusher_heads_pending"), 0)
            for s in stalled[:50]:
                s.settimeout(2)
                self.assertEqual(s.recv(100), b"", "a stalled socket was not closed")
            await eventually(lambda: "did not send a complete request within 3 s"
                             in self.c.procs["pusher"].tail(200), timeout=12)
        finally:
            for s in stalled:
                s.close()

    async def test_valid_tokens_up_to_8_kib_connect_in_the_query_and_the_header(self):
        for size in (4300, 6144, 8192):
            tok = jwt_of_size(size, sub=f"big{size}")
            self.assertEqual(len(tok), size)
            ws, welcome = await ws_welcome(self.c.ws_url(token=tok))
            self.assertEqual(welcome["user"], f"big{size}")
            await ws.close()
            ws, welcome = await ws_welcome(self.c.ws_url(), headers={"Authorization": f"Bearer {tok}"})
            self.assertEqual(welcome["user"], f"big{size}")
            await ws.close()

    async def test_tokens_over_the_limit_are_answered_not_hung_up(self):
        over = jwt_of_size(9 * 1024)
        huge = jwt_of_size(64 * 1024)
        before = self.counter("push_pusher_http_401_total")
        # Over the token limit but the head fits: 401, as for any malformed token.
        line = await asyncio.to_thread(raw_request, self.port(), upgrade_head(f"/ws?token={over}"))
        self.assertEqual(line, b"HTTP/1.1 401 Unauthorized")
        line = await asyncio.to_thread(raw_request, self.port(),
                                       upgrade_head("/ws", f"Authorization: Bearer {over}\r\n"))
        self.assertEqual(line, b"HTTP/1.1 401 Unauthorized")
        self.assertEqual(self.counter("push_pusher_http_401_total"), before + 2)
        # A head over 16 KiB: 431, in the query and in a header.
        line = await asyncio.to_thread(raw_request, self.port(), upgrade_head(f"/ws?token={huge}"))
        self.assertEqual(line, b"HTTP/1.1 431 Request Header Fields Too Large")
        line = await asyncio.to_thread(raw_request, self.port(),
                                       upgrade_head("/ws", f"Authorization: Bearer {huge}\r\n"))
        self.assertEqual(line, b"HTTP/1.1 431 Request Header Fields Too Large")
        self.assertEqual(self.counter("push_pusher_head_too_large_total"), 2)
        await eventually(lambda: "answered 431 to 2 request(s)" in self.c.procs["pusher"].tail(200),
                         timeout=12)
        # and the door still works
        ws, _ = await ws_welcome(self.c.ws_url(token=self.c.token("after")))
        await ws.close()


def ws_frame_header(length, opcode=0x1, fin=True):
    """A masked client frame header announcing `length` payload bytes."""
    b0 = (0x80 if fin else 0) | opcode
    if length < 126:
        h = struct.pack("!BB", b0, 0x80 | length)
    elif length < 65536:
        h = struct.pack("!BBH", b0, 0x80 | 126, length)
    else:
        h = struct.pack("!BBQ", b0, 0x80 | 127, length)
    return h + b"\x00\x00\x00\x00"  # mask key 0: the payload goes as is


class RawClient:
    """A WebSocket client on a plain socket, to send what a library would refuse to."""

    def __init__(self, port, token):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.sendall(upgrade_head(f"/ws?token={token}"))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise AssertionError("no upgrade")
            self.buf += chunk
        status, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not status.startswith(b"HTTP/1.1 101"):
            raise AssertionError(status)

    def frame(self, timeout=5.0):
        """Next server frame as (opcode, payload), or None at EOF."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126:
                    n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127:
                    n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                if len(self.buf) >= off + n:
                    op, payload = self.buf[0] & 0x0F, self.buf[off:off + n]
                    self.buf = self.buf[off + n:]
                    return op, payload
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def close_code(self, timeout=5.0):
        """Read until the close frame; its code. Fails on EOF without one."""
        while True:
            f = self.frame(timeout)
            if f is None:
                raise AssertionError("hung up without a close frame")
            if f[0] == 0x8:
                return struct.unpack("!H", f[1][:2])[0]


class OversizeFrames(ClusterTest):
    def client(self, user):
        c = RawClient(self.c.ws_ports["pusher"], self.c.token(user))
        op, payload = c.frame()
        self.assertEqual(json.loads(payload)["type"], "welcome")
        return c

    async def closes_1009(self, send):
        c = await asyncio.to_thread(self.client, "u1")
        try:
            await asyncio.to_thread(send, c.s)
            # 5 s: well before the 10 s after which a stalled connection used to be dropped.
            code = await asyncio.to_thread(c.close_code, 5.0)
            self.assertEqual(code, 1009)
        finally:
            c.s.close()

    async def test_a_2_mib_frame_sent_in_full_gets_1009(self):
        def send(s):
            try:
                s.sendall(ws_frame_header(2 * 1024 * 1024) + b"x" * (2 * 1024 * 1024))
            except OSError:
                pass  # the server may stop reading once it decided
        await self.closes_1009(send)

    async def test_a_100_kib_frame_announced_then_stalled_gets_1009_at_once(self):
        await self.closes_1009(lambda s: s.sendall(ws_frame_header(100 * 1024) + b"x" * 10))

    async def test_a_frame_announcing_2_63_bytes_gets_1009_at_once(self):
        await self.closes_1009(lambda s: s.sendall(ws_frame_header(2 ** 63 - 1) + b"x"))

    async def test_an_oversize_header_alone_gets_1009(self):
        await self.closes_1009(lambda s: s.sendall(ws_frame_header(100 * 1024)))

    async def test_fragments_adding_up_past_64_kib_get_1009(self):
        def send(s):
            s.sendall(ws_frame_header(40 * 1024, fin=False) + b"x" * (40 * 1024))
            s.sendall(ws_frame_header(40 * 1024, opcode=0x0, fin=False) + b"x" * 100)
        await self.closes_1009(send)


if __name__ == "__main__":
    unittest.main()
