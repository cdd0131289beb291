"""Keys and time for tests: key generation in Keycloak's shape and a clock that moves when told to."""

from __future__ import annotations

import time
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey

from .._jose.algorithms import EC_CURVES, key_type

__all__ = ["FrozenClock", "SigningKey", "generate_key"]

#: The private key types an issuer signs with.
SigningKey = RSAKey | ECKey | OKPKey


class FrozenClock:
    """A clock that moves only when told to; pass it to :class:`TestIssuer` and ``KeycloakAuth``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


def generate_key(algorithm: str = "RS256", kid: str | None = None) -> SigningKey:
    """A new private key fit for ``algorithm`` whose ``kid`` is its RFC 7638 thumbprint unless given."""
    parameters: Any = None if kid is None else {"kid": kid}
    key: SigningKey
    kty = key_type(algorithm)
    if kty == "RSA":
        key = RSAKey.generate_key(2048, parameters=parameters)
    elif kty == "OKP":
        key = OKPKey.generate_key("Ed25519", parameters=parameters)
    else:
        key = ECKey.generate_key(EC_CURVES[algorithm], parameters=parameters)
    key.ensure_kid()
    return key
