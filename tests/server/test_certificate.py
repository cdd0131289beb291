"""Certificate-bound access tokens at the verifier (RFC 8705 §3): ``cnf["x5t#S256"]`` against the request's
client certificate, the scheme staying Bearer, introspection answers binding lightweight tokens (§3.2),
and the one-time hint when no certificate source is configured."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastapi_kc_m2m import InvalidToken
from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.server.observer import Observer
from fastapi_kc_m2m.testing import TestIssuer, generate_key
from tests.helpers import answering, shared_pki

pytestmark = pytest.mark.anyio

CERT_A, CERT_B = shared_pki().client, shared_pki().other_client
PROXY = {
    "client_cert_header": "ssl-client-cert",
    "client_cert_format": "pem-urlencoded",
    "trusted_proxies": "127.0.0.1",
}


def with_cert(token: str, der: bytes | None) -> RequestContext:
    return RequestContext(token, "Bearer", "GET", client_certificate=der)


class Hints(Observer):
    def __init__(self) -> None:
        self.hints: list[str] = []

    def hint(self, message: str) -> None:
        self.hints.append(message)


async def test_bound_token_passes_only_with_its_certificate(issuer: TestIssuer) -> None:
    token = issuer.token(cnf={"x5t#S256": CERT_A.x5t})
    async with issuer.auth(**PROXY) as auth:
        verification = await auth.authenticate(with_cert(token, CERT_A.der))
        assert (verification.x5t, verification.principal.client_id) == (CERT_A.x5t, "machine-a")
        with pytest.raises(InvalidToken, match="does not match"):
            await auth.authenticate(with_cert(token, CERT_B.der))  # cached token: checked again
        with pytest.raises(InvalidToken, match="without a client certificate"):
            await auth.authenticate(with_cert(token, None))


async def test_bound_token_with_the_dpop_scheme_is_refused(issuer: TestIssuer) -> None:
    token = issuer.token(cnf={"x5t#S256": CERT_A.x5t})
    async with issuer.auth(**PROXY) as auth:
        with pytest.raises(InvalidToken, match="not DPoP-bound"):
            await auth.authenticate(with_cert(token, CERT_A.der)._replace(scheme="DPoP"))


async def test_unbound_tokens_are_unaffected_by_a_certificate(issuer: TestIssuer, auth: Any) -> None:
    verification = await auth.authenticate(with_cert(issuer.token(), CERT_A.der))
    assert verification.x5t is None


@pytest.mark.parametrize(
    "cnf", [{"x5t#S256": CERT_A.x5t, "jkt": generate_key("ES256").thumbprint()}, {"x5t#S256": ""}, {"x5t#S256": 5}]
)
async def test_both_bindings_or_a_malformed_thumbprint_are_refused(issuer: TestIssuer, cnf: Any) -> None:
    async with issuer.auth(**PROXY) as auth:
        with pytest.raises(InvalidToken, match="sender-constrained tokens are not supported"):
            await auth.authenticate(with_cert(issuer.token(cnf=cnf), CERT_A.der))


async def test_without_a_certificate_source_bound_tokens_are_refused_with_one_hint(issuer: TestIssuer) -> None:
    hints = Hints()
    async with issuer.auth(observer=hints) as auth:
        for _ in range(2):
            with pytest.raises(InvalidToken, match="without a client certificate"):
                await auth.verify(issuer.token(cnf={"x5t#S256": CERT_A.x5t}))
    assert len(hints.hints) == 1
    assert "KC_M2M_CLIENT_CERT_HEADER" in hints.hints[0]
    assert "KC_M2M_TRUSTED_PROXIES" in hints.hints[0]


async def test_with_a_certificate_source_no_hint(issuer: TestIssuer) -> None:
    hints = Hints()
    async with issuer.auth(observer=hints, **PROXY) as auth:
        with pytest.raises(InvalidToken, match="without a client certificate"):
            await auth.verify(issuer.token(cnf={"x5t#S256": CERT_A.x5t}))
    assert hints.hints == []


async def test_lightweight_token_is_bound_through_the_answer(issuer: TestIssuer) -> None:
    token = issuer.token(lightweight=True)
    answer = issuer.introspection_answer(token, issuer.audience) | {"cnf": {"x5t#S256": CERT_A.x5t}}
    body = json.dumps(answer).encode()
    async with answering(issuer, body, introspection="off", lightweight_tokens=True, **PROXY) as auth:
        assert (await auth.authenticate(with_cert(token, CERT_A.der))).x5t == CERT_A.x5t
        with pytest.raises(InvalidToken, match="does not match"):
            await auth.authenticate(with_cert(token, CERT_B.der))


async def test_lightweight_token_keeps_its_own_certificate_binding(issuer: TestIssuer) -> None:
    token = issuer.token(lightweight=True, cnf={"x5t#S256": CERT_A.x5t})
    answer = issuer.introspection_answer(token, issuer.audience) | {"cnf": {"x5t#S256": CERT_B.x5t}}
    body = json.dumps(answer).encode()
    async with answering(issuer, body, introspection="off", lightweight_tokens=True, **PROXY) as auth:
        with pytest.raises(InvalidToken, match="token binding mismatch"):
            await auth.authenticate(with_cert(token, CERT_A.der))
