"""What several test modules need: request headers, an in-process client for an app, a gate that
holds an identity provider's answers, and polling for background work."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
from starlette.types import ASGIApp

API_URL = "http://api.test"
#: ``algs`` of the DPoP challenge with the default KC_M2M_DPOP_ALGORITHMS (RFC 9449 §7.1).
DPOP_ALGS = 'algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512"'
#: The challenges a request without credentials gets by default (KC_M2M_DPOP=allowed): both schemes.
NO_CREDENTIALS_CHALLENGE = f'Bearer realm="machine-b", DPoP {DPOP_ALGS}'


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header presenting ``token`` (RFC 6750 §2.1)."""
    return {"Authorization": f"Bearer {token}"}


def api_client(app: ASGIApp, base_url: str = API_URL, root_path: str = "") -> httpx.AsyncClient:
    """An httpx client calling ``app`` in-process (no lifespan runs: see the ``lifespan_client`` fixture);
    a ``root_path`` is set in the scope as ``uvicorn --root-path`` does (the path keeps it)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path=root_path), base_url=base_url)


class Gate(httpx.AsyncBaseTransport):
    """Holds the answers to requests whose path ends with ``suffix`` until opened: a slow identity
    provider. The answer is produced first, so what is held is its delivery; ``waiting`` counts them."""

    def __init__(self, inner: httpx.AsyncBaseTransport, suffix: str = "/certs") -> None:
        self.inner = inner
        self.suffix = suffix
        self.opened = anyio.Event()
        self.waiting = 0

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.opened = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith(self.suffix):
            self.waiting += 1
            try:
                await self.opened.wait()
            finally:
                self.waiting -= 1
        return response


async def wait_until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Poll ``condition`` until it holds, failing after ``seconds`` (background work, or a server's
    thread, has no event to await)."""
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await anyio.sleep(0.005)
