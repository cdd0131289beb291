"""``KeycloakResourceServer``: the token verifier plus what an ASGI app needs around it (install, lifespan)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.applications import Starlette

from ..errors import AuthError
from ..server.verifier import TokenVerifier
from .dependencies import route_requirements
from .openapi import document_openapi
from .responses import auth_error_handler
from .state import STATE_KEY

__all__ = ["KeycloakAuth", "KeycloakResourceServer"]


class KeycloakResourceServer(TokenVerifier):
    """A :class:`~fastapi_kc_m2m.server.verifier.TokenVerifier` for an ASGI app: ``FastAPI(lifespan=rs.lifespan)``
    or ``rs.install(app)``."""

    def install(self, app: Starlette) -> None:
        """Make ``app`` work with this verifier even without its lifespan or the middleware: keep it in
        ``app.state``, register :func:`~.responses.auth_error_handler` for :class:`~.errors.AuthError`
        unless the app has a handler, document the OAuth2 flow and the refusals in its OpenAPI, and
        refuse (``RuntimeError``) routes using ``require_active_token()`` while introspection is off.
        Call it once the routes are defined; :meth:`lifespan` calls it again at start-up."""
        self._check_routes(app)
        if getattr(app.state, STATE_KEY, None) is self:
            return
        setattr(app.state, STATE_KEY, self)  # State is dynamic, the key a shared constant
        if AuthError not in app.exception_handlers:
            app.add_exception_handler(AuthError, auth_error_handler)
            app.middleware_stack = None  # rebuilt with the handler by the next request, if already built
        if isinstance(app, FastAPI):
            document_openapi(app, self.settings)

    @contextlib.asynccontextmanager
    async def lifespan(
        self, app: Starlette | None = None, *, prefetch: bool = True, strict: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The app lifespan: :meth:`install` on ``app``, :meth:`startup`, then share this verifier with
        every request (lifespan state ``keycloak_auth``) and close the HTTP client at shut-down. It can
        run again (a second server or test client) and be wrapped in the app's own lifespan."""
        if app is not None:
            self.install(app)
        async with self:
            await self.startup(prefetch=prefetch, strict=strict)
            yield {STATE_KEY: self}

    def _check_routes(self, app: Starlette) -> None:
        """A route needing introspection while it is off is a set-up mistake, refused at start-up."""
        if self.introspector is not None:
            return
        for route in iter_route_contexts(app.routes):
            if any(requirement.introspects for requirement in route_requirements(route)):
                raise RuntimeError(
                    f"{route.path} uses require_active_token() but introspection is off:"
                    " set KC_M2M_INTROSPECTION=per_route and the client credentials"
                )


#: The name this class had first; kept importable.
KeycloakAuth = KeycloakResourceServer
