"""Where a request finds the :class:`~..server.verifier.TokenVerifier` serving it: ``request.state.keycloak_auth``.

The app lifespan (``KeycloakResourceServer.lifespan``) shares it as ASGI lifespan state,
:class:`~.middleware.KeycloakAuthMiddleware` puts its own there, and ``KeycloakResourceServer.install(app)``
keeps it in ``app.state`` for requests that have neither (an app run without its lifespan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from ..server.verifier import TokenVerifier

__all__ = ["STATE_KEY", "find_auth", "keycloak_auth"]

STATE_KEY = "keycloak_auth"


def find_auth(scope: Scope) -> TokenVerifier | None:
    """The verifier shared with this request, else the one installed on its app, if any."""
    auth: TokenVerifier | None = scope.get("state", {}).get(STATE_KEY)
    if auth is None:
        auth = getattr(getattr(scope.get("app"), "state", None), STATE_KEY, None)
    return auth


def keycloak_auth(scope: Scope) -> TokenVerifier:
    """The verifier shared with this request; a set-up mistake (RuntimeError) when there is none."""
    auth = find_auth(scope)
    if auth is None:
        raise RuntimeError(
            "no KeycloakAuth for this request: call auth.install(app), add KeycloakAuthMiddleware"
            " or use FastAPI(lifespan=auth.lifespan)"
        )
    return auth
