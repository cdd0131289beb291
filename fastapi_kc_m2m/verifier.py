"""Verification of Keycloak access tokens: ``await auth.verify(token) -> ServicePrincipal``.

Order of work (RFC 8725 §3, RFC 9068 §4): size cap, strict compact JWS, header rules, claim rules
(including the trusted issuer, which picks the key set), then the key and the signature. Everything
before the key lookup is local, so junk tokens and untrusted issuers cause no network call. Only a
token that passed all of it may then be introspected (RFC 7662, :mod:`.introspection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import httpx

from ._cache import TokenCache, bounded_put
from ._claims import check_audience, check_client, check_header, check_times, check_type
from ._discovery import ProviderMetadata
from ._jws import decode_segment, json_object, signature_is_valid, split_compact
from ._openapi import document_openapi
from ._state import STATE_KEY
from .errors import IdentityProviderUnavailable, InvalidToken
from .introspection import Introspector
from .keyset import KeySet
from .principal import ServicePrincipal
from .settings import KeycloakSettings

__all__ = ["KeycloakAuth"]

logger = logging.getLogger("fastapi_kc_m2m")

# Distinct JOSE headers remembered after passing the header rules: one per signing key in practice.
_HEADER_CACHE_SIZE = 64


class KeycloakAuth:
    """Owns the HTTP client, one key set per trusted issuer, the verified-token cache and, when
    introspection is configured, the introspector (which may raise ``ValueError`` for an unusable key).

    Use it as an async context manager (or from the app lifespan) so the HTTP client is closed::

        async with KeycloakAuth(KeycloakSettings(server_url=..., realm=..., audience="orders")) as auth:
            principal = await auth.verify(token)
    """

    def __init__(
        self,
        settings: KeycloakSettings | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``http_client`` (kept open on close) or ``transport`` replace the default HTTP set-up."""
        self.settings = settings if settings is not None else KeycloakSettings()  # type: ignore[call-arg]
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.http_timeout, connect=self.settings.http_connect_timeout),
            follow_redirects=False,
            transport=transport,
        )
        self._clock = clock
        metadata = {
            issuer: ProviderMetadata(issuer, self._client, self.settings) for issuer in self.settings.trusted_issuers
        }
        self._key_sets = {issuer: KeySet(meta, self._client, self.settings, clock) for issuer, meta in metadata.items()}
        self._cache: TokenCache[ServicePrincipal] = TokenCache(self.settings.token_cache_size, clock)
        self._introspector = (
            Introspector(self.settings, self._client, metadata, clock) if self.settings.introspects else None
        )
        self._introspect_all = self.settings.introspection == "always"
        self._lightweight = self.settings.lightweight_tokens
        self._may_introspect = self._introspect_all or self._lightweight
        self._algorithms = frozenset(self.settings.algorithms)
        self._prefetching: asyncio.Task[bool] | None = None
        self._headers: dict[bytes, tuple[str, str | None]] = {}

    async def __aenter__(self) -> KeycloakAuth:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel background fetches and close the HTTP client if this object created it."""
        if self._prefetching is not None:
            self._prefetching.cancel()
        for key_set in self._key_sets.values():
            key_set.close()
        if self._introspector is not None:
            self._introspector.close()
        if self._owns_client:
            await self._client.aclose()

    @property
    def ready(self) -> bool:
        """Whether every trusted issuer has usable keys loaded (for readiness probes)."""
        return all(key_set.ready for key_set in self._key_sets.values())

    async def prefetch(self) -> bool:
        """Load every issuer's keys now; True when all of them succeeded."""
        results = [await key_set.refresh() for key_set in self._key_sets.values()]
        return all(results)

    async def startup(self, *, prefetch: bool = True, strict: bool = False) -> None:
        """Load the keys at start-up: in the background (start-up never waits for Keycloak), or with
        ``strict=True`` now, raising :class:`~.errors.IdentityProviderUnavailable` when that fails."""
        if strict:
            if not await self.prefetch():
                raise IdentityProviderUnavailable(
                    math.ceil(self.settings.jwks_retry_interval), "keys unavailable at start-up"
                )
        elif prefetch:
            self._prefetching = asyncio.get_running_loop().create_task(self.prefetch())

    @contextlib.asynccontextmanager
    async def lifespan(
        self, app: Any = None, *, prefetch: bool = True, strict: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The app lifespan, ``FastAPI(lifespan=auth.lifespan)``: :meth:`startup`, then share this verifier
        with every request (lifespan state ``keycloak_auth``), document the OAuth2 flow in the app's
        OpenAPI (RFC 6749 §4.4) and close the HTTP client at shut-down."""
        async with self:
            await self.startup(prefetch=prefetch, strict=strict)
            document_openapi(app, self.settings)
            yield {STATE_KEY: self}

    async def verify(self, token: str, *, introspect: bool = False) -> ServicePrincipal:
        """Verify a bearer token and return its principal, or raise an :class:`~.errors.AuthError`.

        The token is introspected (RFC 7662) after local verification when ``introspect`` is true, the
        policy is ``always``, or it is a lightweight token; ``introspect=True`` with introspection off is
        a set-up mistake, refused with :class:`~.errors.IdentityProviderUnavailable` and logged.

        Raises :class:`~.errors.InvalidToken` for every token fault (an inactive token included) and
        :class:`~.errors.IdentityProviderUnavailable` when no usable keys or introspection answer can
        be had.
        """
        if len(token) > self.settings.max_token_bytes:
            raise InvalidToken("token too large")
        raw = token.encode("utf-8", "surrogatepass")  # non-ASCII bytes never pass split_compact
        digest = hashlib.sha256(raw).digest()
        principal = self._cache.get(digest)
        if principal is None:
            principal = await self._verify_new(raw)
            self._cache.put(digest, principal, min(principal.expires_at, self._clock() + self.settings.token_cache_ttl))
        if introspect or self._may_introspect:
            return await self._introspected(token, digest, principal, introspect)
        return principal

    async def _introspected(
        self, token: str, digest: bytes, principal: ServicePrincipal, requested: bool
    ) -> ServicePrincipal:
        if self._introspector is None:  # require_active_token() while introspection is off: fail closed
            logger.error(
                "introspection requested (require_active_token) but off: set KC_M2M_INTROSPECTION=per_route"
                " and the client credentials; refusing with 503"
            )
            raise IdentityProviderUnavailable(math.ceil(self.settings.jwks_retry_interval), "introspection is off")
        # No audience in a verified principal means a lightweight token: it never passes without an answer.
        if requested or self._introspect_all or not principal.audiences:
            return await self._introspector.check(token, digest, principal)
        return principal

    def _check_header(self, segment: bytes) -> tuple[str, str | None]:
        """``(alg, kid)`` of a header segment; Keycloak reuses one header per key, so it is cached."""
        checked = self._headers.get(segment)
        if checked is None:
            checked = check_header(json_object(decode_segment(segment)), self._algorithms)
            bounded_put(self._headers, segment, checked, _HEADER_CACHE_SIZE)
        return checked

    async def _verify_new(self, token: bytes) -> ServicePrincipal:
        header, payload, signing_input, signature = split_compact(token)
        alg, kid = self._check_header(header)
        claims = json_object(decode_segment(payload))
        check_type(claims)
        issuer = claims.get("iss")
        key_set = self._key_sets.get(issuer) if isinstance(issuer, str) else None
        if key_set is None:
            raise InvalidToken("untrusted issuer")
        check_times(claims, self._clock(), self.settings.clock_skew)
        if not (self._lightweight and "aud" not in claims):  # a lightweight token's aud comes from introspection
            check_audience(claims, self.settings.audience)
        check_client(claims, self.settings.allowed_clients)
        key = key_set.fresh_key(kid, alg)
        if key is None:
            key = await key_set.key_for(kid, alg)
        if not signature_is_valid(signing_input, decode_segment(signature), alg, key):
            raise InvalidToken("invalid signature")
        return ServicePrincipal.from_claims(claims)
