"""Where a request finds the :class:`~.verifier.KeycloakAuth` serving it: ``request.state.keycloak_auth``.

The app lifespan (``KeycloakAuth.lifespan``) shares it as ASGI lifespan state, and
:class:`~.middleware.KeycloakAuthMiddleware` puts its own there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from .verifier import KeycloakAuth

__all__ = ["STATE_KEY", "find_auth", "keycloak_auth"]

STATE_KEY = "keycloak_auth"


def find_auth(scope: Scope) -> KeycloakAuth | None:
    """The verifier shared with this request, if any."""
    auth: KeycloakAuth | None = scope.get("state", {}).get(STATE_KEY)
    return auth


def keycloak_auth(scope: Scope) -> KeycloakAuth:
    """The verifier shared with this request; a set-up mistake (RuntimeError) when there is none."""
    auth = find_auth(scope)
    if auth is None:
        raise RuntimeError(
            "no KeycloakAuth for this request: add KeycloakAuthMiddleware or use FastAPI(lifespan=auth.lifespan)"
        )
    return auth
