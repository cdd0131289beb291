"""Certificate-bound access tokens at the resource server (RFC 8705 §3).

A token whose ``cnf`` holds ``x5t#S256`` passes only when the request's client certificate (DER, from
the ASGI layer) hashes to it: ``base64url(SHA-256(DER))`` (RFC 8705 §3.1). The scheme stays ``Bearer``.
"""

from __future__ import annotations

import hmac

from .._jose.x5t import certificate_thumbprint
from ..errors import InvalidToken
from .context import RequestContext
from .observer import Observer

__all__ = ["CertificateBinding"]

_NO_SOURCE_HINT = (
    "a certificate-bound token (cnf x5t#S256, RFC 8705) was refused: no client certificate reaches this"
    " service. Behind a TLS-terminating proxy set KC_M2M_CLIENT_CERT_HEADER, KC_M2M_CLIENT_CERT_FORMAT and"
    " KC_M2M_TRUSTED_PROXIES (shown once)"
)


class CertificateBinding:
    """Checks the certificate binding of each request; hints once when no certificate source is set up."""

    def __init__(self, source_configured: bool, observer: Observer) -> None:
        self._hint_pending = not source_configured
        self._observer = observer

    def check(self, context: RequestContext, x5t: str | None) -> None:
        """Refuse a token bound to ``x5t`` unless the request's certificate hashes to it (RFC 8705 §3)."""
        if x5t is None:
            return
        der = context.client_certificate
        if der is None:
            if self._hint_pending:
                self._hint_pending = False
                self._observer.hint(_NO_SOURCE_HINT)
            self._observer.certificate_binding("missing")
            raise InvalidToken("certificate-bound token without a client certificate")
        if not hmac.compare_digest(certificate_thumbprint(der).encode(), x5t.encode("utf-8", "surrogatepass")):
            self._observer.certificate_binding("mismatch")
            raise InvalidToken("client certificate does not match the token")
        self._observer.certificate_binding("accepted")
