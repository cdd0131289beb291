"""DPoP through every layer at once: the test issuer binds, Machine A proves, the middleware extracts,
the verifier checks and remembers, the one responses module challenges (RFC 9449 §4-§9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_kc_m2m import ClientCredentialsAuth, KeycloakAuthMiddleware, Principal, require_scope
from fastapi_kc_m2m.testing import DPoPCaller, TestIssuer
from tests.helpers import api_client, bearer

pytestmark = pytest.mark.anyio

URL = "http://api.test/orders"
NONCE_SECRET = "n" * 40


def app_for(issuer: TestIssuer, **settings: Any) -> FastAPI:
    rs = issuer.auth(**settings)
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=rs)

    @app.get("/orders", dependencies=[Depends(require_scope("orders:read"))])
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    rs.install(app)
    return app


@pytest.fixture
async def client(issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app_for(issuer)) as c:
        yield c


async def test_a_bound_token_with_its_proof_passes_and_every_bad_proof_is_refused(
    issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    caller = DPoPCaller(issuer)
    token = caller.token(scope="orders:read")
    assert (await client.get(URL, headers=caller.headers("GET", URL, token))).json() == {"client": "machine-a"}
    for reason, proof in issuer.bad_proofs(caller.key, token, "GET", URL).items():
        refused = await client.get(URL, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        assert refused.status_code == 401, reason
        assert refused.headers["WWW-Authenticate"].startswith("DPoP "), reason
        assert proof not in refused.text


async def test_downgrade_replay_and_an_unbound_token_are_refused(issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    caller = DPoPCaller(issuer)
    token = caller.token(scope="orders:read")
    assert (await client.get(URL, headers=bearer(token))).status_code == 401  # downgraded to Bearer
    headers = caller.headers("GET", URL, token)
    assert (await client.get(URL, headers=headers)).status_code == 200
    assert (await client.get(URL, headers=headers)).status_code == 401  # the same proof again
    unbound = issuer.token(scope="orders:read")
    junk = {"Authorization": f"DPoP {unbound}", "DPoP": caller.proof("GET", URL, unbound)}
    assert (await client.get(URL, headers=junk)).status_code == 401


async def test_a_nonce_is_demanded_once_and_then_accepted(issuer: TestIssuer) -> None:
    caller = DPoPCaller(issuer)
    token = caller.token(scope="orders:read")
    async with api_client(app_for(issuer, dpop_nonce=True, dpop_nonce_secret=NONCE_SECRET)) as client:
        first = await client.get(URL, headers=caller.headers("GET", URL, token))
        assert first.status_code == 401
        assert 'error="use_dpop_nonce"' in first.headers["WWW-Authenticate"]
        nonce = first.headers["DPoP-Nonce"]
        again = await client.get(URL, headers=caller.headers("GET", URL, token, nonce=nonce))
        assert again.status_code == 200


async def test_machine_a_with_dpop_gets_a_bound_token_and_calls_through_the_nonce_dance() -> None:
    with TestIssuer.serving(optional_scopes={"orders:read"}) as issuer:
        issuer.register_client("machine-a", secret="s3cret")
        machine_a = ClientCredentialsAuth(
            "machine-a", issuer=issuer.issuer, client_secret="s3cret", scope="orders:read", dpop=True
        )
        app = app_for(issuer, dpop="required", dpop_nonce=True, dpop_nonce_secret=NONCE_SECRET)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", auth=machine_a) as client:
            responses = [await client.get("/orders") for _ in range(3)]
        await machine_a.aclose()
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert issuer.requests["token"] == 1  # one bound token; the nonce retry needed no new one
