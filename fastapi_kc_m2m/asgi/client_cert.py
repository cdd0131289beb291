"""The request's client certificate (RFC 8705 §3), as DER, for certificate-bound tokens.

From the ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, leaf first) when
the server fills it, else from the header a TLS-terminating proxy sets (``KC_M2M_CLIENT_CERT_HEADER``),
read only when the peer is one of ``KC_M2M_TRUSTED_PROXIES``: from anyone else it is ignored, as if absent.
Formats (``KC_M2M_CLIENT_CERT_FORMAT``): ``pem-urlencoded`` (nginx ``$ssl_client_escaped_cert``),
``rfc9440`` (``Client-Cert: :<base64 DER>:``, RFC 9440 §2.2) and ``xfcc`` (Envoy's
``x-forwarded-client-cert``: the last element's ``Cert``, URL-encoded PEM, whose SHA-256 must be its
``Hash``). A repeated or malformed header is :class:`~.errors.InvalidRequest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.types import Scope

from ..errors import InvalidRequest
from ..settings import KeycloakSettings

__all__ = ["client_certificate"]

#: Longer certificate headers are refused: a client certificate with its chain fits well within.
MAX_CERT_HEADER_BYTES = 16384
_MALFORMED = "malformed client certificate"
#: One ``key=value`` of an XFCC element, the value quoted or bare, and the separator after it.
_XFCC_PAIR = re.compile(r'([A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,"]*)([;,]?)')


def client_certificate(scope: Scope, settings: KeycloakSettings) -> bytes | None:
    """The DER certificate the client presented, None when none reaches this service."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain")
    if chain:
        return _der_from_pem(chain[0].encode("ascii", "replace") if isinstance(chain[0], str) else b"")
    name = settings.client_cert_header
    if name is None or not _from_trusted_proxy(scope, settings):
        return None
    values = [value for key, value in scope["headers"] if key == name.encode("latin-1")]
    if not values:
        return None
    if len(values) > 1 or len(values[0]) > MAX_CERT_HEADER_BYTES:
        raise InvalidRequest("several or oversized client certificate headers")
    value = values[0].decode("latin-1").strip()
    if settings.client_cert_format == "rfc9440":
        return _der_from_rfc9440(value)
    if settings.client_cert_format == "xfcc":
        return _der_from_xfcc(value)
    return _der_from_pem(unquote(value).encode("ascii", "replace"))


def _from_trusted_proxy(scope: Scope, settings: KeycloakSettings) -> bool:
    """Whether the peer (``scope["client"]``) is one of the trusted proxies."""
    client = scope.get("client")
    try:
        peer = ipaddress.ip_address(client[0]) if client else None
    except ValueError:  # a Unix socket path or a test client's name
        return False
    return peer is not None and any(peer in network for network in settings.trusted_proxies)


def _der_from_pem(pem: bytes) -> bytes:
    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    except ValueError:
        raise InvalidRequest(_MALFORMED) from None


def _der_from_rfc9440(value: str) -> bytes:
    """A structured-field byte sequence (RFC 8941 §3.3.5): ``:`` base64 ``:``."""
    if len(value) < 2 or value[0] != ":" or value[-1] != ":":
        raise InvalidRequest(_MALFORMED)
    try:
        der = base64.b64decode(value[1:-1], validate=True)
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.DER)
    except (binascii.Error, ValueError):
        raise InvalidRequest(_MALFORMED) from None


def _der_from_xfcc(value: str) -> bytes:
    """The last hop's certificate: its ``Cert``, which must hash (hex SHA-256) to its ``Hash``."""
    element = _xfcc_elements(value)[-1]
    cert, digest = element.get("cert"), element.get("hash")
    if cert is None or digest is None:
        raise InvalidRequest(_MALFORMED)
    der = _der_from_pem(unquote(cert).encode("ascii", "replace"))
    if not hmac.compare_digest(hashlib.sha256(der).hexdigest().encode(), digest.lower().encode("ascii", "replace")):
        raise InvalidRequest(_MALFORMED)
    return der


def _xfcc_elements(value: str) -> list[dict[str, str]]:
    """``x-forwarded-client-cert``: comma-separated elements of ``;``-separated pairs, keys lower-cased."""
    elements: list[dict[str, str]] = [{}]
    position = 0
    while position < len(value):
        match = _XFCC_PAIR.match(value, position)
        key = match.group(1).lower() if match else ""
        if match is None or key in elements[-1] or (not match.group(3) and match.end() != len(value)):
            raise InvalidRequest(_MALFORMED)
        elements[-1][key] = match.group(2).strip('"')
        if match.group(3) == ",":
            elements.append({})
        position = match.end()
    return elements
