"""FastAPI dependencies: who called (:func:`get_principal`, :data:`Principal`) and what it may do
(``require_*``), plus the OAuth2 client-credentials security scheme (RFC 6749 §4.4) documenting them.

Behind :class:`~.middleware.KeycloakAuthMiddleware` they reuse its principal; without it they verify
the bearer token themselves (register :func:`auth_error_handler` for the RFC 6750 responses). Scopes
are compared exactly and case-sensitively (RFC 6749 §3.3); a missing scope or role is a 403.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Annotated

from fastapi import Depends, Security, params
from fastapi.dependencies.models import Dependant
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.routing import APIRoute, APIWebSocketRoute, RouteContext
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from ..errors import InsufficientScope, MissingCredentials
from ..principal import ServicePrincipal
from ..server.exchange import ExchangedTokenAuth
from .credentials import request_context
from .state import ServiceUser, keycloak_auth

__all__ = [
    "SCHEME_NAME",
    "KeycloakClientCredentials",
    "OAuth2Scheme",
    "Principal",
    "Requirement",
    "client_credentials",
    "downstream",
    "get_principal",
    "oauth2_scheme",
    "require_active_token",
    "require_any_scope",
    "require_client_role",
    "require_realm",
    "require_realm_role",
    "require_scope",
    "route_requirements",
]

#: Name of the security scheme under ``components.securitySchemes``.
SCHEME_NAME = "KeycloakClientCredentials"
_ROLE_MISSING = "the access token lacks the required role"
_REALM_MISSING = "the access token is not of a permitted realm"
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
    auth = keycloak_auth(connection.scope)
    context = request_context(connection.scope, auth.settings)
    if context is None:
        raise MissingCredentials()
    verification = await auth.authenticate(context)
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


class Requirement(params.Depends):
    """What a route requires of its caller (RFC 6750 §3.1: a 403 when missing), as a FastAPI dependency
    returning the caller. Use it in any position: ``dependencies=[Depends(require_scope("a"))]``,
    ``Security(require_scope("a"))``, ``caller: Annotated[ServicePrincipal, Depends(require_scope("a"))]``,
    router or app ``dependencies``; being a ``Depends`` itself, ``dependencies=[require_scope("a")]``
    works too. Required scopes reach the route's OpenAPI security requirement, ``documented`` (what else
    is required) its documented 403."""

    def __init__(
        self,
        granted: Callable[[ServicePrincipal, HTTPConnection], bool],
        refusal: InsufficientScope,
        *,
        documented: str | None,
        scopes: Sequence[str] = (),
        introspects: bool = False,
    ) -> None:
        super().__init__(dependency=self)
        self._granted = granted
        self._refusal = (refusal.scope, refusal.description)
        self.documented = documented
        self.introspects = introspects
        caller = Annotated[ServicePrincipal, Security(get_principal, scopes=list(scopes))]
        self._signature = inspect.Signature(
            [
                inspect.Parameter("connection", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection),
                inspect.Parameter("principal", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=caller),
            ],
            return_annotation=ServicePrincipal,
        )

    @property
    def __signature__(self) -> inspect.Signature:
        """The parameters FastAPI resolves: the request and the caller (holding the required scopes)."""
        return self._signature

    async def __call__(self, connection: HTTPConnection, principal: ServicePrincipal) -> ServicePrincipal:
        if not self._granted(principal, connection):
            raise InsufficientScope(*self._refusal)
        if self.introspects:
            return await _active_principal(connection)
        return principal

    # The dependency is the object itself: identity, not the dataclass fields, compares and hashes it.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


def route_requirements(route: RouteContext) -> tuple[Requirement, ...]:
    """The :class:`Requirement` dependencies of a FastAPI route, at any depth (none for other routes);
    ``route`` is one of ``fastapi.routing.iter_route_contexts(app.routes)``, included routers' too."""
    if not isinstance(route.original_route, APIRoute | APIWebSocketRoute):
        return ()
    found: list[Requirement] = []
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        if isinstance(dependant.call, Requirement):
            found.append(dependant.call)
    return tuple(found)


async def _active_principal(connection: HTTPConnection) -> ServicePrincipal:
    """The caller, once introspection (RFC 7662) says its token is active: the request's one
    verification result is introspected, nothing is read or verified again."""
    user = await _service_user(connection)
    if user.context is None or user.verification is None:  # a user set by something other than this package
        raise MissingCredentials()
    return (await keycloak_auth(connection.scope).introspect(user.context, user.verification)).principal


