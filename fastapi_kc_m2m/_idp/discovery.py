"""OpenID Provider Metadata (OpenID Connect Discovery 1.0 §4): one parser for both sides, and the
resource server's cached, single-flight copy of it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .http import FetchError, HttpLimits, read_json_object
from .singleflight import SingleFlight
from .urls import check_http_url

__all__ = ["ProviderMetadata", "discovery_url", "endpoint_of", "mtls_endpoint_of"]


def discovery_url(issuer: str) -> str:
    """Where ``issuer`` publishes its metadata (§4.1)."""
    return f"{issuer}/.well-known/openid-configuration"


def endpoint_of(document: Mapping[str, Any], issuer: str, name: str) -> str:
    """The endpoint ``name`` (e.g. ``jwks_uri``) of a discovery document, which must name ``issuer``
    exactly (§4.3); the endpoint may be on another host (a backchannel). Raises :class:`FetchError`."""
    if document.get("issuer") != issuer:
        raise FetchError("discovery names another issuer")
    return _usable_url(document.get(name), name)


def mtls_endpoint_of(document: Mapping[str, Any], issuer: str, name: str) -> str:
    """The endpoint ``name`` for mutual-TLS clients: ``mtls_endpoint_aliases[name]`` when advertised
    (RFC 8705 §5), else :func:`endpoint_of`. Raises :class:`FetchError`."""
    default = endpoint_of(document, issuer, name)
    aliases = document.get("mtls_endpoint_aliases")
    if not isinstance(aliases, Mapping) or name not in aliases:
        return default
    return _usable_url(aliases[name], f"mtls_endpoint_aliases.{name}")


def _usable_url(url: Any, name: str) -> str:
    """``url`` if it is an http(s) URL (:func:`check_http_url`), else :class:`FetchError` naming ``name``."""
    try:
        return check_http_url(url, name) if isinstance(url, str) else check_http_url("", name)
    except ValueError:
        raise FetchError(f"discovery has no usable {name}") from None


class ProviderMetadata:
    """The discovery document of ``issuer``, fetched once (bounded by ``limits``) and kept; after a failed
    fetch, none for ``retry_interval`` seconds by ``clock``."""

    def __init__(
        self,
        issuer: str,
        client: httpx.AsyncClient,
        limits: HttpLimits,
        *,
        retry_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.issuer = issuer
        self._client = client
        self._limits = limits
        self._retry_interval = retry_interval
        self._clock = clock
        self._retry_at = -math.inf
        self._document: Mapping[str, Any] | None = None
        self._flight: SingleFlight[Mapping[str, Any]] = SingleFlight()

    async def endpoint(self, name: str) -> str:
        """An endpoint URL such as ``jwks_uri`` (:func:`endpoint_of`); :class:`FetchError` while
        backing off."""
        document = self._document
        if document is None:
            if self._clock() < self._retry_at and not self._flight.in_flight:
                raise FetchError("discovery failed recently")
            document = await self._flight.run(self._fetch)
        return endpoint_of(document, self.issuer, name)

    @property
    def in_flight(self) -> bool:
        """Whether a fetch is under way."""
        return self._flight.in_flight

    async def _fetch(self) -> Mapping[str, Any]:
        try:
            document = await read_json_object(
                self._client, self._client.build_request("GET", discovery_url(self.issuer)), self._limits
            )
            if document.get("issuer") != self.issuer:
                raise FetchError("discovery names another issuer")
        except Exception:  # any failure, even an unforeseen one: the caller reports it
            self._retry_at = self._clock() + self._retry_interval
            raise
        self._document = document
        return document

    def close(self) -> None:
        """Cancel a fetch under way."""
        self._flight.cancel()
