"""The contract's CLI rules for every program: --help, --version, exit 2 on a
bad flag or value, and /metrics, /healthz, /readyz on --metrics."""

import json
import os
import re
import signal
import subprocess
import time
import unittest

from harness import BIN, Cluster, free_port, http_get, metric, wait_port

PROGRAMS = ("authd", "collector", "dispatcher", "pusher", "pushctl")

# Every flag of the contract's configuration table, by program.
FLAGS = {
    "authd": {"--nats": "PUSH_NATS_URL", "--prefix": "PUSH_PREFIX", "--metrics": "PUSH_METRICS",
              "--log-level": "PUSH_LOG_LEVEL", "--jwt-secret": "PUSH_JWT_SECRET"},
    "collector": {"--nats": "PUSH_NATS_URL", "--prefix": "PUSH_PREFIX", "--metrics": "PUSH_METRICS",
                  "--log-level": "PUSH_LOG_LEVEL", "--store": "PUSH_STORE", "--http": "PUSH_HTTP"},
    "dispatcher": {"--nats": "PUSH_NATS_URL", "--prefix": "PUSH_PREFIX", "--metrics": "PUSH_METRICS",
                   "--log-level": "PUSH_LOG_LEVEL", "--redis": "PUSH_REDIS_URL"},
    "pusher": {"--nats": "PUSH_NATS_URL", "--prefix": "PUSH_PREFIX", "--metrics": "PUSH_METRICS",
               "--log-level": "PUSH_LOG_LEVEL", "--redis": "PUSH_REDIS_URL", "--listen": "PUSH_LISTEN",
               "--node-id": "PUSH_NODE_ID", "--route-ttl": "PUSH_ROUTE_TTL"},
    "pushctl": {"--nats": "PUSH_NATS_URL", "--prefix": "PUSH_PREFIX", "--log-level": "PUSH_LOG_LEVEL",
                "--jwt-secret": "PUSH_JWT_SECRET"},
}
for _flags in FLAGS.values():
    _flags["--log-format"] = "PUSH_LOG_FORMAT"
FLAGS["collector"]["--stream-replicas"] = "PUSH_STREAM_REPLICAS"


def run(*argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, env=env)


