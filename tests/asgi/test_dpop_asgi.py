"""DPoP at the ASGI boundary (RFC 9449 §7.1): extraction into the one RequestContext, htu building,
challenges and DPoP-Nonce. The verifier's proof checks are tested in tests/server; here its
``authenticate`` is replaced to capture the context or raise a refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from fastapi_kc_m2m import AuthError, KeycloakAuth, KeycloakAuthMiddleware, Principal
from fastapi_kc_m2m.asgi.credentials import request_context
from fastapi_kc_m2m.errors import InvalidDPoPProof, InvalidToken, UseDPoPNonce
from fastapi_kc_m2m.server.context import RequestContext, Verification
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import DPOP_ALGS as ALGS
from tests.helpers import NO_CREDENTIALS_CHALLENGE as BOTH
from tests.helpers import api_client, bearer

pytestmark = pytest.mark.anyio

PROOF = "eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJqdGkiOiJ4In0.c2ln"


def dpop(token: str, proof: str | None = PROOF) -> dict[str, str]:
    """``Authorization: DPoP <token>`` (RFC 9449 §7.1) and, unless None, the ``DPoP`` proof header."""
    return {"Authorization": f"DPoP {token}", **({"DPoP": proof} if proof is not None else {})}


def build_app(auth: KeycloakAuth, *, middleware: bool = True) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(KeycloakAuthMiddleware, auth=auth)
    else:
        auth.install(app)

    @app.api_route("/orders", methods=["GET", "POST"])
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    @app.websocket("/ws")
    async def echo(websocket: WebSocket, caller: Principal) -> None:
        await websocket.accept()
        await websocket.send_text(caller.client_id)
        await websocket.close()

    @app.get("/a b/c")
    async def spaced(request: Request) -> dict[str, str]:
        return {"client": request.user.display_name}

    return app


class Capture:
    """``auth.authenticate`` replaced: remembers each context, then verifies its token as Bearer or
    raises ``refusal`` (the verifier's DPoP checks belong to tests/server)."""

    def __init__(self, auth: KeycloakAuth, monkeypatch: pytest.MonkeyPatch) -> None:
        self.contexts: list[RequestContext] = []
        self.refusal: AuthError | None = None
        self._verify = auth.authenticate
        monkeypatch.setattr(auth, "authenticate", self)

    async def __call__(self, context: RequestContext, **options: Any) -> Verification:
        self.contexts.append(context)
        if self.refusal is not None:
            raise self.refusal
        return await self._verify(context._replace(scheme="Bearer", proof=None), **options)


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch, issuer: TestIssuer) -> Any:
    def make(**settings: Any) -> tuple[Capture, Callable[..., httpx.AsyncClient]]:
        auth = issuer.auth(**settings)
        capture = Capture(auth, monkeypatch)

        def client(*, middleware: bool = True, **options: Any) -> httpx.AsyncClient:
            return api_client(build_app(auth, middleware=middleware), **options)

        return capture, client

    return make


@pytest.fixture
async def captured(make_client: Any) -> AsyncIterator[tuple[Capture, httpx.AsyncClient]]:
    capture, client = make_client()
    async with client() as c:
        yield capture, c


# ------------------------------------------------------------------ extraction (RFC 9449 §7.1)
async def test_dpop_request_builds_one_context(captured: tuple[Capture, httpx.AsyncClient], issuer: TestIssuer) -> None:
    capture, c = captured
    token = issuer.token()
    response = await c.post("/orders?page=2", headers=dpop(token))
    assert response.json() == {"client": "machine-a"}
    assert capture.contexts == [RequestContext(token, "DPoP", "POST", "http://api.test/orders", PROOF, path="/orders")]


@pytest.mark.parametrize("scheme", ["dpop", "DPOP", "dPoP"])
async def test_dpop_scheme_is_case_insensitive(
    captured: tuple[Capture, httpx.AsyncClient], issuer: TestIssuer, scheme: str
) -> None:
    capture, c = captured
    response = await c.get("/orders", headers={"Authorization": f"{scheme}  {issuer.token()}", "DPoP": PROOF})
    assert response.status_code == 200
    assert capture.contexts[0].scheme == "DPoP"


async def test_bearer_with_a_proof_header_is_not_a_dpop_request(
    captured: tuple[Capture, httpx.AsyncClient], issuer: TestIssuer
) -> None:
    capture, c = captured
    token = issuer.token()
    assert (await c.get("/orders", headers={**bearer(token), "DPoP": PROOF})).status_code == 200
    assert capture.contexts == [RequestContext(token, "Bearer", "GET", path="/orders")]


