"""KeycloakAuthMiddleware through httpx.ASGITransport: every RFC 6750 response row, checklist 1-7."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.authentication import requires
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import StreamingResponse

from fastapi_kc_m2m import KeycloakAuth, KeycloakAuthMiddleware, Principal, ServicePrincipal, ServiceUser, require_scope
from fastapi_kc_m2m.asgi import middleware
from fastapi_kc_m2m.asgi.responses import refusal
from fastapi_kc_m2m.errors import InvalidToken
from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import NO_CREDENTIALS_CHALLENGE, api_client, bearer

pytestmark = pytest.mark.anyio

REALM = 'realm="machine-b"'


def build_app(auth: KeycloakAuth, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth, **options)

    @app.api_route("/orders", methods=["GET", "POST", "OPTIONS", "DELETE"])
    async def orders(request: Request) -> dict[str, Any]:
        user = request.user
        return {"client": user.display_name if user.is_authenticated else None, "scopes": sorted(request.auth.scopes)}

    @app.get("/principal")
    async def principal(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    @app.get("/admin", dependencies=[require_scope("orders:admin")])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/starlette-requires")
    @requires("orders:read")
    async def starlette_requires(request: Request) -> dict[str, bool]:
        return {"ok": True}

    for path in ("/health", "/health/deep", "/public", "/public/page", "/public-admin", "/admin/..", "/"):
        app.add_api_route(path, orders, methods=["GET"], name=path)
    return app


@pytest.fixture
async def client(auth: KeycloakAuth) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(auth, exclude_paths=["/health"], exclude_prefixes=["/public"])
    async with api_client(app) as c:
        yield c


def assert_refused(response: httpx.Response, status: int, error: str | None) -> None:
    assert response.status_code == status
    body = response.json()
    assert body.get("error") == error
    assert set(body) <= {"error", "error_description"}
    challenge = response.headers["www-authenticate"]
    if error is None:
        assert challenge == NO_CREDENTIALS_CHALLENGE
    else:
        assert challenge.startswith(f'Bearer {REALM}, error="{error}", error_description="')
        assert f'error_description="{body["error_description"]}"' in challenge


# ------------------------------------------------------------------ table rows and checklist 1-7
async def test_valid_token_passes_with_user_and_scopes(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    response = await client.get("/orders", headers=bearer(issuer.token(scope="orders:read orders:write")))
    assert response.status_code == 200
    assert response.json() == {"client": "machine-a", "scopes": ["orders:read", "orders:write"]}


async def test_no_header_is_401_without_error(client: httpx.AsyncClient) -> None:  # 1
    response = await client.get("/orders")
    assert_refused(response, 401, None)
    assert response.json() == {}  # RFC 6750 §3.1: no error information without credentials


@pytest.mark.parametrize("value", ["Basic bWFjaGluZTpzZWNyZXQ=", "Digest x", "Bearerx abc", "Token abc"])
async def test_other_scheme_is_as_no_token(client: httpx.AsyncClient, value: str) -> None:  # 2
    assert_refused(await client.get("/orders", headers={"Authorization": value}), 401, None)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, issuer: TestIssuer, scheme: str) -> None:  # 3
    response = await client.get("/orders", headers={"Authorization": f"{scheme} {issuer.token()}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        'Bearer "abc"',
        "Bearer abc,def",
        "Bearer, abc",
        "Bearer\tabc",
        "Bearer =abc",
        "Bearer a=b",
    ],
)
async def test_malformed_bearer_is_400(client: httpx.AsyncClient, value: str) -> None:  # 4
    assert_refused(await client.get("/orders", headers={"Authorization": value}), 400, "invalid_request")


async def test_two_authorization_headers_are_400(client: httpx.AsyncClient, issuer: TestIssuer) -> None:  # 5
    token = issuer.token()
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    assert_refused(await client.get("/orders", headers=headers), 400, "invalid_request")


async def test_token_in_header_and_query_is_400(client: httpx.AsyncClient, issuer: TestIssuer) -> None:  # 6
    token = issuer.token()
    response = await client.get("/orders", params={"access_token": token}, headers=bearer(token))
    assert_refused(response, 400, "invalid_request")


async def test_token_in_header_and_form_body_is_400(client: httpx.AsyncClient, issuer: TestIssuer) -> None:  # 6
    token = issuer.token()
    response = await client.post("/orders", data={"a": "1", "access_token": token}, headers=bearer(token))
    assert_refused(response, 400, "invalid_request")


async def test_form_body_without_token_reaches_the_app(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, str]:
        return {"body": (await request.body()).decode()}

    async with api_client(app) as c:
        response = await c.post("/echo", data={"a": "1", "b": "x" * 100}, headers=bearer(issuer.token()))
    assert response.json() == {"body": "a=1&b=" + "x" * 100}


async def test_token_only_in_query_or_body_is_as_no_token(client: httpx.AsyncClient, issuer: TestIssuer) -> None:  # 6
    token = issuer.token()
    assert_refused(await client.get("/orders", params={"access_token": token}), 401, None)
    assert_refused(await client.post("/orders", data={"access_token": token}), 401, None)


async def test_oversized_token_is_401_without_any_fetch(client: httpx.AsyncClient, issuer: TestIssuer) -> None:  # 7
    response = await client.get("/orders", headers=bearer("a" * 20000))
    assert_refused(response, 401, "invalid_token")
    assert not issuer.requests


@pytest.mark.parametrize("reason", list(TestIssuer(audience="machine-b").bad_tokens()))
async def test_every_bad_token_is_401_invalid_token(client: httpx.AsyncClient, issuer: TestIssuer, reason: str) -> None:
    token = issuer.bad_tokens()[reason]
    response = await client.get("/orders", headers=bearer(token))
    assert_refused(response, 401, "invalid_token")
    assert token not in response.text
    assert token.split(".")[1] not in response.text


async def test_missing_scope_is_403_naming_it(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    response = await client.get("/admin", headers=bearer(issuer.token(scope="orders:read")))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert response.headers["www-authenticate"] == (
        f'Bearer {REALM}, error="insufficient_scope", '
        'error_description="the access token lacks the required scope", scope="orders:admin"'
    )


async def test_unreachable_keys_are_503_with_retry_after(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    issuer.fail("jwks", "status")
    response = await client.get("/orders", headers=bearer(issuer.token()))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "www-authenticate" not in response.headers
    assert response.json() == {"error_description": "the identity provider is unavailable"}


@pytest.mark.parametrize(
    "value",
    ["Bearer \x7f", "Bearer é", "bearer", ",", "", " ", "Bearer ....", "Bearer a.b.c", "Bearer " + "A" * 16000],
)
async def test_junk_never_gives_500(client: httpx.AsyncClient, value: str) -> None:
    headers = [("Authorization", value.encode("utf-8"))]
    response = await client.get("/orders", headers=headers)
    assert response.status_code in (400, 401)


# ------------------------------------------------------------------ Starlette integration
async def test_starlette_requires_sees_the_scopes(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert (
        await client.get("/starlette-requires", headers=bearer(issuer.token(scope="orders:read")))
    ).status_code == 200
    assert (await client.get("/starlette-requires", headers=bearer(issuer.token(scope="other")))).status_code == 403


async def test_dependency_reuses_the_middleware_principal(
    client: httpx.AsyncClient, issuer: TestIssuer, auth: KeycloakAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    authenticate = auth.authenticate

    async def counting(context: RequestContext, **options: Any) -> Any:
        calls.append(context.token)
        return await authenticate(context, **options)

    monkeypatch.setattr(auth, "authenticate", counting)
    response = await client.get("/principal", headers=bearer(issuer.token()))
    assert response.json() == {"client": "machine-a"}
    assert len(calls) == 1


def test_service_user_wraps_the_principal(issuer: TestIssuer) -> None:
    principal = ServicePrincipal.from_claims(issuer.claims())
    user = ServiceUser(principal)
    assert (user.is_authenticated, user.identity, user.principal) == (True, "machine-a", principal)


# ------------------------------------------------------------------ exclusions
@pytest.mark.parametrize("path", ["/health", "/public", "/public/page"])
async def test_excluded_paths_pass_without_token(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 200


@pytest.mark.parametrize("path", ["/health/deep", "/public-admin", "/orders"])
async def test_exclusions_stop_at_segment_boundaries(client: httpx.AsyncClient, path: str) -> None:
    assert_refused(await client.get(path), 401, None)


async def test_dot_segments_never_climb_out_of_a_freed_prefix(auth: KeycloakAuth) -> None:
    app = build_app(auth, exclude_prefixes=["/public"])
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/public/../admin",
        "raw_path": b"/public/../admin",
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "http",
        "server": ("api.test", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 401


async def test_method_exclusion(auth: KeycloakAuth) -> None:
    app = build_app(auth, exclude_methods=["delete"])
    async with api_client(app) as c:
        assert (await c.delete("/orders")).status_code == 200
        assert (await c.get("/orders")).status_code == 401


PREFLIGHT = {"Origin": "http://app.test", "Access-Control-Request-Method": "GET"}


@pytest.mark.parametrize("headers", [PREFLIGHT, {"Access-Control-Request-Method": "GET"}, {}])
async def test_options_never_reaches_a_protected_route_without_a_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.options("/orders", headers=headers)
    assert_refused(response, 401, None)
    assert "client" not in response.text


async def test_options_never_reaches_a_mounted_app_without_a_token(auth: KeycloakAuth) -> None:
    parent = FastAPI()
    parent.mount("/v1", build_app(auth))
    async with api_client(parent) as c:
        response = await c.options("/v1/orders", headers=PREFLIGHT)
    assert_refused(response, 401, None)


def cors_app(auth: KeycloakAuth) -> FastAPI:
    """The recommended set-up: CORSMiddleware added after, so outside, the authentication."""
    app = build_app(auth)
    app.add_middleware(CORSMiddleware, allow_origins=["http://app.test"], allow_headers=["authorization"])
    return app


async def test_cors_middleware_outside_answers_preflights(auth: KeycloakAuth, issuer: TestIssuer) -> None:
    async with api_client(cors_app(auth)) as c:
        preflight = await c.options("/orders", headers={**PREFLIGHT, "Access-Control-Request-Headers": "authorization"})
        refused = await c.get("/orders", headers={"Origin": "http://app.test"})
        served = await c.get("/orders", headers={"Origin": "http://app.test", **bearer(issuer.token())})
    assert (preflight.status_code, preflight.text) == (200, "OK")
    assert preflight.headers["access-control-allow-origin"] == "http://app.test"
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "http://app.test"  # the caller can read the refusal
    assert served.json()["client"] == "machine-a"


async def test_cors_middleware_outside_lets_no_other_options_through(auth: KeycloakAuth) -> None:
    async with api_client(cors_app(auth)) as c:
        response = await c.options("/orders", headers={"Access-Control-Request-Method": "GET"})  # no Origin
    assert_refused(response, 401, None)


async def test_the_preflight_exemption_is_gone(auth: KeycloakAuth) -> None:
    with pytest.raises(TypeError, match="allow_preflight"):
        KeycloakAuthMiddleware(build_app(auth), auth, allow_preflight=True)  # type: ignore[call-arg]


# ------------------------------------------------------------------ anonymous mode
async def test_anonymous_mode(auth: KeycloakAuth, issuer: TestIssuer) -> None:
    app = build_app(auth, allow_anonymous=True)
    async with api_client(app) as c:
        assert (await c.get("/orders")).json() == {"client": None, "scopes": []}
        assert_refused(await c.get("/principal"), 401, None)
        assert_refused(await c.get("/orders", headers=bearer(issuer.bad_tokens()["expired"])), 401, "invalid_token")
        assert (await c.get("/principal", headers=bearer(issuer.token()))).json() == {"client": "machine-a"}


async def test_lifespan_scope_passes_through(auth: KeycloakAuth) -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await KeycloakAuthMiddleware(inner, auth)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_dependency_on_an_excluded_route_verifies_by_itself(auth: KeycloakAuth, issuer: TestIssuer) -> None:
    app = build_app(auth, exclude_paths=["/principal"])
    async with api_client(app) as c:
        assert (await c.get("/principal", headers=bearer(issuer.token()))).json() == {"client": "machine-a"}
        assert_refused(await c.get("/principal"), 401, None)


def test_challenge_values_are_never_escaped_so_quotes_are_refused() -> None:
    with pytest.raises(ValueError, match="WWW-Authenticate"):
        refusal(InvalidToken(), 'api"x')


async def test_refusals_are_not_cached(client: httpx.AsyncClient) -> None:
    assert (await client.get("/orders")).headers["cache-control"] == "no-store"


def test_each_request_has_one_immutable_context() -> None:
    with pytest.raises(AttributeError):
        RequestContext("t").token = "u"  # type: ignore[misc]


async def test_the_handler_sees_the_context_that_was_verified(
    auth: KeycloakAuth, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[RequestContext] = []
    authenticate = auth.authenticate

    async def recording(context: RequestContext, **options: Any) -> Any:
        verified.append(context)
        return await authenticate(context, **options)

    seen: list[object] = []
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.post("/context")
    async def context(request: Request, caller: Principal) -> None:
        seen.append(request.user.context)

    monkeypatch.setattr(auth, "authenticate", recording)
    async with api_client(app) as c:
        await c.post("/context", data={"a": "1"}, headers=bearer(issuer.token()))
    assert len(verified) == 1
    assert seen == verified
    assert seen[0] is verified[0]


# ------------------------------------------------------------------ control characters after the scheme
@pytest.mark.parametrize("value", [b"Bearer\r\n", b"Bearer\x00", b"Bearer\x00abc", b"bearer\x01", b"Bearer\x7f"])
async def test_control_characters_after_the_scheme_are_400(client: httpx.AsyncClient, value: bytes) -> None:
    assert_refused(await client.get("/orders", headers=[(b"authorization", value)]), 400, "invalid_request")


# ------------------------------------------------------------------ form-body tokens
@pytest.mark.parametrize(
    "content_type",
    [
        "Application/X-WWW-Form-URLencoded",
        "APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8",
        " application/x-www-form-urlencoded ;q",
    ],
)
async def test_form_media_type_is_case_insensitive(
    client: httpx.AsyncClient, issuer: TestIssuer, content_type: str
) -> None:
    token = issuer.token()
    headers = {**bearer(token), "Content-Type": content_type}
    response = await client.post("/orders", content=f"a=1&access_token={token}", headers=headers)
    assert_refused(response, 400, "invalid_request")


async def test_other_media_types_are_not_scanned(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    token = issuer.token()
    headers = {**bearer(token), "Content-Type": "application/x-www-form-urlencoded-not"}
    assert (await client.post("/orders", content=f"access_token={token}", headers=headers)).status_code == 200


async def test_an_invalid_token_is_refused_before_the_body_is_read(
    client: httpx.AsyncClient, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned: list[bytes] = []
    monkeypatch.setattr(middleware, "has_token_parameter", lambda body: scanned.append(body) or False)
    token = issuer.bad_tokens()["expired"]
    response = await client.post("/orders", data={"access_token": token, "a": "1"}, headers=bearer(token))
    assert_refused(response, 401, "invalid_token")
    assert scanned == []
    await client.post("/orders", data={"a": "1"}, headers=bearer(issuer.token()))
    assert scanned == [b"a=1"]  # a valid token's form body is scanned


# ------------------------------------------------------------------ refusals after the response started
async def test_a_refusal_after_the_response_started_is_not_a_second_response(auth: KeycloakAuth) -> None:
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth, exclude_paths=["/stream"])

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise InvalidToken()

        return StreamingResponse(chunks())

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/stream", "raw_path": b"/stream", "query_string": b""}
    with pytest.raises(InvalidToken):  # re-raised for the server, as Starlette's handlers do
        await app({**scope, "headers": [], "root_path": "", "asgi": {"spec_version": "2.4"}}, receive, send)
    assert [message["type"] for message in sent].count("http.response.start") == 1


# ------------------------------------------------------------------ exclusions below a mount or root_path
def excluding_app(auth: KeycloakAuth) -> FastAPI:
    """Health, public pages and the API docs freed; ``/orders`` protected."""
    app = FastAPI()
    options = {"exclude_paths": ["/health", "/openapi.json", "/docs"], "exclude_prefixes": ["/public"]}
    app.add_middleware(KeycloakAuthMiddleware, auth=auth, **options)
    for path in ("/health", "/health/deep", "/public/page", "/orders"):
        app.add_api_route(path, lambda: {"ok": True}, methods=["GET"], name=path)
    return app


async def test_exclusions_match_below_a_mount(auth: KeycloakAuth) -> None:
    parent = FastAPI()
    parent.mount("/v1", excluding_app(auth))
    async with api_client(parent) as c:
        for path in ("/v1/health", "/v1/public/page", "/v1/openapi.json", "/v1/docs"):
            assert (await c.get(path)).status_code == 200, path
        for path in ("/v1/orders", "/v1/health/deep"):
            assert_refused(await c.get(path), 401, None)


async def test_exclusions_match_below_a_server_root_path(auth: KeycloakAuth) -> None:
    async with api_client(excluding_app(auth), root_path="/api") as c:
        for path in ("/api/health", "/api/public/page", "/api/openapi.json", "/api/docs"):
            assert (await c.get(path)).status_code == 200, path
        for path in ("/api/orders", "/api/health/deep"):
            assert_refused(await c.get(path), 401, None)
