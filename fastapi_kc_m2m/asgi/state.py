"""Where a request finds the :class:`~..server.verifier.TokenVerifier` serving it: ``request.state.keycloak_auth``.

The app lifespan (``KeycloakResourceServer.lifespan``) shares it as ASGI lifespan state,
:class:`~.middleware.KeycloakAuthMiddleware` puts its own there, and ``KeycloakResourceServer.install(app)``
keeps it in ``app.state`` for requests that have neither (an app run without its lifespan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.authentication import BaseUser
from starlette.types import Scope

from ..principal import ServicePrincipal
from ..server.context import RequestContext, Verification

if TYPE_CHECKING:
    from ..server.verifier import TokenVerifier

__all__ = ["STATE_KEY", "ServiceUser", "find_auth", "keycloak_auth"]

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


class ServiceUser(BaseUser):
    """The Starlette user of a verified call: ``request.user.principal`` is its :class:`ServicePrincipal`,
    ``context`` what the request presented and ``verification`` what the verifier made of it (both set
    by this package's middleware and dependencies)."""

    __slots__ = ("context", "principal", "verification")

    def __init__(
        self,
        principal: ServicePrincipal,
        *,
        context: RequestContext | None = None,
        verification: Verification | None = None,
    ) -> None:
        self.principal = principal
        self.context = context
        self.verification = verification

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.client_id

    @property
    def identity(self) -> str:
        return self.principal.client_id
