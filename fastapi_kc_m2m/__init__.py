"""Accept machine-to-machine calls carrying Keycloak-issued access tokens, and reject everything else.

The public names are imported lazily (PEP 562), so ``import fastapi_kc_m2m.client`` (the calling side)
loads no web framework and no settings model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._version import __version__
    from .asgi.dependencies import (
        KeycloakClientCredentials,
        OAuth2Scheme,
        Principal,
        client_credentials,
        get_principal,
        oauth2_scheme,
        require_active_token,
        require_any_scope,
        require_client_role,
        require_realm_role,
        require_scope,
    )
    from .asgi.middleware import KeycloakAuthMiddleware, ServiceUser
    from .asgi.resource_server import KeycloakAuth, KeycloakResourceServer
    from .asgi.responses import auth_error_handler
    from .client import AccessToken, ClientCredentialsAuth, ClientCredentialsError
    from .errors import (
        AuthError,
        IdentityProviderUnavailable,
        InsufficientScope,
        InvalidRequest,
        InvalidToken,
        MissingCredentials,
    )
    from .principal import ServicePrincipal
    from .server.context import RequestContext, Verification
    from .server.keyset import KeySet
    from .server.observer import LoggingObserver, Observer
    from .server.store import MemoryStore, Store
    from .server.verifier import TokenVerifier
    from .settings import SUPPORTED_ALGORITHMS, IntrospectionPolicy, KeycloakSettings

# Public name -> the module defining it.
_WHERE = {
    "__version__": "._version",
    "AccessToken": ".client",
    "ClientCredentialsAuth": ".client",
    "ClientCredentialsError": ".client",
    "AuthError": ".errors",
    "IdentityProviderUnavailable": ".errors",
    "InsufficientScope": ".errors",
    "InvalidRequest": ".errors",
    "InvalidToken": ".errors",
    "MissingCredentials": ".errors",
    "ServicePrincipal": ".principal",
    "SUPPORTED_ALGORITHMS": ".settings",
    "IntrospectionPolicy": ".settings",
    "KeycloakSettings": ".settings",
    "RequestContext": ".server.context",
    "Verification": ".server.context",
    "KeySet": ".server.keyset",
    "LoggingObserver": ".server.observer",
    "Observer": ".server.observer",
    "MemoryStore": ".server.store",
    "Store": ".server.store",
    "TokenVerifier": ".server.verifier",
    "KeycloakAuth": ".asgi.resource_server",
    "KeycloakResourceServer": ".asgi.resource_server",
    "KeycloakAuthMiddleware": ".asgi.middleware",
    "ServiceUser": ".asgi.middleware",
    "auth_error_handler": ".asgi.responses",
    **dict.fromkeys(
        (
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
        ),
        ".asgi.dependencies",
    ),
}

__all__ = sorted(_WHERE)  # noqa: PLE0605 - built from the table above, so the two cannot drift


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
