"""Machine A's DPoP key (RFC 9449): a proof on every request it signs, and the nonces servers hand out.

- :meth:`DPoPKey.sign` adds a fresh proof (§4.2: new ``jti``, ``iat`` now, ``htm`` and ``htu`` of the
  request, ``ath`` for a resource request, §7.1) and, for a resource request, ``Authorization: DPoP``.
- :meth:`DPoPKey.note` keeps the ``DPoP-Nonce`` of any answer, one per origin (§8.2, §9), and tells
  whether the answer asks for a retry with it: ``400 use_dpop_nonce`` from a token endpoint (§8),
  ``401`` with a ``DPoP error="use_dpop_nonce"`` challenge from a resource server (§9).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable

import httpx
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .._idp.http import FetchError, json_answer
from .._jose.algorithms import MIN_RSA_BITS
from .._jose.dpop import ProofKey, access_token_hash, jwk_thumbprint, make_proof

__all__ = ["DPoPKey"]

#: Origins whose nonce is kept at most; the oldest is forgotten first.
MAX_ORIGINS = 64
# RFC 9449 §8.1: nonce = 1*NQCHAR; longer ones are not worth keeping.
_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,512}")
# A DPoP challenge (RFC 9449 §7.1) whose error is use_dpop_nonce (§9), up to the next Bearer challenge.
_NONCE_CHALLENGE = re.compile(r'\bdpop\b(?:(?!\bbearer\b).)*\berror\s*=\s*"?use_dpop_nonce\b', re.IGNORECASE)
_USE_DPOP_NONCE = "use_dpop_nonce"
# Characters of a WWW-Authenticate value searched at most: the search backtracks, and challenges are short.
_MAX_CHALLENGE = 2048


class DPoPKey:
    """A private key signing DPoP proofs, kept apart from any client-authentication key (§11.11), and
    the last nonce each origin (scheme, host, port) gave. ``repr()`` never shows the key."""

    def __init__(self, key: ProofKey, clock: Callable[[], float]) -> None:
        self._key = _checked(key)
        self.jkt = jwk_thumbprint(self._key.as_dict(private=False))
        self._clock = clock
        self._nonces: OrderedDict[tuple[str, str, int | None], str] = OrderedDict()
        self._lock = threading.Lock()  # held for a dict update only, never across an await

    @classmethod
    def generate(cls, clock: Callable[[], float]) -> DPoPKey:
        """A new ES256 (P-256) key, for DPoP proofs only (§11.11: not the client-authentication key)."""
        return cls(ECKey.generate_key("P-256"), clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(jkt={self.jkt!r})"

    def sign(self, request: httpx.Request, access_token: str | None = None) -> None:
        """Give ``request`` a new proof (§4.2), with the origin's nonce if one is known (§8.2); with
        ``access_token``, also its ``ath`` and ``Authorization: DPoP`` (§7.1). ``htu`` is the URL without
        userinfo, query and fragment (§4.2)."""
        ath = None if access_token is None else access_token_hash(access_token)
        request.headers["DPoP"] = make_proof(
            self._key,
            htm=request.method,
            htu=str(request.url.copy_with(userinfo=b"")),
            iat=self._clock(),
            ath=ath,
            nonce=self._nonces.get(_origin(request.url)),
        )
        if access_token is not None:
            request.headers["Authorization"] = f"DPoP {access_token}"

    def note(self, response: httpx.Response, *, token_endpoint: bool = False) -> bool:
        """Keep the answer's ``DPoP-Nonce`` for its origin; whether the answer asks to retry with it
        (a token endpoint's answer is read; a resource server's is judged by its headers alone)."""
        nonce = response.headers.get("DPoP-Nonce", "")
        if not _NONCE.fullmatch(nonce):
            return False
        origin = _origin(response.request.url)
        with self._lock:
            self._nonces[origin] = nonce
            self._nonces.move_to_end(origin)
            if len(self._nonces) > MAX_ORIGINS:
                self._nonces.popitem(last=False)
        return _token_endpoint_asks(response) if token_endpoint else _resource_server_asks(response)


def _checked(key: ProofKey) -> ProofKey:
    """``key`` if it can sign proofs: private, RSA of 2048+ bits, EC on P-256/384/521, or Ed25519/Ed448."""
    if not isinstance(key, ECKey | RSAKey | OKPKey):
        raise ValueError("dpop: give True or a joserfc EC, RSA or OKP private key")
    if not key.is_private or (isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS):
        raise ValueError(f"dpop: give a private EC, Ed25519 or RSA ({MIN_RSA_BITS}+ bits) key")
    try:
        make_proof(key, htm="POST", htu="https://check.invalid/", iat=0)
    except Exception:  # joserfc and cryptography raise many types; never echo key material
        raise ValueError("dpop: the key cannot sign DPoP proofs (EC P-256/384/521, Ed25519 or RSA)") from None
    return key


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _resource_server_asks(response: httpx.Response) -> bool:
    """§9: ``401`` with a ``DPoP`` challenge whose ``error`` is ``use_dpop_nonce``."""
    if response.status_code != httpx.codes.UNAUTHORIZED:
        return False
    values = response.headers.get_list("WWW-Authenticate")
    return any(_NONCE_CHALLENGE.search(value[:_MAX_CHALLENGE]) for value in values)


def _token_endpoint_asks(response: httpx.Response) -> bool:
    """§8: ``400`` with the OAuth error ``use_dpop_nonce`` (RFC 6749 §5.2)."""
    if response.status_code != httpx.codes.BAD_REQUEST:
        return False
    try:
        return json_answer(response.content).get("error") == _USE_DPOP_NONCE
    except FetchError:
        return False
