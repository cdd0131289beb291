"""The peers measured by ``e2e.py``: the same FastAPI app as its ``create_app``, protected by another library.

Runs in the benchmark's own environment (``benchmarks/.venv-peers``, made by ``e2e.py``), never in the
project's: it imports neither this package nor its dependencies beyond FastAPI. ``BENCH_PEER`` picks the
peer; both verify in full on every request (RS256 signature against the realm's JWKS, ``exp``, ``aud``,
and ``iss`` where the library takes it), as a service would configure them:

- ``fastapi-keycloak-middleware``: its middleware, ``aud`` checked through jwcrypto's ``check_claims``;
- ``pyjwt``: a hand-written dependency, PyJWT's ``jwt.decode`` with a key from ``PyJWKClient`` (its key
  set fetched once at start-up and cached, so the event loop never waits on its blocking fetch).

Environment: ``BENCH_PEER``, ``BENCH_SERVER_URL`` (Keycloak's base URL), ``BENCH_REALM``, ``BENCH_AUDIENCE``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi_keycloak_middleware import KeycloakConfiguration, setup_keycloak_middleware

PATH = "/orders"
SERVER_URL = os.environ.get("BENCH_SERVER_URL", "")
REALM = os.environ.get("BENCH_REALM", "")
AUDIENCE = os.environ.get("BENCH_AUDIENCE", "")
ISSUER = f"{SERVER_URL}/realms/{REALM}"


def create_app() -> FastAPI:
    """The peer named by ``BENCH_PEER`` around the ``/orders`` endpoint."""
    peer = os.environ.get("BENCH_PEER")
    if peer == "fastapi-keycloak-middleware":
        return _keycloak_middleware_app()
    if peer == "pyjwt":
        return _pyjwt_app()
    raise SystemExit(f"unknown BENCH_PEER {peer!r}")


def _orders(app: FastAPI, *dependencies: Any) -> FastAPI:
    @app.get(PATH, dependencies=list(dependencies))
    async def orders() -> dict[str, list[int]]:
        return {"orders": [1, 2, 3]}

    return app


def _keycloak_middleware_app() -> FastAPI:
    app = FastAPI()
    configuration = KeycloakConfiguration(
        url=SERVER_URL,
        realm=REALM,
        client_id=AUDIENCE,
        validation_options={"check_claims": {"aud": AUDIENCE, "exp": None, "iss": ISSUER}},
    )
    setup_keycloak_middleware(app, keycloak_configuration=configuration)
    return _orders(app)


def _pyjwt_app() -> FastAPI:
    keys = jwt.PyJWKClient(f"{ISSUER}/protocol/openid-connect/certs", cache_keys=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        keys.get_jwk_set()  # fetched once, before the first request
        yield

    async def verified(authorization: str = Header(default="")) -> dict[str, Any]:
        """RFC 6750 §2.1 bearer token, verified by PyJWT; anything wrong is a 401."""
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise jwt.InvalidTokenError
            key = keys.get_signing_key_from_jwt(token)
            return jwt.decode(
                token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER, options={"require": ["exp"]}
            )
        except jwt.PyJWTError:
            raise HTTPException(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    return _orders(FastAPI(lifespan=lifespan), Depends(verified))
