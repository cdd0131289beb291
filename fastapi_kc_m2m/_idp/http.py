"""Bounded HTTP exchanges with the identity provider: capped body, total deadline, no redirects."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .._jose.strictjson import loads_object

__all__ = ["FetchError", "HttpLimits", "read_json_object"]


class FetchError(Exception):
    """The identity provider's answer could not be used; the message names the reason, never a body."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How much one exchange may take: ``max_body`` bytes within ``timeout`` seconds in all."""

    max_body: int
    timeout: float


async def read_json_object(client: httpx.AsyncClient, request: httpx.Request, limits: HttpLimits) -> Mapping[str, Any]:
    """Send ``request`` and return the strict JSON object (RFC 8259) of its 200 response.

    The whole exchange must finish within ``limits.timeout`` seconds and the body must not exceed
    ``limits.max_body``; redirects are not followed, so a JWKS cannot be moved to another host. The body
    is asked for and read uncompressed (RFC 9110 §12.5.3): a decompressed chunk could be far larger than
    the cap before it is checked.
    """
    request.headers["Accept-Encoding"] = "identity"
    try:
        async with asyncio.timeout(limits.timeout):
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code != 200:
                    raise FetchError(f"status {response.status_code}")
                if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                    raise FetchError("compressed body")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limits.max_body:
                        raise FetchError("body too large")
            finally:
                await response.aclose()
    except TimeoutError:
        raise FetchError("timed out") from None
    except httpx.HTTPError as exc:
        raise FetchError(type(exc).__name__) from None
    return json_answer(bytes(body))


def json_answer(body: bytes) -> dict[str, Any]:
    """The strict JSON object of an answer from Keycloak; the one place a parse error becomes a fetch failure."""
    try:
        return loads_object(body)
    except ValueError:
        raise FetchError("not a JSON object") from None
