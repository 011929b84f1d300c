"""Three hosts: three Linux network namespaces joined by veth pairs to a
bridge that lives in a fourth namespace, on 198.18.N.0/24 (RFC 2544's
benchmarking range; N is picked free per run). The test itself reaches them
through one more veth, with 198.18.N.254, in its own namespace.

  host 1 (.1): nats-server n1, redis-server, collector (SQLite store), authd, pusher h1
  host 2 (.2): nats-server n2, dispatcher, authd, pusher h2
  host 3 (.3): nats-server n3, dispatcher, pusher h3

The three nats-servers form one JetStream cluster; the stream has three
replicas. Clients connect to every host. Mid-stream every process of host 3
is killed with SIGKILL: its clients reconnect to another host with backoff
and jitter, the other dispatcher takes host 3's shards, and every ttl > 0
message arrives, in publish order per user. The test prints how long
delivery paused.

Needs root (ip netns add). Where that is not permitted, it exits with 77,
which ctest counts as skipped (SKIP_RETURN_CODE). Namespaces and veths are
removed at the end, whatever happened.
"""

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import shutil
import time
import unittest

import websockets

from harness import (BIN, SECRET, Nats, Proc, Requester, eventually, http_get, metric, mint_jwt,
                     nats_cluster_conf, wait_port, ws_connect, ws_recv_json)

SKIP = 77
USERS = 90           # 30 homed on each host
RATE = 300           # messages a second offered, over all users
PUMP_S = 8.0
KILL_AT_S = 3.0
TAG = f"pth{os.getpid() % 100000}"   # names of this run's namespaces and links


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def netns_permitted():
    probe = f"{TAG}-probe"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return False, r.stderr.strip()
    sh("ip", "netns", "del", probe, check=False)
    return True, ""


def free_subnet():
    """A 198.18.N.0/24 that no address or route on this machine uses yet."""
    used = sh("ip", "-4", "route", "show").stdout + sh("ip", "-4", "addr", "show").stdout
    start = os.getpid() % 200 + 20
    for k in list(range(start, 250)) + list(range(20, start)):
        if f"198.18.{k}." not in used:
            return f"198.18.{k}"
    raise RuntimeError("no free 198.18.N.0/24")


class Net:
    """The namespaces and links; down() removes them all (idempotent)."""

    def __init__(self):
        self.net = free_subnet()
        self.br = f"{TAG}-br"
        self.hosts = [f"{TAG}-h{i}" for i in (1, 2, 3)]
        self.made = []

    def ip_of(self, i):
        return f"{self.net}.{i}"

    def up(self):
        sh("ip", "netns", "add", self.br)
        self.made.append(self.br)
        sh("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.br, "link", "set", "br0", "up")
        sh("ip", "-n", self.br, "link", "set", "lo", "up")
        for i, ns in enumerate(self.hosts, 1):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            # eth0 in the host, its peer on the bridge
            sh("ip", "link", "add", f"{TAG}h{i}", "netns", ns, "type", "veth", "peer", "name",
               f"{TAG}b{i}", "netns", self.br)
            sh("ip", "-n", ns, "link", "set", f"{TAG}h{i}", "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{self.ip_of(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.br, "link", "set", f"{TAG}b{i}", "master", "br0", "up")
        # the test's own leg: .254 in this namespace
        sh("ip", "link", "add", f"{TAG}c", "type", "veth", "peer", "name", f"{TAG}bc", "netns", self.br)
        self.made.append("veth")
        sh("ip", "-n", self.br, "link", "set", f"{TAG}bc", "master", "br0", "up")
        sh("ip", "addr", "add", f"{self.net}.254/24", "dev", f"{TAG}c")
        sh("ip", "link", "set", f"{TAG}c", "up")

    def kill_all_in(self, ns):
        """SIGKILL every process of a namespace (ip netns pids); returns how many."""
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), 9)
            except ProcessLookupError:
                pass
        return len(pids)

    def down(self):
        for ns in self.hosts + [self.br]:
            if ns in self.made:
                self.kill_all_in(ns)
        sh("ip", "link", "del", f"{TAG}c", check=False)
        for ns in self.hosts + [self.br]:
            if ns in self.made:
                sh("ip", "netns", "del", ns, check=False)
        self.made = []


