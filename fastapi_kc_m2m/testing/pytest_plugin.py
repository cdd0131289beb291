"""pytest fixtures for testing your own protected API without Keycloak or a network.

Installed with the package and loaded by pytest through its ``pytest11`` entry point (this module is
imported by pytest only). Every fixture starts with ``kc_``:

- ``kc_audience`` — the audience tokens carry; override it in your ``conftest.py`` (default ``machine-b``);
- ``kc_issuer`` — a :class:`~fastapi_kc_m2m.testing.TestIssuer` for that audience, in-process;
- ``kc_token`` — its :meth:`~fastapi_kc_m2m.testing.TestIssuer.token`: ``kc_token(scope="orders:read")``;
- ``kc_dpop`` — a :class:`~fastapi_kc_m2m.testing.DPoPCaller` with a fresh ES256 key (``.key``, ``.jkt``):
  ``.token(**claims)`` mints a token bound to it, ``.proof(method, url, token=None, nonce=None)`` a DPoP
  proof (RFC 9449), ``.headers(method, url, token)`` both request headers;
- ``kc_auth`` — a :class:`~fastapi_kc_m2m.KeycloakResourceServer` trusting the issuer and fetching its keys
  in-process: hand it to your app instead of the one reading ``KC_M2M_*``. An async fixture run by
  anyio's pytest plugin (installed with anyio; ``anyio_backend`` picks the event loop), closed after the test.

::

    def test_orders(kc_auth, kc_token):
        app = create_app(kc_auth)
        transport = httpx.ASGITransport(app=app)
        ...  # Authorization: Bearer {kc_token(scope="orders:read")}

    def test_dpop_orders(kc_auth, kc_dpop):
        token = kc_dpop.token(scope="orders:read")
        headers = kc_dpop.headers("GET", "http://api/orders", token)  # Authorization: DPoP ..., DPoP: <proof>
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from ..asgi.resource_server import KeycloakResourceServer
from .dpop import DPoPCaller
from .issuer import TestIssuer

__all__ = ["kc_audience", "kc_auth", "kc_dpop", "kc_issuer", "kc_token"]


@pytest.fixture
def kc_audience() -> str:
    """The audience (your API's client id) the issuer's tokens carry and ``kc_auth`` requires."""
    return "machine-b"


@pytest.fixture
def kc_issuer(kc_audience: str) -> TestIssuer:
    """A Keycloak-shaped issuer with fresh keys, serving discovery and its key set in-process."""
    return TestIssuer(audience=kc_audience)


@pytest.fixture
def kc_token(kc_issuer: TestIssuer) -> Callable[..., str]:
    """Mint an access token: ``kc_token(scope=..., client_roles={...}, client_id=..., <any claim>=...)``."""
    return kc_issuer.token


@pytest.fixture
def kc_dpop(kc_issuer: TestIssuer) -> DPoPCaller:
    """A caller's DPoP key: ``kc_dpop.token(...)`` bound to it, ``kc_dpop.proof(method, url, token)``."""
    return DPoPCaller(kc_issuer)


@pytest.fixture
async def kc_auth(kc_issuer: TestIssuer, anyio_backend: object) -> AsyncIterator[KeycloakResourceServer]:
    """A verifier wired to ``kc_issuer`` with no network, closed after the test; more settings via
    ``kc_issuer.auth(...)``."""
    auth = kc_issuer.auth()
    try:
        yield auth
    finally:
        await auth.aclose()
