"""Accept machine-to-machine calls carrying Keycloak-issued access tokens, and reject everything else."""

from ._responses import auth_error_handler
from .client import AccessToken, ClientCredentialsAuth, ClientCredentialsError
from .dependencies import (
    KeycloakClientCredentials,
    Principal,
    client_credentials,
    get_principal,
    require_active_token,
    require_any_scope,
    require_client_role,
    require_realm_role,
    require_scope,
)
from .errors import (
    AuthError,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingCredentials,
)
from .keyset import KeySet
from .middleware import KeycloakAuthMiddleware, ServiceUser
from .principal import ServicePrincipal
from .settings import SUPPORTED_ALGORITHMS, IntrospectionPolicy, KeycloakSettings
from .verifier import KeycloakAuth

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AccessToken",
    "AuthError",
    "ClientCredentialsAuth",
    "ClientCredentialsError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "IntrospectionPolicy",
    "InvalidRequest",
    "InvalidToken",
    "KeySet",
    "KeycloakAuth",
    "KeycloakAuthMiddleware",
    "KeycloakClientCredentials",
    "KeycloakSettings",
    "MissingCredentials",
    "Principal",
    "ServicePrincipal",
    "ServiceUser",
    "auth_error_handler",
    "client_credentials",
    "get_principal",
    "require_active_token",
    "require_any_scope",
    "require_client_role",
    "require_realm_role",
    "require_scope",
]
