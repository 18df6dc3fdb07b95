"""The Kubernetes manifests of deploy/k8s: every object is valid for the Kubernetes API, checked
offline against its JSON schemas by kubernetes-validate in strict mode (an unknown or misspelled
field fails), and the objects agree with each other and with banter: the probes, the drain on
preStop and the grace period, cookie affinity, every setting in the ConfigMap or the Secret, the
Services, the autoscaler and the disruption budget.

Run from the repository root: python3 -m unittest discover -s tests/deploy
(scripts/test.sh deploy installs kubernetes-validate in target/deploy-venv and runs them there.)
"""

import copy
import ipaddress
import os
import re
import shlex
import unittest
from urllib.parse import urlsplit

import yaml

try:
    import kubernetes_validate
except ImportError as e:  # pragma: no cover - a clear message instead of a bare import error
    raise ImportError(
        "kubernetes-validate is not installed: `scripts/test.sh deploy` installs it, or "
        "`python3 -m pip install kubernetes-validate` in a virtualenv"
    ) from e

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
NAMESPACE = "banter"

# The Kubernetes versions whose API schemas every manifest must satisfy: the oldest one the
# manifests are meant for and the newest that the pinned kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30", "1.37")

# The settings that hold credentials: in the Secret, never in the ConfigMap.
SECRET_SETTINGS = {"JWT_SECRET", "DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL",
                   "REDIS_CLUSTER_NODES", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

# ingress-nginx's default upstream-keepalive-timeout, in seconds.
INGRESS_NGINX_KEEPALIVE_SECS = 60


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def manifest_files():
    """The manifests, in the order `kubectl apply -f` takes them (the kustomization aside)."""
    return sorted(name for name in os.listdir(K8S)
                  if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml")


def objects():
    """(file, object) for every object of every manifest."""
    found = []
    for name in manifest_files():
        for obj in yaml.safe_load_all(read("deploy", "k8s", name)):
            if obj:
                found.append((name, obj))
    return found


def find(kind, name):
    matches = [obj for _, obj in objects() if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"one {kind} {name} in deploy/k8s, found {len(matches)}"
    return matches[0]


def container(deployment, name):
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def port_number(cont, port):
    """A probe's or a Service's target port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in cont.get("ports", []) if "name" in p}
    assert port in named, f"container {cont['name']} has a port named {port}"
    return named[port]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def config_variables():
    """Environment variables banter reads (src/config.rs)."""
    return set(re.findall(r'env = "([A-Z_]+)"', read("src", "config.rs")))


def documented_settings():
    """The names of docs/CONFIGURATION.md's table."""
    return set(re.findall(r"^\| `([A-Z_]+)`", read("docs", "CONFIGURATION.md"), re.M))


def unset_settings(config_file):
    """Settings the ConfigMap names on a commented line (`# NAME: "example"`): left unset on
    purpose, since an empty value is not the same as none for them."""
    return set(re.findall(r"^\s*#\s*([A-Z][A-Z0-9_]*):\s", read("deploy", "k8s", config_file), re.M))


def size_bytes(size):
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit.lower()]


class Schemas(unittest.TestCase):
    def test_every_object_is_valid_for_the_kubernetes_api(self):
        found = objects()
        self.assertGreater(len(found), 10)
        for version in KUBERNETES_VERSIONS:
            for name, obj in found:
                with self.subTest(version=version, file=name, object=f"{obj['kind']}/{obj['metadata']['name']}"):
                    try:
                        kubernetes_validate.validate(obj, version, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        path = ".".join(str(p) for p in e.path)
                        self.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {path}: {e.message}")
                    except kubernetes_validate.SchemaNotFoundError as e:
                        self.fail(f"{name}: {e.message}")

    def test_the_validator_rejects_a_misspelled_field(self):
        deployment = copy.deepcopy(find("Deployment", "banter"))
        probe = container(deployment, "banter")["readinessProbe"]
        probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)

    def test_kustomization_lists_every_manifest(self):
        kustomization = yaml.safe_load(read("deploy", "k8s", "kustomization.yaml"))
        self.assertEqual(kustomization["apiVersion"], "kustomize.config.k8s.io/v1beta1")
        self.assertEqual(kustomization["kind"], "Kustomization")
        self.assertEqual(kustomization["resources"], manifest_files())

    def test_everything_is_in_the_namespace(self):
        found = objects()
        self.assertEqual(found[0][1]["kind"], "Namespace", "the Namespace is applied first")
        self.assertEqual(found[0][1]["metadata"]["name"], NAMESPACE)
        for name, obj in found[1:]:
            self.assertEqual(obj["metadata"].get("namespace"), NAMESPACE, f"{name}: {obj['kind']} {obj['metadata']['name']}")


class BanterDeployment(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.deployment = find("Deployment", "banter")
        cls.pod = cls.deployment["spec"]["template"]
        cls.banter = container(cls.deployment, "banter")
        cls.config = find("ConfigMap", "banter-config")["data"]

    def prestop_sleep(self):
        command = self.banter["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(command[:2], ["/bin/sh", "-c"])
        return int(re.search(r"\bsleep (\d+)\b", command[2]).group(1))

    def test_image_runs_banter_as_pid_1(self):
        self.assertEqual(self.banter["image"], "banter:latest")
        dockerfile = read("Dockerfile")
        # The exec form: banter is PID 1, the process the preStop hook signals.
        self.assertRegex(dockerfile, r'(?m)^ENTRYPOINT \["/usr/local/bin/banter"\]$')
        uid = int(re.search(r"useradd [^\n]*--uid (\d+)[^\n]* banter\b", dockerfile).group(1))
        self.assertEqual(self.pod["spec"]["securityContext"]["runAsUser"], uid)
        self.assertTrue(self.pod["spec"]["securityContext"]["runAsNonRoot"])

    def test_replicas_and_resources(self):
        self.assertGreaterEqual(self.deployment["spec"]["replicas"], 2)
        self.assertEqual(self.deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        resources = self.banter["resources"]
        for key in ("cpu", "memory"):
            self.assertIn(key, resources["requests"])
        self.assertIn("memory", resources["limits"])

    def test_listens_where_the_probes_and_the_service_look(self):
        port = int(self.config["BANTER_ADDR"].rsplit(":", 1)[1])
        self.assertTrue(self.config["BANTER_ADDR"].startswith("0.0.0.0:"))
        self.assertEqual([p["containerPort"] for p in self.banter["ports"]], [port])
        self.assertNotIn(4001, [p["containerPort"] for p in self.banter["ports"]], "no HAProxy agent port")
        self.assertNotIn("AGENT_CHECK_ADDR", self.config, "no HAProxy agent check on Kubernetes")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(port_number(self.banter, self.banter[probe]["httpGet"]["port"]), port, probe)

    def test_probes(self):
        self.assertEqual(self.banter["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(self.banter["livenessProbe"]["httpGet"]["path"], "/health")

    def test_prestop_drains_before_the_grace_period_ends(self):
        command = self.banter["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(command[:2], ["/bin/sh", "-c"])
        self.assertIn(["kill", "-USR1", "1"], [shlex.split(part) for part in command[2].split(";")])
        sleep = self.prestop_sleep()
        # banter's own shutdown after SIGTERM is bounded by SHUTDOWN_LIMIT (src/main.rs).
        limit = int(re.search(r"SHUTDOWN_LIMIT: Duration = Duration::from_secs\((\d+)\)", read("src", "main.rs")).group(1))
        grace = self.pod["spec"]["terminationGracePeriodSeconds"]
        self.assertGreater(grace, sleep, "the grace period outlasts the preStop sleep")
        self.assertGreater(grace, sleep + limit, "and banter's shutdown after it")

    def test_a_full_pod_drains_within_the_prestop_sleep(self):
        drain = int(self.config["DRAIN_GRACE_SECS"]) + \
            int(self.config["INSTANCE_SOCKET_CAPACITY"]) / int(self.config["DRAIN_SOCKETS_PER_SEC"])
        self.assertLessEqual(drain, self.prestop_sleep())

    def test_instance_id_is_the_pod_name(self):
        env = {e["name"]: e for e in self.banter["env"]}
        self.assertEqual(env["INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")

    def test_environment_is_the_configmap_and_the_secret(self):
        sources = self.banter["envFrom"]
        self.assertIn({"configMapRef": {"name": "banter-config"}}, sources)
        self.assertIn({"secretRef": {"name": "banter-secrets"}}, sources)

    def test_prometheus_scrapes_metrics(self):
        annotations = self.pod["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), self.banter["ports"][0]["containerPort"])
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")


class Settings(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = find("ConfigMap", "banter-config")["data"]
        cls.unset = unset_settings("20-banter-config.yaml")
        cls.secret = find("Secret", "banter-secrets")["stringData"]
        cls.env = {e["name"] for e in container(find("Deployment", "banter"), "banter")["env"]}

    def test_every_setting_is_given(self):
        given = set(self.config) | self.unset | set(self.secret) | self.env
        missing = (documented_settings() | config_variables()) - given
        self.assertFalse(missing, f"settings in neither the ConfigMap nor the Secret: {sorted(missing)}")

    def test_only_settings_banter_reads_and_each_once(self):
        # AWS_* are read by the S3 client of an s3:// STORAGE_URL.
        known = documented_settings() | config_variables()
        for source, names in (("ConfigMap", set(self.config) | self.unset), ("Secret", set(self.secret))):
            unknown = {n for n in names if n not in known and not n.startswith("AWS_")}
            self.assertFalse(unknown, f"the {source} sets what banter does not read: {sorted(unknown)}")
        self.assertFalse(set(self.config) & self.unset)
        self.assertFalse((set(self.config) | self.unset) & set(self.secret))
        self.assertFalse((set(self.config) | set(self.secret)) & self.env)

    def test_secrets_are_in_the_secret_as_placeholders(self):
        self.assertFalse(SECRET_SETTINGS & (set(self.config) | self.unset))
        self.assertTrue({"JWT_SECRET", "DATABASE_URL", "REDIS_URL"} <= set(self.secret))
        for name, value in self.secret.items():
            self.assertTrue(value == "" or "REPLACE-ME" in value, f"{name} is a marked placeholder")

    def test_urls_point_at_the_external_services(self):
        for setting, service in (("DATABASE_URL", "postgres"), ("REDIS_URL", "redis")):
            self.assertEqual(urlsplit(self.secret[setting]).hostname, service)
            self.assertEqual(find("Service", service)["spec"]["type"], "ExternalName")

    def test_client_addresses_come_from_the_ingress(self):
        networks = [ipaddress.ip_network(n.strip()) for n in self.config["TRUSTED_PROXIES"].split(",")]
        self.assertTrue(networks)
        for network in networks:
            self.assertTrue(network.is_private, f"{network} is a pod network range, not the internet")
        self.assertGreater(int(self.config["HTTP_HEADER_TIMEOUT_SECS"]), INGRESS_NGINX_KEEPALIVE_SECS,
                           "ingress-nginx closes idle upstream connections before banter does")

    def test_origin_and_cookie_match_the_ingress(self):
        ingress = find("Ingress", "banter")
        hosts = [h for tls in ingress["spec"]["tls"] for h in tls["hosts"]]
        origins = self.config["ALLOWED_ORIGINS"].split(",")
        for host in hosts:
            self.assertIn(f"https://{host}", origins)
        self.assertIn(self.config["COOKIE_SECURE"], ("true", "1"))


class Routing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.banter_ingress = find("Ingress", "banter")
        cls.config = find("ConfigMap", "banter-config")["data"]

    def backends(self):
        routes = {}
        for _, obj in objects():
            if obj["kind"] != "Ingress":
                continue
            self.assertEqual(obj["spec"]["ingressClassName"], "nginx")
            for rule in obj["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    routes[path["path"]] = (obj["metadata"]["name"], path["backend"]["service"])
        return routes

    def test_paths_go_to_banter_and_the_web_app(self):
        routes = self.backends()
        for path in ("/socket.io/", "/api/", "/uploads/"):
            self.assertEqual(routes[path][0], "banter", f"{path} is on the sticky Ingress")
            self.assertEqual(routes[path][1]["name"], "banter")
        self.assertEqual(routes["/"][1]["name"], "frontend")
        for path, (_, backend) in routes.items():
            service = find("Service", backend["name"])
            self.assertIn(backend["port"]["name"], [p["name"] for p in service["spec"]["ports"]], path)

    def test_cookie_affinity(self):
        annotations = self.banter_ingress["metadata"]["annotations"]
        prefix = "nginx.ingress.kubernetes.io/"
        self.assertEqual(annotations[prefix + "affinity"], "cookie")
        self.assertEqual(annotations[prefix + "affinity-mode"], "persistent")
        self.assertTrue(annotations[prefix + "session-cookie-name"])
        self.assertEqual(annotations[prefix + "session-cookie-path"], "/", "one cookie for every banter path")
        # A draining pod answers a new session 503: it is retried elsewhere and the cookie moves.
        self.assertIn("http_503", annotations[prefix + "proxy-next-upstream"].split())
        self.assertEqual(annotations[prefix + "session-cookie-change-on-failure"], "true")

    def test_long_timeouts_and_room_for_uploads(self):
        annotations = self.banter_ingress["metadata"]["annotations"]
        prefix = "nginx.ingress.kubernetes.io/"
        for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
            self.assertGreaterEqual(int(annotations[prefix + timeout]), 3600, timeout)
        self.assertGreater(size_bytes(annotations[prefix + "proxy-body-size"]), int(self.config["UPLOAD_MAX_BYTES"]))

    def test_services_select_their_deployments_pods(self):
        for service_name, deployment_name in (("banter", "banter"), ("frontend", "frontend")):
            service = find("Service", service_name)
            deployment = find("Deployment", deployment_name)
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            self.assertEqual(service["spec"]["type"], "ClusterIP")
            self.assertTrue(service["spec"]["selector"])
            self.assertTrue(selects(service["spec"]["selector"], labels), f"Service {service_name}")
            self.assertTrue(selects(deployment["spec"]["selector"]["matchLabels"], labels))
            for port in service["spec"]["ports"]:
                port_number(deployment["spec"]["template"]["spec"]["containers"][0], port["targetPort"])
        frontend_labels = find("Deployment", "frontend")["spec"]["template"]["metadata"]["labels"]
        self.assertFalse(selects(find("Service", "banter")["spec"]["selector"], frontend_labels))


class Scaling(unittest.TestCase):
    def test_autoscaler_targets_the_banter_deployment(self):
        hpa = find("HorizontalPodAutoscaler", "banter")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual(hpa["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment", "name": "banter"})
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)
        self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
        self.assertIn("cpu", [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"])

    def test_disruption_budget_selects_the_banter_pods(self):
        pdb = find("PodDisruptionBudget", "banter")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        selector = pdb["spec"]["selector"]["matchLabels"]
        banter = find("Deployment", "banter")["spec"]["template"]["metadata"]["labels"]
        frontend = find("Deployment", "frontend")["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selects(selector, banter))
        self.assertFalse(selects(selector, frontend))
        self.assertTrue(pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1)


class Frontend(unittest.TestCase):
    def test_environment_and_port_of_the_compose_service(self):
        deployment = find("Deployment", "frontend")
        web = container(deployment, "frontend")
        self.assertEqual(web["image"], "banter-frontend:latest")
        compose = yaml.safe_load(read("docker-compose.yml"))["services"]["frontend"]["environment"]
        env = {e["name"]: e["value"] for e in web["env"]}
        self.assertEqual(env, {k: str(v) for k, v in compose.items()})
        self.assertEqual([p["containerPort"] for p in web["ports"]], [int(env["PORT"])])
        uid = int(re.search(r"useradd [^\n]*--uid (\d+)", read("frontend", "Dockerfile")).group(1))
        self.assertEqual(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"], uid)


if __name__ == "__main__":
    unittest.main()
