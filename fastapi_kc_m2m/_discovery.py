"""OpenID Provider Metadata of one issuer (OpenID Connect Discovery 1.0 §4), fetched once and kept."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._http import FetchError, read_json_object
from ._singleflight import SingleFlight
from .settings import KeycloakSettings

logger = logging.getLogger("fastapi_kc_m2m")


class ProviderMetadata:
    """The discovery document of ``issuer``; its ``issuer`` must equal ours exactly (§4.3)."""

    def __init__(self, issuer: str, client: httpx.AsyncClient, settings: KeycloakSettings) -> None:
        self.issuer = issuer
        self._client = client
        self._settings = settings
        self._document: Mapping[str, Any] | None = None
        self._flight: SingleFlight[Mapping[str, Any]] = SingleFlight()

    async def endpoint(self, name: str) -> str:
        """An endpoint URL such as ``jwks_uri``; it may be on another host than ``iss`` (backchannel)."""
        document = self._document or await self._flight.run(self._fetch)
        url = document.get(name)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise FetchError(f"discovery has no usable {name}")
        return url

    async def _fetch(self) -> Mapping[str, Any]:
        request = self._client.build_request("GET", f"{self.issuer}/.well-known/openid-configuration")
        document = await read_json_object(
            self._client, request, max_bytes=self._settings.http_max_body, time_limit=self._settings.http_timeout
        )
        if document.get("issuer") != self.issuer:
            logger.error(
                "discovery for %s names another issuer; configure the exact issuer Keycloak reports"
                " (fix KC_HOSTNAME so every caller sees the same one)",
                self.issuer,
            )
            raise FetchError("issuer mismatch")
        self._document = document
        return document

    def close(self) -> None:
        """Cancel a fetch under way."""
        self._flight.cancel()
