"""A real Prometheus (Debian's package, with its promtool) against the example service: the shipped alert
rules checked and unit-tested, a drill (accepted, refused, expired, Keycloak down) scraped every second and
its counts read back through Prometheus's HTTP API, and every dashboard panel's query answered."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from example_service.app import READ_SCOPE, WRITER_ROLE
from example_service.demo import MACHINE_B_SECRET, REPORTING_SECRET
from fastapi_kc_m2m import ClientCredentialsAuth, metrics_app
from fastapi_kc_m2m.testing import DPoPCaller, TestIssuer, serve_app
from tests.helpers import PrometheusServer, bearer, free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboard.json"
#: What Grafana puts in place of its variables when it runs a panel's query (rate windows of 1 s scrapes).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m"}
WRITER = {"machine-b": [WRITER_ROLE]}
#: Machine A's metrics (``ClientCredentialsAuth(metrics=True)``, the ``kc_m2m_client_*`` families) come
#: from another branch; until it is merged here, their tests are skipped.
MACHINE_A_METRICS = "metrics" in inspect.signature(ClientCredentialsAuth).parameters


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Debian's ``promtool`` with ``args`` (our own files, never input), bounded to 60 s."""
    if shutil.which("promtool") is None:
        raise RuntimeError("promtool is missing: run scripts/bootstrap --with-node")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603, S607


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


