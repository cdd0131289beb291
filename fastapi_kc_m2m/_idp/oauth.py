"""What both sides read from a token endpoint's answer: its OAuth error code (RFC 6749 §5.2) and when a
token it issued should be renewed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REFRESH_MARGIN", "error_code", "renew_at"]

#: A token is renewed this long before it expires at most; a short-lived one at 90 % of its life.
REFRESH_MARGIN = 30.0
_REFRESH_FRACTION = 0.1
# RFC 6749 §5.2: error codes are %x20-21 / %x23-5B / %x5D-7E; longer ones are not worth repeating.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")


def error_code(body: Mapping[str, Any] | None) -> str | None:
    """The answer's ``error`` (RFC 6749 §5.2) when it has the code syntax, else None (never repeated)."""
    code = body.get("error") if body is not None else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def renew_at(expires_at: float, lifetime: float) -> float:
    """When to renew a token of ``lifetime`` seconds expiring at ``expires_at``: ``min(30 s, 10 %)`` early."""
    return expires_at - min(REFRESH_MARGIN, _REFRESH_FRACTION * lifetime)
