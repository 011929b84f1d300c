"""deploy/grafana/push.json: valid JSON with unique panel ids, and every
push_ metric it queries is one the programs register (a string literal
"push_..." in their C sources), so the dashboard shows no invented series."""

import glob
import json
import os
import re
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def registered_metrics():
    names = set()
    for d in ("lib", "authd", "collector", "dispatcher", "pusher"):
        for path in glob.glob(os.path.join(ROOT, d, "*.c")):
            if os.path.basename(path).startswith("test_"):
                continue
            with open(path) as f:
                names |= set(re.findall(r'"(push_[a-z_]+)"', f.read()))
    return names


class Dashboard(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(ROOT, "deploy", "grafana", "push.json")) as f:
            self.dash = json.load(f)

    def exprs(self):
        return [t["expr"] for p in self.dash["panels"] for t in p.get("targets", [])]

    def test_every_queried_metric_exists_in_the_code(self):
        known = registered_metrics()
        self.assertIn("push_ready", known)
        used = set()
        for e in self.exprs():
            # a histogram is queried by its series: name_bucket, _sum, _count
            used |= {re.sub(r"_(bucket|sum|count)$", "", m)
                     for m in re.findall(r"\b(push_[a-z_]+)", e)}
        self.assertEqual(sorted(used - known), [])
        # what the dashboard is for: connections, publishes accepted and
        # refused by reason, deliveries, slow clients closed, readiness
        for m in ("push_pusher_connections", "push_collect_accepted_total",
                  "push_collect_rejected_total", "push_dispatch_deliveries_total",
                  "push_pusher_slow_clients_closed_total", "push_ready"):
            self.assertIn(m, used)
        self.assertTrue(any("by (reason)" in e and "push_collect_rejected_total" in e
                            for e in self.exprs()))

    def test_panel_ids_are_unique_and_counters_are_rated(self):
        ids = [p["id"] for p in self.dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for e in self.exprs():
            for m in re.findall(r"\b(push_[a-z_]+_total)\b", e):
                self.assertRegex(e, r"(rate|increase)\(" + m, e)


if __name__ == "__main__":
    unittest.main()
