"""DPoP proofs (RFC 9449): making them (§4.2), checking them (§4.3), and the values they bind to.

Pure: no clock, no store, no I/O. :func:`check_proof` does every check of RFC 9449 §4.3 that needs
nothing but the proof and the request; the caller adds the replay check (§11.1, last), the nonce (§8,
§9) and the binding to the token's ``cnf.jkt`` (§6.1). Faults raise :class:`ProofError`, a
``ValueError`` whose message is a fixed phrase fit for a response.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, MutableMapping
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from .algorithms import EC_CURVES, RSA_ALGORITHMS, SUPPORTED_ALGORITHMS
from .claims import is_numeric_date
from .jwk import VerificationKey, verification_key
from .jws import b64url, decode_segment, signature_is_valid, split_compact
from .strictjson import loads_object

__all__ = [
    "PROOF_TYPE",
    "Proof",
    "ProofError",
    "ProofHeader",
    "ProofKey",
    "access_token_hash",
    "check_proof",
    "jwk_thumbprint",
    "make_proof",
    "normalized_htu",
]

#: The ``typ`` of a DPoP proof's header (§4.2).
PROOF_TYPE = "dpop+jwt"
#: A private key that signs proofs.
ProofKey = ECKey | RSAKey | OKPKey

# Members of the canonical JWK per key type, in lexicographic order (RFC 7638 §3.2).
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
# Private key members (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2): a proof's jwk must hold none of them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# A proof's header segment may be larger than a token's (an RSA jwk is ~550 bytes): deliberately bounded.
_MAX_HEADER_SEGMENT = 2048
_MAX_PROOF = 8192
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class ProofError(ValueError):
    """A DPoP proof that fails a check of RFC 9449 §4.3; the message is a fixed phrase."""


class Proof(NamedTuple):
    """What a valid proof asserts: its key's thumbprint (``jkt``), ``jti``, ``iat``, normalised ``htu``
    and the ``nonce`` it carries, if any."""

    jkt: str
    jti: str
    iat: float
    htu: str
    nonce: str | None


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the canonical members, sorted, no spaces."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None or any(not isinstance(jwk.get(name), str) for name in members):
        raise ProofError("unsupported proof key")
    canonical = ",".join(f'"{name}":{encode_basestring_ascii(jwk[name])}' for name in members)  # members are sorted
    return b64url(hashlib.sha256(f"{{{canonical}}}".encode()).digest())


def access_token_hash(token: str) -> str:
    """``ath`` (§4.2): base64url of the SHA-256 of the access token's ASCII bytes."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def _percent_normalized(part: str) -> str:
    """RFC 3986 §6.2.2.1-2: percent-encodings in upper case, unreserved characters decoded."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group()[1:], 16))
        return char if char in _UNRESERVED else match.group().upper()

    return _PERCENT.sub(one, part)


@functools.lru_cache(maxsize=256)  # an API's few URLs, normalised twice per request otherwise
def normalized_htu(url: str) -> str:
    """The ``htu`` a URL stands for (§4.3 item 9): query and fragment dropped, then RFC 3986 §6.2.2 and
    §6.2.3 normalisation (scheme and host in lower case, no default port, empty path as ``/``)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if not scheme or not host:
        raise ProofError("malformed htu")
    try:
        port = parts.port
    except ValueError:
        raise ProofError("malformed htu") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, _percent_normalized(parts.path) or "/", "", ""))


def _default_algorithm(key: ProofKey) -> str:
    if isinstance(key, RSAKey):
        return "PS256"
    if isinstance(key, OKPKey):
        return "EdDSA"
    return next(alg for alg, curve in EC_CURVES.items() if curve == key.curve_name)


