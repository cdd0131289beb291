"""``KeycloakResourceServer``: the token verifier plus what an ASGI app needs around it (lifespan)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..server.verifier import TokenVerifier
from .openapi import document_openapi
from .state import STATE_KEY

__all__ = ["KeycloakAuth", "KeycloakResourceServer"]


class KeycloakResourceServer(TokenVerifier):
    """A :class:`~fastapi_kc_m2m.server.verifier.TokenVerifier` for an ASGI app: ``FastAPI(lifespan=rs.lifespan)``."""

    @contextlib.asynccontextmanager
    async def lifespan(
        self, app: Any = None, *, prefetch: bool = True, strict: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The app lifespan: :meth:`startup`, then share this verifier with every request (lifespan
        state ``keycloak_auth``), document the OAuth2 flow in the app's OpenAPI (RFC 6749 §4.4) and close
        the HTTP client at shut-down."""
        async with self:
            await self.startup(prefetch=prefetch, strict=strict)
            document_openapi(app, self.settings)
            yield {STATE_KEY: self}


#: The name this class had first; kept importable.
KeycloakAuth = KeycloakResourceServer