def downstream(
    audience: str, *, scope: str | None = None
) -> Callable[[HTTPConnection, ServicePrincipal], Awaitable[ExchangedTokenAuth]]:
    """A dependency giving the route an ``httpx.Auth`` that calls ``audience`` on behalf of the verified
    caller, by token exchange (RFC 8693, :mod:`..server.exchange`)::

        async def route(c: Annotated[ExchangedTokenAuth, Depends(downstream("machine-c"))]) -> ...:
            async with httpx.AsyncClient(auth=c) as client: ...
    """
    if not audience:
        raise ValueError("name the downstream audience (its Keycloak client id)")

    async def downstream_auth(
        connection: HTTPConnection, principal: Annotated[ServicePrincipal, Security(oauth2_scheme)]
    ) -> ExchangedTokenAuth:
        user = await _service_user(connection)
        if user.context is None or user.verification is None:  # a user set by something other than this package
            raise MissingCredentials()
        return keycloak_auth(connection.scope).downstream_auth(user.context, user.verification, audience, scope)

    return downstream_auth


def _always(principal: ServicePrincipal, connection: HTTPConnection) -> bool:
    return True


def require_active_token() -> Requirement:
    """Require that Keycloak still calls the token active (not revoked), by introspection on this route.

    Needs ``KC_M2M_INTROSPECTION`` ``per_route`` (or ``always``) and client credentials, checked at
    start-up. Answers are cached for ``introspection_cache_ttl``; when introspection is unavailable the
    request gets a 503."""
    return Requirement(_always, InsufficientScope(), documented=None, introspects=True)


def require_scope(*scopes: str) -> Requirement:
    """Require every scope (RFC 6749 §3.3); the same as ``Security(get_principal, scopes=[...])``."""
    names = _scope_names(scopes)
    return Requirement(_always, InsufficientScope(), documented=None, scopes=names)


def require_any_scope(*scopes: str) -> Requirement:
    """Require at least one of the scopes."""
    wanted = frozenset(_scope_names(scopes))
    return Requirement(
        lambda principal, _: not wanted.isdisjoint(principal.scopes),
        InsufficientScope(" ".join(scopes)),
        documented=f"one of the scopes {' '.join(scopes)}",
    )


def require_realm(*realms: str) -> Requirement:
    """Require a token of one of ``realms``: names or glob patterns (``tenant-*``) matched, as
    ``KC_M2M_REALMS`` is, against the caller's :attr:`~.principal.ServicePrincipal.realm`."""
    wanted = _names(realms, "realm")
    return Requirement(
        lambda principal, _: _of_realm(principal, wanted),
        InsufficientScope(description=_REALM_MISSING),
        documented=f"a token of realm {' or '.join(realms)}",
    )


def require_realm_role(*roles: str, realm: str | None = None) -> Requirement:
    """Require every realm role (``realm_access.roles``); with ``realm`` (a name or glob pattern), in a
    token of that realm: a realm role means something only in its own realm."""
    wanted = frozenset(_names(roles, "role"))
    realms = () if realm is None else _names((realm,), "realm")
    of_realm = f" in realm {realm}" if realm is not None else ""
    return Requirement(
        lambda principal, _: wanted <= principal.realm_roles and (not realms or _of_realm(principal, realms)),
        InsufficientScope(description=_ROLE_MISSING),
        documented=f"realm roles {' '.join(roles)}{of_realm}",
    )


def _of_realm(principal: ServicePrincipal, realms: Sequence[str]) -> bool:
    name = principal.realm
    return name is not None and any(fnmatchcase(name, realm) for realm in realms)


def require_client_role(*roles: str, client: str | None = None) -> Requirement:
    """Require every role of ``client`` (``resource_access.<client>.roles``), by default of this API:
    the audience configured for the token's realm (``KC_M2M_AUDIENCES``, else ``KC_M2M_AUDIENCE``),
    never the caller's ``azp``."""
    wanted = frozenset(_names(roles, "role"))

    def granted(principal: ServicePrincipal, connection: HTTPConnection) -> bool:
        owner = client or keycloak_auth(connection.scope).settings.audience_for(principal.issuer)
        return wanted <= principal.roles_of(owner)

    owner = f"client {client}" if client else "this API"
    return Requirement(
        granted, InsufficientScope(description=_ROLE_MISSING), documented=f"roles of {owner}: {' '.join(roles)}"
    )


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
