"""require_realm() and per-realm role checks on a multi-tenant API (KC_M2M_REALMS), in every FastAPI form."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Security

from fastapi_kc_m2m import ServicePrincipal, require_client_role, require_realm, require_realm_role
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer
from tests.helpers import api_client, bearer

pytestmark = pytest.mark.anyio


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/a-only", dependencies=[require_realm("tenant-a")])
    async def a_only() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/tenants", dependencies=[Security(require_realm("tenant-*"))])
    async def tenants() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/annotated")
    async def annotated(caller: Annotated[ServicePrincipal, Depends(require_realm("tenant-b", "x"))]) -> dict[str, Any]:
        return {"realm": caller.realm}

    @app.get("/admin-of-a", dependencies=[require_realm_role("admin", realm="tenant-a")])
    async def admin_of_a() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/writer", dependencies=[require_client_role("writer")])
    async def writer() -> dict[str, bool]:
        return {"ok": True}

    router = APIRouter(dependencies=[Depends(require_realm("tenant-b"))])

    @router.get("/router")
    async def routed() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(router)
    return app


@pytest.fixture
def server(clock: FrozenClock) -> TestIssuer:
    return TestIssuer(clock=clock)


@contextlib.asynccontextmanager
async def client_of(server: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app()
    rs = server.auth(issuers=(), server_url=server.base_url, realms=("tenant-*",), audiences={"tenant-b": "b-api"})
    rs.install(app)
    async with rs, api_client(app) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "realm", "status"),
    [
        ("/a-only", "tenant-a", 200),
        ("/a-only", "tenant-b", 403),
        ("/tenants", "tenant-a", 200),
        ("/tenants", "tenant-b", 200),
        ("/annotated", "tenant-b", 200),
        ("/annotated", "tenant-a", 403),
        ("/router", "tenant-b", 200),
        ("/router", "tenant-a", 403),
    ],
)
async def test_require_realm_in_every_form(server: TestIssuer, path: str, realm: str, status: int) -> None:
    tenant = server.add_realm(realm, audience="b-api" if realm == "tenant-b" else server.audience)
    async with client_of(server) as client:
        response = await client.get(path, headers=bearer(tenant.token()))
    assert response.status_code == status
    if status == 403:
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert "not of a permitted realm" in response.json()["error_description"]
    if path == "/annotated" and status == 200:
        assert response.json() == {"realm": "tenant-b"}


async def test_without_a_realm_require_realm_refuses(issuer: TestIssuer) -> None:
    """KC_M2M_ISSUERS alone names no realm: the principal's realm is None, never matched."""
    app = build_app()
    rs = issuer.auth()
    rs.install(app)
    async with rs, api_client(app) as client:
        response = await client.get("/tenants", headers=bearer(issuer.token()))
    assert response.status_code == 403


async def test_a_realm_role_counts_only_in_its_realm(server: TestIssuer) -> None:
    a, b = server.add_realm("tenant-a"), server.add_realm("tenant-b", audience="b-api")
    async with client_of(server) as client:
        assert (await client.get("/admin-of-a", headers=bearer(a.token(realm_roles=["admin"])))).status_code == 200
        assert (await client.get("/admin-of-a", headers=bearer(a.token()))).status_code == 403
        assert (await client.get("/admin-of-a", headers=bearer(b.token(realm_roles=["admin"])))).status_code == 403


async def test_client_roles_are_those_of_the_realms_own_audience(server: TestIssuer) -> None:
    a, b = server.add_realm("tenant-a"), server.add_realm("tenant-b", audience="b-api")
    async with client_of(server) as client:
        for tenant, own in ((a, server.audience), (b, "b-api")):
            granted = bearer(tenant.token(client_roles={own: ["writer"]}))
            assert (await client.get("/writer", headers=granted)).status_code == 200
        other = bearer(b.token(client_roles={server.audience: ["writer"]}))  # tenant-a's client id, in tenant-b
        assert (await client.get("/writer", headers=other)).status_code == 403


def test_realm_names_are_checked_when_routes_are_defined() -> None:
    with pytest.raises(ValueError, match="realm"):
        require_realm()
    with pytest.raises(ValueError, match="realm"):
        require_realm_role("admin", realm="")
