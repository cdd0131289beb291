"""Header and claim rules for JWT access tokens (RFC 7519 §4.1, RFC 9068 §2 and §4, RFC 8725 §3).

They run before any key lookup, so junk tokens and untrusted issuers never cause a network call.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from ..errors import InvalidToken

# Header members that would make the token choose its own key or processing rules (RFC 7515 §4.1.2-6,
# §4.1.11, RFC 7797 §3): never honoured, so tokens carrying them are refused outright.
_FORBIDDEN_HEADER_MEMBERS = frozenset({"crit", "b64", "jku", "jwk", "x5u", "x5c"})
_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_PAYLOAD_TYPES = frozenset({"bearer"})
_BOUND_TYPES = frozenset({"dpop"})  # Keycloak 26.4+: a DPoP-bound token's payload typ
# Base64, base64url, UUIDs and thumbprints fit; "..", quotes, spaces and shell or SQL syntax do not.
_KID = re.compile(r"[A-Za-z0-9._~+/=:-]{1,256}")
_MAX_TIME = 2.0**53  # beyond any real date; rejects 1e30 and friends


def check_header(header: Mapping[str, Any], algorithms: Collection[str]) -> tuple[str, str | None]:
    """Return ``(alg, kid)`` of an acceptable JOSE header (RFC 7515 §4.1, RFC 9068 §4 step 2)."""
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("algorithm not allowed")
    if not _FORBIDDEN_HEADER_MEMBERS.isdisjoint(header):
        raise InvalidToken("unsupported token header")
    if "typ" in header and not _is_one_of(header["typ"], _HEADER_TYPES):
        raise InvalidToken("not an access token")
    if "kid" in header and (not isinstance(kid, str) or not _KID.fullmatch(kid) or ".." in kid):
        raise InvalidToken("malformed key id")
    return alg, kid


def _is_one_of(value: Any, allowed: frozenset[str]) -> bool:
    """A string equal, ignoring case, to one of ``allowed`` (RFC 7515 §4.1.9: media types)."""
    return isinstance(value, str) and value.lower() in allowed


def is_numeric_date(value: Any) -> bool:
    """A NumericDate (RFC 7519 §2): an int or float, finite, not negative, not absurdly large."""
    return type(value) in (int, float) and 0 <= value <= _MAX_TIME


def _numeric_date(value: Any) -> float:
    if not is_numeric_date(value):
        raise InvalidToken("malformed time claim")
    return float(value)


def check_times(claims: Mapping[str, Any], now: float, skew: float) -> None:
    """``exp`` required, ``nbf`` and ``iat`` optional (RFC 7519 §4.1.4-6), each with clock skew."""
    if "exp" not in claims:
        raise InvalidToken("token has no expiry")
    if now >= _numeric_date(claims["exp"]) + skew:
        raise InvalidToken("token expired")
    for name in ("nbf", "iat"):
        if name in claims and _numeric_date(claims[name]) > now + skew:
            raise InvalidToken("token not valid yet")


def check_type(claims: Mapping[str, Any]) -> str | None:
    """Keycloak's payload ``typ`` is required and must be ``Bearer``, or ``DPoP`` for a DPoP-bound token
    (RFC 8725 §3.11-3.12): untyped JWTs (a JARM response), ID, refresh and logout tokens are refused.

    Returns the token's DPoP binding (:func:`confirmation_key`); ``typ`` ``DPoP`` counts only with one.
    """
    typ = claims.get("typ")
    jkt = confirmation_key(claims)
    if not _is_one_of(typ, _PAYLOAD_TYPES) and not (jkt is not None and _is_one_of(typ, _BOUND_TYPES)):
        raise InvalidToken("not an access token")
    return jkt


def confirmation_key(claims: Mapping[str, Any]) -> str | None:
    """The ``cnf.jkt`` (RFC 9449 §6.1) a token is DPoP-bound to, None for any other token."""
    return confirmation(claims)[0]


def confirmation(claims: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(jkt, x5t#S256)`` of a token's ``cnf`` (RFC 9449 §6.1, RFC 8705 §3.1); ``(None, None)`` unbound.

    Unknown ``cnf`` members (Keycloak 26.7's ``kc-jkt-type``) are ignored (RFC 7800 §3.1); a ``cnf``
    with neither binding as a non-empty string, or with both (Keycloak never issues that), is refused.
    """
    if "cnf" not in claims:
        return None, None
    cnf = claims["cnf"]
    bindings = (cnf.get("jkt"), cnf.get("x5t#S256")) if isinstance(cnf, dict) else (None, None)
    present = [value for value in bindings if value is not None]
    if len(present) != 1 or not isinstance(present[0], str) or not present[0]:
        raise InvalidToken("sender-constrained tokens are not supported")
    return bindings


def check_audience(claims: Mapping[str, Any], audience: str) -> None:
    """``aud`` must be our audience or a list of strings containing it (RFC 7519 §4.1.3)."""
    aud = claims.get("aud")
    if aud == audience:  # Keycloak writes a single audience as a string
        return
    if not isinstance(aud, list) or audience not in aud or not all(isinstance(item, str) for item in aud):
        raise InvalidToken("token is not meant for this audience")


def calling_client(claims: Mapping[str, Any]) -> str | None:
    """The calling client: ``azp`` (OIDC Core §2) if a non-empty string, else ``client_id`` (RFC 9068 §2.2)
    if a string; the one rule for the allow-list and the principal."""
    azp = claims.get("azp")
    if isinstance(azp, str) and azp:
        return azp
    client_id = claims.get("client_id")
    return client_id if isinstance(client_id, str) else None


def check_client(claims: Mapping[str, Any], allowed: Collection[str]) -> None:
    """When an allow-list is set, the calling client (:func:`calling_client`) must be on it."""
    if not allowed:
        return
    client = calling_client(claims)
    if client is None or client not in allowed:
        raise InvalidToken("calling client not allowed")
