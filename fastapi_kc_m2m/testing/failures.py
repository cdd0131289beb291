"""How the test issuer's endpoints misbehave on request, for outage and fault drills."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["FailureMode", "misshapen"]

#: How an endpoint of the issuer misbehaves: an error status, a hang past any sane timeout, the right
#: answer but only after 10 seconds, an HTML page, a body far over the size cap, a key set with no
#: usable key, or an introspection answer whose ``active`` is the string ``"true"`` or missing.
FailureMode = Literal["status", "timeout", "slow", "html", "oversized", "no_keys", "active_string", "active_missing"]


def misshapen(document: Mapping[str, Any], mode: FailureMode | None) -> dict[str, Any]:
    """The JSON body an endpoint answers in failure ``mode`` (``None``: the document itself)."""
    if mode == "oversized":
        return {"keys": [], "padding": "x" * (1 << 20)}
    if mode == "no_keys":
        return {"keys": []}
    if mode == "active_string":
        return {**document, "active": "true"}
    if mode == "active_missing":
        return {name: value for name, value in document.items() if name != "active"}
    return dict(document)