class ThreeHosts(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="push-3h-")
        self.net = Net()
        self.procs = {}
        self.metrics = {}
        try:
            self.net.up()
            self.start_everything()
        except Exception:
            self.print_logs()
            self.tear_down_all()
            raise

    def tear_down_all(self):
        for p in self.procs.values():
            if p.alive():
                p.stop(timeout=5)
        self.net.down()

    def tearDown(self):
        failed = any(err for _, err in getattr(self._outcome, "errors", []) if err) or \
            (hasattr(self._outcome, "result") and not self._outcome.result.wasSuccessful())
        self.tear_down_all()
        if failed:
            self.print_logs()
        shutil.rmtree(self.dir, ignore_errors=True)

    def print_logs(self):
        print("\n".join(f"----- {n} -----\n{p.tail()}" for n, p in self.procs.items()))

    def run_on(self, host, name, argv, env):
        self.procs[name] = Proc(name, ["ip", "netns", "exec", self.net.hosts[host - 1], *argv], env,
                                self.dir)
        return self.procs[name]

    def service(self, host, name, program, mport, *args):
        ip = self.net.ip_of(host)
        self.run_on(host, name, [os.path.join(BIN, program), "--metrics", f"{ip}:{mport}", *args],
                    self.env)
        self.metrics[name] = f"http://{ip}:{mport}"

    def wait_ready(self, name, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise RuntimeError(f"{name} exited:\n{self.procs[name].tail()}")
            try:
                if http_get(self.metrics[name] + "/readyz", timeout=0.5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready:\n{self.procs[name].tail()}")

    def start_everything(self):
        ips = [self.net.ip_of(i) for i in (1, 2, 3)]
        self.env = dict(os.environ)
        self.env.update({
            "PUSH_NATS_URL": ",".join(f"nats://{ip}:4222" for ip in ips),
            "PUSH_REDIS_URL": f"redis://{ips[0]}:6379",
            "PUSH_PREFIX": "push",
            "PUSH_JWT_SECRET": SECRET,
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
        })
        for i, ip in enumerate(ips, 1):
            conf = os.path.join(self.dir, f"n{i}.conf")
            routes = [f"{o}:6222" for o in ips if o != ip]
            with open(conf, "w") as f:
                f.write(nats_cluster_conf(f"n{i}", ip, 4222, 6222, routes,
                                          os.path.join(self.dir, f"js{i}")))
            self.run_on(i, f"nats{i}", ["nats-server", "-c", conf], self.env)
        for ip in ips:
            wait_port(4222, host=ip)
        self.run_on(1, "redis", ["redis-server", "--bind", ips[0], "--port", "6379", "--save", "",
                                 "--appendonly", "no", "--dir", self.dir,
                                 # other hosts connect; nothing outside these namespaces can
                                 "--protected-mode", "no"], self.env)
        wait_port(6379, host=ips[0])
        self.service(1, "collector", "collector", 9092, "--store", f"sqlite:{self.dir}/push.db",
                     "--stream-replicas", "3")
        self.service(1, "authd1", "authd", 9094)
        self.service(2, "authd2", "authd", 9094)
        self.service(2, "dispatcher2", "dispatcher", 9093)
        self.service(3, "dispatcher3", "dispatcher", 9093)
        for i, ip in enumerate(ips, 1):
            self.service(i, f"pusher{i}", "pusher", 9091, "--listen", f"{ip}:8080", "--node-id", f"h{i}")
        for name in list(self.metrics):
            self.wait_ready(name)
        for ip in ips:
            wait_port(8080, host=ip)

    async def test_host_3_dies_mid_stream_its_clients_move_and_nothing_is_lost(self):
        ips = [self.net.ip_of(i) for i in (1, 2, 3)]
        nats = await Nats().connect(4222, host=ips[0])
        try:
            async def replicated():
                info = json.loads(await nats.request("$JS.API.STREAM.INFO.PUSH_DISPATCH", b""))
                reps = info.get("cluster", {}).get("replicas", [])
                return info.get("config", {}).get("num_replicas") == 3 and len(reps) == 2 and \
                    all(r.get("current") for r in reps)
            await eventually(replicated, timeout=30, interval=0.2)
            await self.pump(nats, ips)
        finally:
            await nats.close()

    async def pump(self, nats, ips):
        users = [f"th{i}" for i in range(USERS)]
        got = {u: [] for u in users}
        published = {u: 0 for u in users}
        moved = {}        # user -> host index it reconnected to after host 3 died
        arrivals = []     # (time, user) of every message frame
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        welcomed = {u: asyncio.Event() for u in users}
        events = {}

        async def client(i, u):
            # Home host first, then the others in turn; exponential backoff
            # with full jitter between tries (0.1 s doubling to 2 s).
            order = [i % 3, (i + 1) % 3, (i + 2) % 3]
            at, tries = 0, 0
            while not stop.is_set():
                host = order[at % 3]
                try:
                    ws = await ws_connect(f"ws://{ips[host]}:8080/ws?token={mint_jwt(u)}", timeout=3)
                    w = await ws_recv_json(ws, timeout=5)
                    if w.get("type") != "welcome":
                        raise ConnectionError(f"no welcome: {w}")
                    tries = 0
                    if "kill" in events:
                        moved[u] = host
                    welcomed[u].set()
                    async for raw in ws:
                        f = json.loads(raw)
                        if f.get("type") == "message":
                            got[u].append(f["data"]["s"])
                            arrivals.append((loop.time(), u))
                            await ws.send(json.dumps({"type": "ack", "id": f["id"]}))
                        if stop.is_set():
                            break
                    await ws.close()
                except (OSError, asyncio.TimeoutError, websockets.ConnectionClosed, ConnectionError):
                    pass
                if stop.is_set():
                    return
                at += 1
                await asyncio.sleep(random.uniform(0, min(2.0, 0.1 * 2 ** tries)))
                tries += 1

        req = await Requester(nats).start()
        clients = [asyncio.create_task(client(i, u)) for i, u in enumerate(users)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in welcomed.values())), 30)
        t0 = loop.time()

        async def publish(i, u):
            period = USERS / RATE
            s = 0
            while loop.time() - t0 < PUMP_S:
                body = json.dumps({"to": [u], "topic": "t", "data": {"u": u, "s": s}, "ttl": 3600,
                                   "id": f"{u}-{s}"})
                while (reply := await req.request("push.collect", body, timeout=2.0)) is None or \
                        b'"id"' not in reply:
                    await asyncio.sleep(0.1)
                s += 1
                published[u] = s
                await asyncio.sleep(max(0.0, t0 + s * period + i * period / USERS - loop.time()))

        async def kill_host_3():
            await asyncio.sleep(KILL_AT_S)
            events["kill"] = loop.time()
            events["killed"] = self.net.kill_all_in(self.net.hosts[2])
            events["at_kill"] = dict(published)

        await asyncio.gather(kill_host_3(), *(publish(i, u) for i, u in enumerate(users)))

        def all_arrived():
            return all(set(got[u]) >= set(range(published[u])) for u in users)
        try:
            await eventually(all_arrived, timeout=60, interval=0.2)
        finally:
            stop.set()
            missing = {u: sorted(set(range(published[u])) - set(got[u]))[:5]
                       for u in users if not set(got[u]) >= set(range(published[u]))}
            for t in clients:
                t.cancel()
            req.task.cancel()

        kill = events["kill"]
        after = [t for t, _ in arrivals if t >= kill]
        gaps = [b - a for a, b in zip([kill] + after, after)]
        h3_users = [u for i, u in enumerate(users) if i % 3 == 2]
        h3_first = {}
        for t, u in arrivals:
            if t >= kill and u in h3_users and u not in h3_first:
                h3_first[u] = t - kill
        total = sum(published.values())
        print(f"\nthree hosts: {total} messages to {USERS} users; host 3's "
              f"{events['killed']} processes killed; longest pause in delivery (any user) "
              f"{max(gaps) if gaps else 0:.2f} s; host 3's users got their next message "
              f"{min(h3_first.values(), default=0):.2f} to {max(h3_first.values(), default=0):.2f} s "
              f"after the kill", flush=True)

        self.assertEqual(missing, {})
        self.assertEqual(events["killed"], 3)  # nats-server, dispatcher, pusher
        for u in users:
            self.assertEqual(list(dict.fromkeys(got[u])), list(range(published[u])), u)
            self.assertGreaterEqual(events["at_kill"][u], 1, u)
            self.assertGreater(published[u], events["at_kill"][u], u)
        # host 3's clients (and only they) moved, to host 1 or 2
        self.assertEqual(sorted(moved), sorted(h3_users))
        self.assertTrue(all(h in (0, 1) for h in moved.values()), moved)
        # the surviving dispatcher owns every shard
        owned = metric(http_get(self.metrics["dispatcher2"] + "/metrics")[1], "push_dispatch_shards_owned")
        self.assertEqual(owned, 16)


def main():
    if os.geteuid() != 0:
        print("SKIP: test_three_hosts needs root for ip netns add")
        return SKIP
    ok, why = netns_permitted()
    if not ok:
        print(f"SKIP: ip netns add is not permitted here: {why}")
        return SKIP
    prog = unittest.main(module=__name__, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
