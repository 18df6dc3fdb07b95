"""Static checks of the dashboards and alerts in deploy/observability: the Prometheus config and
alerting rules pass promtool (and the rules' unit tests, alerts.test.yml, pass), the Grafana
dashboard and provisioning agree with the compose file, and deploy/observability/metrics.txt
lists exactly the metric names the rules and the dashboard use (a live instance's /metrics is
checked against that list by the Rust tests).

Run from the repository root: python3 -m unittest discover -s tests/deploy
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OBS = os.path.join(ROOT, "deploy", "observability")
PROMETHEUS_YML = os.path.join(OBS, "prometheus.yml")
ALERTS_YML = os.path.join(OBS, "alerts.yml")
ALERTS_TEST_YML = os.path.join(OBS, "alerts.test.yml")
DASHBOARD_JSON = os.path.join(OBS, "grafana", "dashboards", "banter.json")
METRICS_TXT = os.path.join(OBS, "metrics.txt")

# A metric name as it appears in the /metrics text (banter's own; `up` is Prometheus's).
METRIC = re.compile(r"\bbanter_[a-z0-9_]+")
# Suffixes of the samples of counters and histograms in the OpenMetrics text.
SAMPLE_SUFFIX = re.compile(r"_(total|bucket|sum|count)$")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def promtool(*args, cwd=ROOT):
    """Runs promtool (Debian's `prometheus` package), failing with its output."""
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def compose_config():
    out = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "-f", "docker-compose.yml", "config"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return yaml.safe_load(out)


def mounts(service):
    """(source, target) of a compose service's volumes."""
    out = set()
    for m in service.get("volumes", []):
        if isinstance(m, dict):
            out.add((m["source"], m["target"]))
        else:
            source, target = m.split(":")[:2]
            out.add((source, target))
    return out


def rules(path=ALERTS_YML):
    return [rule for group in yaml.safe_load(read(path))["groups"] for rule in group["rules"]]


def alerting_rules():
    return [rule for rule in rules() if "alert" in rule]


def dashboard():
    return json.loads(read(DASHBOARD_JSON))


def dashboard_queries(board):
    """Every PromQL query of the dashboard: the panels' targets and the template variables'."""
    queries = [target["expr"] for panel in board["panels"] for target in panel.get("targets", []) if "expr" in target]
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def used_metric_names():
    """The banter metric names (as in the /metrics text) the alerting rules and the dashboard use."""
    exprs = [rule["expr"] for rule in rules()] + dashboard_queries(dashboard())
    return {name for expr in exprs for name in METRIC.findall(expr)}


def listed_metric_names():
    return [line.strip() for line in read(METRICS_TXT).splitlines() if line.strip()]


class PrometheusConfig(unittest.TestCase):
    def test_config_is_valid(self):
        # rule_files are relative to the config: alerts.yml beside it, here and in the container.
        promtool("check", "config", PROMETHEUS_YML)

    def test_scrapes_every_instance_often(self):
        config = yaml.safe_load(read(PROMETHEUS_YML))
        interval = config["global"]["scrape_interval"]
        seconds = int(re.fullmatch(r"(\d+)s", interval).group(1))
        self.assertTrue(5 <= seconds <= 15, f"scrape interval {interval}")
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        banter = jobs["banter"]
        self.assertEqual(banter.get("metrics_path", "/metrics"), "/metrics")
        targets = {t for sc in banter["static_configs"] for t in sc["targets"]}
        services = compose_config()["services"]
        instances = {name for name, s in services.items() if name.startswith("banter-")}
        self.assertEqual({t.split(":")[0] for t in targets}, instances, "every banter service is scraped")
        for target in targets:
            host, port = target.split(":")
            self.assertEqual(services[host]["environment"]["BANTER_ADDR"], f"0.0.0.0:{port}")

    def test_compose_mounts_the_config_and_every_rule_file(self):
        services = compose_config()["services"]
        prometheus = services["prometheus"]
        self.assertEqual(prometheus.get("profiles"), ["observability"])
        self.assertIn("prom/prometheus", prometheus["image"])
        config = yaml.safe_load(read(PROMETHEUS_YML))
        targets = {target: source for source, target in mounts(prometheus)}
        self.assertEqual(targets.get("/etc/prometheus/prometheus.yml"), PROMETHEUS_YML)
        for rule_file in config["rule_files"]:
            self.assertEqual(targets.get(f"/etc/prometheus/{rule_file}"), os.path.join(OBS, rule_file))
        published = {(str(p["published"]), str(p["target"])) if isinstance(p, dict) else tuple(p.split("/")[0].split(":")[-2:])
                     for p in prometheus["ports"]}
        self.assertIn(("9090", "9090"), published)


class AlertingRules(unittest.TestCase):
    def test_rules_are_valid(self):
        promtool("check", "rules", ALERTS_YML)

    def test_unit_tests_pass(self):
        promtool("test", "rules", ALERTS_TEST_YML)

    def test_every_alert_is_labelled_and_explained(self):
        alerts = alerting_rules()
        self.assertEqual(len({a["alert"] for a in alerts}), len(alerts), "alert names are unique")
        for alert in alerts:
            name = alert["alert"]
            self.assertRegex(name, r"^Banter[A-Za-z]+$")
            self.assertIn(alert.get("labels", {}).get("severity"), {"warning", "critical"}, name)
            self.assertRegex(alert.get("for", ""), r"^\d+[sm]$", f"{name} must hold before it fires")
            for annotation in ("summary", "description"):
                self.assertTrue(alert.get("annotations", {}).get(annotation), f"{name} has a {annotation}")

    def test_expected_alerts_exist(self):
        exprs = {a["alert"]: a["expr"] for a in alerting_rules()}
        self.assertRegex(exprs["BanterInstanceDown"], r'up\{job="banter"\} == 0')
        for name, metric in {
            "BanterDeliveriesDropped": "banter_deliveries_dropped_total",
            "BanterCommitLatencyHigh": "banter_commit_seconds_bucket",
            "BanterSendAckLatencyHigh": "banter_send_ack_seconds_bucket",
            "BanterRedisErrors": 'banter_dependency_errors_total{job="banter", dependency="redis"}',
            "BanterPostgresErrors": 'banter_dependency_errors_total{job="banter", dependency="database"}',
            "BanterMemoryPerSocketHigh": "banter_process_resident_memory_bytes",
            "BanterDrainingTooLong": "banter_draining",
            "BanterSocketMoveStorm": "banter_sockets_moved_total",
        }.items():
            self.assertIn(metric, exprs[name], name)

    def test_every_alert_is_tested_firing_and_quiet(self):
        tests = yaml.safe_load(read(ALERTS_TEST_YML))
        self.assertEqual(tests["rule_files"], ["alerts.yml"])
        fired, quiet = set(), set()
        for case in tests["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
        names = {a["alert"] for a in alerting_rules()}
        self.assertEqual(names - fired, set(), "alerts no test makes fire")
        self.assertEqual(names - quiet, set(), "alerts no test checks stay quiet")

    def test_every_alert_has_a_runbook_line(self):
        scaling = read(os.path.join(ROOT, "docs", "SCALING.md"))
        section = scaling.split("## Dashboards and alerts", 1)[1].split("\n## ", 1)[0]
        for alert in alerting_rules():
            self.assertIn(f"`{alert['alert']}`", section, "docs/SCALING.md says what to do about it")


class GrafanaDashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.board = dashboard()

    def test_parses_with_unique_panel_ids_and_a_query_per_panel(self):
        self.assertGreaterEqual(self.board["schemaVersion"], 36)
        self.assertTrue(self.board["uid"])
        panels = self.board["panels"]
        ids = [panel["id"] for panel in panels]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for panel in panels:
            exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
            self.assertTrue(exprs and all(exprs), f"panel {panel['title']!r} queries Prometheus")
            refs = [t["refId"] for t in panel["targets"]]
            self.assertEqual(len(refs), len(set(refs)), f"refIds of {panel['title']!r}")

    def test_datasource_is_the_variable_or_the_provisioned_one(self):
        provisioned = yaml.safe_load(read(os.path.join(OBS, "grafana", "provisioning", "datasources", "prometheus.yml")))
        uids = {d["uid"] for d in provisioned["datasources"]}
        variables = {v["name"] for v in self.board["templating"]["list"] if v["type"] == "datasource"}
        allowed = uids | {f"${{{v}}}" for v in variables} | {f"${v}" for v in variables}
        for panel in self.board["panels"]:
            for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel["targets"]]:
                if ref is not None:
                    self.assertIn(ref["uid"], allowed, panel["title"])

    def test_panels_cover_what_an_operator_watches(self):
        exprs = "\n".join(dashboard_queries(self.board))
        for metric in ("banter_sockets", "banter_message_deliveries_total", "banter_deliveries_dropped_total",
                       "banter_events_in_total", "banter_send_ack_seconds_bucket", "banter_commit_seconds_bucket",
                       "banter_commit_batch_size_bucket", "banter_dependency_errors_total",
                       "banter_process_resident_memory_bytes", "banter_process_cpu_seconds_total", "banter_draining",
                       "banter_agent_weight", "banter_sockets_moved_total"):
            self.assertIn(metric, exprs)

    def test_queries_are_valid_promql(self):
        # Grafana's variables replaced by values, each query checked as a recording rule.
        substitutions = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}
        records = []
        for i, expr in enumerate(dashboard_queries(self.board)):
            if expr.startswith("label_values("):
                expr = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr, re.S).group(1)
            for var, value in substitutions.items():
                expr = expr.replace(var, value)
            self.assertNotIn("$", expr, "a variable the check does not know")
            records.append({"record": f"dashboard:query_{i}", "expr": expr})
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "dashboard-queries.yml")
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, f)
            promtool("check", "rules", path)

    def test_provisioning_matches_the_compose_mounts(self):
        grafana = compose_config()["services"]["grafana"]
        self.assertEqual(grafana.get("profiles"), ["observability"])
        self.assertIn("grafana/grafana", grafana["image"])
        published = {(str(p["published"]), str(p["target"])) if isinstance(p, dict) else tuple(p.split("/")[0].split(":")[-2:])
                     for p in grafana["ports"]}
        self.assertIn(("3001", "3000"), published)
        targets = {target: source for source, target in mounts(grafana)}
        self.assertEqual(targets.get("/etc/grafana/provisioning"), os.path.join(OBS, "grafana", "provisioning"))
        providers = yaml.safe_load(read(os.path.join(OBS, "grafana", "provisioning", "dashboards", "banter.yml")))["providers"]
        for provider in providers:
            path = provider["options"]["path"]
            self.assertEqual(targets.get(path), os.path.dirname(DASHBOARD_JSON), f"{path} is the dashboards folder")
        datasources = yaml.safe_load(read(os.path.join(OBS, "grafana", "provisioning", "datasources", "prometheus.yml")))
        (prometheus,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
        self.assertEqual(prometheus["url"], "http://prometheus:9090")


class MetricNames(unittest.TestCase):
    def test_metrics_txt_lists_exactly_the_names_used(self):
        listed = listed_metric_names()
        self.assertEqual(listed, sorted(set(listed)), "metrics.txt is sorted, one name a line, no repeats")
        used = used_metric_names()
        self.assertEqual(set(listed), used,
                         "deploy/observability/metrics.txt must list every metric the rules and dashboard use "
                         f"(missing: {sorted(used - set(listed))}, unused: {sorted(set(listed) - used)})")

    def test_names_are_as_in_the_exposition(self):
        # Counters are exposed with _total and histograms as _bucket/_sum/_count: a rate over a
        # bare family name would match nothing.
        exprs = [rule["expr"] for rule in rules()] + dashboard_queries(dashboard())
        for expr in exprs:
            for name in re.findall(r"\b(?:rate|irate|increase)\(\s*(banter_[a-z0-9_]+)", expr):
                self.assertRegex(name, SAMPLE_SUFFIX, f"{name} in {expr}")
            if "histogram_quantile" in expr:
                for name in METRIC.findall(expr):
                    self.assertTrue(name.endswith("_bucket"), f"{name} in {expr}")


if __name__ == "__main__":
    unittest.main()
