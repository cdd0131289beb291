"""KC_M2M_TRACING=otel: spans around key-set fetches (RFC 7517 §5) and introspection calls (RFC 7662),
with the issuer, endpoint host, result and HTTP status, never a token or a secret."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.trace import StatusCode

from fastapi_kc_m2m import IdentityProviderUnavailable, InvalidToken, KeycloakSettings
from fastapi_kc_m2m._idp.tracing import Spans as OtelSpans
from fastapi_kc_m2m.server.observer import Observer
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import INTROSPECTION_SECRET, Spans

pytestmark = pytest.mark.anyio


def attributes(spans: Spans, name: str) -> list[dict[str, object]]:
    return [dict(span.attributes or {}) for span in spans.named(name)]


async def test_key_set_fetches_are_traced(issuer: TestIssuer, caplog: pytest.LogCaptureFixture) -> None:
    spans = Spans()
    token = issuer.token()
    async with issuer.auth(tracing="otel") as auth:
        assert isinstance(auth._observer.spans, OtelSpans)
        await auth.verify(token)
        issuer.fail("jwks", "status")
        with caplog.at_level(logging.WARNING, logger="fastapi_kc_m2m"):
            assert not await auth.key_set(issuer.issuer).refresh()
    assert attributes(spans, "kc_m2m.jwks_fetch") == [
        {"kc_m2m.issuer": issuer.issuer, "server.address": "keycloak.test", "kc_m2m.result": "ok",
         "http.response.status_code": 200},
        {"kc_m2m.issuer": issuer.issuer, "server.address": "keycloak.test", "kc_m2m.result": "status 500",
         "error.type": "FetchError", "http.response.status_code": 500},
    ]  # fmt: skip
    assert [span.status.status_code for span in spans.named("kc_m2m.jwks_fetch")] == [
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]
    assert "fetch failed (status 500)" in caplog.text  # the logs are kept
    assert token not in spans.text()


async def test_introspection_calls_are_traced_without_the_token(issuer: TestIssuer) -> None:
    issuer.register_client(secret=INTROSPECTION_SECRET)  # the introspecting client
    spans = Spans()
    active, revoked, failing = issuer.token(), issuer.token(jti="revoked"), issuer.token(jti="failing")
    issuer.revoke(revoked)
    options = {"tracing": "otel", "introspection": "always", "client_secret": INTROSPECTION_SECRET}
    async with issuer.auth(**options) as auth:
        await auth.verify(active)
        with pytest.raises(InvalidToken):
            await auth.verify(revoked)
        issuer.fail("introspection", "active_string")
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(failing)
    found = attributes(spans, "kc_m2m.introspection")
    assert [(a["kc_m2m.result"], a.get("http.response.status_code")) for a in found] == [
        ("active", 200), ("inactive", 200), ("answer without a boolean active", None)
    ]  # fmt: skip
    assert {(a["kc_m2m.issuer"], a["server.address"]) for a in found} == {(issuer.issuer, "keycloak.test")}
    assert found[2]["error.type"] == "_Failure"
    text = spans.text()
    assert all(secret not in text for secret in (active, revoked, failing, INTROSPECTION_SECRET))


def test_tracing_is_off_by_default() -> None:
    assert KeycloakSettings(server_url="http://127.0.0.1:1", realm="r", audience="a").tracing == "off"


async def test_an_observer_given_is_traced_too(issuer: TestIssuer) -> None:
    spans, mine = Spans(), Observer()
    async with issuer.auth(tracing="otel", observer=mine) as auth:
        await auth.verify(issuer.token())
    assert isinstance(mine.spans, OtelSpans)
    assert [a["kc_m2m.result"] for a in attributes(spans, "kc_m2m.jwks_fetch")] == ["ok"]
