"""Static checks of the deployment files: docker-compose.yml (validated by Debian's
docker-compose, since no Docker engine runs here), nginx.conf, the Dockerfile and the README
must agree with each other and with banter's configuration.

Run from the repository root: python3 -m unittest discover -s tests/deploy
"""

import os
import re
import subprocess
import tempfile
import unittest

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def compose_config():
    out = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "-f", "docker-compose.yml", "config"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return yaml.safe_load(out)


def nginx_block(conf, header):
    """The text of the `header { ... }` block (balanced braces)."""
    start = conf.index(header)
    depth, i = 0, conf.index("{", start)
    for j in range(i, len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[j], 0)
        if depth == 0:
            return conf[i + 1:j]
    raise AssertionError(f"unbalanced block {header}")


def config_variables():
    """Environment variables banter reads (src/config.rs)."""
    return set(re.findall(r'env = "([A-Z_]+)"', read("src/config.rs")))


class ComposeFile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        subprocess.run(
            ["docker-compose", "--env-file", ".env.example", "-f", "docker-compose.yml", "config", "-q"],
            cwd=ROOT, check=True,
        )
        cls.compose = compose_config()
        cls.services = cls.compose["services"]
        cls.nginx = read("nginx.conf")

    def test_services(self):
        self.assertEqual(set(self.services), {"postgres", "redis", "banter-a", "banter-b", "nginx", "frontend", "haproxy",
                                              "prometheus", "grafana"})
        self.assertEqual(self.services["haproxy"].get("profiles"), ["haproxy"], "HAProxy is the opt-in balancer")
        for name in ("prometheus", "grafana"):
            self.assertEqual(self.services[name].get("profiles"), ["observability"], f"{name} is opt-in")
        for name, service in self.services.items():
            self.assertIn("healthcheck", service, f"{name} has a health check")

    def test_named_volumes(self):
        self.assertEqual(set(self.compose["volumes"]), {"pgdata", "redisdata", "uploads", "promdata", "grafanadata"})

    def test_instances_share_the_uploads_volume(self):
        for name in ("banter-a", "banter-b"):
            service = self.services[name]
            url = service["environment"]["STORAGE_URL"]
            self.assertTrue(url.startswith("file://"), url)
            mounts = {(m["source"], m["target"]) if isinstance(m, dict) else tuple(m.split(":")[:2])
                      for m in service["volumes"]}
            self.assertIn(("uploads", url[len("file://"):]), mounts, f"{name} stores uploads on the shared volume")

    def test_nginx_upstreams_are_compose_services_on_their_ports(self):
        banter = nginx_block(self.nginx, "upstream banter")
        self.assertRegex(banter, r"(?m)^\s*ip_hash;")
        servers = re.findall(r"(?m)^\s*server\s+([\w.-]+):(\d+)", banter)
        self.assertEqual({host for host, _ in servers}, {"banter-a", "banter-b"})
        for host, port in servers:
            env = self.services[host]["environment"]
            self.assertEqual(env["BANTER_ADDR"], f"0.0.0.0:{port}")
            self.assertIn(f"{port}", self.services[host]["healthcheck"]["test"][-1])
        frontend = re.findall(r"(?m)^\s*server\s+([\w.-]+):(\d+)", nginx_block(self.nginx, "upstream frontend"))
        self.assertEqual(frontend, [("frontend", self.services["frontend"]["environment"]["PORT"])])

    def test_nginx_service_publishes_the_listen_port_and_mounts_the_config(self):
        listen = re.search(r"(?m)^\s*listen\s+(\d+);", self.nginx).group(1)
        ports = self.services["nginx"]["ports"]
        published = {(str(p["published"]), str(p["target"])) if isinstance(p, dict) else tuple(p.split(":")) for p in ports}
        self.assertIn((listen, listen), published)
        mounts = self.services["nginx"]["volumes"]
        targets = {(m["target"] if isinstance(m, dict) else m.split(":")[1]) for m in mounts}
        self.assertIn("/etc/nginx/nginx.conf", targets)

    def test_banter_environment(self):
        known = config_variables()
        for name in ("banter-a", "banter-b"):
            env = self.services[name]["environment"]
            for required in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "BANTER_ADDR"):
                self.assertTrue(env.get(required), f"{name} sets {required}")
            # AWS_* are read by the S3 client of an s3:// STORAGE_URL.
            own = {k for k in env if not k.startswith("AWS_")}
            self.assertTrue(own <= known, f"{name} sets only variables banter reads: {own - known}")
            self.assertIn("@postgres:5432/", env["DATABASE_URL"])
            self.assertEqual(env["REDIS_URL"], "redis://redis:6379")
        self.assertNotEqual(self.services["banter-a"]["environment"]["INSTANCE_ID"],
                            self.services["banter-b"]["environment"]["INSTANCE_ID"])

    def test_secrets_come_from_env_file(self):
        raw = read("docker-compose.yml")
        self.assertIn("${JWT_SECRET", raw)
        self.assertIn("${POSTGRES_PASSWORD", raw)
        example = read(".env.example")
        for key in ("JWT_SECRET", "POSTGRES_PASSWORD"):
            self.assertRegex(example, rf"(?m)^{key}=")
        tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True).stdout
        self.assertEqual(tracked.strip(), "", ".env is never committed")


