"""Strict JWS compact serialization (RFC 7515 §7.1) and signature checks through joserfc's algorithms.

Stricter than RFC 7515 demands, on purpose (RFC 8725 §3): exactly three segments, canonical unpadded
base64url (RFC 7515 §2, RFC 4648 §5) with zero trailing bits, UTF-8 JSON objects (RFC 8259 §8.1) with
no duplicate member names (RFC 7515 §5.2 step 4) and no NaN or Infinity.
"""

from __future__ import annotations

import binascii
import json
import json.scanner
from typing import Any

from cryptography.exceptions import InvalidSignature
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from .errors import InvalidToken

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# For a segment of length 4k+2 (4k+3) the last character carries 4 (2) unused bits, which must be 0.
_UNUSED_BITS_MASK = {0: 0, 2: 0x0F, 3: 0x03}


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


# The C scanner itself, skipping JSONDecoder.decode's Python wrapper (typeshed types its argument oddly).
_SCAN_JSON = json.scanner.make_scanner(
    json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)  # type: ignore[arg-type]
)


def decode_segment(segment: bytes) -> bytes:
    """Decode a canonical base64url segment already known to hold only base64url characters."""
    mask = _UNUSED_BITS_MASK.get(len(segment) % 4)
    if mask is None or not segment or _ALPHABET.index(segment[-1]) & mask:
        raise InvalidToken("malformed token")
    return binascii.a2b_base64(segment.translate(_TO_STANDARD) + b"=" * (-len(segment) % 4))


def b64url_decode(segment: str) -> bytes:
    """Decode canonical unpadded base64url (RFC 7515 §2) or raise :class:`InvalidToken`."""
    raw = segment.encode("ascii", "replace")
    if raw.translate(None, _ALPHABET):
        raise InvalidToken("malformed token")
    return decode_segment(raw)


def json_object(raw: bytes) -> dict[str, Any]:
    """Parse a strict UTF-8 JSON object (RFC 8259 §4, §8.1) or raise :class:`InvalidToken`.

    Nothing may precede or follow the object, not even white space.
    """
    try:
        text = raw.decode("utf-8")
        value, end = _SCAN_JSON(text, 0)
    except (UnicodeDecodeError, ValueError, StopIteration, RecursionError):
        raise InvalidToken("malformed token") from None
    if end != len(text) or not isinstance(value, dict):
        raise InvalidToken("malformed token")
    return value


def split_compact(token: str | bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Split a compact JWS (RFC 7515 §7.1) into header, payload, signing input and signature segments.

    One C-level pass refuses anything but the base64url alphabet and exactly two dots, so the JSON
    serialization, JWE (five segments) and stray whitespace or padding never get further.
    """
    raw = token if isinstance(token, bytes) else token.encode("ascii", "replace")
    if raw.translate(None, _ALPHABET) != b"..":
        raise InvalidToken("malformed token")
    header, payload, signature = raw.split(b".")
    return header, payload, raw[: len(header) + 1 + len(payload)], signature


def signature_is_valid(signing_input: bytes, signature: bytes, alg: str, key: Key) -> bool:
    """Check the signature with ``alg`` (RFC 7515 §5.2 step 8); ``alg`` must already fit ``key``."""
    model = JWSRegistry.algorithms[alg]
    try:
        return model.verify(signing_input, signature, key)
    except (InvalidSignature, ValueError):
        return False
