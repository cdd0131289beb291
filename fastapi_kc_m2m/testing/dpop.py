"""DPoP at the test issuer's token endpoint (RFC 9449 §5, §8), checked the way Keycloak 26.4+ does.

A request carrying one ``DPoP`` proof gets a token bound to the proof's key, in Keycloak 26.7's shape
(:func:`bound_claims`). The proof must pass every check of §4.3 for ``POST`` at the token endpoint, with
``iat`` inside Keycloak's fixed window (25 s back, 15 s ahead), and its ``jti`` is single-use (§11.1).
Nonces (§8) are demanded only when asked for; Keycloak itself issues none. :class:`DPoPCaller` is the
calling side, for testing a resource server's DPoP routes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .._jose.algorithms import SUPPORTED_ALGORITHMS
from .._jose.dpop import Proof, ProofError, ProofKey, access_token_hash, check_proof, jwk_thumbprint, make_proof
from .keys import generate_key

if TYPE_CHECKING:
    from .issuer import TestIssuer

__all__ = [
    "KEYCLOAK_MAX_AGE",
    "KEYCLOAK_MAX_AHEAD",
    "DPoPCaller",
    "Refusal",
    "TokenEndpointProofs",
    "bound_claims",
    "thumbprint",
]

#: Keycloak's proof window at its token endpoint: ``now - 25 s <= iat <= now + 15 s`` (not configurable).
KEYCLOAK_MAX_AGE = 25.0
KEYCLOAK_MAX_AHEAD = 15.0


class Refusal(NamedTuple):
    """A token endpoint error (RFC 6749 §5.2): its code, status and, for ``use_dpop_nonce``, the nonce."""

    error: str
    status: int
    nonce: str | None = None


_INVALID = Refusal("invalid_dpop_proof", 400)


def thumbprint(key: ProofKey) -> str:
    """The RFC 7638 thumbprint of ``key``'s public half: what a bound token's ``cnf.jkt`` holds."""
    return jwk_thumbprint(key.as_dict(private=False))


def bound_claims(jkt: str) -> dict[str, Any]:
    """The claims binding a token to a key (RFC 9449 §6.1) as Keycloak 26.7 writes them: payload ``typ``
    ``DPoP`` and a ``cnf`` with its private ``kc-jkt-type`` member beside ``jkt``."""
    return {"typ": "DPoP", "cnf": {"jkt": jkt, "kc-jkt-type": "DPoP"}}


class TokenEndpointProofs:
    """The proofs of token requests at ``htu``: checked, remembered against replay, nonces on demand."""

    def __init__(self, htu: str, clock: Callable[[], float], *, nonce: bool = False) -> None:
        self.htu = htu
        self._clock = clock
        #: The nonce every proof must carry (§8), or ``None`` when none is demanded.
        self.nonce: str | None = None
        self._seen: dict[str, float] = {}  # hash of jti and htu -> until when the proof could be accepted
        if nonce:
            self.require_nonce()

    def require_nonce(self) -> str:
        """Demand a nonce in every proof from now on (§8); returns it."""
        self.nonce = self.nonce or secrets.token_urlsafe(24)
        return self.nonce

    def check(self, proofs: Sequence[str]) -> str | Refusal | None:
        """The thumbprint the token is to be bound to (``None``: no proof, a Bearer token), or the refusal:
        ``invalid_dpop_proof`` for a bad, repeated or replayed proof, ``use_dpop_nonce`` without the nonce."""
        if not proofs:
            return None
        if len(proofs) != 1:
            return _INVALID
        now = self._clock()
        try:
            proof = check_proof(
                proofs[0],
                algorithms=SUPPORTED_ALGORITHMS,
                htm="POST",
                htu=self.htu,
                now=now,
                max_age=KEYCLOAK_MAX_AGE,
                max_ahead=KEYCLOAK_MAX_AHEAD,
            )
        except ProofError:
            return _INVALID
        if self.nonce is not None and not hmac.compare_digest(proof.nonce or "", self.nonce):
            return Refusal("use_dpop_nonce", 400, self.nonce)
        return proof.jkt if self._first_use(proof, now) else _INVALID

    def _first_use(self, proof: Proof, now: float) -> bool:
        """§11.1: a proof's ``jti``, scoped to its ``htu``, is accepted once while its ``iat`` is fresh."""
        self._seen = {seen: until for seen, until in self._seen.items() if until >= now}
        seen = hashlib.sha256(f"{proof.jti}\n{proof.htu}".encode()).hexdigest()
        if seen in self._seen:
            return False
        self._seen[seen] = proof.iat + KEYCLOAK_MAX_AGE
        return True


class DPoPCaller:
    """A calling machine's DPoP key, for testing your own DPoP routes: tokens of ``issuer`` bound to it
    (RFC 9449 §6.1) and proofs signed with it (§4.2, ``ath`` per §7.1), on the issuer's clock."""

    def __init__(self, issuer: TestIssuer, key: ProofKey | None = None) -> None:
        self.issuer = issuer
        self.key: ProofKey = key or generate_key("ES256")
        #: The key's RFC 7638 thumbprint, as bound tokens carry it in ``cnf.jkt``.
        self.jkt = thumbprint(self.key)

    def token(self, **claims: Any) -> str:
        """A token bound to this key; keywords as :meth:`TestIssuer.token`."""
        return self.issuer.token(dpop_key=self.key, **claims)

    def proof(self, method: str, url: str, token: str | None = None, nonce: str | None = None) -> str:
        """A fresh proof for a ``method`` request to ``url``; with ``token`` its hash rides in ``ath``."""
        ath = None if token is None else access_token_hash(token)
        return make_proof(self.key, htm=method, htu=url, iat=self.issuer.clock(), ath=ath, nonce=nonce)

    def headers(self, method: str, url: str, token: str, nonce: str | None = None) -> dict[str, str]:
        """The request headers presenting ``token`` with a fresh proof (RFC 9449 §7.1)."""
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, url, token, nonce)}
