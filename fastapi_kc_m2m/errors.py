"""One exception hierarchy for every refusal, each carrying its RFC 6750 §3.1 error code.

Descriptions are fixed phrases from the RFC 6750 character set: they never carry exception text,
token contents or internal URLs, so any of them may be shown to a caller as it is.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidDPoPProof",
    "InvalidRequest",
    "InvalidToken",
    "MissingCredentials",
    "TokenExchangeError",
    "UseDPoPNonce",
    "reason_code",
]


def reason_code(description: str) -> str:
    """A fixed description as a snake-case reason code: ``token expired`` -> ``token_expired``."""
    return description.replace(" ", "_").replace("-", "_")


class AuthError(Exception):
    """Base of all refusals: an HTTP status, an RFC 6750 error code and a fixed description."""

    status_code: int = 401
    error: str | None = None
    default_description: str = "authentication failed"
    #: The token's issuer when it is trusted, and its (unverified) calling client, when known; the
    #: request's path and method when the verifier had them; for observers and logs, never for responses.
    issuer: str | None = None
    client_id: str | None = None
    path: str | None = None
    method: str | None = None

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    @property
    def reason(self) -> str:
        """A reason code from a fixed set: the description as a snake-case word (``token_expired``)."""
        return reason_code(self.description)


class MissingCredentials(AuthError):
    """No bearer token was presented (RFC 6750 §3.1: the response carries no error code)."""

    status_code = 401
    error = None
    default_description = "bearer token required"


class InvalidRequest(AuthError):
    """Malformed request: bad header syntax, several tokens or token locations (RFC 6750 §3.1)."""

    status_code = 400
    error = "invalid_request"
    default_description = "malformed authorization request"


class InvalidToken(AuthError):
    """Token expired, revoked, malformed, or failing any verification rule (RFC 6750 §3.1)."""

    status_code = 401
    error = "invalid_token"
    default_description = "the access token is invalid"


class InsufficientScope(AuthError):
    """Valid token without the scope or role the resource requires (RFC 6750 §3.1)."""

    status_code = 403
    error = "insufficient_scope"
    default_description = "the access token lacks the required scope"

    def __init__(self, scope: str = "", description: str | None = None) -> None:
        self.scope = scope
        super().__init__(description)


class IdentityProviderUnavailable(AuthError):
    """No usable keys or introspection answer could be had; retry after ``retry_after`` seconds."""

    status_code = 503
    error = None
    default_description = "the identity provider is unavailable"

    def __init__(self, retry_after: int, description: str | None = None) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(description)


class InvalidDPoPProof(AuthError):
    """A DPoP proof failing a check of RFC 9449 §4.3 (RFC 9449 §7.1: ``invalid_dpop_proof``)."""

    status_code = 401
    error = "invalid_dpop_proof"
    default_description = "the DPoP proof is invalid"


class UseDPoPNonce(AuthError):
    """The proof lacks the server's current nonce (RFC 9449 §9); ``nonce`` goes into ``DPoP-Nonce``."""

    status_code = 401
    error = "use_dpop_nonce"
    default_description = "a DPoP nonce is required"

    def __init__(self, nonce: str, description: str | None = None) -> None:
        self.nonce = nonce
        super().__init__(description)


class TokenExchangeError(AuthError):
    """No token for a downstream call could be had by token exchange (RFC 8693 §2.2.2): Keycloak refused it
    (``oauth_error`` is its RFC 6749 §5.2 code, e.g. ``invalid_request``, ``unauthorized_client``,
    ``invalid_target``, ``access_denied``), or the caller's token is sender-constrained (``oauth_error`` is
    ``None``). The caller was authenticated: this is this service failing to act for it upstream, a
    502 Bad Gateway (RFC 9110 §15.6.3) without a challenge; Keycloak unreachable is
    :class:`IdentityProviderUnavailable` (503) instead."""

    status_code = 502
    error = None
    default_description = "the token exchange was refused"

    def __init__(self, oauth_error: str | None = None, description: str | None = None) -> None:
        self.oauth_error = oauth_error
        super().__init__(description)
