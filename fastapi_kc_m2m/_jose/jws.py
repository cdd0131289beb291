"""Strict JWS compact serialization (RFC 7515 §7.1) and signature checks through joserfc's algorithms;
RSASSA-PKCS1-v1_5 (RS256, Keycloak's default) goes straight to ``cryptography`` with padding and hash
objects made once.

Stricter than RFC 7515 demands, on purpose (RFC 8725 §3): exactly three segments, canonical unpadded
base64url (RFC 7515 §2, RFC 4648 §5) with zero trailing bits, and strict JSON objects
(:mod:`.strictjson`). Malformed input raises :class:`ValueError`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc.jwk import Key, RSAKey
from joserfc.jws import JWSRegistry

from .strictjson import loads_object

__all__ = ["CompactJWS", "b64url", "b64url_decode", "decode_segment", "parse", "signature_is_valid", "split_compact"]

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# base64url to base64 (RFC 4648 §5 to §4); "+", "/" and "=" become "*", outside both alphabets, so the
# strict decoder refuses them with everything else that is not base64url (white space, non-ASCII, dots).
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
# For a segment of length 4k+2 (4k+3) the last character carries 4 (2) unused bits, which must be 0.
_UNUSED_BITS_MASK = {0: 0, 2: 0x0F, 3: 0x03}
#: RFC 7518 §3.3: RSASSA-PKCS1-v1_5 with SHA-2; stateless objects, shared by every verification.
_PKCS1V15 = padding.PKCS1v15()
_PKCS1_HASHES: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
}


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_segment(segment: bytes) -> bytes:
    """Decode canonical unpadded base64url (RFC 7515 §2); anything else, padding included, is refused
    in the same C-level pass that decodes."""
    mask = _UNUSED_BITS_MASK.get(len(segment) % 4)
    if mask is None or not segment or _ALPHABET.find(segment[-1]) & mask:  # -1 & mask: refused
        raise ValueError("not canonical base64url")
    # binascii.Error is a ValueError.
    return binascii.a2b_base64(segment.translate(_TO_STANDARD) + b"=" * (-len(segment) % 4), strict_mode=True)


def b64url_decode(segment: str) -> bytes:
    """Decode canonical unpadded base64url (RFC 7515 §2)."""
    return decode_segment(segment.encode("ascii", "replace"))


def split_compact(token: str | bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Split a compact JWS (RFC 7515 §7.1) into header, payload, signing input and signature segments.

    Exactly three segments (so neither JWE's five nor the JSON serialization's one); their characters
    are left to :func:`decode_segment`, which every segment goes through before it is trusted (a header
    cached by its segment was decoded when it was first seen).
    """
    raw = token if isinstance(token, bytes) else token.encode("ascii", "replace")
    header, payload, signature = raw.split(b".")  # ValueError unless exactly two dots
    return header, payload, raw[: len(header) + 1 + len(payload)], signature


class CompactJWS(NamedTuple):
    """A compact JWS taken apart, nothing verified yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse(token: str | bytes, *, max_header: int | None = None) -> CompactJWS:
    """Header and payload objects, signing input and decoded signature of a compact JWS (RFC 7515 §5.2);
    a header segment longer than ``max_header`` is refused before it is decoded."""
    header, payload, signing_input, signature = split_compact(token)
    if max_header is not None and len(header) > max_header:
        raise ValueError("header too large")
    return CompactJWS(
        loads_object(decode_segment(header)),
        loads_object(decode_segment(payload)),
        signing_input,
        decode_segment(signature),
    )


def signature_is_valid(signing_input: bytes, signature: bytes, alg: str, key: Key) -> bool:
    """Check the signature with ``alg`` (RFC 7515 §5.2 step 8); ``alg`` must already fit ``key``."""
    digest = _PKCS1_HASHES.get(alg)
    try:
        if digest is None:
            return JWSRegistry.algorithms[alg].verify(signing_input, signature, key)
        if not isinstance(key, RSAKey):  # a plain class: an ABC check on the public key costs 0.5 us
            return False
        # key.get_op_key's key_ops check is moot: verification_key required "verify" (RFC 7517 §4.3).
        key.public_key.verify(signature, signing_input, _PKCS1V15, digest)
    except (InvalidSignature, ValueError):
        return False
    return True
