"""``Depends(downstream(...))``: a route calls Machine C on behalf of its caller (RFC 8693), in-process and
A → B → C over loopback HTTP; refusals become 502/503 without a token in sight."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from fastapi_kc_m2m import ClientCredentialsAuth, ExchangedTokenAuth, KeycloakAuth, Principal, downstream
from fastapi_kc_m2m._jose.dpop import access_token_hash, make_proof
from fastapi_kc_m2m.server.metrics import MetricsObserver
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, generate_key
from fastapi_kc_m2m.testing.issuer import parse
from tests.helpers import API_URL, INTROSPECTION_SECRET, bearer

pytestmark = pytest.mark.anyio

SECRET = INTROSPECTION_SECRET


def register(issuer: TestIssuer) -> TestIssuer:
    """A calls B (the issuer's audience), which may exchange towards C."""
    issuer.register_client("machine-a", secret="a-secret")
    issuer.register_client(secret=SECRET, exchange_audiences=["machine-c"])
    issuer.register_client("machine-c", secret="c-secret")
    return issuer


@pytest.fixture
def issuer(clock: FrozenClock) -> TestIssuer:
    return register(TestIssuer(clock=clock))


def machine_b(
    audience: str = "machine-c", c_transport: httpx.AsyncBaseTransport | None = None, c_url: str = ""
) -> FastAPI:
    """Machine B: ``/call`` calls C's ``/whoami`` on behalf of its caller."""
    app = FastAPI()
    to_c = Depends(downstream(audience))  # the module's annotations are strings: no closure variable in them

    @app.get("/call")
    async def call(c: ExchangedTokenAuth = to_c) -> Any:
        async with httpx.AsyncClient(auth=c, transport=c_transport) as client:
            return (await client.get(f"{c_url}/whoami")).json()

    return app


async def seen_by_c(request: httpx.Request) -> httpx.Response:
    """An in-process Machine C that answers with the claims of the token it got."""
    token = request.headers["Authorization"].removeprefix("Bearer ")
    return httpx.Response(200, json=parse(token).payload)


async def test_a_route_calls_downstream_with_an_exchanged_token(issuer: TestIssuer, lifespan_client: Any) -> None:
    rs = issuer.auth(token_exchange=True, client_secret=SECRET)
    token = issuer.token()
    app = machine_b(c_transport=httpx.MockTransport(seen_by_c), c_url="http://machine-c.test")
    async with lifespan_client(app, rs.lifespan) as client:
        seen = (await client.get("/call", headers=bearer(token))).json()
        await client.get("/call", headers=bearer(token))
    assert (seen["sub"], seen["azp"], seen["aud"]) == (parse(token).payload["sub"], "machine-b", "machine-c")
    assert issuer.requests["exchange"] == 1  # the second call reused the exchanged token


async def test_a_refused_exchange_is_a_502_without_challenge_or_token(issuer: TestIssuer, lifespan_client: Any) -> None:
    rs = issuer.auth(token_exchange=True, client_secret=SECRET)
    token = issuer.token()
    async with lifespan_client(machine_b("machine-z"), rs.lifespan) as client:
        response = await client.get("/call", headers=bearer(token))
    assert response.status_code == 502
    assert response.json() == {"error_description": "the token exchange was refused"}
    assert "WWW-Authenticate" not in response.headers
    assert token not in response.text


async def test_keycloak_down_is_a_503_with_retry_after(issuer: TestIssuer, lifespan_client: Any) -> None:
    rs = issuer.auth(token_exchange=True, client_secret=SECRET)
    issuer.fail("token", "status")
    async with lifespan_client(machine_b(), rs.lifespan) as client:
        response = await client.get("/call", headers=bearer(issuer.token()))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")


async def test_a_dpop_bound_caller_is_refused_before_any_exchange(
    issuer: TestIssuer, clock: FrozenClock, lifespan_client: Any
) -> None:
    rs = issuer.auth(token_exchange=True, client_secret=SECRET)
    key = generate_key("ES256")
    token = issuer.token(dpop_key=key)
    proof = make_proof(key, htm="GET", htu=f"{API_URL}/call", iat=clock(), ath=access_token_hash(token))
    async with lifespan_client(machine_b(), rs.lifespan) as client:
        response = await client.get("/call", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert response.status_code == 502
    assert response.json() == {"error_description": "a sender-constrained token cannot be exchanged"}
    assert issuer.requests["exchange"] == 0


async def test_a_route_without_a_token_gets_401(issuer: TestIssuer, lifespan_client: Any) -> None:
    rs = issuer.auth(token_exchange=True, client_secret=SECRET)
    async with lifespan_client(machine_b(), rs.lifespan) as client:
        assert (await client.get("/call")).status_code == 401
    assert issuer.requests["exchange"] == 0


def test_downstream_needs_an_audience() -> None:
    with pytest.raises(ValueError, match="audience"):
        downstream("")


async def test_a_to_b_to_c_over_loopback(served_issuer: TestIssuer, serve: Any) -> None:
    """A calls B with its token; B exchanges it and calls C; C sees A's service account, azp B, aud C."""
    issuer = register(served_issuer)
    c_app = FastAPI()

    @c_app.get("/whoami")
    async def whoami(caller: Principal) -> dict[str, Any]:
        return {"sub": caller.subject, "azp": caller.client_id, "aud": list(caller.audiences)}

    c_app.router.lifespan_context = KeycloakAuth(issuer.settings(audience="machine-c")).lifespan
    with serve(c_app) as c_host:
        b_app = machine_b(c_url=f"http://{c_host}")
        b_app.router.lifespan_context = KeycloakAuth(
            issuer.settings(token_exchange=True, client_secret=SECRET)
        ).lifespan
        with serve(b_app) as b_host:
            a_auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret="a-secret")
            try:
                async with httpx.AsyncClient(auth=a_auth) as a:
                    seen = (await a.get(f"http://{b_host}/call")).json()
                    a_token = (await a_auth.aget_token()).value
            finally:
                await a_auth.aclose()
    assert seen == {"sub": parse(a_token).payload["sub"], "azp": "machine-b", "aud": ["machine-c"]}
    assert issuer.requests["exchange"] == 1


@pytest.mark.parametrize(("audience", "fail", "outcome", "reason"), [
    ("machine-z", False, "refused", "exchange_refused"),  # Keycloak refused the exchange: 502
    ("machine-c", True, "unavailable", "exchange_unavailable"),
])  # fmt: skip
async def test_a_failed_exchange_is_the_routes_refusal_of_an_accepted_token(
    issuer: TestIssuer, lifespan_client: Any, audience: str, fail: bool, outcome: str, reason: str
) -> None:
    """Counted once: the caller's token accepted, then its route refused (not a second verification)."""
    registry = CollectorRegistry()
    settings = issuer.settings(token_exchange=True, client_secret=SECRET)
    rs = issuer.auth(token_exchange=True, client_secret=SECRET, observer=MetricsObserver(settings, registry=registry))
    if fail:
        issuer.fail("token", "status")
    async with lifespan_client(machine_b(audience), rs.lifespan) as client:
        assert (await client.get("/call", headers=bearer(issuer.token()))).status_code in (502, 503)
    sample = registry.get_sample_value
    assert sample("kc_m2m_verifications_total", {"outcome": "accepted", "reason": "ok", "client_id": ""}) == 1
    assert sample("kc_m2m_route_refusals_total", {"outcome": outcome, "reason": reason}) == 1
    assert sample("kc_m2m_verifications_total", {"outcome": outcome, "reason": reason, "client_id": ""}) is None
