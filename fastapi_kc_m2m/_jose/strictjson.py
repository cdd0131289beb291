"""Strict JSON objects (RFC 8259 §4, §8.1, §8.2): UTF-8, no duplicate member names, no NaN or Infinity, no
lone surrogate escapes (``"\\ud800"``: no Unicode character, and unencodable when echoed back).

One C-level scan, skipping ``JSONDecoder.decode``'s Python wrapper. Anything else raises
:class:`ValueError`; what that means is the caller's to say.
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any

__all__ = ["loads_object"]


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # RFC 7515 §5.2 step 4, RFC 7519 §7.2 step 11
        raise ValueError("duplicate member name")
    return obj


# typeshed types the decoder's argument oddly; the scanner takes the decoder's settings.
_SCAN = json.scanner.make_scanner(
    json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)  # type: ignore[arg-type]
)


def loads_object(raw: bytes) -> dict[str, Any]:
    """Parse one JSON object; nothing may precede or follow it, not even white space."""
    try:
        text = raw.decode("utf-8")
        value, end = _SCAN(text, 0)
    except (StopIteration, RecursionError):
        raise ValueError("not a JSON object") from None
    # UnicodeDecodeError and the decoder's JSONDecodeError are ValueErrors already.
    if end != len(text) or not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if "\\ud" in text or "\\uD" in text:  # the only way a surrogate gets in: raw ones fail UTF-8
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: dict[str, Any]) -> None:
    """RFC 8259 §8.2: every string, member names too, must be Unicode; a pair decodes to one character."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise ValueError("lone surrogate in a string") from None
