"""Turn a published JWK Set (RFC 7517 §5) into verification keys, keeping only safe signing keys.

A key is kept when its ``use`` is absent or ``sig`` (RFC 7517 §4.2), its ``key_ops`` (if any) allow
``verify`` (§4.3), its ``kty`` is known, RSA moduli have at least 2048 bits (RFC 7518 §3.3), public
exponents ``e`` (RFC 7518 §6.3.1.2) are odd with 3 <= e < 2^32 (NIST SP 800-56B Rev. 2 §6.2.1 asks for an
odd e; its upper bound of 2^256 is tightened so a hostile key set cannot make each check cost ms), EC points
lie on their curve (RFC 7518 §6.2.1) and at least one allowed algorithm fits it. The algorithms a key
may verify are bound to it: its type and curve decide them, and a JWK ``alg`` (§4.4) narrows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from .algorithms import MIN_RSA_BITS, algorithms_for
from .jws import b64url_decode

__all__ = ["VerificationKey", "usable_keys", "verification_key"]

_MAX_RSA_E = 2**32


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public signing key and the algorithms it may verify."""

    kid: str | None
    algorithms: frozenset[str]
    jwk: Key


def _b64url_int(value: Any) -> int:
    """A base64url-encoded unsigned integer (RFC 7518 §2); 0 when malformed."""
    try:
        return int.from_bytes(b64url_decode(value), "big") if isinstance(value, str) else 0
    except ValueError:
        return 0


def _usable_rsa(jwk: Mapping[str, Any]) -> bool:
    """A modulus of 2048 bits or more and an odd public exponent with 3 <= e < 2^32 (65537 in practice)."""
    exponent = _b64url_int(jwk.get("e"))
    return _b64url_int(jwk.get("n")).bit_length() >= MIN_RSA_BITS and exponent % 2 == 1 and 3 <= exponent < _MAX_RSA_E


def _family(jwk: Mapping[str, Any]) -> tuple[frozenset[str], dict[str, Any]] | None:
    """Algorithms a key type allows, and the public members to import; None for unusable keys."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if not isinstance(crv, str):
        crv = None  # a list or object would not even hash in the lookups below
    algorithms = algorithms_for(kty, crv)
    if not algorithms:
        return None
    if kty == "RSA":
        if not _usable_rsa(jwk):
            return None
        return algorithms, {"kty": kty, "n": jwk["n"], "e": jwk.get("e")}
    if kty == "EC":
        return algorithms, {"kty": kty, "crv": crv, "x": jwk.get("x"), "y": jwk.get("y")}
    return algorithms, {"kty": kty, "crv": crv, "x": jwk.get("x")}


_IMPORTERS: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}


def verification_key(jwk: Any, allowed: frozenset[str]) -> VerificationKey | None:
    """The verification key of one JWK for ``allowed`` algorithms, None when unusable (see above)."""
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
        return None
    kid, alg, key_ops = jwk.get("kid"), jwk.get("alg"), jwk.get("key_ops", ["verify"])
    family = _family(jwk)
    if family is None or not isinstance(key_ops, list) or "verify" not in key_ops:
        return None
    if not (kid is None or isinstance(kid, str)) or not (alg is None or isinstance(alg, str)):
        return None
    algorithms, public_members = family
    algorithms &= allowed if alg is None else allowed & {alg}
    if not algorithms:
        return None
    try:
        key = _IMPORTERS[public_members["kty"]].import_key(public_members)
    except Exception:  # joserfc and cryptography raise many types for bad points and numbers
        return None
    return VerificationKey(kid=kid, algorithms=frozenset(algorithms), jwk=key)


def usable_keys(jwks: Mapping[str, Any], allowed: frozenset[str]) -> list[VerificationKey]:
    """The signing keys of a JWK Set usable with ``allowed`` algorithms; other entries are skipped."""
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return []
    return [key for key in (verification_key(entry, allowed) for entry in entries) if key is not None]
