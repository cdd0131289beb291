"""Strict JWS compact serialization (RFC 7515 §7.1) and signature checks through joserfc's algorithms.

Stricter than RFC 7515 demands, on purpose (RFC 8725 §3): exactly three segments, canonical unpadded
base64url (RFC 7515 §2, RFC 4648 §5) with zero trailing bits, UTF-8 JSON objects (RFC 8259 §8.1) with
no duplicate member names (RFC 7515 §5.2 step 4) and no NaN or Infinity.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from .errors import InvalidToken

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# For a segment of length 4k+2 (4k+3) the last character carries 4 (2) unused bits, which must be 0.
_UNUSED_BITS_MASK = {0: 0, 2: 0x0F, 3: 0x03}


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """The decoded parts of a compact JWS; nothing in it is trusted until the signature is checked."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)


def b64url_decode(segment: str) -> bytes:
    """Decode canonical unpadded base64url or raise :class:`InvalidToken`."""
    mask = _UNUSED_BITS_MASK.get(len(segment) % 4)
    if mask is None or not _BASE64URL.fullmatch(segment) or _ALPHABET.index(segment[-1]) & mask:
        raise InvalidToken("malformed token")
    return binascii.a2b_base64(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4))


def json_object(raw: bytes) -> dict[str, Any]:
    """Parse a strict UTF-8 JSON object (RFC 8259 §4, §8.1) or raise :class:`InvalidToken`."""
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed token")
    return value


def parse_compact(token: str) -> CompactJWS:
    """Split and decode a compact JWS (RFC 7515 §7.1); JSON serialization and JWE are refused."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    header_b64, payload_b64, signature_b64 = parts
    return CompactJWS(
        header=json_object(b64url_decode(header_b64)),
        payload=json_object(b64url_decode(payload_b64)),
        signing_input=token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii"),
        signature=b64url_decode(signature_b64),
    )


def signature_is_valid(jws: CompactJWS, alg: str, key: Key) -> bool:
    """Check the signature with ``alg`` (RFC 7515 §5.2 step 8); ``alg`` must already fit ``key``."""
    model = JWSRegistry.algorithms[alg]
    try:
        return model.verify(jws.signing_input, jws.signature, key)
    except (InvalidSignature, ValueError):
        return False
