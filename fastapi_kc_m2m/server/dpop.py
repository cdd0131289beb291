"""DPoP at the resource server (RFC 9449 §7): scheme and binding rules, server nonces, replay.

Per request, after the token verified: the ``DPoP`` scheme goes with a DPoP-bound token (``cnf.jkt``)
and a bound token with the ``DPoP`` scheme only (§7.2: no downgrade); the proof passes every check of
§4.3 and §7.1 (:func:`.._jose.dpop.check_proof`), carries a current server nonce when they are demanded
(§9), and its key's thumbprint is the token's ``cnf.jkt`` (§6.1). The replay check (§11.1) runs last,
so only an otherwise valid proof can use up its ``jti``. This runs on every request, cached token or not.

Replay has two tiers: the proofs this process saw (a replay against the same replica costs no round
trip), then the shared store when one is given (one ``put_if_absent``: Redis ``SET NX PX``). A shared
store that cannot answer refuses the request with 503 and ``Retry-After``: never accepted unchecked.

Nonces are stateless, so replicas share nothing but the secret: ``base64url(slot || HMAC-SHA256(secret,
slot))`` for the time slot ``floor(now / dpop_nonce_lifetime)``; the current and previous slots count.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from collections.abc import Callable

from cachetools import LRUCache

from .._jose.dpop import ProofError, ProofHeader, check_proof
from .._jose.jws import b64url
from ..errors import IdentityProviderUnavailable, InvalidDPoPProof, InvalidToken, UseDPoPNonce
from ..settings import KeycloakSettings
from .cache import bounded_put
from .context import RequestContext
from .observer import Observer
from .store import MemoryStore, Store, StoreUnavailable

__all__ = ["ProofChecker", "replay_key"]

#: Checked proof headers (one per client key) remembered: least recently used ones go, so steady clients stay.
PROOF_KEY_CACHE_SIZE = 1024
#: Proofs this process remembers against replay (RFC 9449 §11.1): at most this many.
REPLAY_STORE_SIZE = 100_000
_REPLAYED = "DPoP proof replayed"


def replay_key(jti: str, htu: str) -> bytes:
    """The store key of a proof (§11.1): a digest of its ``jti`` scoped to its ``htu``, never the proof."""
    return hashlib.sha256(b"dpop\n" + jti.encode() + b"\n" + htu.encode()).digest()


class ProofChecker:
    """Checks the DPoP side of each request for a verified token (see the module docstring)."""

    def __init__(
        self, settings: KeycloakSettings, clock: Callable[[], float], shared: Store | None, observer: Observer
    ) -> None:
        self._required = settings.dpop == "required"
        self._algorithms = frozenset(settings.dpop_algorithms)
        self._max_age, self._max_ahead = settings.dpop_max_age, settings.dpop_max_ahead
        self._clock = clock
        self._seen = MemoryStore(REPLAY_STORE_SIZE, clock)
        self._shared = shared
        self._observer = observer
        self._headers: LRUCache[bytes, ProofHeader] = LRUCache(PROOF_KEY_CACHE_SIZE)
        secret = settings.dpop_nonce_secret
        # Empty when nonces are off; settings demand a secret of at least 32 characters with them on.
        self._nonce_key = secret.get_secret_value().encode() if settings.dpop_nonce and secret is not None else b""
        self._nonce_lifetime = settings.dpop_nonce_lifetime
        self._nonces: OrderedDict[int, str] = OrderedDict()

    def bound_key(self, context: RequestContext, jkt: str | None) -> str | None:
        """The scheme rules (§7.2, no downgrade either way) for a token bound to ``jkt`` (or not): the key
        a proof must then be checked against (:meth:`check`), None for a plain Bearer request."""
        if context.scheme != "DPoP":
            if jkt is not None:
                raise InvalidToken("DPoP-bound token presented as Bearer")
            if self._required:
                raise InvalidToken("a DPoP-bound token is required")
            return None
        if jkt is None:
            raise InvalidToken("token is not DPoP-bound")
        return jkt

    async def check(self, context: RequestContext, jkt: str, digest: bytes) -> None:
        """Refuse the request unless its proof is valid (§4.3, §7.1), fresh, nonced when nonces are on
        (§9), not replayed (§11.1) and made with the key ``jkt`` (§6.1)."""
        try:
            await self._check(context, jkt, digest)
        except (InvalidDPoPProof, UseDPoPNonce, IdentityProviderUnavailable) as error:
            self._observer.dpop_proof("refused", error.description)
            raise
        self._observer.dpop_proof("accepted", "valid proof")

    async def _check(self, context: RequestContext, jkt: str, digest: bytes) -> None:
        if context.proof is None or context.method is None or context.public_url is None:
            raise InvalidDPoPProof("DPoP proof missing")
        now = self._clock()
        try:
            proof = check_proof(
                context.proof,
                algorithms=self._algorithms,
                htm=context.method,
                htu=context.public_url,
                now=now,
                max_age=self._max_age,
                max_ahead=self._max_ahead,
                ath=b64url(digest),  # RFC 9449 §4.2: base64url(SHA-256(token)), the digest known already
                headers=self._headers,
            )
        except ProofError as error:
            raise InvalidDPoPProof(str(error)) from None
        if self._nonce_key and not self._nonce_is_valid(proof.nonce, now):
            raise UseDPoPNonce(self._nonce(now))
        if not hmac.compare_digest(proof.jkt.encode(), jkt.encode()):
            raise InvalidDPoPProof("DPoP proof key does not match the token")
        # As long as the proof would be accepted (§11.1), plus the ahead window for replicas' clocks.
        ttl = proof.iat + self._max_age - now + self._max_ahead
        if not await self._claim(replay_key(proof.jti, proof.htu), max(ttl, 1.0)):
            raise InvalidDPoPProof(_REPLAYED)

    async def _claim(self, key: bytes, ttl: float) -> bool:
        """Use up a proof's ``key`` for ``ttl`` seconds (§11.1): False when it was used up already, here
        or (shared store) on any replica; a shared store that cannot answer refuses with 503."""
        if self._shared is None:
            return await self._seen.put_if_absent(key, {}, ttl)
        if await self._seen.get(key) is not None:
            return False
        try:
            claimed = await self._shared.put_if_absent(key, {}, ttl)
        except StoreUnavailable as down:
            raise IdentityProviderUnavailable(math.ceil(down.retry_after), "DPoP replay check unavailable") from None
        await self._seen.put(key, {}, ttl)
        return claimed

    def nonce(self) -> str | None:
        """The current server nonce (§8), None when nonces are off."""
        return self._nonce(self._clock()) if self._nonce_key else None

    def _nonce(self, now: float) -> str:
        return self._nonce_for(math.floor(now / self._nonce_lifetime))

    def _nonce_for(self, slot: int) -> str:
        """``base64url(slot || HMAC-SHA256(secret, slot))``, computed once per slot."""
        nonce = self._nonces.get(slot)
        if nonce is None:
            packed = slot.to_bytes(8, "big")
            nonce = b64url(packed + hmac.new(self._nonce_key, packed, hashlib.sha256).digest())
            bounded_put(self._nonces, slot, nonce, 4)
        return nonce

    def _nonce_is_valid(self, nonce: str | None, now: float) -> bool:
        """A nonce of the current or the previous slot (§9)."""
        if nonce is None:
            return False
        slot = math.floor(now / self._nonce_lifetime)
        given = nonce.encode()
        return any(hmac.compare_digest(given, self._nonce_for(s).encode()) for s in (slot, slot - 1))
