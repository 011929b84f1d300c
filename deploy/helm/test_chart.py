"""The Helm chart deploy/helm/push, rendered with deploy/helm/render (Go's
text/template + sprig, as Helm; Helm itself is not packaged for Debian) and
every document parsed as YAML: what the product contract's Deployment
section asks of it, and that bad values fail with a message naming them."""

import os
import subprocess
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "push")
TEST_VALUES = os.path.join(CHART, "ci", "test-values.yaml")
RENDER = os.environ.get("PUSH_HELM_RENDER")


def setUpModule():
    global RENDER
    if RENDER:
        return
    out = os.path.join(tempfile.mkdtemp(prefix="push-render-"), "render")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
               GOCACHE=os.environ.get("GOCACHE", os.path.join(tempfile.gettempdir(), "push-gocache")))
    subprocess.run(["go", "build", "-o", out, "."], cwd=os.path.join(HERE, "render"), env=env,
                   check=True, timeout=600)
    RENDER = out


def render(*args, values=(TEST_VALUES,), notes=False):
    argv = [RENDER, "--name", "push", "--namespace", "apps"]
    for v in values:
        argv += ["-f", v]
    for a in args:
        argv += ["--set", a]
    if notes:
        argv.append("--notes")
    return subprocess.run(argv + [CHART], capture_output=True, text=True, timeout=60)


def docs(*args, values=(TEST_VALUES,)):
    out = render(*args, values=values)
    if out.returncode != 0:
        raise AssertionError(f"render failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def by_kind(ds, kind):
    return {d["metadata"]["name"]: d for d in ds if d["kind"] == kind}


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


class Rendered(unittest.TestCase):
    def setUp(self):
        self.docs = docs()
        self.deploys = by_kind(self.docs, "Deployment")

    def container(self, component):
        return self.deploys[f"push-{component}"]["spec"]["template"]["spec"]["containers"][0]

    def test_authd_collector_dispatcher_and_pusher_are_deployments(self):
        self.assertEqual(sorted(self.deploys),
                         ["push-authd", "push-collector", "push-dispatcher", "push-pusher"])
        for name, d in self.deploys.items():
            c = d["spec"]["template"]["spec"]["containers"][0]
            self.assertEqual(c["args"], [name.split("-")[1]])
            self.assertEqual(c["image"], "push:0.1.0")

    def test_every_workload_probes_healthz_and_readyz_on_the_metrics_port(self):
        for name, d in self.deploys.items():
            c = d["spec"]["template"]["spec"]["containers"][0]
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"}, name)
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"}, name)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(ports["metrics"], 9090, name)
            self.assertEqual(env_of(c)["PUSH_METRICS"]["value"], "0.0.0.0:9090", name)
            ann = d["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(ann, {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                                   "prometheus.io/path": "/metrics"}, name)

    def test_common_environment_comes_from_the_values(self):
        for name in self.deploys:
            env = env_of(self.container(name.split("-")[1]))
            self.assertEqual(env["PUSH_NATS_URL"]["value"],
                             "nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222")
            self.assertEqual(env["PUSH_PREFIX"]["value"], "push")
            self.assertEqual(env["PUSH_LOG_FORMAT"]["value"], "json")
        for name in ("pusher", "dispatcher"):
            self.assertEqual(env_of(self.container(name))["PUSH_REDIS_URL"]["value"],
                             "redis://redis-master:6379/0")
        self.assertEqual(env_of(self.container("collector"))["PUSH_STREAM_REPLICAS"]["value"], "3")

    def test_the_jwt_secret_comes_only_from_the_existing_secret(self):
        env = env_of(self.container("authd"))
        self.assertEqual(env["PUSH_JWT_SECRET"],
                         {"name": "PUSH_JWT_SECRET",
                          "valueFrom": {"secretKeyRef": {"name": "push-jwt", "key": "jwt-secret"}}})
        self.assertEqual(by_kind(self.docs, "Secret"), {})  # the chart never makes one

    def test_pusher_node_id_is_the_pod_name_and_it_drains_before_stopping(self):
        spec = self.deploys["push-pusher"]["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = env_of(c)
        self.assertEqual(env["PUSH_NODE_ID"]["valueFrom"], {"fieldRef": {"fieldPath": "metadata.name"}})
        self.assertEqual(env["PUSH_LISTEN"]["value"], "0.0.0.0:8080")
        self.assertEqual(env["PUSH_ROUTE_TTL"]["value"], "60")
        self.assertEqual(c["lifecycle"]["preStop"]["exec"]["command"], ["sleep", "5"])
        self.assertEqual(spec["terminationGracePeriodSeconds"], 30)
        svc = by_kind(self.docs, "Service")["push-pusher"]
        self.assertEqual(svc["spec"]["ports"], [{"name": "ws", "port": 80, "targetPort": "ws",
                                                 "protocol": "TCP"}])
        self.assertEqual(svc["spec"]["selector"]["app.kubernetes.io/component"], "pusher")

    def test_sqlite_store_is_one_collector_on_a_volume(self):
        d = self.deploys["push-collector"]
        self.assertEqual(d["spec"]["replicas"], 1)
        self.assertEqual(d["spec"]["strategy"], {"type": "Recreate"})
        spec = d["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec["volumes"]}
        self.assertEqual(vols["store"]["persistentVolumeClaim"]["claimName"], "push-store")
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        self.assertEqual(mounts["store"], "/var/lib/push")
        self.assertEqual(env_of(spec["containers"][0])["PUSH_STORE"]["value"], "sqlite:/var/lib/push/push.db")
        self.assertIn("push-store", by_kind(self.docs, "PersistentVolumeClaim"))

    def test_every_component_has_a_disruption_budget(self):
        pdbs = by_kind(self.docs, "PodDisruptionBudget")
        self.assertEqual(sorted(pdbs), ["push-authd", "push-collector", "push-dispatcher", "push-pusher"])
        for name, p in pdbs.items():
            self.assertEqual(p["spec"]["maxUnavailable"], 1)
            self.assertEqual(p["spec"]["selector"]["matchLabels"],
                             self.deploys[name]["spec"]["selector"]["matchLabels"])

    def test_pods_run_as_the_images_non_root_user(self):
        for name, d in self.deploys.items():
            sc = d["spec"]["template"]["spec"]["securityContext"]
            self.assertEqual((sc["runAsNonRoot"], sc["runAsUser"]), (True, 10001), name)

    def test_notes_render(self):
        out = render(notes=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("NATS: nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222 "
                      "(stream replicas 3)", out.stdout)
        self.assertIn("JWT secret: Secret push-jwt, key jwt-secret", out.stdout)


class Options(unittest.TestCase):
    def test_mongodb_allows_several_collectors_without_a_volume(self):
        ds = docs("collector.replicas=3", "store.uri=mongodb://mongo-0.mongo:27017/push")
        d = by_kind(ds, "Deployment")["push-collector"]
        self.assertEqual(d["spec"]["replicas"], 3)
        self.assertNotIn("strategy", d["spec"])
        self.assertEqual(by_kind(ds, "PersistentVolumeClaim"), {})
        vols = [v["name"] for v in d["spec"]["template"]["spec"]["volumes"]]
        self.assertEqual(vols, ["tmp"])

    def test_store_uri_from_a_secret(self):
        ds = docs("collector.replicas=2", "store.existingSecret=push-store")
        c = by_kind(ds, "Deployment")["push-collector"]["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(env_of(c)["PUSH_STORE"]["valueFrom"],
                         {"secretKeyRef": {"name": "push-store", "key": "store-uri"}})

    def test_ingress_has_websocket_timeouts_and_points_at_the_pusher_service(self):
        ing = by_kind(docs("ingress.enabled=true", "ingress.host=push.example.org"), "Ingress")["push"]
        ann = ing["metadata"]["annotations"]
        self.assertEqual(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3600")
        self.assertEqual(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"], "3600")
        rule = ing["spec"]["rules"][0]
        self.assertEqual(rule["host"], "push.example.org")
        self.assertEqual(rule["http"]["paths"][0]["backend"],
                         {"service": {"name": "push-pusher", "port": {"name": "ws"}}})
        self.assertEqual(by_kind(docs(), "Ingress"), {})  # off by default

    def test_pusher_autoscaling_replaces_the_fixed_replica_count(self):
        ds = docs("pusher.autoscaling.enabled=true", "pusher.autoscaling.maxReplicas=12")
        hpa = by_kind(ds, "HorizontalPodAutoscaler")["push-pusher"]
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "push-pusher")
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (2, 12))
        self.assertNotIn("replicas", by_kind(ds, "Deployment")["push-pusher"]["spec"])

    def test_bundled_nats_and_redis_charts_set_the_urls(self):
        ds = docs("nats.enabled=true", "redis.enabled=true", "externalNats.urls=null",
                  "externalRedis.url=null")
        c = by_kind(ds, "Deployment")["push-dispatcher"]["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(env_of(c)["PUSH_NATS_URL"]["value"], "nats://push-nats:4222")
        self.assertEqual(env_of(c)["PUSH_REDIS_URL"]["value"], "redis://push-redis-master:6379")


class BadValues(unittest.TestCase):
    def fails_with(self, message, *sets, values=(TEST_VALUES,)):
        out = render(*sets, values=values)
        self.assertEqual(out.returncode, 1, out.stdout[:200])
        self.assertEqual(out.stdout, "")
        self.assertIn(message, out.stderr)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)

    def test_several_collectors_on_sqlite_fail_naming_the_value(self):
        self.fails_with("collector.replicas is 2 but store.uri is sqlite:/var/lib/push/push.db: "
                        "SQLite allows one collector", "collector.replicas=2")

    def test_zero_pushers_fail(self):
        self.fails_with("pusher.replicas is 0: at least one pusher is needed", "pusher.replicas=0")

    def test_missing_jwt_secret_fails(self):
        self.fails_with("jwt.existingSecret is required", values=())

    def test_invalid_nats_url_fails_naming_the_value(self):
        self.fails_with('externalNats.urls: "http://nats:4222" is not a NATS URL',
                        "externalNats.urls={nats://a:4222,http://nats:4222}")
        self.fails_with('externalNats.urls: "nats://a b" is not a NATS URL', "externalNats.urls={nats://a b}")

    def test_invalid_redis_url_fails_naming_the_value(self):
        self.fails_with('externalRedis.url: "redis-master:6379" is not a Redis URL',
                        "externalRedis.url=redis-master:6379")

    def test_other_bad_values_fail(self):
        self.fails_with('store.uri: "postgres://db" is neither sqlite:PATH nor mongodb://',
                        "store.uri=postgres://db")
        self.fails_with("streamReplicas is 6: JetStream keeps 1 to 5 replicas", "streamReplicas=6")
        self.fails_with('logFormat: "xml" is neither text nor json', "logFormat=xml")


if __name__ == "__main__":
    unittest.main()
