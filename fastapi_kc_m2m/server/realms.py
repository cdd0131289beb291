"""The key sets of the trusted issuers, and of the realms a ``KC_M2M_REALMS`` pattern matches.

- a fixed issuer (``KC_M2M_REALM``, a realm name in ``KC_M2M_REALMS``, ``KC_M2M_ISSUERS``) has its key set
  from the start;
- a realm a pattern matches (:meth:`~fastapi_kc_m2m.settings.KeycloakSettings.realm_matches`: exactly
  ``<server_url>/realms/<name>``, strict charset) gets one when its first token has passed every local
  check; at most ``realm_lookups_per_minute`` new ones a minute in all, more get 503 with Retry-After
  (RFC 6750 §3.1 leaves the status to us; RFC 9110 §15.6.4);
- at most ``max_realms`` of those are held, the least recently used goes first;
- a realm whose discovery or JWKS answers 404 is refused (401, RFC 6750 §3.1 ``invalid_token``) with no
  request for ``realm_negative_ttl``.

So the bound: however many realm names tokens carry, new realms cause at most
``realm_lookups_per_minute`` lookups a minute, each one discovery request (a missing realm's discovery
answers 404) or one discovery and one JWKS request; realms already held follow the key-set rules of
:mod:`.keyset`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

from joserfc.jwk import Key

from .._idp.discovery import ProviderMetadata
from ..errors import IdentityProviderUnavailable, InvalidToken
from ..settings import KeycloakSettings
from .cache import bounded_put
from .keyset import KeySet

__all__ = ["KeySets"]

_WINDOW = 60.0  # seconds of the lookup rate limit
_UNKNOWN_REALM = "unknown realm"


class KeySets:
    """Key sets by issuer: the fixed ones, and pattern-matched realms created on demand (``make``)."""

    def __init__(self, settings: KeycloakSettings, make: Callable[[str], KeySet], clock: Callable[[], float]) -> None:
        self._settings = settings
        self._make = make
        self._clock = clock
        self.fixed = {issuer: make(issuer) for issuer in settings.trusted_issuers}
        self._held: OrderedDict[str, KeySet] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()  # issuer -> until when it is refused without asking
        self._window_ends = -math.inf
        self._lookups = 0
        self.metadata: Mapping[str, ProviderMetadata] = _Metadata(self)

    def trusted(self, issuer: object) -> str | None:
        """``issuer`` when it is a fixed issuer or a realm a pattern matches, else None; never fetches."""
        if not isinstance(issuer, str):
            return None
        return issuer if issuer in self.fixed or self._settings.realm_matches(issuer) else None

    def lookup(self, issuer: str) -> KeySet:
        """The key set held for ``issuer`` (``KeyError`` when none is)."""
        return self.fixed.get(issuer) or self._held[issuer]

    def values(self) -> list[KeySet]:
        """Every key set held now."""
        return [*self.fixed.values(), *self._held.values()]

    def get(self, issuer: str) -> KeySet:
        """The key set of a :meth:`trusted` issuer, created for a realm seen first.

        Raises :class:`InvalidToken` for a realm known to be missing and
        :class:`IdentityProviderUnavailable` beyond the lookup rate.
        """
        key_set = self.fixed.get(issuer)
        if key_set is not None:
            return key_set
        key_set = self._held.get(issuer)
        if key_set is not None:
            self._held.move_to_end(issuer)
            return key_set
        now = self._clock()
        if self._missing.get(issuer, -math.inf) > now:
            raise InvalidToken(_UNKNOWN_REALM)
        self._admit(now)
        key_set = self._held[issuer] = self._make(issuer)
        if len(self._held) > self._settings.max_realms:
            self._release(self._held.popitem(last=False)[1])
        return key_set

    async def key_for(self, key_set: KeySet, kid: str | None, alg: str) -> Key:
        """:meth:`KeySet.key_for`; a pattern-matched realm Keycloak does not know is remembered as missing
        and refused with :class:`InvalidToken` instead of 503."""
        try:
            return await key_set.key_for(kid, alg)
        except IdentityProviderUnavailable:
            if not key_set.missing or key_set.issuer in self.fixed:
                raise
            self._forget(key_set)
            raise InvalidToken(_UNKNOWN_REALM) from None

    def _admit(self, now: float) -> None:
        """Count one new realm lookup in the current minute, or refuse when it is used up."""
        if now >= self._window_ends:
            self._window_ends, self._lookups = now + _WINDOW, 0
        if self._lookups >= self._settings.realm_lookups_per_minute:
            raise IdentityProviderUnavailable(math.ceil(self._window_ends - now), "too many new realms")
        self._lookups += 1

    def _forget(self, key_set: KeySet) -> None:
        """Drop a missing realm's key set and refuse its tokens for ``realm_negative_ttl``."""
        issuer = key_set.issuer
        until = self._clock() + self._settings.realm_negative_ttl
        bounded_put(self._missing, issuer, until, self._settings.max_realms)
        if self._held.get(issuer) is key_set:
            self._release(self._held.pop(issuer))

    @staticmethod
    def _release(key_set: KeySet) -> None:
        """Close a key set no longer held; one still fetching for a waiter is left to finish (bounded by
        ``http_timeout``) rather than cancelled under it."""
        if not key_set.fetching:
            key_set.close()


class _Metadata(Mapping[str, ProviderMetadata]):
    """The discovery documents of the key sets, by issuer, for introspection (RFC 7662 §2 endpoint)."""

    def __init__(self, key_sets: KeySets) -> None:
        self._key_sets = key_sets

    def __getitem__(self, issuer: str) -> ProviderMetadata:
        if self._key_sets.trusted(issuer) is None:
            raise KeyError(issuer)
        return self._key_sets.get(issuer).metadata

    def __iter__(self) -> Iterator[str]:
        return iter([key_set.issuer for key_set in self._key_sets.values()])

    def __len__(self) -> int:
        return len(self._key_sets.values())
