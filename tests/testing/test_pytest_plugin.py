"""The pytest plugin, as a user's test suite sees it: fixtures loaded through the entry point."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import httpx
import pytest
from fastapi import FastAPI

from fastapi_kc_m2m import KeycloakAuthMiddleware, Principal, require_scope


def create_app(auth):
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders", dependencies=[require_scope("orders:read")])
    async def orders(caller: Principal):
        return {"client": caller.client_id}

    return app


@pytest.fixture
def kc_audience():
    return "orders"


async def get(app, token=None):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        return await client.get("/orders", headers=headers)


@pytest.mark.anyio
async def test_allowed(kc_auth, kc_token):
    response = await get(create_app(kc_auth), kc_token(client_id="billing", scope="orders:read"))
    assert response.status_code == 200
    assert response.json() == {"client": "billing"}


@pytest.mark.anyio
async def test_refused(kc_auth, kc_token, kc_issuer):
    app = create_app(kc_auth)
    assert (await get(app)).status_code == 401
    assert (await get(app, kc_token())).status_code == 403
    assert (await get(app, kc_issuer.bad_tokens()["expired"])).status_code == 401
    assert (await get(app, kc_token(audience="machine-b", scope="orders:read"))).status_code == 401


@pytest.mark.anyio
async def test_dpop(kc_auth, kc_dpop):
    from fastapi_kc_m2m._jose.dpop import access_token_hash, check_proof
    from fastapi_kc_m2m._jose.jws import parse

    token = kc_dpop.token(client_id="billing", scope="orders:read")
    claims = parse(token).payload
    assert (claims["typ"], claims["cnf"]) == ("DPoP", {"jkt": kc_dpop.jkt, "kc-jkt-type": "DPoP"})
    headers = kc_dpop.headers("GET", "http://api/orders", token)
    assert headers["Authorization"] == f"DPoP {token}"
    checked = check_proof(
        headers["DPoP"], algorithms=frozenset({"ES256"}), htm="GET", htu="http://api/orders",
        now=kc_dpop.issuer.clock(), max_age=60, max_ahead=15, ath=access_token_hash(token),
    )
    assert checked.jkt == kc_dpop.jkt
    assert kc_dpop.proof("GET", "http://api/orders") != kc_dpop.proof("GET", "http://api/orders")  # fresh jti
    # a bound token presented as Bearer is refused (RFC 9449 §7.2); with its proof it passes
    app = create_app(kc_auth)
    assert (await get(app, token)).status_code == 401
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        allowed = await client.get("/orders", headers=kc_dpop.headers("GET", "http://api/orders", token))
        stale = kc_dpop.issuer.bad_proofs(kc_dpop.key, token, "GET", "http://api/orders")["stale_iat"]
        refused = await client.get("/orders", headers={"Authorization": f"DPoP {token}", "DPoP": stale})
    assert (allowed.status_code, allowed.json(), refused.status_code) == (200, {"client": "billing"}, 401)


@pytest.fixture
def anyio_backend():
    return "asyncio"


USED = []


@pytest.mark.anyio
async def test_uses_the_verifier(kc_auth, kc_token):
    USED.append(kc_auth)
    assert (await kc_auth.verify(kc_token())).client_id == "machine-a"


def test_a_sync_test_gets_it_too(kc_auth):
    USED.append(kc_auth)


def test_every_verifier_was_closed_after_its_test():
    assert len(USED) == 2
    assert all(auth._client.is_closed for auth in USED)
"""


def test_fixtures_protect_a_users_app_without_keycloak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_api=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=6)


def test_fixtures_are_listed_by_the_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from fastapi_kc_m2m.testing.pytest_plugin*",
            *("kc_audience*", "*", "kc_issuer*", "*", "kc_token*", "*", "kc_dpop*", "*", "kc_auth*"),
        ]
    )