@pytest.mark.parametrize(
    ("base_url", "root_path", "path", "htu"),
    [
        ("http://api.test:8443", "", "/orders", "http://api.test:8443/orders"),
        ("https://api.test", "", "/orders", "https://api.test/orders"),
        ("http://api.test", "/svc", "/svc/orders", "http://api.test/svc/orders"),
        ("http://api.test", "", "/a%20b/c", "http://api.test/a%20b/c"),
    ],
)
async def test_htu_is_scheme_host_root_path_and_path(
    make_client: Any, issuer: TestIssuer, base_url: str, root_path: str, path: str, htu: str
) -> None:
    capture, client = make_client()
    async with client(base_url=base_url, root_path=root_path) as c:
        assert (await c.get(path, headers=dpop(issuer.token()))).status_code == 200
    assert capture.contexts[0].public_url == htu


@pytest.mark.parametrize("public_url", ["https://api.example.com/base", "https://api.example.com/base/"])
async def test_htu_starts_with_the_public_url_when_set(make_client: Any, issuer: TestIssuer, public_url: str) -> None:
    capture, client = make_client(public_url=public_url)
    async with client(root_path="/svc") as c:
        assert (await c.get("/svc/orders?x=1", headers=dpop(issuer.token()))).status_code == 200
    assert capture.contexts[0].public_url == "https://api.example.com/base/orders"


async def test_dependencies_build_the_same_context(make_client: Any, issuer: TestIssuer) -> None:
    capture, client = make_client()
    token = issuer.token()
    async with client(middleware=False) as c:
        assert (await c.get("/orders", headers=dpop(token))).status_code == 200
    assert capture.contexts == [RequestContext(token, "DPoP", "GET", "http://api.test/orders", PROOF, path="/orders")]


@pytest.mark.parametrize(("scheme", "htu"), [("ws", "http://api.test/svc/ws"), ("wss", "https://api.test/svc/ws")])
def test_a_websocket_handshake_is_an_http_get(issuer: TestIssuer, scheme: str, htu: str) -> None:
    headers = [(b"host", b"api.test"), (b"authorization", b"DPoP abc"), (b"dpop", PROOF.encode())]
    scope = {"type": "websocket", "scheme": scheme, "path": "/svc/ws", "root_path": "/svc", "headers": headers}
    context = request_context({**scope, "query_string": b""}, issuer.settings())
    assert context == RequestContext("abc", "DPoP", "GET", htu, PROOF, path="/svc/ws")


