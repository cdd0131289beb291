"""Publish a calling client's public keys as a JWK Set (RFC 7517 §5) for Keycloak's ``use.jwks.url``.

With the client attributes ``use.jwks.url=true`` and ``jwks.url=<this endpoint>``, Keycloak fetches the
client's keys itself, so keys rotate without touching Keycloak:

1. publish the current and the next key: ``jwks_endpoint(current, upcoming)``;
2. sign with the next key (``key_id`` naming its ``kid``); Keycloak refetches the set when an assertion
   names a ``kid`` it has not cached;
3. later, publish the new key alone.

Only public members leave this module (RFC 7517 §4, RFC 7518 §6.2.1 and §6.3.1). Each key carries its
``kid`` (RFC 7517 §4.5) — its own, else its RFC 7638 thumbprint — because Keycloak picks the key by the
assertion's ``kid``: pass ``key_id=key_id(key)`` to :class:`~fastapi_kc_m2m.client.ClientCredentialsAuth`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._idp.client_auth import PrivateKey

__all__ = ["JWKSEndpoint", "jwks_endpoint", "key_id", "public_jwks"]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def key_id(key: PrivateKey) -> str:
    """The ``kid`` a key is published under: its own, else its RFC 7638 thumbprint."""
    return key.kid or key.thumbprint()


def public_jwks(*keys: PrivateKey) -> dict[str, Any]:
    """The JWK Set of ``keys``' public halves, each with ``kid`` and ``use: sig`` (RFC 7517 §4.2, §5)."""
    if not keys:
        raise ValueError("publish at least one key")
    return {"keys": [{**key.as_dict(private=False), "kid": key_id(key), "use": "sig"} for key in keys]}


class JWKSEndpoint:
    """A plain ASGI app answering ``GET`` and ``HEAD`` with a JWK Set (``application/jwk-set+json``,
    RFC 7517 §8.5.1), anything else with 405; mount it in any ASGI framework."""

    def __init__(self, jwks: dict[str, Any], max_age: int) -> None:
        self._body = json.dumps(jwks).encode()
        self._headers = [
            (b"content-type", b"application/jwk-set+json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"cache-control", f"public, max-age={max_age}".encode()),
        ]

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("JWKSEndpoint serves HTTP only")
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET, HEAD")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else self._body})


def jwks_endpoint(*keys: PrivateKey, max_age: int = 300) -> JWKSEndpoint:
    """An endpoint answering ``GET`` with :func:`public_jwks` of ``keys``; caches may keep it
    ``max_age`` seconds (RFC 9111 §5.2.2.1), so publish a new key at least that long before use::

        app.add_route("/.well-known/jwks.json", jwks_endpoint(current, upcoming))
    """
    return JWKSEndpoint(public_jwks(*keys), max_age)