class NginxConf(unittest.TestCase):
    nginx = read("nginx.conf")

    def test_socket_io_and_api_go_to_banter_with_upgrades(self):
        self.assertRegex(self.nginx, r"map \$http_upgrade \$connection_upgrade")
        self.assertNotRegex(self.nginx, r'Connection\s+"?upgrade"?;', "no unconditional Connection: upgrade")
        self.assertIn("proxy_set_header Connection $connection_upgrade;", self.nginx)
        self.assertIn("proxy_http_version 1.1;", self.nginx)
        socket_io = nginx_block(self.nginx, "location /socket.io/")
        self.assertIn("proxy_pass http://banter;", socket_io)
        timeout = int(re.search(r"proxy_read_timeout (\d+)s;", socket_io).group(1))
        self.assertGreaterEqual(timeout, 60, "long read timeout for polling and websockets")
        self.assertIn("proxy_pass http://banter;", nginx_block(self.nginx, "location /api/"))
        self.assertIn("proxy_pass http://frontend;", nginx_block(self.nginx, "location / "))

    def test_idle_upstream_connections_close_on_nginxs_side_first(self):
        # banter closes an idle keep-alive connection after HTTP_HEADER_TIMEOUT_SECS (5 s by
        # default); nginx must drop it before, or a POST sent on it as it closes is a 502.
        banter = nginx_block(self.nginx, "upstream banter")
        idle = int(re.search(r"keepalive_timeout (\d+)s;", banter).group(1))
        self.assertLess(idle, 5)

    def test_limits_and_no_version(self):
        self.assertRegex(self.nginx, r"(?m)^\s*server_tokens off;")
        self.assertRegex(self.nginx, r"(?m)^\s*client_max_body_size \d+[km]?;")

    def test_uploads_go_to_banter_with_room_for_the_largest_file(self):
        files = nginx_block(self.nginx, "location /uploads/")
        self.assertIn("proxy_pass http://banter;", files)
        uploads = nginx_block(self.nginx, "location ~ ^/api/(uploads|upload/upload)")
        self.assertIn("proxy_pass http://banter;", uploads)
        size = re.search(r"client_max_body_size (\d+)m;", uploads)
        self.assertIsNotNone(size, "uploads have their own body limit")
        default = int(re.search(r'default_value_t = (\d+) \* 1024 \* 1024\)\]\s*pub upload_max_bytes', read("src/config.rs")).group(1))
        self.assertGreater(int(size.group(1)), default, "room for UPLOAD_MAX_BYTES and multipart headers")

    def test_local_rendering_is_valid_nginx(self):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([os.path.join(ROOT, "scripts/nginx-local.sh"), out, "127.0.0.1:18080",
                            "127.0.0.1:14000", "127.0.0.1:14001"], check=True, capture_output=True)
            nginx = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "nginx"
            subprocess.run([nginx, "-t", "-q", "-p", out, "-c", os.path.join(out, "nginx.conf"),
                            "-e", os.path.join(out, "error.log")], check=True)


