"""WebSocket handshakes against a real uvicorn on loopback: refused before accepting, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fastapi_kc_m2m import AuthError, KeycloakAuth, KeycloakAuthMiddleware, Principal, auth_error_handler, require_scope
from fastapi_kc_m2m.errors import InvalidToken
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import NO_CREDENTIALS_CHALLENGE

pytestmark = pytest.mark.anyio


def build_app(auth: KeycloakAuth, *, middleware: bool) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)
    if middleware:
        app.add_middleware(KeycloakAuthMiddleware, auth=auth)
    else:
        app.add_exception_handler(AuthError, auth_error_handler)

    @app.websocket("/ws")
    async def echo(websocket: WebSocket, caller: Principal) -> None:
        await websocket.accept()
        await websocket.send_text(caller.client_id)
        await websocket.close()

    @app.websocket("/ws-late")
    async def late(websocket: WebSocket, caller: Principal) -> None:
        await websocket.accept()
        raise InvalidToken()  # e.g. the token expired during the session

    @app.websocket("/ws-admin", dependencies=[require_scope("orders:admin")])
    async def admin(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("admin")
        await websocket.close()

    return app


@pytest.fixture(params=["middleware", "dependencies-only"])
def url(request: pytest.FixtureRequest, issuer: TestIssuer, serve: Any) -> Iterator[str]:
    with serve(build_app(issuer.auth(), middleware=request.param == "middleware")) as host:
        yield f"ws://{host}"


async def refusal(uri: str, headers: dict[str, str]) -> Any:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(uri, additional_headers=headers):
            pass
    return refused.value.response


async def test_valid_token_is_accepted(url: str, issuer: TestIssuer) -> None:
    async with connect(f"{url}/ws", additional_headers={"Authorization": f"Bearer {issuer.token()}"}) as ws:
        assert await ws.recv() == "machine-a"


async def test_missing_token_is_refused_with_401_challenge(url: str) -> None:
    response = await refusal(f"{url}/ws", {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == NO_CREDENTIALS_CHALLENGE


async def test_invalid_token_is_refused(url: str, issuer: TestIssuer) -> None:
    response = await refusal(f"{url}/ws", {"Authorization": f"Bearer {issuer.bad_tokens()['expired']}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_malformed_header_is_400(url: str) -> None:
    response = await refusal(f"{url}/ws", {"Authorization": "Bearer a b"})
    assert response.status_code == 400


async def test_token_in_header_and_query_is_400(url: str, issuer: TestIssuer) -> None:
    token = issuer.token()
    response = await refusal(f"{url}/ws?access_token={token}", {"Authorization": f"Bearer {token}"})
    assert response.status_code == 400


async def test_token_only_in_query_is_as_no_token(url: str, issuer: TestIssuer) -> None:
    response = await refusal(f"{url}/ws?access_token={issuer.token()}", {})
    assert response.status_code == 401


async def test_missing_scope_is_403_before_accepting(url: str, issuer: TestIssuer) -> None:
    response = await refusal(f"{url}/ws-admin", {"Authorization": f"Bearer {issuer.token(scope='orders:read')}"})
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"].endswith('scope="orders:admin"')
    async with connect(
        f"{url}/ws-admin", additional_headers={"Authorization": f"Bearer {issuer.token(scope='orders:admin')}"}
    ) as ws:
        assert await ws.recv() == "admin"


@pytest.mark.parametrize("value", ["Bearer", "Basic x", "Bearer a,b", "bearer a.b.c", "Bearer " + "A" * 4000])
async def test_junk_never_gives_500(url: str, value: str) -> None:
    response = await refusal(f"{url}/ws", {"Authorization": value})
    assert response.status_code in (400, 401)


async def test_close_1008_where_the_server_cannot_send_a_denial_response(auth: KeycloakAuth) -> None:
    app = build_app(auth, middleware=True)
    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "ws",
        "server": ("api.test", 80),
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "bearer token required"}]


async def test_a_refusal_after_accepting_closes_with_1008(issuer: TestIssuer, serve: Any) -> None:
    with serve(build_app(issuer.auth(), middleware=True)) as host:
        async with connect(
            f"ws://{host}/ws-late", additional_headers={"Authorization": f"Bearer {issuer.token()}"}
        ) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "the access token is invalid")
