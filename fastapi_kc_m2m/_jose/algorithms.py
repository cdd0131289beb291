"""The one table of JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1) and the keys that fit them.

Asymmetric algorithms only: HMAC and ``none`` are absent on purpose, since a resource server never
shares a secret with the issuer and an unsigned token proves nothing.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ASSERTION_ALGORITHMS",
    "EC_CURVES",
    "MIN_RSA_BITS",
    "OKP_CURVES",
    "RSA_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "KeyType",
    "algorithms_for",
    "key_type",
]

KeyType = Literal["RSA", "EC", "OKP"]

#: RSASSA-PKCS1-v1_5 and RSASSA-PSS (RFC 7518 §3.3, §3.5).
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
#: ECDSA, each algorithm bound to exactly one curve (RFC 7518 §3.4).
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
#: EdDSA's curves (RFC 8037 §3.1).
OKP_CURVES = frozenset({"Ed25519", "Ed448"})
#: Every algorithm the verifier can be allowed to accept.
SUPPORTED_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_CURVES) | {"EdDSA"}
#: Algorithms a client assertion (RFC 7523) may be signed with: Keycloak's, without EdDSA.
ASSERTION_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_CURVES)
#: RFC 7518 §3.3: RSA keys of 2048 bits or more.
MIN_RSA_BITS = 2048


def key_type(algorithm: str) -> KeyType:
    """The JWK ``kty`` an algorithm needs (RFC 7518 §6.1); ``ValueError`` for unknown algorithms."""
    if algorithm in RSA_ALGORITHMS:
        return "RSA"
    if algorithm in EC_CURVES:
        return "EC"
    if algorithm == "EdDSA":
        return "OKP"
    raise ValueError(f"unsupported algorithm {algorithm!r}")


def algorithms_for(kty: object, crv: object) -> frozenset[str]:
    """The algorithms a key of type ``kty`` (and curve ``crv``) may verify; empty for unusable keys."""
    if kty == "RSA":
        return RSA_ALGORITHMS
    if kty == "EC":
        return frozenset(alg for alg, curve in EC_CURVES.items() if curve == crv)
    if kty == "OKP" and crv in OKP_CURVES:
        return frozenset({"EdDSA"})
    return frozenset()
