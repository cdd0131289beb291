"""FastAPI dependencies: who called (:func:`get_principal`, :data:`Principal`) and what it may do
(``require_*``), plus the OAuth2 client-credentials security scheme (RFC 6749 §4.4) documenting them.

Behind :class:`~.middleware.KeycloakAuthMiddleware` they reuse its principal; without it they verify
the bearer token themselves (register :func:`auth_error_handler` for the RFC 6750 responses). Scopes
are compared exactly and case-sensitively (RFC 6749 §3.3); a missing scope or role is a 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from ..errors import InsufficientScope, MissingCredentials
from ..principal import ServicePrincipal
from ..server.context import RequestContext
from .bearer import bearer_token
from .middleware import ServiceUser
from .openapi import SCHEME_NAME
from .state import keycloak_auth

__all__ = [
    "KeycloakClientCredentials",
    "OAuth2Scheme",
    "Principal",
    "client_credentials",
    "get_principal",
    "oauth2_scheme",
    "require_active_token",
    "require_any_scope",
    "require_client_role",
    "require_realm_role",
    "require_scope",
]

_ROLE_MISSING = "the access token lacks the required role"
#: RFC 6749 §3.3: ``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``.
_NQCHARS = frozenset(chr(code) for code in range(0x21, 0x7F)) - {'"', "\\"}


class OAuth2Scheme(SecurityBase):
    """The OAuth2 security scheme of the routes (the client-credentials flow, RFC 6749 §4.4): the
    instance is the OpenAPI model and the dependency that authenticates the caller.
    ``KeycloakResourceServer.lifespan`` fills in Keycloak's token endpoint."""

    def __init__(self, scheme_name: str = SCHEME_NAME) -> None:
        flow = OAuthFlowClientCredentials(tokenUrl="", scopes={})
        description = "Access token of a Keycloak client, from grant_type=client_credentials"
        self.model = OAuth2Model(flows=OAuthFlows(clientCredentials=flow), description=description)
        self.scheme_name = scheme_name

    async def __call__(self, connection: HTTPConnection) -> ServicePrincipal:
        """The principal the middleware verified, else the request's bearer token verified now."""
        return (await _service_user(connection)).principal


#: The scheme's dependency, used by every dependency below.
oauth2_scheme = OAuth2Scheme()
#: Earlier names of :class:`OAuth2Scheme` and :data:`oauth2_scheme`, kept importable.
KeycloakClientCredentials = OAuth2Scheme
client_credentials = oauth2_scheme


async def _service_user(connection: HTTPConnection) -> ServiceUser:
    """The verified caller of this request: set by the middleware, else verified now and remembered
    in the request scope, so later dependencies use the same result."""
    user = connection.scope.get("user")
    if isinstance(user, ServiceUser):
        return user
    token = bearer_token(connection.scope)
    if token is None:
        raise MissingCredentials()
    context = RequestContext(token, method=connection.scope.get("method"))
    verification = await keycloak_auth(connection.scope).authenticate(context)
    user = ServiceUser(verification.principal, context=context, verification=verification)
    connection.scope["user"] = user
    return user


async def get_principal(
    security_scopes: SecurityScopes, principal: Annotated[ServicePrincipal, Depends(oauth2_scheme)]
) -> ServicePrincipal:
    """The calling machine; ``Security(get_principal, scopes=[...])`` also requires every listed scope."""
    if not principal.has_scopes(*security_scopes.scopes):
        raise InsufficientScope(security_scopes.scope_str)
    return principal


#: Annotate a route parameter with it to receive the verified caller: ``caller: Principal``.
Principal = Annotated[ServicePrincipal, Depends(get_principal)]


class _Requirement:
    """A dependency returning the principal when ``granted(principal, connection)``, else a 403."""

    def __init__(self, granted: Callable[[ServicePrincipal, HTTPConnection], bool], refusal: InsufficientScope) -> None:
        self._granted = granted
        self._scope = refusal.scope
        self._description = refusal.description

    async def __call__(self, connection: HTTPConnection, principal: Principal) -> ServicePrincipal:
        if not self._granted(principal, connection):
            raise InsufficientScope(self._scope, self._description)
        return principal


async def _active_principal(connection: HTTPConnection, principal: Principal) -> ServicePrincipal:
    """The caller, once introspection (RFC 7662) says its token is active: the request's one
    verification result is introspected, nothing is read or verified again."""
    user = await _service_user(connection)
    if user.context is None or user.verification is None:  # a user set by something other than this package
        raise MissingCredentials()
    return (await keycloak_auth(connection.scope).introspect(user.context, user.verification)).principal


def require_active_token() -> Any:
    """Require that Keycloak still calls the token active (not revoked), by introspection on this route.

    Needs ``KC_M2M_INTROSPECTION`` ``per_route`` (or ``always``) and client credentials. Answers are
    cached for ``introspection_cache_ttl``; when introspection is unavailable the request gets a 503."""
    return Depends(_active_principal)


def require_scope(*scopes: str) -> Any:
    """Require every scope (RFC 6749 §3.3); the same as ``Security(get_principal, scopes=[...])``."""
    return Security(get_principal, scopes=list(_scope_names(scopes)))


def require_any_scope(*scopes: str) -> Any:
    """Require at least one of the scopes."""
    wanted = frozenset(_scope_names(scopes))
    return Depends(
        _Requirement(lambda principal, _: not wanted.isdisjoint(principal.scopes), InsufficientScope(" ".join(scopes)))
    )


def require_realm_role(*roles: str) -> Any:
    """Require every realm role (``realm_access.roles``)."""
    wanted = frozenset(_names(roles, "role"))
    return Depends(
        _Requirement(lambda principal, _: wanted <= principal.realm_roles, InsufficientScope(description=_ROLE_MISSING))
    )


def require_client_role(*roles: str, client: str | None = None) -> Any:
    """Require every role of ``client`` (``resource_access.<client>.roles``), by default of this API:
    the configured audience, never the caller's ``azp``."""
    wanted = frozenset(_names(roles, "role"))

    def granted(principal: ServicePrincipal, connection: HTTPConnection) -> bool:
        owner = client or keycloak_auth(connection.scope).settings.audience
        return wanted <= principal.roles_of(owner)

    return Depends(_Requirement(granted, InsufficientScope(description=_ROLE_MISSING)))


def _scope_names(scopes: Iterable[str]) -> tuple[str, ...]:
    names = _names(scopes, "scope")
    if any(not _NQCHARS.issuperset(name) for name in names):
        raise ValueError(f"scope names are 1*NQCHAR (RFC 6749 §3.3): {names}")
    return names


def _names(values: Iterable[str], what: str) -> tuple[str, ...]:
    names = tuple(values)
    if not names or not all(names):
        raise ValueError(f"name at least one {what}, none of them empty")
    return names
