"""Bounded HTTP exchanges with the identity provider: capped body, total deadline, no redirects."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .._jose.strictjson import loads_object

__all__ = [
    "FetchError",
    "HttpLimits",
    "NotFound",
    "Unreachable",
    "read_answer",
    "read_answer_sync",
    "read_json_object",
    "trust_context",
]


class FetchError(Exception):
    """The identity provider's answer could not be used; the message names the reason, never a body;
    ``status_code`` is the HTTP status that refused it, if that was the reason."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How much one exchange may take: ``max_body`` bytes within ``timeout`` seconds in all."""

    max_body: int
    timeout: float


class NotFound(FetchError):
    """The identity provider answered 404 (RFC 9110 §15.5.5): for a realm URL, no such realm."""


class Unreachable(FetchError):
    """The exchange did not complete: no connection, a transport error, or the deadline passed."""


# Response headers a caller may need from the identity provider: a DPoP nonce (RFC 9449 §8.2).
_KEPT_HEADERS = ("DPoP-Nonce",)


class _Body:
    """The raw body of one response as it arrives: the one place the size cap is enforced.

    Bodies are asked for and read uncompressed (RFC 9110 §12.5.3): a decompressed chunk could be far
    larger than the cap before it is checked.
    """

    def __init__(self, response: httpx.Response, max_body: int, *, require_ok: bool) -> None:
        if require_ok and response.status_code != 200:
            raise (NotFound if response.status_code == 404 else FetchError)(
                f"status {response.status_code}", status_code=response.status_code
            )
        if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise FetchError("compressed body")
        self._status = response.status_code
        self._headers = [(name, value) for name in _KEPT_HEADERS for value in response.headers.get_list(name)]
        self._max_body = max_body
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > self._max_body:
            raise FetchError("body too large")

    def response(self, request: httpx.Request) -> httpx.Response:
        """The status and the whole body, as a read response keeping only the headers of :data:`_KEPT_HEADERS`."""
        return httpx.Response(self._status, headers=self._headers, content=bytes(self._data), request=request)


async def read_json_object(client: httpx.AsyncClient, request: httpx.Request, limits: HttpLimits) -> Mapping[str, Any]:
    """Send ``request`` and return the strict JSON object (RFC 8259) of its 200 response, bounded as
    :func:`read_answer` bounds it; redirects are not followed, so a JWKS cannot be moved to another host."""
    return json_answer((await read_answer(client, request, limits, require_ok=True)).content)


async def read_answer(
    client: httpx.AsyncClient, request: httpx.Request, limits: HttpLimits, *, require_ok: bool = False
) -> httpx.Response:
    """Send ``request``; its answer, read whole, must fit ``limits.max_body`` and the whole exchange
    ``limits.timeout`` seconds. Raises :class:`FetchError` (:class:`Unreachable` for transport failures)."""
    request.headers["Accept-Encoding"] = "identity"
    try:
        async with asyncio.timeout(limits.timeout):
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                body = _Body(response, limits.max_body, require_ok=require_ok)
                async for chunk in response.aiter_raw():
                    body.add(chunk)
            finally:
                await response.aclose()
    except TimeoutError:
        raise Unreachable("timed out") from None
    except httpx.HTTPError as exc:
        raise Unreachable(type(exc).__name__) from None
    return body.response(request)


def read_answer_sync(client: httpx.Client, request: httpx.Request, limits: HttpLimits) -> httpx.Response:
    """:func:`read_answer` for a sync client: the deadline is checked between chunks, and the body's
    reads may only wait for what remains of it once the headers are in."""
    deadline = time.monotonic() + limits.timeout
    request.headers["Accept-Encoding"] = "identity"
    request.extensions["timeout"] = httpx.Timeout(limits.timeout).as_dict()
    try:
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            body = _Body(response, limits.max_body, require_ok=False)
            request.extensions["timeout"] = httpx.Timeout(_remaining(deadline)).as_dict()  # read when the body starts
            for chunk in response.iter_raw():
                _remaining(deadline)
                body.add(chunk)
        finally:
            response.close()
    except httpx.TimeoutException:
        raise Unreachable("timed out") from None
    except httpx.HTTPError as exc:
        raise Unreachable(type(exc).__name__) from None
    return body.response(request)


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; :class:`Unreachable` once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unreachable("timed out")
    return left


def json_answer(body: bytes) -> dict[str, Any]:
    """The strict JSON object of an answer from Keycloak; the one place a parse error becomes a fetch failure."""
    try:
        return loads_object(body)
    except ValueError:
        raise FetchError("not a JSON object") from None


def trust_context(ca_file: str | os.PathLike[str], name: str) -> ssl.SSLContext:
    """A client TLS context trusting the CA certificates of the PEM file ``ca_file`` for Keycloak's HTTPS
    (RFC 9110 §4.3.4); a ``ValueError`` naming the option ``name``, never what the file holds."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError):
        raise ValueError(f"{name} must name a readable PEM file of CA certificates") from None