@pytest.mark.parametrize("middleware", [True, False])
async def test_a_websocket_handshake_through_uvicorn(
    monkeypatch: pytest.MonkeyPatch, serve: Any, issuer: TestIssuer, middleware: bool
) -> None:
    auth = issuer.auth()
    capture = Capture(auth, monkeypatch)
    token = issuer.token()
    with serve(build_app(auth, middleware=middleware)) as host:
        async with connect(f"ws://{host}/ws", additional_headers=dpop(token)) as ws:
            assert await ws.recv() == "machine-a"
        capture.refusal = UseDPoPNonce("n-2")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{host}/ws", additional_headers=dpop(token)):
                pass
    assert capture.contexts[0] == RequestContext(token, "DPoP", "GET", f"http://{host}/ws", PROOF, path="/ws")
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["DPoP-Nonce"] == "n-2"
    assert refused.value.response.headers["WWW-Authenticate"].startswith('DPoP error="use_dpop_nonce"')


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "DPoP abc"), ("DPoP", PROOF), ("DPoP", PROOF)],
        [("Authorization", "DPoP abc"), ("DPoP", f"{PROOF}, {PROOF}")],
        [("Authorization", "DPoP abc"), ("Authorization", "Bearer abc"), ("DPoP", PROOF)],
        [("Authorization", "DPoP"), ("DPoP", PROOF)],
        [("Authorization", "DPoP a b"), ("DPoP", PROOF)],
        [("Authorization", "DPoP,abc"), ("DPoP", PROOF)],
        [("Authorization", "DPoP abc"), ("DPoP", PROOF), ("Host", "api.test/evil")],
    ],
)
async def test_ambiguous_or_malformed_dpop_requests_are_400(
    captured: tuple[Capture, httpx.AsyncClient], headers: list[tuple[str, str]]
) -> None:
    capture, c = captured
    response = await c.get("/orders", headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert capture.contexts == []


async def test_a_token_in_the_query_beside_a_dpop_token_is_400(captured: tuple[Capture, httpx.AsyncClient]) -> None:
    _, c = captured
    assert (await c.get("/orders?access_token=abc", headers=dpop("abc"))).status_code == 400


async def test_the_dpop_scheme_without_a_proof_is_refused(captured: tuple[Capture, httpx.AsyncClient]) -> None:
    capture, c = captured
    response = await c.get("/orders", headers=dpop("abc", proof=None))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_dpop_proof")
    assert response.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
    assert capture.contexts == []


async def test_with_dpop_off_the_dpop_scheme_is_another_scheme(make_client: Any) -> None:
    capture, client = make_client(dpop="off")
    async with client() as c:
        response = await c.get("/orders", headers=dpop("abc"))
    assert (response.status_code, response.json()) == (401, {})
    assert response.headers["www-authenticate"] == 'Bearer realm="machine-b"'
    assert capture.contexts == []


# ------------------------------------------------------------------ challenges (RFC 9449 §7.1, RFC 6750 §3)
@pytest.mark.parametrize(
    ("mode", "challenge"), [("allowed", BOTH), ("required", f"DPoP {ALGS}"), ("off", 'Bearer realm="machine-b"')]
)
@pytest.mark.parametrize("middleware", [True, False])
async def test_no_credentials_are_offered_the_enabled_schemes(
    make_client: Any, mode: str, challenge: str, middleware: bool
) -> None:
    _, client = make_client(dpop=mode)
    async with client(middleware=middleware) as c:
        response = await c.get("/orders")
    assert (response.status_code, response.json()) == (401, {})
    assert response.headers.get_list("www-authenticate") == [challenge]  # one header value, both challenges


async def test_algs_follow_the_configured_algorithms(make_client: Any) -> None:
    _, client = make_client(dpop_algorithms="ES256,PS256")
    async with client() as c:
        response = await c.get("/orders")
    assert response.headers["www-authenticate"] == 'Bearer realm="machine-b", DPoP algs="ES256 PS256"'


@pytest.mark.parametrize("middleware", [True, False])
async def test_an_invalid_proof_gets_the_dpop_challenge(make_client: Any, middleware: bool) -> None:
    capture, client = make_client()
    capture.refusal = InvalidDPoPProof()
    async with client(middleware=middleware) as c:
        response = await c.get("/orders", headers=dpop("abc"))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_dpop_proof", "error_description": "the DPoP proof is invalid"}
    expected = f'DPoP error="invalid_dpop_proof", error_description="the DPoP proof is invalid", {ALGS}'
    assert response.headers["www-authenticate"] == expected
    assert "dpop-nonce" not in response.headers


@pytest.mark.parametrize("middleware", [True, False])
async def test_use_dpop_nonce_carries_the_nonce(make_client: Any, middleware: bool) -> None:
    capture, client = make_client()
    capture.refusal = UseDPoPNonce("nonce-1.abc_XYZ")
    async with client(middleware=middleware) as c:
        response = await c.get("/orders", headers=dpop("abc"))
    assert response.status_code == 401
    assert response.json() == {"error": "use_dpop_nonce", "error_description": "a DPoP nonce is required"}
    expected = f'DPoP error="use_dpop_nonce", error_description="a DPoP nonce is required", {ALGS}'
    assert response.headers["www-authenticate"] == expected
    assert response.headers["dpop-nonce"] == "nonce-1.abc_XYZ"


@pytest.mark.parametrize(
    ("mode", "headers", "scheme"),
    [
        ("allowed", dpop("abc"), "DPoP"),
        ("allowed", bearer("abc"), "Bearer"),
        ("required", bearer("abc"), "DPoP"),
        ("off", bearer("abc"), "Bearer"),
    ],
)
async def test_a_refused_token_is_challenged_in_the_scheme_it_used(
    make_client: Any, mode: str, headers: dict[str, str], scheme: str
) -> None:
    capture, client = make_client(dpop=mode)
    capture.refusal = InvalidToken("token expired")
    async with client() as c:
        response = await c.get("/orders", headers=headers)
    challenge = response.headers["www-authenticate"]
    realm = 'realm="machine-b", ' if scheme == "Bearer" else ""
    assert challenge.startswith(f'{scheme} {realm}error="invalid_token", error_description="token expired"')
    assert challenge.endswith(ALGS) == (scheme == "DPoP")


async def test_a_malformed_dpop_request_is_challenged_with_dpop(captured: tuple[Capture, httpx.AsyncClient]) -> None:
    _, c = captured
    response = await c.get("/orders", headers=[("Authorization", "DPoP abc"), ("DPoP", "a"), ("DPoP", "b")])
    assert response.headers["www-authenticate"].startswith('DPoP error="invalid_request"')


# ------------------------------------------------------------------ CORS
async def test_cors_preflight_allowing_dpop_passes_and_refusals_expose_the_nonce(
    monkeypatch: pytest.MonkeyPatch, issuer: TestIssuer
) -> None:
    auth = issuer.auth()
    app = build_app(auth)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["http://app.test"],
        allow_headers=["authorization", "dpop"],
        expose_headers=["WWW-Authenticate", "DPoP-Nonce"],
    )
    capture = Capture(auth, monkeypatch)
    capture.refusal = UseDPoPNonce("n-1")
    origin = {"Origin": "http://app.test"}
    async with api_client(app) as c:
        asked = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization, dpop"}
        preflight = await c.options("/orders", headers={**origin, **asked})
        refused = await c.get("/orders", headers={**origin, **dpop("abc")})
    assert (preflight.status_code, preflight.text) == (200, "OK")
    assert "dpop" in preflight.headers["access-control-allow-headers"].lower()
    assert refused.headers["dpop-nonce"] == "n-1"
    assert refused.headers["access-control-allow-origin"] == "http://app.test"
    assert refused.headers["access-control-expose-headers"] == "WWW-Authenticate, DPoP-Nonce"
