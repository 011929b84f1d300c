#!/usr/bin/env python3
"""How long a user's messages pause when dispatchers come and go.

Starts nats-server, redis-server and the services (integration/harness.py,
binaries from PUSH_BIN, default build/bin), two dispatchers (waiting until
they own 8 shards each), and one user
on each busy shard (0, 4, 8, 12) connected over WebSocket. Each user gets
50 messages a second for 8 s; at 2 s a third dispatcher starts, at 5 s it
stops with SIGTERM. Prints one JSON line: when it joined and left (s from
the start), every gap over 0.2 s between two of a user's messages (user,
shard, s from the start, length), and whether every message arrived in
order.

    PUSH_BIN=build/bin bench/shard_moves.py
"""
import asyncio
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("PUSH_BIN", os.path.join(HERE, "..", "build", "bin"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Cluster, Nats, metric, shard_of, users_on_every_busy_shard, ws_welcome  # noqa: E402

RATE = 50        # messages a second, per user
SECONDS = 8
JOIN_S, LEAVE_S = 2, 5


async def run(c):
    nats = await Nats().connect(c.nats_port)
    users = users_on_every_busy_shard("moves")
    wss = {u: (await ws_welcome(c.ws_url(token=c.token(u))))[0] for u in users}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    last, gaps, got = {}, [], {u: [] for u in users}

    async def receive(u):
        async for raw in wss[u]:
            f = json.loads(raw)
            if f.get("type") != "message":
                continue
            t = loop.time()
            if u in last and t - last[u] > 0.2:
                gaps.append({"user": u, "shard": shard_of(u), "at_s": round(last[u] - t0, 2),
                             "gap_s": round(t - last[u], 2)})
            last[u] = t
            got[u].append(f["data"])

    tasks = [asyncio.create_task(receive(u)) for u in users]
    events, bg = {}, []
    n = 0
    while n < RATE * SECONDS:
        for u in users:
            nats.pub("push.collect", json.dumps({"to": [u], "data": n}))
        await nats.flush()
        if n == RATE * JOIN_S:
            events["join_s"] = round(loop.time() - t0, 2)
            bg.append(asyncio.create_task(asyncio.to_thread(c.start, "dispatcher-3", "dispatcher",
                                                            ready=False)))
        if n == RATE * LEAVE_S:
            events["leave_s"] = round(loop.time() - t0, 2)
            bg.append(asyncio.create_task(asyncio.to_thread(c.procs["dispatcher-3"].stop)))
        n += 1
        await asyncio.sleep(max(0.0, t0 + n / RATE - loop.time()))
    await asyncio.gather(*bg)
    for _ in range(100):
        if all(len(got[u]) >= n for u in users):
            break
        await asyncio.sleep(0.1)
    for t in tasks:
        t.cancel()
    in_order = all(sorted(set(got[u])) == list(range(n)) and
                   list(dict.fromkeys(got[u])) == list(range(n)) for u in users)
    print(json.dumps({"figure": "shard_moves", **events, "gaps": gaps, "all_in_order": in_order}))
    await nats.close()


def main():
    c = Cluster()
    try:
        c.start_all()
        c.start("dispatcher-2", "dispatcher")
        # the two share the shards 8 and 8 before the clock starts
        for _ in range(100):
            if [metric(c.scrape(n), "push_dispatch_shards_owned") for n in
                    ("dispatcher", "dispatcher-2")] == [8, 8]:
                break
            time.sleep(0.2)
        asyncio.run(run(c))
    finally:
        for p in list(c.procs.values()):
            p.stop()
        c.cleanup()


if __name__ == "__main__":
    main()
