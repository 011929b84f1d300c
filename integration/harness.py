"""Integration harness: real nats-server and redis-server on free loopback
ports, the built services started as child processes, and real clients
(NATS over its text protocol, WebSocket through the `websockets` package).

Every process a test starts is stopped by pid in teardown; logs go to a temp
folder and are printed when a test fails. Nothing here touches anything but
127.0.0.1.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
import urllib.error

import websockets

BIN = os.environ.get("PUSH_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "bin"))
# A command every service started through Cluster.start runs under, e.g.
# valgrind (scripts/valgrind.sh); empty by default.
WRAP = shlex.split(os.environ.get("PUSH_TEST_WRAP", ""))
SECRET = "integration-secret"


_ports_given = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, never one
    this process handed out before, and below the kernel's ephemeral range:
    a port from that range (what bind to port 0 gives) can be taken as the
    local port of some outgoing connection (a nats-server's route dialling a
    member not up yet) between this call and the server's bind."""
    hi = min(_ephemeral_low(), 65536) - 1
    lo = max(1024, hi - 12000)
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(lo, hi)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    with socket.socket() as s:  # all taken: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def http_get(url, timeout=2.0):
    """(status, body) of a GET; connection errors raise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def http_post(url, body, content_type="application/json", timeout=5.0):
    req = urllib.request.Request(url, data=body if isinstance(body, bytes) else body.encode(),
                                 method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    """The value of the series `name` (with labels, exactly as rendered) in a /metrics body."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


