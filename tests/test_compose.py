"""docker-compose.yml: it parses, and its services, ports, volumes and settings agree with the config,
the provisioning and the CLI (no Docker engine here; what can be checked without one is)."""
import re
import tomllib
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import yaml

from callqa.cli import main
from callqa.config import SETTINGS
from dashboards.build import PLUGIN
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CALLQA = ("migrate", "worker", "simulator")
PROVISIONING = ROOT / "dashboards" / "provisioning"


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def default(value: str) -> str:
    """A compose value with its ${VAR:-default} substitutions resolved to the defaults, and its required
    ${VAR:?message} ones to ``<VAR>``."""
    value = re.sub(r"\$\{(\w+):\?[^}]*\}", r"<\1>", value)
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_secrets_have_no_defaults():
    """Passwords and keys must be given (compose refuses to start without them): no value production
    would use silently."""
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("CALLQA_CLICKHOUSE_PASSWORD", "CALLQA_GRAFANA_CLICKHOUSE_PASSWORD", "CALLQA_GRAFANA_ADMIN_PASSWORD",
                   "CALLQA_CALLER_HASH_KEY", "CALLQA_SAMPLING_KEY"):
        uses = re.findall(r"\$\{" + secret + r"(:[-?])?[^}]*\}", text)
        assert uses and all(kind == ":?" for kind in uses), secret


