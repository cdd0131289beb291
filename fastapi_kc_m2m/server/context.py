"""What a request presented, and what verification made of it: the one object in each direction.

The ASGI layer builds one immutable :class:`RequestContext` per request; the verifier answers with one
:class:`Verification`, which the authorization dependencies use instead of reading the request again.
"""

from __future__ import annotations

from typing import NamedTuple

from ..principal import ServicePrincipal

__all__ = ["RequestContext", "Verification"]


class RequestContext(NamedTuple):
    """The credentials of one request: the access token and where it was presented (RFC 6750 §2.1).

    ``method`` and ``public_url`` are the request's, for checks that bind a token to the request; the
    DPoP proof (RFC 9449 §4) and the client certificate (RFC 8705 §3) have their room here too, and the
    request's ``path`` for refusal events. A named tuple: immutable, and built on every request at a
    tuple's cost.
    """

    token: str
    scheme: str = "Bearer"
    method: str | None = None
    public_url: str | None = None
    proof: str | None = None
    client_certificate: bytes | None = None
    path: str | None = None

    def __repr__(self) -> str:
        """Where the credentials were presented, never the token or the proof themselves."""
        return (
            f"RequestContext(scheme={self.scheme!r}, method={self.method!r}, path={self.path!r},"
            f" proof={self.proof is not None}, client_certificate={self.client_certificate is not None})"
        )


class Verification(NamedTuple):
    """The outcome of verifying one token: who called, the token's SHA-256, whether it is a lightweight
    token (no ``aud``: its audience and roles come from introspection) and was introspected, and the
    ``kid`` of its header (RFC 7515 §4.1.4), the ``cnf.jkt`` it is DPoP-bound to (RFC 9449 §6.1) and the
    ``cnf.x5t#S256`` it is certificate-bound to (RFC 8705 §3.1), if any.

    It depends on the token alone, so the verifier caches it by ``digest``, until its key is retired; a
    named tuple, like the context.
    """

    principal: ServicePrincipal
    digest: bytes
    lightweight: bool = False
    introspected: bool = False
    kid: str | None = None
    jkt: str | None = None
    x5t: str | None = None