class Proc:
    """A child process with its log file; stop() sends SIGTERM and waits."""

    def __init__(self, name, argv, env, logdir):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signal the process and return its exit code (None if it had to be killed)."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                self.log.close()
                return None
        self.log.close()
        return self.p.returncode

    def kill9(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.log.close()

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


SHARDS = 16  # lib/jsx.h JSX_SHARDS: dispatchers consume them all
SHARDS_USED = 4  # JSX_SHARDS_USED: collectors put messages on shards 0, 4, 8 and 12


def fnv1a(s):
    """FNV-1a 32 of the string's bytes (lib/strmap.c strmap_hash)."""
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def shard_of(name):
    """lib/jsx.c jsx_shard_of: FNV-1a 32 of a user id or channel name, mod the
    used shards, times the spacing between them."""
    return fnv1a(name) % SHARDS_USED * (SHARDS // SHARDS_USED)


def users_on_every_busy_shard(stem, per_shard=1):
    """User ids "<stem><n>" on each of the busy shards (0, 4, 8 and 12), in
    shard order: however dispatchers split those (by rank,
    dispatcher/lease.h), each has work."""
    by_shard, i = {k * (SHARDS // SHARDS_USED): [] for k in range(SHARDS_USED)}, 0
    while any(len(v) < per_shard for v in by_shard.values()):
        u = f"{stem}{i}"
        by_shard[shard_of(u)].append(u)
        i += 1
    return [u for v in by_shard.values() for u in v[:per_shard]]


def nats_cluster_conf(name, host, port, cluster_port, route_addrs, store_dir, max_payload=4194304,
                      http_port=None):
    """nats-server config text for one member of a JetStream cluster named
    "push": client port, cluster port, routes to the other members
    ("HOST:PORT" each), its own JetStream store."""
    routes = ", ".join(f"nats-route://{a}" for a in route_addrs)
    return (f"server_name: {name}\n"
            f"listen: {host}:{port}\n"
            f"max_payload: {max_payload}\n"
            + (f"http: {host}:{http_port}\n" if http_port else "")
            + f"jetstream {{ store_dir: \"{store_dir}\" }}\n"
            f"cluster {{\n  name: push\n  listen: {host}:{cluster_port}\n  routes: [{routes}]\n}}\n")


def nats_ports_of(pid):
    """The remote ports of pid's established TCP connections to 127.0.0.1
    (from /proc: which nats-server a service is connected to right now)."""
    return set(remote_ports_of(pid))


def remote_ports_of(pid):
    """The remote port of each of pid's established TCP connections to
    127.0.0.1, one entry per connection."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    with open(f"/proc/{pid}/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == "01" and inode in inodes and remote.startswith("0100007F:"):
                ports.append(int(remote.split(":")[1], 16))
    return ports


class Cluster:
    """nats-server, redis-server and any services a test asks for."""

    def __init__(self, prefix="push", nats_max_payload=4194304):
        self.dir = tempfile.mkdtemp(prefix="push-it-")
        self.prefix = prefix
        self.nats_max_payload = nats_max_payload
        self.procs = {}
        self.nats_port = free_port()
        self.redis_port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "PUSH_NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "PUSH_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}",
            "PUSH_PREFIX": prefix,
            "PUSH_JWT_SECRET": SECRET,
            "PUSH_LOG_LEVEL": os.environ.get("PUSH_LOG_LEVEL", "info"),
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
        })
        self.metrics = {}
        self.ws_ports = {}

    # --- servers -----------------------------------------------------------
    def start_nats(self):
        # max_payload above the collector's 1 MiB limit (docs/OPERATIONS.md says why)
        conf = os.path.join(self.dir, "nats.conf")
        with open(conf, "w") as f:
            f.write(f"max_payload: {self.nats_max_payload}\n")
        sd = os.path.join(self.dir, "jetstream")
        self.procs["nats"] = Proc("nats", ["nats-server", "-c", conf, "-a", "127.0.0.1", "-p",
                                           str(self.nats_port), "-js", "-sd", sd], self.env, self.dir)
        wait_port(self.nats_port)

    def start_redis(self):
        self.procs["redis"] = Proc("redis", ["redis-server", "--bind", "127.0.0.1", "--port",
                                             str(self.redis_port), "--save", "", "--appendonly", "no",
                                             "--dir", self.dir], self.env, self.dir)
        wait_port(self.redis_port)

    def redis(self, *args):
        """Run one redis command through redis-cli; returns its raw output."""
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip()

    # --- services ----------------------------------------------------------
    def start(self, name, program=None, *args, ready=True, timeout=20.0):
        """Start build/bin/<program> as `name` with --metrics on a free port;
        wait for /readyz when ready is true."""
        program = program or name
        mport = free_port()
        argv = [*WRAP, os.path.join(BIN, program), "--metrics", f"127.0.0.1:{mport}", *args]
        self.procs[name] = Proc(name, argv, self.env, self.dir)
        self.metrics[name] = f"http://127.0.0.1:{mport}"
        if ready:
            self.wait_ready(name, timeout)
        return self.procs[name]

    def start_pusher(self, name="pusher", node_id=None, *args, ready=True, route_ttl=None):
        port = free_port()
        node_id = node_id or name
        extra = ["--listen", f"127.0.0.1:{port}", "--node-id", node_id]
        if route_ttl is not None:
            extra += ["--route-ttl", str(route_ttl)]
        p = self.start(name, "pusher", *extra, *args, ready=ready)
        self.ws_ports[name] = port
        wait_port(port)
        return p

    def start_all(self, pushers=("pusher",), collector_args=(), pusher_args=(), route_ttl=None):
        self.start_nats()
        self.start_redis()
        self.start("authd")
        self.start("collector", "collector", "--store", f"sqlite:{os.path.join(self.dir, 'push.db')}",
                   *collector_args)
        self.start("dispatcher")
        for p in pushers:
            self.start_pusher(p, None, *pusher_args, route_ttl=route_ttl)

    def wait_ready(self, name, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise RuntimeError(f"{name} exited ({self.procs[name].p.returncode}):\n{self.procs[name].tail()}")
            try:
                last = http_get(self.metrics[name] + "/readyz", timeout=0.5)
                if last[0] == 200:
                    return
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise TimeoutError(f"{name} not ready after {timeout}s (last: {last}):\n{self.procs[name].tail()}")

    def scrape(self, name):
        return http_get(self.metrics[name] + "/metrics")[1]

    def ws_url(self, pusher="pusher", token=None):
        url = f"ws://127.0.0.1:{self.ws_ports[pusher]}/ws"
        return url + (f"?token={token}" if token is not None else "")

    def token(self, sub, ttl=3600, channels=None, channel=None):
        extra = (["--channels", ",".join(channels)] if channels is not None else []) + \
            (["--channel", channel] if channel is not None else [])
        out = subprocess.run([os.path.join(BIN, "pushctl"), "token", "--sub", sub, "--ttl", str(ttl),
                              *extra], capture_output=True, text=True, env=self.env, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(f"pushctl token failed: {out.stderr}")
        return out.stdout.strip()

    def pushctl(self, *args, timeout=20):
        return subprocess.run([os.path.join(BIN, "pushctl"), *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def stop_all(self):
        """Stop services first (so they can say goodbye to NATS and Redis), then servers.
        Returns {name: exit code}."""
        codes = {}
        order = [n for n in self.procs if n not in ("nats", "redis")] + ["redis", "nats"]
        for name in order:
            if name in self.procs:
                codes[name] = self.procs[name].stop()
        return codes

    def logs(self):
        return "\n".join(f"----- {n} -----\n{p.tail()}" for n, p in self.procs.items())

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Nats:
    """A minimal asyncio client for the NATS text protocol: enough for tests
    to publish, subscribe and make requests (with headers)."""

    def __init__(self):
        self.sid = 0
        self.subs = {}
        self.pongs = []
        self.reader = self.writer = None
        self.task = None

    async def connect(self, port, host="127.0.0.1"):
        self.reader, self.writer = await asyncio.open_connection(host, port)
        info = await self.reader.readline()
        assert info.startswith(b"INFO "), info
        self.writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true,"protocol":1}\r\n')
        self.task = asyncio.create_task(self._read())
        await self.flush()
        return self

    async def _read(self):
        r = self.reader
        while True:
            line = await r.readline()
            if not line:
                return
            parts = line.split()
            op = parts[0].upper()
            if op == b"PING":
                self.writer.write(b"PONG\r\n")
            elif op == b"PONG":
                if self.pongs:
                    self.pongs.pop(0).set_result(True)
            elif op == b"MSG":
                subj, sid = parts[1].decode(), int(parts[2])
                reply = parts[3].decode() if len(parts) == 5 else None
                n = int(parts[-1])
                data = (await r.readexactly(n + 2))[:-2]
                self._deliver(sid, (subj, reply, data, {}))
            elif op == b"HMSG":
                subj, sid = parts[1].decode(), int(parts[2])
                reply = parts[3].decode() if len(parts) == 6 else None
                hlen, total = int(parts[-2]), int(parts[-1])
                raw = (await r.readexactly(total + 2))[:-2]
                headers = {}
                for h in raw[:hlen].decode().split("\r\n")[1:]:
                    if ":" in h:
                        k, v = h.split(":", 1)
                        headers[k.strip()] = v.strip()
                self._deliver(sid, (subj, reply, raw[hlen:], headers))
            elif op == b"-ERR":
                raise RuntimeError(line.decode())

    def _deliver(self, sid, msg):
        q = self.subs.get(sid)
        if q is not None:
            q.put_nowait(msg)

    async def flush(self, timeout=5.0):
        f = asyncio.get_running_loop().create_future()
        self.pongs.append(f)
        self.writer.write(b"PING\r\n")
        await asyncio.wait_for(f, timeout)

    async def sub(self, subject, queue=None):
        """Returns an asyncio.Queue of (subject, reply, data, headers)."""
        self.sid += 1
        q = asyncio.Queue()
        self.subs[self.sid] = q
        self.writer.write(f"SUB {subject} {queue + ' ' if queue else ''}{self.sid}\r\n".encode())
        await self.flush()
        return q

    def pub(self, subject, data, reply=None, headers=None):
        data = data.encode() if isinstance(data, str) else data
        rep = f" {reply}" if reply else ""
        if headers:
            h = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            hb = h.encode()
            self.writer.write(f"HPUB {subject}{rep} {len(hb)} {len(hb) + len(data)}\r\n".encode()
                              + hb + data + b"\r\n")
        else:
            self.writer.write(f"PUB {subject}{rep} {len(data)}\r\n".encode() + data + b"\r\n")

    async def request(self, subject, data, timeout=5.0, headers=None):
        inbox = f"_INBOX.it.{os.getpid()}.{self.sid + 1}"
        q = await self.sub(inbox)
        self.pub(subject, data, reply=inbox, headers=headers)
        msg = await asyncio.wait_for(q.get(), timeout)
        if msg[3].get("Status") == "503" or msg[3].get("NATS/1.0") == "503":
            raise RuntimeError(f"no responders on {subject}")
        return msg[2]

    async def close(self):
        if self.task:
            self.task.cancel()
        if self.writer:
            self.writer.close()


def mint_jwt(sub, secret=SECRET, ttl=3600):
    """An HS256 JWT as authd wants it (lib/jwt.c), minted in Python: for
    many users, where a run of pushctl token each (under ASan) is slow."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + ttl}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


class Requester:
    """Many NATS requests in flight on one connection: one wildcard inbox
    subscription, replies matched by subject."""

    def __init__(self, nats):
        self.nats = nats
        self.n = 0
        self.waiting = {}

    async def start(self):
        self.inbox = f"_INBOX.cl{os.getpid()}"
        q = await self.nats.sub(self.inbox + ".*")
        self.task = asyncio.create_task(self._route(q))
        return self

    async def _route(self, q):
        while True:
            subj, _, data, headers = await q.get()
            fut = self.waiting.pop(subj, None)
            if fut and not fut.done():
                no_responders = headers.get("Status") == "503" or headers.get("NATS/1.0") == "503"
                fut.set_result(None if no_responders else data)

    async def request(self, subject, data, timeout):
        """The reply's bytes, or None on no responders or a time-out."""
        self.n += 1
        reply = f"{self.inbox}.{self.n}"
        fut = asyncio.get_running_loop().create_future()
        self.waiting[reply] = fut
        self.nats.pub(subject, data, reply=reply)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.waiting.pop(reply, None)
            return None


# --- protobuf, by hand: enough of the wire format to build PushRequest ------
def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, value):
    """One field of a protobuf message: bytes/str as length-delimited, int/bool as varint."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def pb_push_request(to=(), broadcast=None, topic=None, data=None, content_type=None, ttl=None, id=None):
    out = b"".join(pb_field(1, u) for u in to)
    for num, v in ((2, broadcast), (3, topic), (4, data), (5, content_type), (6, ttl), (7, id)):
        if v is not None:
            out += pb_field(num, v)
    return out


def _read_varint(data, i):
    """(value, next index) of the varint at data[i]."""
    v, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def pb_strings(data):
    """Decode a flat protobuf message into {field number: [values]} (varints as ints,
    length-delimited as bytes). Enough to read PushReply."""
    i, out = 0, {}
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(data, i)
        elif wt == 2:
            n, i = _read_varint(data, i)
            v, i = data[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wt} not handled")
        out.setdefault(num, []).append(v)
    return out


# --- WebSocket --------------------------------------------------------------
async def ws_connect(url, headers=None, timeout=5.0):
    return await websockets.connect(url, extra_headers=headers or {}, open_timeout=timeout,
                                    close_timeout=2, max_size=2 ** 22, ping_interval=None)


async def ws_recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def ws_welcome(url, headers=None, timeout=5.0):
    """Connect and wait for the welcome frame; returns (ws, welcome)."""
    ws = await ws_connect(url, headers, timeout)
    w = await ws_recv_json(ws, timeout)
    if w.get("type") != "welcome":
        raise AssertionError(f"first frame is not a welcome: {w}")
    return ws, w


async def ws_close_code(ws, timeout=5.0):
    """Wait until the server closes ws; returns (code, reason). Fails if a frame arrives."""
    try:
        msg = await asyncio.wait_for(ws.recv(), timeout)
        raise AssertionError(f"expected a close, got a frame: {msg}")
    except websockets.ConnectionClosed as e:
        return e.code, e.reason


async def eventually(check, timeout=5.0, interval=0.05):
    """Await check() (sync or async) until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class ClusterTest(unittest.IsolatedAsyncioTestCase):
    """Base class: a fresh cluster per test, stopped by pid afterwards; logs
    printed when the test failed."""

    pushers = ("pusher",)
    start_services = True
    nats_max_payload = 4194304
    collector_args = ()
    pusher_args = ()
    route_ttl = None

    def setUp(self):
        self.c = Cluster(nats_max_payload=self.nats_max_payload)
        try:
            if self.start_services:
                self.c.start_all(self.pushers, self.collector_args, self.pusher_args, self.route_ttl)
        except Exception:
            print(self.c.logs())
            self.c.stop_all()
            raise

    async def asyncSetUp(self):
        self.nats = None
        if "nats" in self.c.procs and self.c.procs["nats"].alive():
            self.nats = await Nats().connect(self.c.nats_port)

    async def asyncTearDown(self):
        if self.nats:
            await self.nats.close()

    def tearDown(self):
        failed = any(err for _, err in getattr(self._outcome, "errors", []) if err) or \
            (hasattr(self._outcome, "result") and not self._outcome.result.wasSuccessful())
        codes = self.c.stop_all()
        if failed:
            print(self.c.logs())
        else:
            self.c.cleanup()
        self.exit_codes = codes