class HaproxyCfg(unittest.TestCase):
    cfg = read("haproxy.cfg")

    def test_sticky_by_inserted_cookie_not_by_address(self):
        banter = self.cfg.split("\nbackend banter", 1)[1].split("\nbackend ", 1)[0]
        self.assertRegex(banter, r"(?m)^\s*cookie SERVERID insert indirect nocache httponly$")
        self.assertNotRegex(banter, r"balance\s+source", "not keyed on the client address")
        servers = re.findall(r"(?m)^\s*server\s+(\S+)\s+([\w.-]+):(\d+)\s.*cookie (\w+)", banter)
        self.assertEqual({host for _, host, _, _ in servers}, {"banter-a", "banter-b"})
        self.assertEqual(len({c for *_, c in servers}), 2, "each instance has its own cookie value")
        compose = compose_config()["services"]
        for _, host, port, _ in servers:
            self.assertEqual(compose[host]["environment"]["BANTER_ADDR"], f"0.0.0.0:{port}")
        for path in ("/socket.io/", "/api/", "/uploads/"):
            self.assertIn(path, self.cfg)
        self.assertRegex(self.cfg, r"timeout tunnel \d+s", "long-lived websockets")
        self.assertIn("option forwardfor", self.cfg)

    def test_compose_publishes_it_and_banter_trusts_it(self):
        compose = compose_config()["services"]
        haproxy = compose["haproxy"]
        bind = re.search(r"(?m)^\s*bind \*:(\d+)", self.cfg).group(1)
        published = {str(p["published"]) if isinstance(p, dict) else p.split(":")[0] for p in haproxy["ports"]}
        self.assertIn(bind, published)
        address = haproxy["networks"]["default"]["ipv4_address"]
        self.assertIn(f"{address}/32", compose["banter-a"]["environment"]["TRUSTED_PROXIES"])

    def test_local_rendering_is_valid_haproxy(self):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([os.path.join(ROOT, "scripts/haproxy-local.sh"), out, "127.0.0.1:18081",
                            "127.0.0.1:14000", "127.0.0.1:14001"], check=True, capture_output=True)
            haproxy = "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else "haproxy"
            subprocess.run([haproxy, "-c", "-q", "-f", os.path.join(out, "haproxy.cfg")], check=True)


class Dockerfile(unittest.TestCase):
    dockerfile = read("Dockerfile")

    def test_multi_stage_non_root(self):
        self.assertGreaterEqual(len(re.findall(r"(?m)^FROM ", self.dockerfile)), 2)
        self.assertRegex(self.dockerfile, r"(?m)^USER (?!root)\w+")
        self.assertRegex(self.dockerfile, r"BANTER_ADDR=0\.0\.0\.0:4000")
        self.assertIn("COPY migrations", self.dockerfile)

    def test_patched_dependencies_are_in_the_image_before_the_first_build(self):
        # [patch.crates-io] points at vendor/ copies: the image's first `cargo build` needs them.
        manifest = read("Cargo.toml")
        patch = manifest.split("[patch.crates-io]", 1)[1] if "[patch.crates-io]" in manifest else ""
        paths = re.findall(r'path\s*=\s*"([^"]+)"', patch)
        first_build = self.dockerfile.index("cargo build")
        copied = re.findall(r"(?m)^COPY (\S+) ", self.dockerfile[:first_build])
        for path in paths:
            self.assertTrue(
                any(path == c.rstrip("/") or path.startswith(c.rstrip("/") + "/") for c in copied),
                f"the Dockerfile copies {path} before its first cargo build",
            )

    def test_frontend_dockerfile(self):
        frontend = read("frontend/Dockerfile")
        self.assertGreaterEqual(len(re.findall(r"(?m)^FROM ", frontend)), 2)
        self.assertRegex(frontend, r"(?m)^USER (?!root)\w+")


class Readme(unittest.TestCase):
    readme = read("README.md")

    def test_two_commands(self):
        for command in ("docker compose up", "scripts/dev.sh", "scripts/test.sh"):
            self.assertTrue(command in self.readme, f"README shows `{command}`")

    def test_configuration_table_documents_every_variable(self):
        self.assertIn("docs/CONFIGURATION.md", self.readme, "README links the configuration table")
        table = set(re.findall(r"^\| `([A-Z_]+)`", read("docs/CONFIGURATION.md"), re.M))
        self.assertTrue(config_variables() <= table, f"undocumented: {config_variables() - table}")

    def test_compose_and_nginx_facts_match(self):
        for fact in ("8080", "ip_hash", "banter-a", "banter-b", ".env.example"):
            self.assertTrue(fact in self.readme, f"README mentions {fact}")


if __name__ == "__main__":
    unittest.main()
