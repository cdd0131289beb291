"""The URLs this package accepts for Keycloak's endpoints."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["check_http_url", "is_cleartext_over_network"]


def check_http_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL without credentials, query or fragment (RFC 3986 §3), else
    a ``ValueError`` naming ``what``; a URL holding credentials is never repeated."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(f"{what} must not hold a user name or password (RFC 3986 §3.2.1)")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{what} must be an absolute http(s) URL without query or fragment, got {url!r}")
    return url


def is_cleartext_over_network(url: str) -> bool:
    """Whether ``url`` is ``http://`` to a host other than loopback (127.0.0.0/8, ::1, ``localhost``):
    tokens and client secrets would cross a network in clear (RFC 6750 §5.3, RFC 6749 §1.6)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name
        return True
