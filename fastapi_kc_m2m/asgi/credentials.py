"""The one :class:`~..server.context.RequestContext` of a request: its token, scheme, client certificate
(RFC 8705 §3, :mod:`.client_cert`) and, for the DPoP scheme (RFC 9449 §7.1), the proof, the method and the
``htu`` the proof must name (§4.3 items 8-9).

``htu`` is ``KC_M2M_PUBLIC_URL`` plus the path below the ``root_path`` when that setting is given,
else the request's scheme, ``Host`` header, ``root_path`` and path. A WebSocket handshake is an HTTP
GET (RFC 6455 §4.1), so its ``htm`` is ``GET`` and its ``htu`` the handshake's ``http(s)`` URI:
``ws`` counts as ``http``, ``wss`` as ``https`` (RFC 9449 §4.2: ``htu`` is an HTTP URI).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette._utils import get_route_path
from starlette.types import Scope

from ..errors import InvalidDPoPProof, InvalidRequest
from ..server.context import RequestContext
from ..settings import KeycloakSettings
from .bearer import DPOP, credentials
from .client_cert import client_certificate

__all__ = ["request_context"]

_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
#: RFC 3986 §3.2: what an authority (``host[:port]``, IP literals included) is made of.
_AUTHORITY = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:[]%"
#: RFC 3986 §3.3 ``pchar`` apart from unreserved characters, which ``quote`` keeps anyway.
_PATH_SAFE = "/!$&'()*+,;=:@"


def request_context(scope: Scope, settings: KeycloakSettings) -> RequestContext | None:
    """The credentials ``scope`` presents, None when it presents none; the DPoP scheme counts only
    when ``KC_M2M_DPOP`` is not ``off`` (else it is another scheme). Raises
    :class:`~.errors.InvalidRequest` for ambiguous or malformed credentials or DPoP headers, and
    :class:`~.errors.InvalidDPoPProof` for the DPoP scheme without a proof."""
    presented = credentials(scope, dpop=settings.dpop != "off")
    if presented is None:
        return None
    scheme, token = presented
    method = scope.get("method", "GET")  # a WebSocket handshake is a GET
    certificate, path = client_certificate(scope, settings), scope.get("path")
    if scheme != DPOP:
        return RequestContext(token, scheme, method, client_certificate=certificate, path=path)
    return RequestContext(token, scheme, method, _htu(scope, settings.public_url), _proof(scope), certificate, path)


def _proof(scope: Scope) -> str:
    """The one ``DPoP`` header (RFC 9449 §4.3 item 1): repeated or folded (a comma) is ambiguous."""
    proofs: list[bytes] = [value for name, value in scope["headers"] if name == b"dpop"]
    if not proofs:
        raise InvalidDPoPProof("DPoP proof required")
    if len(proofs) > 1 or b"," in proofs[0]:
        raise InvalidRequest("several DPoP proofs")
    return proofs[0].decode("latin-1")


def _htu(scope: Scope, public_url: str | None) -> str:
    """The URI this request was sent to, without query or fragment (RFC 9449 §4.2 ``htu``)."""
    path = quote(get_route_path(scope), safe=_PATH_SAFE)
    if public_url is not None:
        return public_url.rstrip("/") + path
    return f"{_origin(scope)}{quote(scope.get('root_path', ''), safe=_PATH_SAFE)}{path}"


def _origin(scope: Scope) -> str:
    """``scheme://Host`` of the request; ``Host`` is required for DPoP without ``KC_M2M_PUBLIC_URL``."""
    host = next((value for name, value in scope["headers"] if name == b"host"), b"")
    if not host or host.translate(None, _AUTHORITY):
        raise InvalidRequest("missing or malformed host header")
    return f"{_HTTP_SCHEMES.get(scope.get('scheme', 'http'), 'http')}://{host.decode('ascii')}"