# ----------------------------------------------------------------- alert rules
def test_promtool_accepts_the_shipped_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_refuses_a_broken_rule_file(tmp_path: Path) -> None:
    document = yaml.safe_load(ALERTS.read_text())
    document["groups"][0]["rules"][0]["expr"] = "max by (issuer) (kc_m2m_jwks_age_seconds) >"
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(document))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def test_each_alert_fires_on_its_input_and_only_then() -> None:
    result = promtool("test", "rules", str(MONITORING / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {line.split(":", 1)[1].strip() for line in (MONITORING / "alerts.test.yml").read_text().splitlines()
              if line.strip().startswith("alertname:")}  # fmt: skip
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_the_alert_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    shutil.copy(MONITORING / "alerts.test.yml", tmp_path)
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace("(kc_m2m_jwks_age_seconds) > 360", "(x) > 3600"))
    result = promtool("test", "rules", str(tmp_path / "alerts.test.yml"))
    assert result.returncode != 0
    assert "KcM2mKeySetStale" in result.stdout + result.stderr


def test_every_alert_says_what_it_means_and_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert "Check" in rule["annotations"]["description"] or "See" in rule["annotations"]["description"]


# ----------------------------------------------------------------- the drill
@contextlib.contextmanager
def example_service(issuer: TestIssuer) -> Iterator[str]:
    """The example's Machine B under uvicorn (its own process: a registry of its own) on a free loopback
    port, trusting ``issuer``, metrics on; yields its base URL once its keys are loaded."""
    port = free_port()
    env = os.environ | {
        "KC_M2M_ISSUERS": issuer.issuer, "KC_M2M_AUDIENCE": issuer.audience, "KC_M2M_METRICS": "prometheus",
        "KC_M2M_INTROSPECTION": "per_route", "KC_M2M_INTROSPECTION_CACHE_TTL": "0",
        "KC_M2M_CLIENT_SECRET": MACHINE_B_SECRET, "KC_M2M_JWKS_REFETCH_COOLDOWN": "0",
    }  # fmt: skip
    argv = [sys.executable, "-m", "uvicorn", "example_service.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_keys(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(20)


def wait_for_keys(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """Wait until the service at ``url`` reports its keys loaded (up to ``seconds``, for a loaded machine)."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).json()["keys_loaded"]:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the example service at {url} did not start")


def run_drill(url: str, issuer: TestIssuer) -> dict[str, int]:
    """Calls accepted, refused, expired and refused while Keycloak fails; each call's status by name."""
    read, writer = issuer.token(scope=READ_SCOPE), issuer.token(client_roles=WRITER)
    dpop = DPoPCaller(issuer)
    bound = dpop.token(scope=READ_SCOPE)
    with httpx.Client(base_url=url, timeout=10) as api:
        statuses = {
            "read": api.get("/orders", headers=bearer(read)).status_code,
            "read again (cached)": api.get("/orders", headers=bearer(read)).status_code,
            "place": api.post("/orders", json={"item": "bolts"}, headers=bearer(writer)).status_code,
            "cancel (introspected)": api.post("/orders/1/cancel", headers=bearer(writer)).status_code,
            "dpop": api.get("/orders", headers=dpop.headers("GET", f"{url}/orders", bound)).status_code,
            "no token": api.get("/orders").status_code,
            "forged": api.get("/orders", headers=bearer(read[:-4] + "AAAA")).status_code,
            "expired": api.get("/orders", headers=bearer(issuer.token(scope=READ_SCOPE, lifetime=-120))).status_code,
        }
        issuer.fail("introspection", "status")
        statuses["cancel, Keycloak down"] = api.post("/orders/1/cancel", headers=bearer(writer)).status_code
        issuer.rotate()
        issuer.fail("jwks", "status")
        statuses["new key, Keycloak down"] = api.get("/orders", headers=bearer(issuer.token())).status_code
        issuer.heal()
    return statuses


@dataclass(frozen=True)
class Drill:
    prometheus: PrometheusServer
    statuses: dict[str, int]
    issuer: str


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """The drill run against the example service while a real Prometheus scrapes it every second (with the
    shipped alert rules loaded); yields once two scrapes after the drill are in (``rate()`` needs two)."""
    with TestIssuer.serving(realm="demo", optional_scopes={READ_SCOPE}) as issuer:
        issuer.register_client("machine-b", secret=MACHINE_B_SECRET)
        with example_service(issuer) as url:
            target = {"orders": url.removeprefix("http://")}
            directory = tmp_path_factory.mktemp("prometheus")
            with PrometheusServer(directory, target, (ALERTS,), path="/metrics/") as prometheus:
                statuses = run_drill(url, issuer)
                prometheus.wait_for_scrape("orders")
                prometheus.wait_for_scrape("orders")
                yield Drill(prometheus, statuses, issuer.issuer)


def test_the_drill_gets_its_answers(drill: Drill) -> None:
    assert drill.statuses == {
        "read": 200, "read again (cached)": 200, "place": 201, "cancel (introspected)": 200, "dpop": 200,
        "no token": 401, "forged": 401, "expired": 401, "cancel, Keycloak down": 503, "new key, Keycloak down": 401,
    }  # fmt: skip


def test_prometheus_finds_the_refusals_by_reason(drill: Drill) -> None:
    refused = drill.prometheus.query("sum by (outcome, reason) (kc_m2m_verifications_total{outcome!='accepted'})")
    counts = {(found["metric"]["outcome"], found["metric"]["reason"]): float(found["value"][1]) for found in refused}
    assert counts == {
        ("refused", "missing_token"): 1,
        ("refused", "bad_signature"): 1,
        ("refused", "expired"): 1,
        ("refused", "unknown_kid"): 1,
    }
    by_route = drill.prometheus.query("sum by (outcome, reason) (kc_m2m_route_refusals_total)")
    assert {(found["metric"]["outcome"], found["metric"]["reason"]) for found in by_route} == {
        ("unavailable", "introspection_unavailable")  # the cancel's token was accepted, then its route refused
    }


def test_prometheus_finds_the_acceptances_and_the_cache_hits(drill: Drill) -> None:
    value = drill.prometheus.value
    # the cancel refused with 503 by its route's introspection was accepted first (counted in the route refusals)
    assert value("sum(kc_m2m_verifications_total{outcome='accepted', reason='ok'})") == 6
    assert value("sum(kc_m2m_verification_seconds_count{cache='hit'})") == 3
    assert value("sum(kc_m2m_verification_seconds_count{cache='miss'})") == 6  # no token: not verified
    assert value("sum(kc_m2m_token_remaining_seconds_count)") == 3  # read, writer, bound: first seen
    assert 290 <= value("sum(kc_m2m_token_lifetime_seconds_sum) / sum(kc_m2m_token_lifetime_seconds_count)") <= 300
    assert value("sum(kc_m2m_dpop_proofs_total{outcome='accepted'})") == 1


def test_prometheus_finds_the_key_set_and_introspection_counts(drill: Drill) -> None:
    value, issuer = drill.prometheus.value, f"issuer='{drill.issuer}'"
    assert value(f"kc_m2m_jwks_fetches_total{{{issuer}, result='ok'}}") == 1
    assert value(f"kc_m2m_jwks_fetches_total{{{issuer}, result='error'}}") == 1
    assert value(f"kc_m2m_jwks_keys{{{issuer}}}") == 1
    assert 0 < value(f"kc_m2m_jwks_age_seconds{{{issuer}}}") < 360  # fresh: the stale alert stays silent
    assert value("sum by (result) (kc_m2m_introspections_total{result='active'})") == 1
    assert value("sum by (result) (kc_m2m_introspections_total{result='error'})") == 1
    assert value("kc_m2m_introspection_seconds_count") == 2


def test_prometheus_loaded_the_shipped_alerts(drill: Drill) -> None:
    answer = httpx.get(f"{drill.prometheus.url}/api/v1/rules", params={"type": "alert"}, timeout=10).json()
    loaded = {rule["name"]: rule["health"] for group in answer["data"]["groups"] for rule in group["rules"]}
    assert loaded == {rule["alert"]: "ok" for rule in alert_rules()}


# ----------------------------------------------------------------- the dashboard
def panel_queries() -> list[tuple[str, str]]:
    """Each dashboard panel's title and query, Grafana's variables replaced as Grafana would."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (panel["title"], expr)
            queries.append((panel["title"], expr))
    return queries


MACHINE_A_PANELS = {title for title, expr in panel_queries() if "kc_m2m_client_" in expr}


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(expr for _, expr in panel_queries())
    for family in ("kc_m2m_verifications_total", "kc_m2m_jwks_age_seconds", "kc_m2m_introspection_seconds_bucket",
                   "kc_m2m_token_remaining_seconds_bucket", "kc_m2m_client_token_renewals_total"):  # fmt: skip
        assert family in exprs
    assert "histogram_quantile" in exprs
    assert "sum by (outcome, reason)" in exprs  # refusals by reason


def test_every_server_panel_query_returns_a_series(drill: Drill) -> None:
    empty = [(title, expr) for title, expr in panel_queries()
             if title not in MACHINE_A_PANELS and not drill.prometheus.query(expr)]  # fmt: skip
    assert empty == []
    assert len(MACHINE_A_PANELS) == 2


@pytest.fixture(scope="module")
def machine_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Machine A calling the example service twice, its clock ten minutes on in between (so the second
    call renews the expired token), its own registry served on loopback and scraped by a real Prometheus."""
    if not MACHINE_A_METRICS:
        pytest.skip("Machine A metrics (ClientCredentialsAuth(metrics=True)) are not in this tree yet")
    registry = CollectorRegistry()
    with TestIssuer.serving(realm="demo", optional_scopes={READ_SCOPE}) as issuer:
        issuer.register_client("reporting", secret=REPORTING_SECRET)
        ahead = [0.0]
        caller = ClientCredentialsAuth(
            "reporting", issuer=issuer.issuer, client_secret=REPORTING_SECRET, scope=READ_SCOPE,
            metrics=True, registry=registry, clock=lambda: time.time() + ahead[0],
        )  # fmt: skip
        with serve_app(metrics_app(registry)) as exporter, example_service(issuer) as url:
            target = {"machine-a": exporter.removeprefix("http://")}
            with PrometheusServer(tmp_path_factory.mktemp("prometheus-a"), target) as prometheus:
                with httpx.Client(base_url=url, auth=caller, timeout=10) as api:
                    assert api.get("/orders").status_code == 200
                    ahead[0] = 600
                    assert api.get("/orders").status_code == 200
                prometheus.wait_for_scrape("machine-a")
                prometheus.wait_for_scrape("machine-a")
                yield prometheus
        caller.close()


def test_prometheus_finds_machine_a_requests_and_renewals(machine_a: PrometheusServer) -> None:
    assert machine_a.value("sum(kc_m2m_client_token_requests_total{client_id='reporting', result='ok'})") == 2
    assert machine_a.value("sum(kc_m2m_client_token_renewals_total{client_id='reporting', reason='expired'})") == 1
    assert machine_a.value("sum(kc_m2m_client_token_seconds_count)") == 2


def test_every_machine_a_panel_query_returns_a_series(machine_a: PrometheusServer) -> None:
    empty = [(title, expr) for title, expr in panel_queries()
             if title in MACHINE_A_PANELS and not machine_a.query(expr)]  # fmt: skip
    assert empty == []
