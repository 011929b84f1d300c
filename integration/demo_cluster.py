"""A cluster for the demo page's tests: every service, the collector with
its HTTP ingest (--http) and `pushctl demo` pointed at the pusher and the
ingest, all on free loopback ports."""

import os

from harness import BIN, ClusterTest, Proc, free_port, wait_port


class DemoClusterTest(ClusterTest):
    start_services = False

    def setUp(self):
        super().setUp()
        c = self.c
        try:
            c.start_nats()
            c.start_redis()
            c.start("authd")
            self.http_port = free_port()
            c.start("collector", "collector", "--store", f"sqlite:{os.path.join(c.dir, 'push.db')}",
                    "--http", f"127.0.0.1:{self.http_port}")
            c.start("dispatcher")
            c.start_pusher("pusher")
            self.demo_port = free_port()
            c.procs["demo"] = Proc("demo", [os.path.join(BIN, "pushctl"), "demo",
                                            "--listen", f"127.0.0.1:{self.demo_port}",
                                            "--ws-url", c.ws_url("pusher"),
                                            "--http-url", f"http://127.0.0.1:{self.http_port}"],
                                   c.env, c.dir)
            wait_port(self.demo_port)
        except Exception:
            print(c.logs())
            c.stop_all()
            raise
        self.demo_url = f"http://127.0.0.1:{self.demo_port}"
        self.ingest_url = f"http://127.0.0.1:{self.http_port}"

    def restart_pusher(self, kill=True):
        """Kill the pusher (SIGKILL: no goodbye, the clients see 1006) or stop it
        (SIGTERM: 1001), then start it again on the same port and node id."""
        port = self.c.ws_ports["pusher"]
        if kill:
            self.c.procs["pusher"].kill9()
        else:
            self.c.procs["pusher"].stop()
        return port

    def start_pusher_again(self, port):
        self.c.start("pusher", "pusher", "--listen", f"127.0.0.1:{port}", "--node-id", "pusher")
        wait_port(port)
