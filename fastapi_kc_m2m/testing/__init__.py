"""The test kit: a token issuer in Keycloak 26's shape for tests that need neither Keycloak nor a
network, split by job — keys and time (:mod:`.keys`), the issuer with its endpoints (:mod:`.issuer`),
its registered clients (:mod:`.clients`), CORS at its token endpoint (:mod:`.cors`), DPoP there and a
caller's DPoP key (:mod:`.dpop`), failure injection (:mod:`.failures`), serving on loopback
(:mod:`.serving`) — and the pytest plugin (:mod:`.pytest_plugin`).

Free to import every other room of the package; nothing in the package imports it.
"""

from .._jose.jws import b64url
from .dpop import DPoPCaller
from .failures import FailureMode
from .issuer import OMIT, TestIssuer
from .keys import FrozenClock, SigningKey, generate_key
from .serving import TLSFiles, loopback_socket, serve_app

__all__ = [
    "OMIT",
    "DPoPCaller",
    "FailureMode",
    "FrozenClock",
    "SigningKey",
    "TLSFiles",
    "TestIssuer",
    "b64url",
    "generate_key",
    "loopback_socket",
    "serve_app",
]
