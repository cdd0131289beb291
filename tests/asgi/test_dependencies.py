"""The dependencies with and without the middleware, checklist 39, lifespan and the OpenAPI document."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security
from openapi_spec_validator import validate

from fastapi_kc_m2m import (
    AuthError,
    IdentityProviderUnavailable,
    KeycloakAuth,
    KeycloakAuthMiddleware,
    Principal,
    ServicePrincipal,
    auth_error_handler,
    get_principal,
    require_any_scope,
    require_client_role,
    require_realm_role,
    require_scope,
)
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import NO_CREDENTIALS_CHALLENGE, api_client, bearer

pytestmark = pytest.mark.anyio


def build_app(auth: KeycloakAuth | None) -> FastAPI:
    """The same routes behind the middleware (``auth`` given) or protected by the dependencies alone."""
    app = FastAPI()
    if auth is not None:
        app.add_middleware(KeycloakAuthMiddleware, auth=auth, exclude_paths=["/docs", "/openapi.json"])
    app.add_exception_handler(AuthError, auth_error_handler)

    @app.get("/whoami")
    async def whoami(caller: Principal) -> dict[str, Any]:
        return {"client": caller.client_id}

    @app.get("/read-all", dependencies=[require_scope("read:all")])
    async def read_all() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/both")
    async def both(caller: Annotated[ServicePrincipal, require_scope("orders:read", "orders:write")]) -> dict[str, Any]:
        return {"client": caller.client_id}

    @app.get("/security")
    async def security(
        caller: Annotated[ServicePrincipal, Security(get_principal, scopes=["reports:read"])],
    ) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/any", dependencies=[require_any_scope("orders:read", "orders:admin")])
    async def any_scope() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/realm-role", dependencies=[require_realm_role("auditor")])
    async def realm_role() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/own-role", dependencies=[require_client_role("writer")])
    async def own_role() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/billing-role", dependencies=[require_client_role("payer", client="billing")])
    async def billing_role() -> dict[str, bool]:
        return {"ok": True}

    return app


@contextlib.asynccontextmanager
async def open_client(mode: str, issuer: TestIssuer, lifespan_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    auth = issuer.auth()
    if mode == "middleware":
        app = build_app(auth)
        async with auth, api_client(app) as c:
            yield c
    else:
        app = build_app(None)
        async with lifespan_client(app, auth.lifespan) as c:
            yield c


@pytest.fixture(params=["middleware", "dependencies-only"])
async def client(
    request: pytest.FixtureRequest, issuer: TestIssuer, lifespan_client: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(request.param, issuer, lifespan_client) as c:
        yield c


async def status(client: httpx.AsyncClient, path: str, token: str) -> int:
    return (await client.get(path, headers=bearer(token))).status_code


# ------------------------------------------------------------------ authentication
async def test_principal_is_the_verified_caller(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert (await client.get("/whoami", headers=bearer(issuer.token()))).json() == {"client": "machine-a"}


async def test_principal_requires_credentials(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    response = await client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == NO_CREDENTIALS_CHALLENGE
    refused = await client.get("/whoami", headers=bearer(issuer.bad_tokens()["tampered"]))
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    malformed = await client.get("/whoami", headers={"Authorization": "Bearer a b"})
    assert malformed.status_code == 400


# ------------------------------------------------------------------ checklist 39: scopes
async def test_missing_scope_is_403_with_scope(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    response = await client.get("/read-all", headers=bearer(issuer.token(scope="read")))
    assert response.status_code == 403
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": "the access token lacks the required scope",
    }
    assert response.headers["www-authenticate"].endswith(', scope="read:all"')


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("read:all", 200), ("read", 403), ("READ:ALL", 403), ("read:all:x", 403), ("profile read:all", 200)],
)
async def test_scopes_are_exact_and_case_sensitive(
    client: httpx.AsyncClient, issuer: TestIssuer, scope: str, expected: int
) -> None:
    assert await status(client, "/read-all", issuer.token(scope=scope)) == expected


@pytest.mark.parametrize(
    ("claim", "expected"), [(["read:all", "x"], 200), (["read"], 403), ({"read:all": True}, 403), (7, 403)]
)
async def test_scope_claim_as_array_or_malformed(
    client: httpx.AsyncClient, issuer: TestIssuer, claim: Any, expected: int
) -> None:
    assert await status(client, "/read-all", issuer.token(scope=claim)) == expected


async def test_all_scopes_required(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert await status(client, "/both", issuer.token(scope="orders:read orders:write")) == 200
    response = await client.get("/both", headers=bearer(issuer.token(scope="orders:read")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"].endswith(', scope="orders:read orders:write"')


async def test_security_scopes_style(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert await status(client, "/security", issuer.token(scope="reports:read")) == 200
    assert await status(client, "/security", issuer.token(scope="reports")) == 403


async def test_any_scope(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert await status(client, "/any", issuer.token(scope="orders:admin")) == 200
    assert await status(client, "/any", issuer.token(scope="orders:read")) == 200
    assert await status(client, "/any", issuer.token(scope="orders:write")) == 403


# ------------------------------------------------------------------ checklist 39: roles
async def test_realm_role(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert await status(client, "/realm-role", issuer.token(realm_roles=("auditor",))) == 200
    response = await client.get("/realm-role", headers=bearer(issuer.token()))
    assert response.status_code == 403
    assert response.json()["error_description"] == "the access token lacks the required role"


async def test_client_role_defaults_to_this_api_never_the_caller(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert await status(client, "/own-role", issuer.token(client_roles={"machine-b": ["writer"]})) == 200
    assert await status(client, "/own-role", issuer.token(client_roles={"machine-a": ["writer"]})) == 403
    assert await status(client, "/own-role", issuer.token(client_roles={"other": ["writer"]})) == 403


async def test_client_role_of_a_named_client(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert await status(client, "/billing-role", issuer.token(client_roles={"billing": ["payer"]})) == 200
    assert await status(client, "/billing-role", issuer.token(client_roles={"machine-b": ["payer"]})) == 403


@pytest.mark.parametrize(
    "claims",
    [
        {"realm_access": {"roles": "auditor"}},
        {"realm_access": ["auditor"]},
        {"realm_access": {"roles": [1, None]}},
        {"realm_access": None},
        {"resource_access": {"machine-b": {"roles": "writer"}}},
        {"resource_access": {"machine-b": ["writer"]}},
        {"resource_access": "machine-b"},
        {"resource_access": {"machine-b": {"roles": [{"name": "writer"}]}}},
    ],
)
async def test_malformed_role_claims_are_403_never_500(
    client: httpx.AsyncClient, issuer: TestIssuer, claims: dict[str, Any]
) -> None:
    token = issuer.token(**claims)
    assert await status(client, "/realm-role", token) == 403
    assert await status(client, "/own-role", token) == 403


def test_scope_names_are_checked_when_routes_are_defined() -> None:
    for bad in ((), ("",), ('a"b',), ("a b",), ("a\\b",)):
        with pytest.raises(ValueError, match="scope"):
            require_scope(*bad)
    with pytest.raises(ValueError, match="role"):
        require_realm_role()


# ------------------------------------------------------------------ lifespan
async def test_lifespan_prefetches_without_blocking_and_closes(issuer: TestIssuer) -> None:
    auth = issuer.auth()
    app = FastAPI(lifespan=auth.lifespan)
    async with app.router.lifespan_context(app) as state:
        assert state == {"keycloak_auth": auth}
        await auth.settled()  # the prefetch ran in the background
        assert auth.ready
    assert auth._client.is_closed


async def test_lifespan_start_up_does_not_wait_for_keycloak(issuer: TestIssuer) -> None:
    issuer.fail("jwks", "status")
    auth = issuer.auth()
    async with auth.lifespan(None):
        await auth.settled()
        assert issuer.requests["jwks"] == 1  # the prefetch ran, and failed
        assert not auth.ready


async def test_strict_lifespan_fails_start_up_without_keycloak(issuer: TestIssuer) -> None:
    issuer.fail("jwks", "status")
    auth = issuer.auth()
    with pytest.raises(IdentityProviderUnavailable):
        async with auth.lifespan(None, strict=True):
            pass
    assert auth._client.is_closed


async def test_strict_lifespan_starts_with_keys_loaded(issuer: TestIssuer) -> None:
    async with issuer.auth().lifespan(None, strict=True) as state:
        assert state["keycloak_auth"].ready


async def test_without_lifespan_or_middleware_is_a_set_up_error(issuer: TestIssuer) -> None:
    app = build_app(None)
    async with api_client(app) as c:
        with pytest.raises(RuntimeError, match="KeycloakAuthMiddleware"):
            await c.get("/whoami", headers=bearer(issuer.token()))


# ------------------------------------------------------------------ OpenAPI
async def test_openapi_documents_the_client_credentials_flow(issuer: TestIssuer, lifespan_client: Any) -> None:
    auth = issuer.auth()
    app = build_app(auth)
    async with lifespan_client(app, auth.lifespan) as c:
        document = (await c.get("/openapi.json")).json()
        docs_page = (await c.get("/docs")).text
    validate(document)
    scheme = document["components"]["securitySchemes"]["KeycloakClientCredentials"]
    flow = scheme["flows"]["clientCredentials"]
    assert scheme["type"] == "oauth2"
    assert flow["tokenUrl"] == f"{issuer.issuer}/protocol/openid-connect/token"
    assert sorted(flow["scopes"]) == ["orders:read", "orders:write", "read:all", "reports:read"]
    assert document["paths"]["/read-all"]["get"]["security"] == [{"KeycloakClientCredentials": ["read:all"]}]
    assert document["paths"]["/whoami"]["get"]["security"] == [{"KeycloakClientCredentials": []}]
    for page in (docs_page, str(document)):
        assert "secret" not in page.lower()
