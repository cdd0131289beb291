"""Every FastAPI form of the ``require_*`` dependencies, ``install(app)`` without lifespan or middleware,
a lifespan run twice or wrapped, the start-up check of ``require_active_token()``, the documented
refusals and the static types of the public forms."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Security
from mypy import api as mypy_api
from openapi_spec_validator import validate

from fastapi_kc_m2m import (
    KeycloakAuthMiddleware,
    KeycloakResourceServer,
    Principal,
    ServicePrincipal,
    require_active_token,
    require_any_scope,
    require_client_role,
    require_realm_role,
    require_scope,
)
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import NO_CREDENTIALS_CHALLENGE, api_client, bearer

pytestmark = pytest.mark.anyio

SCHEME = "KeycloakClientCredentials"


def build_app() -> FastAPI:
    """One route per form, plus router- and app-level dependencies; no exception handler registered."""
    app = FastAPI(dependencies=[Depends(require_any_scope("svc", "svc:admin"))])

    @app.get("/depends", dependencies=[Depends(require_scope("a"))])
    async def depends() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/security", dependencies=[Security(require_scope("b"))])
    async def security() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/annotated")
    async def annotated(caller: Annotated[ServicePrincipal, Depends(require_client_role("writer"))]) -> dict[str, str]:
        return {"client": caller.client_id}

    @app.get("/bare", dependencies=[require_scope("c")])
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    router = APIRouter(dependencies=[Depends(require_realm_role("auditor"))])

    @router.get("/router")
    async def routed(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def installed(issuer: TestIssuer, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with ``install()`` only: plain ASGITransport, so no lifespan and no middleware."""
    rs = issuer.auth()
    rs.install(app)
    async with rs, api_client(app) as client:
        yield client


def token(issuer: TestIssuer, scope: str = "svc", **claims: Any) -> dict[str, str]:
    return bearer(issuer.token(scope=scope, **claims))


# ------------------------------------------------------------------ every form, with install() alone
@pytest.mark.parametrize(("path", "scope"), [("/depends", "svc a"), ("/security", "svc b"), ("/bare", "svc c")])
async def test_scope_forms_answer_200_403_401(issuer: TestIssuer, path: str, scope: str) -> None:
    async with installed(issuer, build_app()) as client:
        assert (await client.get(path, headers=token(issuer, scope))).json() == {"ok": True}
        refused = await client.get(path, headers=token(issuer))
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"].endswith(f', scope="{scope.split()[1]}"')
        missing = await client.get(path)
        assert (missing.status_code, missing.headers["www-authenticate"]) == (401, NO_CREDENTIALS_CHALLENGE)


async def test_annotated_parameter_receives_the_caller(issuer: TestIssuer) -> None:
    async with installed(issuer, build_app()) as client:
        granted = await client.get("/annotated", headers=token(issuer, client_roles={"machine-b": ["writer"]}))
        assert granted.json() == {"client": "machine-a"}
        refused = await client.get("/annotated", headers=token(issuer))
        assert refused.json()["error_description"] == "the access token lacks the required role"


async def test_router_and_app_level_dependencies(issuer: TestIssuer) -> None:
    async with installed(issuer, build_app()) as client:
        assert (await client.get("/router", headers=token(issuer, realm_roles=("auditor",)))).status_code == 200
        assert (await client.get("/router", headers=token(issuer))).status_code == 403
        other = token(issuer, "other", realm_roles=("auditor",))
        assert (await client.get("/router", headers=other)).status_code == 403  # the app-level any-scope


async def test_security_with_outer_scopes_requires_both(issuer: TestIssuer) -> None:
    app = FastAPI()

    @app.get("/x", dependencies=[Security(require_scope("a"), scopes=["b"])])
    async def x() -> dict[str, bool]:
        return {"ok": True}

    async with installed(issuer, app) as client:
        assert (await client.get("/x", headers=token(issuer, "a b"))).status_code == 200
        assert (await client.get("/x", headers=token(issuer, "a"))).status_code == 403
    assert app.openapi()["paths"]["/x"]["get"]["security"] == [{SCHEME: ["b", "a"]}]


# ------------------------------------------------------------------ lifespan: twice, wrapped
def test_lifespan_runs_twice(issuer: TestIssuer, serve: Any) -> None:
    rs = issuer.auth()
    app = build_app()
    app.router.lifespan_context = rs.lifespan
    for _ in range(2):
        with serve(app) as host:
            assert httpx.get(f"http://{host}/depends", headers=token(issuer, "svc a")).status_code == 200
        issuer.rotate()  # the next run's token needs a key fetch, over an HTTP client open again
    assert rs._client.is_closed


async def test_a_given_http_client_stays_the_callers(issuer: TestIssuer) -> None:
    async with httpx.AsyncClient(transport=issuer.transport) as http_client:
        rs = KeycloakResourceServer(issuer.settings(), http_client=http_client, clock=issuer.clock)
        for _ in range(2):
            async with rs.lifespan(None, strict=True):
                assert rs.ready
        assert not http_client.is_closed


