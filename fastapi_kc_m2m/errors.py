"""One exception hierarchy for every refusal, each carrying its RFC 6750 §3.1 error code.

Descriptions are fixed phrases from the RFC 6750 character set: they never carry exception text,
token contents or internal URLs, so any of them may be shown to a caller as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "OTHER_REASON",
    "REASON_CODES",
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


#: Each fixed description a refusal (or a DPoP proof check, RFC 9449 §4.3) carries, and its reason code:
#: a short, stable word for metrics labels and refusal events, apart from the text shown to callers.
REASON_CODES: Mapping[str, str] = MappingProxyType({
    "bearer token required": "missing_token",
    "malformed authorization request": "malformed_request",
    "malformed bearer credentials": "malformed_credentials",
    "several authorization headers": "several_headers",
    "token in several places": "several_tokens",
    "missing or malformed host header": "malformed_host",
    "malformed client certificate": "malformed_certificate",
    "several or oversized client certificate headers": "several_certificates",
    "the access token is invalid": "invalid_token",
    "token too large": "token_too_large",
    "malformed token": "malformed_token",
    "unsupported token header": "unsupported_header",
    "malformed key id": "malformed_kid",
    "algorithm not allowed": "algorithm_not_allowed",
    "untrusted issuer": "untrusted_issuer",
    "no key matches the token": "unknown_kid",
    "invalid signature": "bad_signature",
    "not an access token": "not_access_token",
    "token expired": "expired",
    "token has no expiry": "no_expiry",
    "token not valid yet": "not_yet_valid",
    "malformed time claim": "malformed_time_claim",
    "token is not meant for this audience": "wrong_audience",
    "calling client not allowed": "client_not_allowed",
    "the access token is not active": "inactive",
    "sender-constrained tokens are not supported": "binding_unsupported",
    "token binding mismatch": "binding_mismatch",
    "certificate-bound token without a client certificate": "certificate_missing",
    "client certificate does not match the token": "certificate_mismatch",
    "the access token lacks the required scope": "insufficient_scope",
    "the access token lacks the required role": "missing_role",
    "the identity provider is unavailable": "idp_unavailable",
    "keys unavailable at start-up": "keys_unavailable",
    "token introspection is unavailable": "introspection_unavailable",
    "introspection is off": "introspection_off",
    "unknown realm": "unknown_realm",
    "too many new realms": "realm_lookups_exhausted",
    "token exchange is off": "exchange_off",
    "the token exchange was refused": "exchange_refused",
    "token exchange is unavailable": "exchange_unavailable",
    "a sender-constrained token cannot be exchanged": "exchange_bound_token",
    "DPoP replay check unavailable": "dpop_replay_unavailable",
    "the DPoP proof is invalid": "dpop_invalid",
    "DPoP proof required": "dpop_required",
    "DPoP proof missing": "dpop_missing",
    "several DPoP proofs": "dpop_several_proofs",
    "DPoP proof replayed": "dpop_replayed",
    "DPoP proof key does not match the token": "dpop_key_mismatch",
    "DPoP-bound token presented as Bearer": "dpop_bound_as_bearer",
    "a DPoP-bound token is required": "dpop_binding_required",
    "token is not DPoP-bound": "dpop_not_bound",
    "a DPoP nonce is required": "dpop_nonce_required",
    "not a DPoP proof": "dpop_wrong_type",
    "proof too large": "dpop_too_large",
    "malformed proof": "dpop_malformed",
    "unsupported proof header": "dpop_unsupported_header",
    "proof algorithm not allowed": "dpop_algorithm_not_allowed",
    "proof algorithm does not fit its key": "dpop_algorithm_mismatch",
    "unsupported proof key": "dpop_unsupported_key",
    "proof key must be a public JWK": "dpop_key_not_public",
    "unusable proof key": "dpop_unusable_key",
    "invalid proof signature": "dpop_bad_signature",
    "proof jti missing": "dpop_jti_missing",
    "proof htm mismatch": "dpop_htm_mismatch",
    "malformed htu": "dpop_malformed_htu",
    "proof htu mismatch": "dpop_htu_mismatch",
    "proof iat missing": "dpop_iat_missing",
    "proof iat outside the window": "dpop_iat_window",
    "proof ath mismatch": "dpop_ath_mismatch",
    "malformed proof nonce": "dpop_malformed_nonce",
    "valid proof": "ok",
})  # fmt: skip
#: The code of a description outside :data:`REASON_CODES` (none the package raises; a test checks).
OTHER_REASON = "other"


def reason_code(description: str) -> str:
    """The reason code of a fixed description: ``token expired`` -> ``expired``, else ``other``."""
    return REASON_CODES.get(description, OTHER_REASON)


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
    #: Whether an observer was told of it (``TokenVerifier.report_refusal``), so it counts once.
    reported: bool = False
    #: Whether a route refused it after its token was accepted (a scope, a role, an active token, a
    #: downstream exchange), for ``Observer.route_refused``.
    route: bool = False

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    @property
    def reason(self) -> str:
        """The reason code of the description, from :data:`REASON_CODES` (``expired``)."""
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
    route = True

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
    route = True

    def __init__(self, oauth_error: str | None = None, description: str | None = None) -> None:
        self.oauth_error = oauth_error
        super().__init__(description)
