"""Accept machine-to-machine calls carrying Keycloak-issued access tokens, and reject everything else.

The public names are imported lazily (PEP 562), so ``import fastapi_kc_m2m.client`` (the calling side)
loads no web framework and no settings model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `import X as X`: re-exported, also for strict type checkers (PEP 484)
    from ._version import __version__ as __version__
    from .asgi.dependencies import KeycloakClientCredentials as KeycloakClientCredentials
    from .asgi.dependencies import OAuth2Scheme as OAuth2Scheme
    from .asgi.dependencies import Principal as Principal
    from .asgi.dependencies import client_credentials as client_credentials
    from .asgi.dependencies import downstream as downstream
    from .asgi.dependencies import get_principal as get_principal
    from .asgi.dependencies import oauth2_scheme as oauth2_scheme
    from .asgi.dependencies import require_active_token as require_active_token
    from .asgi.dependencies import require_any_scope as require_any_scope
    from .asgi.dependencies import require_client_role as require_client_role
    from .asgi.dependencies import require_realm as require_realm
    from .asgi.dependencies import require_realm_role as require_realm_role
    from .asgi.dependencies import require_scope as require_scope
    from .asgi.metrics import metrics_app as metrics_app
    from .asgi.middleware import KeycloakAuthMiddleware as KeycloakAuthMiddleware
    from .asgi.middleware import ServiceUser as ServiceUser
    from .asgi.resource_server import KeycloakAuth as KeycloakAuth
    from .asgi.resource_server import KeycloakResourceServer as KeycloakResourceServer
    from .asgi.responses import auth_error_handler as auth_error_handler
    from .client import AccessToken as AccessToken
    from .client import ClientCredentialsAuth as ClientCredentialsAuth
    from .client import ClientCredentialsError as ClientCredentialsError
    from .errors import AuthError as AuthError
    from .errors import IdentityProviderUnavailable as IdentityProviderUnavailable
    from .errors import InsufficientScope as InsufficientScope
    from .errors import InvalidDPoPProof as InvalidDPoPProof
    from .errors import InvalidRequest as InvalidRequest
    from .errors import InvalidToken as InvalidToken
    from .errors import MissingCredentials as MissingCredentials
    from .errors import TokenExchangeError as TokenExchangeError
    from .errors import UseDPoPNonce as UseDPoPNonce
    from .principal import Actor as Actor
    from .principal import ServicePrincipal as ServicePrincipal
    from .server.context import RequestContext as RequestContext
    from .server.context import Verification as Verification
    from .server.exchange import ExchangedToken as ExchangedToken
    from .server.exchange import ExchangedTokenAuth as ExchangedTokenAuth
    from .server.exchange import TokenExchanger as TokenExchanger
    from .server.keyset import KeySet as KeySet
    from .server.observer import LoggingObserver as LoggingObserver
    from .server.observer import Observer as Observer
    from .server.store import MemoryStore as MemoryStore
    from .server.store import Store as Store
    from .server.store import StoreUnavailable as StoreUnavailable
    from .server.verifier import TokenVerifier as TokenVerifier
    from .settings import SUPPORTED_ALGORITHMS as SUPPORTED_ALGORITHMS
    from .settings import IntrospectionPolicy as IntrospectionPolicy
    from .settings import KeycloakSettings as KeycloakSettings
    from .settings import SettingsError as SettingsError

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
    "InvalidDPoPProof": ".errors",
    "InvalidToken": ".errors",
    "UseDPoPNonce": ".errors",
    "TokenExchangeError": ".errors",
    "MissingCredentials": ".errors",
    "ServicePrincipal": ".principal",
    "Actor": ".principal",
    "SUPPORTED_ALGORITHMS": ".settings",
    "IntrospectionPolicy": ".settings",
    "KeycloakSettings": ".settings",
    "SettingsError": ".settings",
    "RequestContext": ".server.context",
    "Verification": ".server.context",
    "KeySet": ".server.keyset",
    **dict.fromkeys(("ExchangedToken", "ExchangedTokenAuth", "TokenExchanger"), ".server.exchange"),
    "LoggingObserver": ".server.observer",
    "Observer": ".server.observer",
    "MemoryStore": ".server.store",
    "Store": ".server.store",
    "StoreUnavailable": ".server.store",
    "TokenVerifier": ".server.verifier",
    "KeycloakAuth": ".asgi.resource_server",
    "KeycloakResourceServer": ".asgi.resource_server",
    "KeycloakAuthMiddleware": ".asgi.middleware",
    "metrics_app": ".asgi.metrics",
    "ServiceUser": ".asgi.middleware",
    "auth_error_handler": ".asgi.responses",
    **dict.fromkeys(
        (
            "KeycloakClientCredentials",
            "OAuth2Scheme",
            "Principal",
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
