#!/usr/bin/env bash
# Print a TCP port on 127.0.0.1 that nothing listens on right now, chosen at
# random below the kernel's ephemeral range: a port from that range can be
# taken as the local port of an outgoing connection before our server binds
# it (integration/harness.py's free_port says more).
exec python3 -c '
import random, socket
try:
    hi = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0]) - 1
except Exception:
    hi = 32767
lo = max(1024, hi - 12000)
for _ in range(500):
    p = random.randint(lo, hi)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
'