class Cli(unittest.TestCase):
    def test_help_lists_every_flag_with_its_env_var_and_exits_0(self):
        for prog, flags in FLAGS.items():
            out = run(os.path.join(BIN, prog), "--help")
            self.assertEqual(out.returncode, 0, prog)
            for flag, env in flags.items():
                self.assertRegex(out.stdout, re.escape(flag) + r"\b", f"{prog} --help lacks {flag}")
                self.assertIn(env, out.stdout, f"{prog} --help lacks {env}")
            self.assertIn("env PUSH_LOG_FORMAT, default text\n", out.stdout, prog)
        out = run(os.path.join(BIN, "collector"), "--help")
        self.assertIn("env PUSH_STREAM_REPLICAS, default 1, from 1 to 5\n", out.stdout)
        for sub in ("publish", "tail", "presence"):
            out = run(os.path.join(BIN, "pushctl"), sub, "--help")
            self.assertIn("env PUSH_LOG_FORMAT, default text\n", out.stdout, sub)

    def test_help_shows_defaults_and_floors(self):
        # The defaults of the common flags, in pushctl's top-level help too,
        # and the route ttl's floor where an operator looks for it.
        for prog in PROGRAMS:
            out = run(os.path.join(BIN, prog), "--help")
            self.assertIn("default nats://127.0.0.1:4222", out.stdout, prog)
            self.assertIn("default info", out.stdout, prog)
        out = run(os.path.join(BIN, "pushctl"), "--help")
        for cmd in ("publish", "broadcast", "presence", "tail", "token", "connect"):
            self.assertIn(f"\n{cmd}:\n", out.stdout, f"pushctl --help lacks the flags of {cmd}")
        out = run(os.path.join(BIN, "pusher"), "--help")
        self.assertIn("env PUSH_ROUTE_TTL, default 60, from 5 to 86400", out.stdout)
        out = run(os.path.join(BIN, "pusher"), "--route-ttl", "4")
        self.assertEqual(out.returncode, 2)

    def test_version_prints_program_and_version(self):
        for prog in PROGRAMS:
            out = run(os.path.join(BIN, prog), "--version")
            self.assertEqual(out.returncode, 0, prog)
            self.assertRegex(out.stdout, rf"^{prog} \d+\.\d+\.\d+\n$")

    def test_unknown_flag_is_one_line_and_exit_2(self):
        for prog in PROGRAMS:
            argv = [os.path.join(BIN, prog)] + (["publish"] if prog == "pushctl" else []) + ["--no-such-flag"]
            out = run(*argv)
            self.assertEqual(out.returncode, 2, f"{prog}: {out.stderr}")
            self.assertEqual(len(out.stderr.strip().splitlines()), 1, f"{prog}: {out.stderr!r}")
            self.assertIn("no-such-flag", out.stderr)

    def test_bad_values_exit_2(self):
        env = dict(os.environ, PUSH_JWT_SECRET="s")
        cases = [
            ("pusher", "--route-ttl", "soon"),
            ("pusher", "--listen", "nowhere"),
            ("pusher", "--node-id", "a.b"),
            ("collector", "--metrics", "127.0.0.1:99999"),
            ("dispatcher", "--log-level", "loud"),
            ("authd", "--metrics", "no-port"),
            ("authd", "--log-format", "xml"),
            ("pusher", "--log-format", "JSON"),
            ("collector", "--stream-replicas", "0"),
            ("collector", "--stream-replicas", "6"),
        ]
        for prog, flag, value in cases:
            out = run(os.path.join(BIN, prog), flag, value, env=env)
            self.assertEqual(out.returncode, 2, f"{prog} {flag} {value}: {out.stderr}")
            self.assertEqual(len(out.stderr.strip().splitlines()), 1, f"{prog}: {out.stderr!r}")

    def test_bad_env_value_exits_2_and_flag_wins_over_env(self):
        env = dict(os.environ, PUSH_LOG_LEVEL="loud", PUSH_JWT_SECRET="s",
                   PUSH_NATS_URL=f"nats://127.0.0.1:{free_port()}")
        out = run(os.path.join(BIN, "authd"), env=env)
        self.assertEqual(out.returncode, 2)
        self.assertIn("PUSH_LOG_LEVEL", out.stderr)
        # The same bad env var with the flag given: the flag wins and authd runs
        # (NATS is not up; it keeps retrying) until SIGTERM, then exits 0.
        p = subprocess.Popen([os.path.join(BIN, "authd"), "--log-level", "info"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        self.assertIsNone(p.poll(), "authd exited although --log-level overrides the bad env var")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 0, err)

    def test_log_format_json_writes_one_object_per_line(self):
        # NATS is not up: authd logs its start and its retry, then SIGTERM.
        env = dict(os.environ, PUSH_JWT_SECRET="s", PUSH_LOG_FORMAT="json",
                   PUSH_NATS_URL=f"nats://127.0.0.1:{free_port()}")
        p = subprocess.Popen([os.path.join(BIN, "authd")], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 0, err)
        lines = err.splitlines()
        self.assertGreaterEqual(len(lines), 2, err)
        for line in lines:
            obj = json.loads(line)  # every line is one JSON object
            self.assertEqual(sorted(obj), ["level", "msg", "prog", "ts"], line)
            self.assertEqual(obj["prog"], "authd")
            self.assertIn(obj["level"], ("debug", "info", "warn", "error"))
            self.assertRegex(obj["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertTrue(any("not reachable yet" in json.loads(l)["msg"] for l in lines), err)

    def test_authd_without_secret_exits_2(self):
        env = {k: v for k, v in os.environ.items() if k != "PUSH_JWT_SECRET"}
        out = run(os.path.join(BIN, "authd"), env=env)
        self.assertEqual(out.returncode, 2)
        self.assertIn("jwt-secret", out.stderr)


class Endpoints(unittest.TestCase):
    """/healthz, /readyz and /metrics on every service, with NATS up and then down."""

    def test_health_ready_and_metrics_follow_the_connections(self):
        c = Cluster()
        try:
            c.start_nats()
            c.start_redis()
            c.start("authd")
            c.start("collector", "collector", "--store", f"sqlite:{c.dir}/push.db")
            c.start("dispatcher")
            c.start_pusher("pusher")
            services = ("authd", "collector", "dispatcher", "pusher")
            for name in services:
                self.assertEqual(http_get(c.metrics[name] + "/healthz")[0], 200, name)
                self.assertEqual(http_get(c.metrics[name] + "/readyz")[0], 200, name)
                status, body = http_get(c.metrics[name] + "/metrics")
                self.assertEqual(status, 200)
                self.assertIn("# TYPE push_", body)
                self.assertEqual(metric(body, "push_ready"), 1, name)
                for line in body.splitlines():
                    if line and not line.startswith("#"):
                        self.assertRegex(line, r"^push_[a-z0-9_]+(\{[^}]*\})? -?\d+(\.\d+)?$", name)
            # NATS goes away: every service stays alive (healthz 200) but is not ready.
            c.procs["nats"].kill9()
            for name in services:
                deadline = time.monotonic() + 10
                while http_get(c.metrics[name] + "/readyz")[0] != 503 and time.monotonic() < deadline:
                    time.sleep(0.1)
                self.assertEqual(http_get(c.metrics[name] + "/readyz")[0], 503, name)
                self.assertEqual(http_get(c.metrics[name] + "/healthz")[0], 200, name)
                self.assertEqual(metric(http_get(c.metrics[name] + "/metrics")[1], "push_ready"), 0, name)
            codes = c.stop_all()
            for name in services:
                self.assertEqual(codes[name], 0, f"{name}:\n{c.procs[name].tail()}")
        except Exception:
            print(c.logs())
            c.stop_all()
            raise
        c.cleanup()


if __name__ == "__main__":
    unittest.main()
