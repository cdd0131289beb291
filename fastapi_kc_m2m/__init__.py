"""Accept machine-to-machine calls carrying Keycloak-issued access tokens, and reject everything else."""

from .errors import (
    AuthError,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MissingCredentials,
)
from .keyset import KeySet
from .principal import ServicePrincipal
from .settings import SUPPORTED_ALGORITHMS, KeycloakSettings
from .verifier import KeycloakAuth

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "KeySet",
    "KeycloakAuth",
    "KeycloakSettings",
    "MissingCredentials",
    "ServicePrincipal",
]
