"""The key-set cache of one trusted issuer: JWKS (RFC 7517 §5) found through discovery (OIDC §4).

Policy, all timings from :class:`~fastapi_kc_m2m.settings.KeycloakSettings`:

- fresh for ``jwks_ttl``; from ``jwks_ttl - jwks_refresh_ahead`` on, a background refresh runs while the
  current keys keep serving;
- an unknown ``kid`` triggers one refetch per ``jwks_refetch_cooldown`` (Keycloak signs with a new key at
  once), none within ``jwks_retry_interval`` of a failed fetch; callers arriving while a fetch runs join it;
- exactly one fetch in flight, shared by every waiter;
- a failed fetch (status, timeout, not JSON, too large, no usable key) keeps the last good keys serving
  up to ``jwks_max_stale`` after their fetch; new attempts wait ``jwks_retry_interval``;
- with no usable keys the caller gets :class:`IdentityProviderUnavailable` with a retry-after hint;
- a fetch that no longer publishes a kid tells ``on_retired`` which kids went, so tokens verified with
  them stop passing at once (RFC 7517 §5: the set is the issuer's current keys).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from joserfc.jwk import Key

from .._idp.discovery import ProviderMetadata
from .._idp.http import FetchError, NotFound, read_json_object
from .._idp.singleflight import SingleFlight
from .._idp.tracing import Attributes, failure_attributes, host
from .._jose.jwk import VerificationKey, usable_keys
from ..errors import IdentityProviderUnavailable, InvalidToken
from ..settings import KeycloakSettings
from .observer import LoggingObserver, Observer

__all__ = ["KeySet"]


class KeySet:
    """Signing keys of one issuer, kept fresh and available through rotations and outages."""

    def __init__(
        self,
        metadata: ProviderMetadata,
        client: httpx.AsyncClient,
        settings: KeycloakSettings,
        *,
        clock: Callable[[], float],
        observer: Observer | None = None,
        on_retired: Callable[[frozenset[str | None]], None] | None = None,
    ) -> None:
        self.issuer = metadata.issuer
        #: The realm name of :attr:`issuer` (:meth:`~.settings.KeycloakSettings.realm_of`), worked out once.
        self.realm = settings.realm_of(self.issuer)
        self._on_retired = on_retired
        self._metadata = metadata
        self._client = client
        self._settings = settings
        self._clock = clock
        self._allowed = frozenset(settings.algorithms)
        self._by_kid: dict[str | None, tuple[VerificationKey, ...]] = {}
        self._count = 0
        # Deadlines derived from the last good fetch, so the hot path compares two floats.
        self._refresh_at = -math.inf
        self._stale_at = -math.inf
        self._retry_at = -math.inf
        self._kid_refetch_at = -math.inf
        self._flight: SingleFlight[bool] = SingleFlight()
        self._observer = observer or LoggingObserver()
        self._missing = False

    @property
    def metadata(self) -> ProviderMetadata:
        """The issuer's discovery document (its introspection endpoint too)."""
        return self._metadata

    @property
    def missing(self) -> bool:
        """Whether the last fetch failed because discovery or the JWKS answered 404: no such realm."""
        return self._missing

    @property
    def fetching(self) -> bool:
        """Whether a fetch is under way (a background refresh included)."""
        return self._flight.in_flight

    async def settled(self) -> None:
        """Wait until no fetch is under way."""
        await self._flight.wait()

    @property
    def ready(self) -> bool:
        """Whether usable keys are loaded and younger than the max-stale age."""
        return self._clock() <= self._stale_at

    async def refresh(self) -> bool:
        """Fetch now (or join the fetch under way); True when usable keys were loaded."""
        return await self._flight.run(self._fetch)

    def fresh_key(self, kid: str | None, alg: str) -> Key | None:
        """The key for ``kid`` and ``alg`` if fresh keys hold it (no refresh due), without awaiting.

        ``None`` means: ask :meth:`key_for`, which refreshes, refetches or refuses as needed.
        """
        if self._clock() < self._refresh_at:
            key = self._select(kid, alg)
            if key is not None:
                return key.jwk
        return None

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key that verifies ``alg`` for ``kid`` (RFC 7515 §4.1.4); refetch on an unknown kid."""
        now = self._clock()
        loaded = False
        if now > self._stale_at:
            await self._load_cold(now)
            loaded = True  # keys fetched for this very call: refetching them at once cannot help
        elif now >= self._refresh_at and now >= self._retry_at:
            self._flight.start(self._fetch)
        key = self._select(kid, alg)
        # A fetch joined here may have started before the new key was published (a refresh ahead under
        # way during a rotation), so one more round may follow: joining again, or a refetch of our own
        # when the cooldown allows.
        for _ in range(2):
            if key is not None or kid is None or loaded or not self._may_refetch(self._clock()):
                break
            await self._flight.run(self._fetch)
            key = self._select(kid, alg)
        if key is None:
            raise InvalidToken("no key matches the token")
        return key.jwk

    def close(self) -> None:
        """Cancel fetches under way."""
        self._flight.cancel()
        self._metadata.close()

    def _may_refetch(self, now: float) -> bool:
        if self._flight.in_flight:
            return True
        if now < self._retry_at or now - self._kid_refetch_at < self._settings.jwks_refetch_cooldown:
            return False  # a failed fetch holds unknown kids back for the retry interval too
        self._kid_refetch_at = now
        return True

    async def _load_cold(self, now: float) -> None:
        if now < self._retry_at and not self._flight.in_flight:
            raise IdentityProviderUnavailable(retry_after=math.ceil(self._retry_at - now))
        if not await self._flight.run(self._fetch):
            raise IdentityProviderUnavailable(retry_after=math.ceil(self._settings.jwks_retry_interval))

    def _select(self, kid: str | None, alg: str) -> VerificationKey | None:
        if kid is None and self._count != 1:
            return None  # several signing keys: a token must say which one (RFC 7515 §4.1.4)
        candidates = self._by_kid.get(kid, ()) if kid is not None else next(iter(self._by_kid.values()))
        for key in candidates:
            if alg in key.algorithms:
                return key
        return None

    async def _fetch(self) -> bool:
        with self._observer.span("kc_m2m.jwks_fetch", {"kc_m2m.issuer": self.issuer}) as outcome:
            try:
                jwks, keys = await self._download(outcome)
            except Exception as exc:  # any failure, even an unforeseen one, must keep the last good keys serving
                self._missing = isinstance(exc, NotFound)
                self._retry_at = self._clock() + self._settings.jwks_retry_interval
                reason = str(exc) if isinstance(exc, FetchError) else type(exc).__name__
                outcome.update(failure_attributes(exc, reason))
                self._observer.key_set_failed(self.issuer, reason, self.ready)
                return False
            outcome.update({"kc_m2m.result": "ok", "http.response.status_code": 200})
        self._missing = False
        self._install(keys)
        entries = jwks.get("keys")
        self._observer.key_set_loaded(
            self.issuer, len(keys), len(entries) - len(keys) if isinstance(entries, list) else 0
        )
        return True

    async def _download(self, outcome: Attributes) -> tuple[Mapping[str, Any], list[VerificationKey]]:
        """The JWK Set (RFC 7517 §5) from the issuer's ``jwks_uri`` and its usable signing keys."""
        uri = self._settings.jwks_uris.get(self.issuer) or await self._metadata.endpoint("jwks_uri")
        outcome["server.address"] = host(uri)
        jwks = await read_json_object(self._client, self._client.build_request("GET", uri), self._settings.http_limits)
        keys = usable_keys(jwks, self._allowed)
        if not keys:
            raise FetchError("no usable signing key")
        return jwks, keys

    def _install(self, keys: list[VerificationKey]) -> None:
        by_kid: dict[str | None, list[VerificationKey]] = {}
        for key in keys:
            by_kid.setdefault(key.kid, []).append(key)
        retired = frozenset(self._by_kid.keys() - by_kid.keys())
        self._by_kid = {kid: tuple(group) for kid, group in by_kid.items()}
        self._count = len(keys)
        if retired and self._on_retired is not None:
            self._on_retired(retired)
        fetched_at = self._clock()
        self._refresh_at = fetched_at + self._settings.jwks_ttl - self._settings.jwks_refresh_ahead
        self._stale_at = fetched_at + self._settings.jwks_max_stale