@pytest.mark.parametrize("wrapped", [False, True])
def test_lifespan_without_exception_handler(issuer: TestIssuer, serve: Any, wrapped: bool) -> None:
    rs = issuer.auth()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rs.lifespan(app):  # the lifespan state is dropped
            yield

    app = build_app()
    app.router.lifespan_context = lifespan if wrapped else rs.lifespan
    with serve(app) as host, httpx.Client(base_url=f"http://{host}") as client:
        assert client.get("/depends", headers=token(issuer, "svc a")).status_code == 200
        assert client.get("/depends", headers=token(issuer)).status_code == 403
        assert client.get("/depends").status_code == 401


# ------------------------------------------------------------------ require_active_token() needs introspection
def active_app() -> FastAPI:
    app = FastAPI()

    @app.get("/refund", dependencies=[Depends(require_active_token())])
    async def refund() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_active_token_without_introspection_fails_at_start_up(issuer: TestIssuer) -> None:
    rs = issuer.auth()
    with pytest.raises(RuntimeError, match=r"/refund uses require_active_token.*KC_M2M_INTROSPECTION=per_route"):
        rs.install(active_app())
    with pytest.raises(RuntimeError, match="introspection is off"):
        async with rs.lifespan(active_app()):
            pass


async def test_active_token_route_added_after_install_is_still_refused_per_request(issuer: TestIssuer) -> None:
    app = FastAPI()
    async with installed(issuer, app) as client:
        app.include_router(active_app().router)
        refused = await client.get("/refund", headers=token(issuer))
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "5")


async def test_active_token_with_introspection_starts(issuer: TestIssuer) -> None:
    rs = issuer.auth(introspection="per_route", client_secret="s3")
    async with rs.lifespan(active_app()) as state:
        assert state == {"keycloak_auth": rs}


# ------------------------------------------------------------------ OpenAPI without the lifespan
async def test_openapi_documents_flow_scopes_and_refusals_without_lifespan(issuer: TestIssuer) -> None:
    async with installed(issuer, build_app()) as client:
        document = (await client.get("/openapi.json")).json()
    validate(document)
    flow = document["components"]["securitySchemes"][SCHEME]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{issuer.issuer}/protocol/openid-connect/token"
    assert sorted(flow["scopes"]) == ["a", "b", "c"]
    paths = document["paths"]
    assert paths["/depends"]["get"]["security"] == [{SCHEME: ["a"]}]
    assert paths["/security"]["get"]["security"] == [{SCHEME: ["b"]}]
    responses = paths["/annotated"]["get"]["responses"]
    assert "invalid_token" in responses["401"]["description"]
    assert "WWW-Authenticate" in responses["403"]["headers"]
    assert "roles of this API: writer" in responses["403"]["description"]
    assert "one of the scopes svc svc:admin" in responses["403"]["description"]
    assert "realm roles auditor" in paths["/router"]["get"]["responses"]["403"]["description"]
    assert "scopes a" in paths["/depends"]["get"]["responses"]["403"]["description"]
    schema = responses["401"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"error", "error_description"}


async def test_unprotected_route_documents_no_refusal(issuer: TestIssuer) -> None:
    app = FastAPI()

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/who")
    async def who(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    async with installed(issuer, app):
        paths = app.openapi()["paths"]
    assert set(paths["/open"]["get"]["responses"]) == {"200"}
    assert set(paths["/who"]["get"]["responses"]) == {"200", "401"}  # nothing required beyond a token


# ------------------------------------------------------------------ static types
TYPED = """
from typing import Annotated
from fastapi import APIRouter, Depends, FastAPI, Security
from fastapi_kc_m2m import AuthError, KeycloakResourceServer, ServicePrincipal, auth_error_handler, require_scope

app = FastAPI(dependencies=[Depends(require_scope("a"))])
app.add_exception_handler(AuthError, auth_error_handler)
router = APIRouter(dependencies=[Security(require_scope("a")), require_scope("b")])
KeycloakResourceServer().install(app)

@app.get("/x")
async def x(caller: Annotated[ServicePrincipal, Depends(require_scope("a"))]) -> str:
    return caller.client_id
"""
MISUSED = """
from fastapi_kc_m2m import ServicePrincipal, require_scope

async def y(caller: ServicePrincipal = require_scope("a")) -> None: ...
"""


def test_public_forms_type_check_and_a_misuse_does_not(tmp_path: Path) -> None:
    (tmp_path / "typed.py").write_text(TYPED)
    (tmp_path / "misused.py").write_text(MISUSED)
    cache = ["--cache-dir", str(Path(__file__).parents[2] / ".mypy_cache")]
    out, _, status = mypy_api.run(["--strict", *cache, str(tmp_path / "typed.py")])
    assert status == 0, out
    out, _, status = mypy_api.run(["--strict", *cache, str(tmp_path / "misused.py")])
    assert status == 1
    assert 'Incompatible default for parameter "caller"' in out


async def test_a_middleware_only_app_documents_the_flow_without_install_or_lifespan(issuer: TestIssuer) -> None:
    app = build_app()
    rs = issuer.auth()
    app.add_middleware(KeycloakAuthMiddleware, auth=rs, exclude_paths=["/openapi.json"])
    async with rs, api_client(app) as client:
        first = (await client.get("/openapi.json")).json()
        second = (await client.get("/openapi.json")).json()
    flow = first["components"]["securitySchemes"][SCHEME]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{issuer.issuer}/protocol/openid-connect/token"
    assert sorted(flow["scopes"]) == ["a", "b", "c"]
    assert first == second  # documented once, however often asked
