"""The example: Machine B served on loopback, Machine A's callers against the test realm, the demo's table."""

from __future__ import annotations

import io

import pytest

from example_service import demo
from example_service.machine_a import Outcome, print_table, scenario
from fastapi_kc_m2m.testing import serve_app


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    with demo.local_realm() as (auth, callers):
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
