"""Writes deploy/grafana/push.json (run from deploy/grafana: python3 make_dashboard.py).
Edit the panels here, not in the JSON; test_dashboard.py checks the result."""
import json
panels = []
y = 0
pid = 0
def row(title):
    global y, pid
    pid += 1
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    y += 1
def ts(title, targets, x, w=8, h=8, unit="short", desc=""):
    global pid
    pid += 1
    panels.append({
        "type": "timeseries", "title": title, "id": pid, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": e,
                     "legendFormat": l, "refId": chr(65 + i)} for i, (e, l) in enumerate(targets)],
    })
def stat(title, expr, x, w=6, h=4, unit="short", desc="", thresholds=None):
    global pid
    pid += 1
    panels.append({
        "type": "stat", "title": title, "id": pid, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds or {
            "mode": "absolute", "steps": [{"color": "green", "value": None}]}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto"},
        "targets": [{"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr, "refId": "A"}],
    })
R = "[$__rate_interval]"
red = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}

row("Overview")
stat("Processes ready", 'sum(push_ready{namespace=~"$namespace"})', 0, desc="push_ready: 1 while a process's /readyz answers 200")
stat("Processes not ready", 'count(push_ready{namespace=~"$namespace"} == 0) or vector(0)', 6, thresholds=red,
     desc="processes whose NATS, Redis or store connection is down")
stat("WebSocket connections", 'sum(push_pusher_connections{namespace=~"$namespace"})', 12)
stat("Online users", 'sum(push_pusher_users{namespace=~"$namespace"})', 18,
     desc="sum over pushers: a user on two pushers counts twice")
y += 4
ts("Ready, by pod", [('min by (pod) (push_ready{namespace=~"$namespace"})', "{{pod}}")], 0, w=24, h=6)
y += 6

row("Publishing (collector)")
ts("Publishes accepted / duplicates", [
    (f'sum(rate(push_collect_accepted_total{{namespace=~"$namespace"}}{R}))', "accepted"),
    (f'sum(rate(push_collect_duplicates_total{{namespace=~"$namespace"}}{R}))', "duplicates (same id)")], 0, unit="ops")
ts("Publishes refused, by reason", [
    (f'sum by (reason) (rate(push_collect_rejected_total{{namespace=~"$namespace"}}{R}))', "{{reason}}"),
    (f'sum(rate(push_collect_store_errors_total{{namespace=~"$namespace"}}{R}))', "store errors")], 8, unit="ops")
ts("Hand-over to the dispatcher", [
    (f'sum(rate(push_collect_handed_over_total{{namespace=~"$namespace"}}{R}))', "handed over"),
    (f'sum(rate(push_collect_handover_retries_total{{namespace=~"$namespace"}}{R}))', "retried"),
    (f'sum(rate(push_collect_handover_errors_total{{namespace=~"$namespace"}}{R}))', "errors"),
    (f'sum(rate(push_collect_expired_total{{namespace=~"$namespace"}}{R}))', "expired")], 16, unit="ops")
y += 8

row("Dispatching")
ts("Messages and deliveries", [
    (f'sum(rate(push_dispatch_messages_total{{namespace=~"$namespace"}}{R}))', "messages"),
    (f'sum(rate(push_dispatch_deliveries_total{{namespace=~"$namespace"}}{R}))', "deliveries to nodes"),
    (f'sum(rate(push_dispatch_broadcasts_total{{namespace=~"$namespace"}}{R}))', "broadcasts"),
    (f'sum(rate(push_dispatch_offline_recipients_total{{namespace=~"$namespace"}}{R}))', "offline recipients")], 0, unit="ops")
ts("Shards owned, by dispatcher", [
    ('sum by (pod) (push_dispatch_shards_owned{namespace=~"$namespace"})', "{{pod}} (of 16)"),
    ('sum by (pod) (push_dispatch_busy_shards_owned{namespace=~"$namespace"})', "{{pod}} busy (of 4)")], 8)
ts("Dispatcher errors", [
    (f'sum(rate(push_dispatch_redis_errors_total{{namespace=~"$namespace"}}{R}))', "redis errors"),
    (f'sum(rate(push_dispatch_consumer_resets_total{{namespace=~"$namespace"}}{R}))', "consumer resets"),
    (f'sum(rate(push_dispatch_malformed_total{{namespace=~"$namespace"}}{R}))', "malformed")], 16, unit="ops")
y += 8

row("Pushers (WebSocket)")
ts("Connections, by pusher", [('sum by (pod) (push_pusher_connections{namespace=~"$namespace"})', "{{pod}}"),
                              ('sum(push_pusher_connections_pending_auth{namespace=~"$namespace"})', "waiting for authd")], 0)
ts("Deliveries received and frames sent", [
    (f'sum(rate(push_pusher_deliveries_total{{namespace=~"$namespace"}}{R}))', "deliveries from NATS"),
    (f'sum(rate(push_pusher_frames_sent_total{{namespace=~"$namespace"}}{R}))', "frames sent"),
    (f'sum(rate(push_pusher_acks_total{{namespace=~"$namespace"}}{R}))', "acks"),
    (f'sum(rate(push_pusher_welcomed_total{{namespace=~"$namespace"}}{R}))', "welcomed")], 8, unit="ops")
ts("Connections closed by the server", [
    (f'sum(rate(push_pusher_slow_clients_closed_total{{namespace=~"$namespace"}}{R}))', "slow clients"),
    (f'sum(rate(push_pusher_idle_closed_total{{namespace=~"$namespace"}}{R}))', "idle"),
    (f'sum(rate(push_pusher_oversize_frames_total{{namespace=~"$namespace"}}{R}))', "oversize frames"),
    (f'sum(rate(push_pusher_fd_limit_refused_total{{namespace=~"$namespace"}}{R}))', "fd limit")], 16, unit="ops")
y += 8

row("Latency: a message's age at each hop (since the collector accepted it)")
HOPS = [("push_collect_stored_age_seconds", "stored"),
        ("push_collect_handover_age_seconds", "in the dispatch stream"),
        ("push_dispatch_age_seconds", "published to its nodes"),
        ("push_pusher_delivery_age_seconds", "written to its connections")]
for i, q in enumerate(("0.5", "0.99")):
    ts(f"p{round(float(q) * 100)} age by hop", [
        (f'histogram_quantile({q}, sum by (le) (rate({m}_bucket{{namespace=~"$namespace"}}{R})))', hop)
        for m, hop in HOPS], 12 * i, w=12, unit="s",
        desc="each hop's figure includes the hops before it; the last is what a client waits, less its network")
y += 8

row("Auth and NATS")
ts("Tokens accepted / refused, by reason", [
    (f'sum(rate(push_authd_accepted_total{{namespace=~"$namespace"}}{R}))', "accepted"),
    (f'sum by (reason) (rate(push_authd_refused_total{{namespace=~"$namespace"}}{R}))', "refused: {{reason}}"),
    (f'sum(rate(push_pusher_auth_timeouts_total{{namespace=~"$namespace"}}{R}))', "pusher: authd timeouts (1013)")], 0, unit="ops")
ts("NATS connection losses", [
    (f'sum by (pod) (increase(push_nats_disconnects_total{{namespace=~"$namespace"}}{R}))', "{{pod}}")], 8)
ts("Pusher catch-ups after NATS came back", [
    (f'sum(increase(push_pusher_nats_holds_total{{namespace=~"$namespace"}}{R}))', "held (NATS lost)"),
    (f'sum(increase(push_pusher_nats_catchups_total{{namespace=~"$namespace"}}{R}))', "caught up"),
    (f'sum(increase(push_nats_async_errors_total{{namespace=~"$namespace"}}{R}))', "NATS async errors")], 16)
y += 8

dash = {
    "title": "push cluster",
    "uid": "push-cluster",
    "description": "The push_ metrics of authd, collector, dispatcher and pusher (scraped from --metrics /metrics)",
    "tags": ["push", "websocket", "nats"],
    "timezone": "utc",
    "schemaVersion": 38,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
         "current": {}, "hide": 0},
        {"name": "namespace", "type": "query", "label": "namespace",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(push_ready, namespace)", "refId": "ns"},
         "definition": "label_values(push_ready, namespace)",
         "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2,
         "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
json.dump(dash, open("push.json", "w"), indent=2)
open("push.json", "a").write("\n")
