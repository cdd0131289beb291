"""Access token extraction from an ASGI scope (RFC 6750 §2.1, RFC 9449 §7.1), refusing ambiguous requests.

Only the ``Authorization`` request header carries a token. A token in the query string or a form body
(RFC 6750 §2.2, §2.3) is never accepted (RFC 9700 §4.3.2): alone it reads as no token, beside a header
token it makes the request ambiguous (RFC 6750 §3.1 ``invalid_request``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

from ..errors import InvalidRequest

__all__ = ["BEARER", "DPOP", "bearer_token", "credentials", "has_token_parameter", "presented_scheme"]

_ALPHANUMERIC = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: ``b64token`` characters (RFC 6750 §2.1) apart from the trailing ``=`` padding.
_B64TOKEN = _ALPHANUMERIC + b"-._~+/"
#: ``tchar`` (RFC 9110 §5.6.2): a scheme name going on past ``Bearer`` is another scheme.
_TCHAR = frozenset(_ALPHANUMERIC + b"!#$%&'*+-.^_`|~")
BEARER = "Bearer"
#: The DPoP scheme (RFC 9449 §7.1): the same ``token68`` credential, bound to a proof.
DPOP = "DPoP"
_BEARER_ONLY = {b"bearer": BEARER}
_WITH_DPOP = {b"bearer": BEARER, b"dpop": DPOP}
_PARAMETER = b"access_token"
#: At most this many ``name=value`` pairs are examined: the scan stays bounded whatever the body.
_MAX_PAIRS = 1024


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the request, None when none is presented (or another scheme is used).

    Raises :class:`~.errors.InvalidRequest` for several ``Authorization`` headers, a malformed
    ``Bearer`` credential, or a header token repeated in the query string.
    """
    presented = credentials(scope, dpop=False)
    return None if presented is None else presented[1]


def credentials(scope: Scope, *, dpop: bool) -> tuple[str, str] | None:
    """The scheme (:data:`BEARER`, or :data:`DPOP` when ``dpop``) and token of the request, None when
    none is presented; refusals as for :func:`bearer_token`. Without ``dpop`` the DPoP scheme is another
    scheme, so no token is presented."""
    value = _authorization(scope["headers"])
    presented = None if value is None else _credentials(value, _WITH_DPOP if dpop else _BEARER_ONLY)
    if presented is not None and scope["query_string"] and has_token_parameter(scope["query_string"]):
        raise InvalidRequest("token in several places")
    return presented


def presented_scheme(scope: Scope) -> str:
    """:data:`DPOP` when the (first) ``Authorization`` header names that scheme, else :data:`BEARER`:
    the scheme a refusal is challenged in; never raises."""
    value = next((field for name, field in scope["headers"] if name == b"authorization"), b"")
    return _WITH_DPOP.get(value.partition(b" ")[0].lower(), BEARER)


def has_token_parameter(encoded: bytes) -> bool:
    """Whether form-encoded ``encoded`` (a query string or form body, RFC 6750 §2.2-2.3) has an
    ``access_token`` member among its first ``_MAX_PAIRS`` pairs, names percent-decoded.

    Without the name or a percent escape in it no pair is examined at all.
    """
    if _PARAMETER not in encoded and b"%" not in encoded:
        return False
    return any(_name(pair) == _PARAMETER for pair in encoded.split(b"&", _MAX_PAIRS)[:_MAX_PAIRS])


def _name(pair: bytes) -> bytes:
    """The decoded name of one ``name=value`` pair (``+`` is a space, ``%XX`` an escape)."""
    name = pair.partition(b"=")[0]
    return unquote_to_bytes(name.replace(b"+", b" ")) if b"%" in name else name


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    value: bytes | None = None
    for name, field in headers:
        if name == b"authorization":
            if value is not None:
                raise InvalidRequest("several authorization headers")  # e.g. DPoP beside Bearer (RFC 9449 §7.1)
            value = field
    return value


def _credentials(value: bytes, schemes: dict[bytes, str]) -> tuple[str, str] | None:
    """``credentials = scheme 1*SP b64token``, the scheme name compared case-insensitively."""
    name, _, token = value.partition(b" ")
    scheme = schemes.get(name.lower())
    if scheme is None:
        if any(_starts_with_scheme(value, known) for known in schemes):
            raise InvalidRequest("malformed bearer credentials")  # e.g. "Bearer", "Bearer\r\n", "DPoP,x"
        return None  # another scheme, e.g. Basic or "Bearerx": no token presented
    token = token.lstrip(b" ")
    characters = token.rstrip(b"=")
    if not characters or characters.translate(None, _B64TOKEN):
        raise InvalidRequest("malformed bearer credentials")
    return scheme, token.decode("ascii")


def _starts_with_scheme(value: bytes, scheme: bytes) -> bool:
    """Whether ``value`` is ``scheme`` followed by no more ``tchar``: the scheme, malformed after it."""
    size = len(scheme)
    return value[:size].lower() == scheme and (len(value) == size or value[size] not in _TCHAR)