def mounts(service: str) -> dict[str, str]:
    """Bind mounts of a service: container path -> host path (relative to the repository)."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            out[container] = host[2:]
    return out


def test_the_stack_has_every_service_pinned_and_health_checked():
    assert set(SERVICES) == {"kafka", "clickhouse", "grafana", "prometheus", "migrate", "worker", "simulator"}
    for name, service in SERVICES.items():
        image = service["image"]
        assert re.search(r":v?\d+\.\d+\.\d+", image), f"{name}: image {image} is not pinned to a version"
        if name not in ("migrate", "simulator"):  # one-shot jobs
            assert service["healthcheck"]["test"], name
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, (name, dependency)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:3.9.")  # aiokafka and faust: Kafka 3.x
    assert "broker,controller" == SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_callqa_services_use_real_settings_and_commands():
    names = {s.env for s in SETTINGS}
    for service in CALLQA:
        assert set(env(service)) <= names, f"{service}: unknown settings {set(env(service)) - names}"
        command = SERVICES[service]["command"]
        ctx = main.make_context("callqa", [], resilient_parsing=True)
        sub = main.get_command(ctx, command[0])
        assert sub is not None, command
        sub.make_context(command[0], list(command[1:]))  # raises on an unknown or malformed option
    assert SERVICES["worker"]["healthcheck"]["test"] == ["CMD", "callqa", "check"]


def test_addresses_agree_between_workers_kafka_clickhouse_and_grafana():
    worker = {k: default(v) for k, v in env("worker").items()}
    host, port = worker["KAFKA_BOOTSTRAP_SERVERS"].split(":")
    assert host == "kafka" and f"PLAINTEXT://{host}:{port}" in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    url = urlsplit(worker["CLICKHOUSE_URL"])
    ch = {k: default(v) for k, v in env("clickhouse").items()}
    assert (url.hostname, url.port, url.path.strip("/")) == ("clickhouse", 9000, ch["CLICKHOUSE_DB"])
    assert (url.username, url.password) == (ch["CLICKHOUSE_USER"], ch["CLICKHOUSE_PASSWORD"])
    assert "9000:9000" in SERVICES["clickhouse"]["ports"] and "3000:3000" in SERVICES["grafana"]["ports"]

    # Grafana reads as the read-only user the ClickHouse container defines, with the password both get
    source = yaml.safe_load((PROVISIONING / "datasources" / "clickhouse.yaml").read_text())["datasources"][0]
    data = source["jsonData"]
    assert (data["host"], data["port"], data["defaultDatabase"]) == ("clickhouse", 9000, ch["CLICKHOUSE_DB"])
    users = mounts("clickhouse")
    user_file = ROOT / users["/etc/clickhouse-server/users.d/grafana.xml"]
    config = ET.parse(user_file).getroot()
    user = config.find(f"users/{data['username']}")
    profile = config.find(f"profiles/{user.findtext('profile')}")
    assert profile.findtext("readonly") == "1"
    assert user.findtext("grants/query") == f"GRANT SELECT ON {ch['CLICKHOUSE_DB']}.*"
    password_var = user.find("password").get("from_env")
    assert source["secureJsonData"]["password"] == f"${password_var}"
    assert default(env("clickhouse")[password_var]) == default(env("grafana")[password_var])


def test_grafana_gets_the_plugin_and_the_provisioning():
    plugin, version = env("grafana")["GF_INSTALL_PLUGINS"].split()
    assert plugin == PLUGIN and re.fullmatch(r"4\.\d+\.\d+", version)
    grafana = mounts("grafana")
    assert (ROOT / grafana["/etc/grafana/provisioning"]).resolve() == PROVISIONING
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "callqa.yaml").read_text())["providers"][0]
    dashboards = ROOT / grafana[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "callqa-agent-quality.json", "callqa-calibration.json", "callqa-drift.json", "callqa-live.json",
        "callqa-pipeline.json", "callqa-sites.json", "callqa-today.json"]
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.removeprefix(provider["options"]["path"] + "/") == "callqa-today.json"  # the day's decisions first
    for service in ("clickhouse", "grafana", "prometheus"):
        for host in mounts(service).values():
            assert (ROOT / host).exists(), f"{service} mounts missing {host}"


def test_prometheus_scrapes_every_metrics_endpoint_and_grafana_reads_it():
    """Every callqa service that serves /metrics (`run`: the worker and its in-process sink; `sink`) is
    scraped on the port its CALLQA_METRICS_PORT says, by its compose name (one address per replica), and
    Grafana's Prometheus datasource is the prometheus service."""
    config = yaml.safe_load((ROOT / mounts("prometheus")["/etc/prometheus/prometheus.yml"]).read_text())
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:v3.")
    command = SERVICES["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert any(v.split(":")[0] == "prometheus-data" and v.split(":")[1] == "/prometheus" for v in SERVICES["prometheus"]["volumes"])
    scraped = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"  # compose's DNS: the service name answers every replica's address
            scraped.update({name: sd["port"] for name in sd["names"]})
        for static in job.get("static_configs", []):
            scraped.update(dict(t.split(":") for t in static["targets"]))
    serving = {name for name in CALLQA if SERVICES[name]["command"][0] in ("run", "sink")}
    assert serving == {"worker"} and serving <= set(scraped)
    for name in serving:
        port = int(default(env(name)["CALLQA_METRICS_PORT"]))
        assert port and scraped[name] == port, name
        assert "--no-sink" not in SERVICES[name]["command"]  # its sink's metrics are served beside the worker's
    assert {name for name in scraped if name in SERVICES} == serving  # nothing scraped that serves no metrics
    assert scraped.get("localhost") == "9090"  # Prometheus itself

    # Grafana's datasource is that Prometheus, at the port it listens on and its health check asks
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    url = urlsplit(source["url"])
    assert (url.scheme, url.hostname, url.port) == ("http", "prometheus", 9090)
    assert f"{url.port}:{url.port}" in SERVICES["prometheus"]["ports"]
    assert f"http://localhost:{url.port}/-/ready" in SERVICES["prometheus"]["healthcheck"]["test"]
    assert SERVICES["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_the_image_holds_what_the_commands_import():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.M))
    packages = re.search(r'include = \[(.*?)\]', (ROOT / "pyproject.toml").read_text()).group(1)
    assert copied == {p.strip('" *') for p in packages.split(",")}
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)


def test_an_installed_package_carries_its_data_files():
    """A non-editable install (the image) gets every data file the code reads: forms, schemas, migrations."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = project["package-data"]
    packages = [p.strip("*") for p in project["packages"]["find"]["include"]]
    for package in packages:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and path.suffix in (".json", ".sql", ".md") and "__pycache__" not in path.parts:
                inside = path.relative_to(ROOT / package)
                assert any(inside.match(g) for g in globs.get(package, [])), f"{package}/{inside} is not package data"
