"""docker-compose.yml's ``prometheus`` and ``grafana`` services against the files in monitoring/ they are
provisioned with. No container engine runs here: the mounts are followed to the repository's files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"


@pytest.fixture
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """A service's bind mounts of repository files: path in the container -> file in the repository."""
    binds = (volume.split(":") for volume in service["volumes"] if volume.startswith("./"))
    return {PurePosixPath(inside): ROOT / host for host, inside, *_ in binds}


def in_repository(service: dict[str, Any], inside: str) -> Path:
    """The repository file a container sees at ``inside``, through a mount of it or of a folder above it."""
    path = PurePosixPath(inside)
    for mounted, host in mounts(service).items():
        if path == mounted or mounted in path.parents:
            return host / path.relative_to(mounted)
    raise AssertionError(f"{inside} is not mounted from the repository")


def test_images_are_official_and_pinned_by_tag(services: dict[str, Any]) -> None:
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])


def test_every_mounted_file_is_in_the_repository(services: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        assert all(host.exists() for host in mounts(services[name]).values()), name


def test_ports_are_on_the_hosts_loopback_only(services: dict[str, Any]) -> None:
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


def app_port() -> str:
    """The port uvicorn serves the orders app on in its container (the Dockerfile's command)."""
    command = json.loads(next(line for line in (ROOT / "example_service" / "Dockerfile").read_text().splitlines()
                              if line.startswith("CMD "))[4:])  # fmt: skip
    return str(command[command.index("--port") + 1])


def test_prometheus_scrapes_the_orders_app_port_with_metrics_on(services: dict[str, Any]) -> None:
    config = yaml.safe_load(in_repository(services["prometheus"], "/etc/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics/"
    assert job["static_configs"] == [{"targets": [f"orders:{app_port()}"]}]  # not through a TLS front
    assert services["orders"]["environment"]["KC_M2M_METRICS"] == "prometheus"
    assert services["prometheus"]["depends_on"] == {"orders": {"condition": "service_healthy"}}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool: scripts/bootstrap --with-node")
def test_promtool_accepts_the_config_with_its_mounted_rules(services: dict[str, Any], tmp_path: Path) -> None:
    prometheus = services["prometheus"]
    config = yaml.safe_load(in_repository(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    config["rule_files"] = [str(in_repository(prometheus, path)) for path in config["rule_files"]]
    assert config["rule_files"] == [str(MONITORING / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = ["promtool", "check", "config", str(tmp_path / "prometheus.yml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_grafana_reads_the_dashboard_from_prometheus(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    provisioning = in_repository(grafana, "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "kc-m2m.yml").read_text())["providers"]
    folder = PurePosixPath(provider["options"]["path"])
    ((inside, dashboard),) = [(path, host) for path, host in mounts(grafana).items() if path.parent == folder]
    assert dashboard == MONITORING / "grafana" / "dashboard.json"
    panels = json.loads(dashboard.read_text())["panels"]
    assert {target["datasource"]["uid"] for panel in panels for target in panel["targets"]} == {source["uid"]}
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == str(inside)
