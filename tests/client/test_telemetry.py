"""Machine A's metrics and spans: token requests by result, their duration, renewals by reason, and
OpenTelemetry spans without a secret or a token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse

from fastapi_kc_m2m.client import ClientCredentialsAuth, ClientCredentialsError
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer
from tests.client.test_auth import API, SECRET, Api
from tests.helpers import Spans, token_endpoint_realm

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def kc() -> Iterator[TestIssuer]:
    with TestIssuer.serving(clock=FrozenClock()) as issuer:
        issuer.register_client("machine-a", secret=SECRET)
        yield issuer


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_auth(kc: TestIssuer, registry: CollectorRegistry) -> Iterator[Any]:
    """``make_auth(**options)``: an auth with metrics in the test's registry, closed after the test."""
    made: list[ClientCredentialsAuth] = []

    def make(**options: Any) -> ClientCredentialsAuth:
        defaults = {"issuer": kc.issuer, "client_secret": SECRET, "metrics": True, "registry": registry}
        auth = ClientCredentialsAuth("machine-a", **(defaults | options))
        made.append(auth)
        return auth

    yield make
    for auth in made:
        auth.close()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"client_id": "machine-a", **labels}) or 0.0


def test_token_requests_are_counted_by_result_and_timed(make_auth: Any, registry: CollectorRegistry) -> None:
    make_auth().get_token()
    with pytest.raises(ClientCredentialsError):
        make_auth(client_secret="wrong").get_token()  # a second instance shares the families
    assert sample(registry, "kc_m2m_client_token_requests_total", result="ok") == 1
    assert sample(registry, "kc_m2m_client_token_requests_total", result="invalid_client") == 1
    assert sample(registry, "kc_m2m_client_token_seconds_count") == 2


def test_renewals_are_counted_by_reason(kc: TestIssuer, make_auth: Any, registry: CollectorRegistry) -> None:
    clock = kc.clock
    assert isinstance(clock, FrozenClock)
    auth, api = make_auth(clock=clock), Api()
    first = auth.get_token()
    clock.advance(300 - 30)  # refreshed ahead of expiry (REFRESH_MARGIN)
    auth.get_token()
    clock.advance(300)  # past expiry
    api.refused.add(auth.get_token().value)
    with api.client(auth) as client:
        assert client.get(API).status_code == 200  # refused once, renewed, retried
    reasons = {
        reason: sample(registry, "kc_m2m_client_token_renewals_total", reason=reason)
        for reason in ("early", "expired", "401")
    }
    assert reasons == {"early": 1, "expired": 1, "401": 1}
    assert first.value not in api.tokens
    assert sample(registry, "kc_m2m_client_token_requests_total", result="ok") == 4


@pytest.fixture(scope="module")
def odd_realm() -> Iterator[str]:
    """A realm whose token endpoint answers an error code outside RFC 6749 §5.2."""

    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"error": f"made_up_{id(request)}"}, status_code=400)

    with token_endpoint_realm("odd", token) as issuer:
        yield issuer


def test_an_unknown_error_code_is_counted_as_other(odd_realm: str, make_auth: Any, registry: CollectorRegistry) -> None:
    auth = make_auth(issuer=odd_realm)
    for _ in range(3):
        with pytest.raises(ClientCredentialsError) as raised:
            auth.get_token()
        assert raised.value.error.startswith("made_up_")
    assert sample(registry, "kc_m2m_client_token_requests_total", result="other") == 3
    results = {s.labels["result"] for m in registry.collect() for s in m.samples if "result" in s.labels}
    assert results == {"other"}


def test_the_default_registry_takes_several_instances(kc: TestIssuer) -> None:
    first = ClientCredentialsAuth("machine-a", issuer=kc.issuer, client_secret=SECRET, metrics=True)
    second = ClientCredentialsAuth("machine-a", issuer=kc.issuer, client_secret=SECRET, metrics=True)
    assert first._telemetry._requests is second._telemetry._requests


async def test_token_requests_are_traced_without_secrets(kc: TestIssuer) -> None:
    spans = Spans()
    auth = ClientCredentialsAuth("machine-a", issuer=kc.issuer, client_secret=SECRET, tracing=True)
    token = await auth.aget_token()
    wrong = ClientCredentialsAuth("machine-a", issuer=kc.issuer, client_secret="wrong-" + SECRET, tracing=True)
    with pytest.raises(ClientCredentialsError):
        await wrong.aget_token()
    await auth.aclose()
    await wrong.aclose()
    ok, refused = spans.named("kc_m2m.client.token_request")
    assert dict(ok.attributes or {}) == {
        "kc_m2m.client_id": "machine-a",
        "server.address": "127.0.0.1",
        "kc_m2m.result": "ok",
        "http.response.status_code": 200,
    }
    assert ok.status.status_code is StatusCode.UNSET
    assert (refused.attributes or {})["kc_m2m.result"] == "invalid_client"
    assert (refused.attributes or {})["http.response.status_code"] == 401
    assert refused.status.status_code is StatusCode.ERROR
    assert SECRET not in spans.text()
    assert token.value not in spans.text()
