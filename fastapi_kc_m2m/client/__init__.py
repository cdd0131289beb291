"""Machine A, the calling side: the httpx auth that gets and caches client-credentials tokens
(:class:`ClientCredentialsAuth`), its DPoP key and nonces (:mod:`.dpop`, RFC 9449), and the JWK Set a
client publishes for Keycloak (:mod:`.jwks`).

Loads neither FastAPI, Starlette nor pydantic-settings. May import :mod:`.._idp`, :mod:`.._jose`,
httpx and joserfc; never :mod:`..server`, :mod:`..asgi` or :mod:`..settings`.
"""

from .auth import AccessToken, ClientCert, ClientCredentialsAuth, ClientCredentialsError, KeySource, load_signing_key
from .jwks import JWKSEndpoint, jwks_endpoint, key_id, public_jwks

__all__ = [
    "AccessToken",
    "ClientCert",
    "ClientCredentialsAuth",
    "ClientCredentialsError",
    "JWKSEndpoint",
    "KeySource",
    "jwks_endpoint",
    "key_id",
    "load_signing_key",
    "public_jwks",
]