def make_proof(
    key: ProofKey,
    *,
    htm: str,
    htu: str,
    iat: float,
    ath: str | None = None,
    nonce: str | None = None,
    jti: str | None = None,
    algorithm: str | None = None,
) -> str:
    """A DPoP proof (§4.2) signed with ``key``, whose public half rides in the header; ``htu`` loses
    its query and fragment. ``ath`` is for resource requests (§7.1), ``nonce`` when a server asked (§8)."""
    alg = algorithm or _default_algorithm(key)
    header = {"typ": PROOF_TYPE, "alg": alg, "jwk": key.as_dict(private=False)}
    claims: dict[str, Any] = {"jti": jti or str(uuid.uuid4()), "htm": htm, "htu": _without_query(htu), "iat": int(iat)}
    if ath is not None:
        claims["ath"] = ath
    if nonce is not None:
        claims["nonce"] = nonce
    segments = (b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    signing_input = ".".join(segments)
    return f"{signing_input}.{b64url(JWSRegistry.algorithms[alg].sign(signing_input.encode(), key))}"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class ProofHeader(NamedTuple):
    """A proof header that passed the header rules: its ``alg``, key thumbprint and imported key."""

    alg: str
    jkt: str
    key: VerificationKey


def check_proof(
    proof: str,
    *,
    algorithms: frozenset[str],
    htm: str,
    htu: str,
    now: float,
    max_age: float,
    max_ahead: float,
    ath: str | None = None,
    headers: MutableMapping[bytes, ProofHeader] | None = None,
) -> Proof:
    """Every check of §4.3 on its own: a compact JWS (item 2) with ``typ`` ``dpop+jwt`` (4), an allowed
    asymmetric ``alg`` fitting the ``jwk`` (5), a public ``jwk`` (7) whose signature verifies (6), ``jti``
    (3), ``htm`` equal (8), ``htu`` equal after normalisation (9), ``iat`` inside
    ``[now - max_age, now + max_ahead]`` (11) and, for a resource request, ``ath`` the given hash of
    the access token (§7.1, :func:`access_token_hash`). Raises :class:`ProofError`.

    ``headers`` caches checked header segments: a client's steady key makes the same header each time,
    so it is decoded, checked, thumbprinted and imported once (give the same ``algorithms`` every time)."""
    if len(proof) > _MAX_PROOF:
        raise ProofError("proof too large")
    try:
        header_segment, payload_segment, signing_input, signature_segment = split_compact(proof)
        checked = headers.get(header_segment) if headers is not None else None
        if checked is None:
            checked = _checked_header(header_segment, algorithms)
            if headers is not None:
                headers[header_segment] = checked
        claims = loads_object(decode_segment(payload_segment))
        signature = decode_segment(signature_segment)
    except ProofError:
        raise
    except ValueError:
        raise ProofError("malformed proof") from None
    if not signature_is_valid(signing_input, signature, checked.alg, checked.key.jwk):
        raise ProofError("invalid proof signature")
    window = (now - max_age, now + max_ahead)
    return _check_claims(claims, checked.jkt, htm=htm, htu=htu, window=window, ath=ath)


def _checked_header(segment: bytes, algorithms: frozenset[str]) -> ProofHeader:
    """The header rules (§4.3 items 4, 5, 7) on a header segment, deliberately bounded in size."""
    if len(segment) > _MAX_HEADER_SEGMENT:
        raise ProofError("malformed proof")
    alg, jwk = _check_header(loads_object(decode_segment(segment)), algorithms)
    key = verification_key(jwk, algorithms)
    if key is None or alg not in key.algorithms:
        raise ProofError("unusable proof key")
    return ProofHeader(alg, jwk_thumbprint(jwk), key)


def _check_header(header: Mapping[str, Any], algorithms: frozenset[str]) -> tuple[str, dict[str, Any]]:
    typ, alg, jwk = header.get("typ"), header.get("alg"), header.get("jwk")
    if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
        raise ProofError("not a DPoP proof")
    if not isinstance(alg, str) or alg not in algorithms or alg not in SUPPORTED_ALGORITHMS:
        raise ProofError("proof algorithm not allowed")
    if "crit" in header:
        raise ProofError("unsupported proof header")
    if not isinstance(jwk, dict) or not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise ProofError("proof key must be a public JWK")
    if (jwk.get("kty") == "RSA") != (alg in RSA_ALGORITHMS):
        raise ProofError("proof algorithm does not fit its key")
    return alg, jwk


def _check_claims(
    claims: Mapping[str, Any],
    jkt: str,
    *,
    htm: str,
    htu: str,
    window: tuple[float, float],
    ath: str | None,
) -> Proof:
    jti, nonce = claims.get("jti"), claims.get("nonce")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise ProofError("proof jti missing")
    if claims.get("htm") != htm:
        raise ProofError("proof htm mismatch")
    claimed = claims.get("htu")
    normalized = normalized_htu(claimed) if isinstance(claimed, str) else None
    # The same string normalises alike: the usual exact match costs one normalisation.
    if normalized is None or (claimed != htu and normalized != normalized_htu(htu)):
        raise ProofError("proof htu mismatch")
    if not is_numeric_date(claims.get("iat")):
        raise ProofError("proof iat missing")
    iat = float(claims["iat"])
    if not window[0] <= iat <= window[1]:
        raise ProofError("proof iat outside the window")
    if ath is not None:
        claimed_ath = claims.get("ath")
        if not isinstance(claimed_ath, str) or not hmac.compare_digest(claimed_ath.encode(), ath.encode()):
            raise ProofError("proof ath mismatch")
    if nonce is not None and not isinstance(nonce, str):
        raise ProofError("malformed proof nonce")
    return Proof(jkt, jti, iat, normalized, nonce)
