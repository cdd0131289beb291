"""The example: Machine B served on loopback, Machine A's callers against the test realm, the demo's table."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from example_service import demo
from example_service.app import READ_SCOPE
from example_service.machine_a import (
    CertificateCaller,
    Outcome,
    callers_from_environment,
    certificate_scenario,
    print_table,
    scenario,
)
from fastapi_kc_m2m._jose.jws import parse
from fastapi_kc_m2m.testing import TestIssuer, serve_app
from tests.helpers import make_pki

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    with demo.local_realm(CollectorRegistry()) as (auth, callers):
        try:
            with serve_app(demo.create_app(auth), lifespan="on") as api_url:
                return scenario(api_url, callers)
        finally:
            callers.close()


def test_each_call_is_allowed_or_refused_for_its_reason(outcomes: list[Outcome]) -> None:
    seen = [(row.call.split("/")[1], row.client, row.status, row.why.split(":")[0].split(";")[0]) for row in outcomes]
    assert seen == [
        ("health", "-", 200, "allowed"),
        ("orders", "-", 401, "no token"),
        ("orders", "machine-a (forged)", 401, "invalid_token"),
        ("orders", "machine-a", 200, "allowed"),
        ("orders", "machine-a", 201, "allowed"),
        ("orders", "reporting", 200, "allowed"),
        ("orders", "reporting", 403, "insufficient_scope"),
        ("orders", "reporting", 403, "insufficient_scope"),
        ("orders", "machine-a", 200, "allowed"),
        ("orders", "machine-a", 200, "allowed"),
        ("orders", "machine-a", 401, "invalid_token"),
        ("orders", "machine-a", 200, "allowed"),
    ]


def test_tokens_show_their_scopes(outcomes: list[Outcome]) -> None:
    assert outcomes[3].scopes == "orders:read"
    assert outcomes[6].scopes == "-"
    assert "(orders:read)" in outcomes[6].why
    assert "required role" in outcomes[7].why
    assert "not active" in outcomes[10].why


def test_table_is_aligned(outcomes: list[Outcome]) -> None:
    out = io.StringIO()
    print_table(outcomes, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["call", "token's", "client", "scopes", "status", "why"]
    assert len(lines) == 2 + len(outcomes)
    status_column = lines[0].index("status")
    assert all(line[status_column : status_column + 3].isdigit() for line in lines[2:])


def test_demo_prints_the_table_without_keycloak(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KC_M2M_SERVER_URL", raising=False)
    demo.main()
    out = capsys.readouterr().out
    assert "test issuer (no Keycloak)" in out
    assert "POST /orders/1/cancel" in out
    summary = out.split("\ncounters:\n")[1].splitlines()
    assert summary == [  # each request once: 10 tokens accepted, 4 of them then refused by their route
        "  accepted (ok): 10",
        "  refused (missing_token): 1",
        "  refused (unknown_kid): 1",
        "  refused by the route (inactive): 2",
        "  refused by the route (insufficient_scope): 1",
        "  refused by the route (missing_role): 1",
        "  Machine A token requests, machine-a (ok): 2",
        "  Machine A token requests, reporting (ok): 2",
        "  Machine A renewals, machine-a (401): 1",
    ]


def test_the_certificate_caller_calls_with_the_certificate_its_token_is_bound_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """client-x509 at an issuer requiring mutual TLS (RFC 8705 §2.1), then the API over mutual TLS (§3)."""
    pki = make_pki(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # as docker-compose.yml trusts its demo CA
    with TestIssuer.serving(realm="demo", tls=pki.server_files, optional_scopes={READ_SCOPE}) as realm:
        realm.register_client("shipping", tls_subject="CN=machine-a")
        caller = CertificateCaller.from_files("shipping", *map(str, pki.client), issuer=realm.issuer)
        try:
            api = demo.create_app(realm.auth(client_secret="unused", **demo.INTROSPECTION))
            with serve_app(api, lifespan="on", tls=pki.server_files) as api_url:
                rows = certificate_scenario(api_url, caller)
            token = caller.auth.get_token().value
        finally:
            caller.auth.close()
    assert [(row.call, row.client, row.scopes, row.status) for row in rows] == [
        ("GET /orders", "shipping", READ_SCOPE, 200)
    ]
    assert parse(token).payload["cnf"] == {"x5t#S256": pki.client.x5t}


def test_the_certificate_caller_is_configured_by_its_files(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    key = tmp_path / "machine-z.key.pem"  # any PEM key for machine-a's signed JWT
    env = {"KC_M2M_SERVER_URL": "https://localhost:8443", "DEMO_MACHINE_A_KEY": str(key)}
    without = callers_from_environment(env)
    assert (without.shipping, without.api_tls) == (None, True)
    cert, cert_key = map(str, pki.client)
    callers = callers_from_environment(env | {"DEMO_CERT_CLIENT_CERT": cert, "DEMO_CERT_CLIENT_KEY": cert_key})
    try:
        assert callers.shipping is not None
        assert callers.shipping.auth.client_id == "shipping"
        assert callers.api_tls is callers.shipping.tls
    finally:
        callers.close()
        without.close()


def make_dry_run(target: str) -> str:
    """The commands ``make <target>`` would run, without running them."""
    result = subprocess.run(  # noqa: S603 - make, on the project's Makefile
        [str(shutil.which("make")), "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_demo_needs_no_node_but_the_tests_do() -> None:
    demo_recipe, test_recipe = make_dry_run("demo"), make_dry_run("test")
    assert "scripts/bootstrap\n" in demo_recipe
    assert "npm" not in demo_recipe
    assert "--with-node" not in demo_recipe
    assert "scripts/bootstrap --with-node\n" in test_recipe


def bootstrap(tmp_path: Path, *args: str, path: str = "/usr/bin:/bin") -> tuple[int, list[str]]:
    """Run a copy of scripts/bootstrap in ``tmp_path`` with python3, the venv's python, npm and apt-get
    stubbed, the rest found on ``path``; return its exit status and the commands it ran."""
    log, stubs = tmp_path / "ran.log", tmp_path / "bin"
    for stub in (stubs / "python3", stubs / "npm", stubs / "apt-get", tmp_path / ".venv" / "bin" / "python"):
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f'#!/bin/sh\necho "{stub.name} $*" >> "{log}"\n')
        stub.chmod(0o755)
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    env = os.environ | {"PATH": f"{stubs}:{path}"}
    result = subprocess.run(  # noqa: S603 - a copy of our own script, with stubbed tools
        [str(tmp_path / "scripts" / "bootstrap"), *args], env=env, capture_output=True, check=False
    )
    return result.returncode, log.read_text().splitlines() if log.exists() else []


def test_bootstrap_installs_node_only_when_asked(tmp_path: Path) -> None:
    status, ran = bootstrap(tmp_path / "python-only")
    assert status == 0
    assert [line.split()[0] for line in ran] == ["python3", "python", "python"]
    status, ran = bootstrap(tmp_path / "with-node", "--with-node")
    assert status == 0
    assert ran[3] == "npm ci --prefix interop --no-audit --no-fund --loglevel=error"
    assert ran[4] == "npm ci --prefix keycloak/types --no-audit --no-fund --loglevel=error"
    missing = shutil.which("redis-server", path="/usr/bin:/bin") is None  # the Redis drills need it
    redis = ["apt-get update -qq", "apt-get install -y -qq redis-server"] if missing else []
    missing = shutil.which("nginx", path="/usr/sbin:/usr/bin:/bin") is None  # the mTLS drill needs it
    nginx = ["apt-get update -qq", "apt-get install -y -qq nginx-light"] if missing else []
    missing = shutil.which("chromium", path="/usr/bin:/bin") is None  # the browser tests need it
    chromium = ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"] if missing else []
    missing = not all(shutil.which(tool, path="/usr/bin:/bin") for tool in ("prometheus", "promtool"))
    install = "apt-get install -y -qq --no-install-recommends prometheus"  # the Prometheus tests need it
    prometheus = ["apt-get update -qq", install] if missing else []
    assert ran[5:] == redis + nginx + chromium + prometheus


def bash_only(tmp_path: Path) -> str:
    """A PATH of only bash and dirname: every tool the bootstrap installs is missing there."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "dirname"):
        (tools / tool).symlink_to(str(shutil.which(tool)))
    return str(tools)


def test_bootstrap_installs_prometheus_when_missing(tmp_path: Path) -> None:
    """Only bash and dirname on the PATH: no prometheus, no promtool, so Debian's package is installed."""
    status, ran = bootstrap(tmp_path / "with-node", "--with-node", path=bash_only(tmp_path))
    assert status == 0
    assert ran[-2:] == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends prometheus"]


def test_bootstrap_installs_chromium_when_missing(tmp_path: Path) -> None:
    """Debian's chromium for the browser tests, without recommends, before prometheus (no PATH but bash's)."""
    status, ran = bootstrap(tmp_path / "with-node", "--with-node", path=bash_only(tmp_path))
    assert status == 0
    assert ran[-4:-2] == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"]


def test_bootstrap_refuses_unknown_options(tmp_path: Path) -> None:
    status, ran = bootstrap(tmp_path, "--with-nodes")
    assert (status, ran) == (2, [])


def test_the_example_type_checks_strictly_as_a_users_code(tmp_path: Path) -> None:
    """Public names re-exported and settings defaults visible to type checkers (``make lint`` runs it too)."""
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), "example_service"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout
