"""The SHA-256 thumbprint of an X.509 certificate, as certificate-bound tokens carry it."""

from __future__ import annotations

import hashlib

from .jws import b64url

__all__ = ["certificate_thumbprint"]


def certificate_thumbprint(der: bytes) -> str:
    """``x5t#S256``: base64url of the SHA-256 of the certificate's DER (RFC 8705 §3.1, RFC 7515 §4.1.8)."""
    return b64url(hashlib.sha256(der).digest())
