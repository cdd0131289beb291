"""Bearer token extraction from an ASGI scope (RFC 6750 §2.1), refusing ambiguous requests.

Only the ``Authorization`` request header carries a token. A token in the query string or a form body
(RFC 6750 §2.2, §2.3) is never accepted (RFC 9700 §4.3.2): alone it reads as no token, beside a header
token it makes the request ambiguous (RFC 6750 §3.1 ``invalid_request``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

from ..errors import InvalidRequest

__all__ = ["bearer_token", "has_token_parameter"]

_ALPHANUMERIC = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: ``b64token`` characters (RFC 6750 §2.1) apart from the trailing ``=`` padding.
_B64TOKEN = _ALPHANUMERIC + b"-._~+/"
#: ``tchar`` (RFC 9110 §5.6.2): a scheme name going on past ``Bearer`` is another scheme.
_TCHAR = frozenset(_ALPHANUMERIC + b"!#$%&'*+-.^_`|~")
_SCHEME = b"bearer"
_PARAMETER = b"access_token"
#: At most this many ``name=value`` pairs are examined: the scan stays bounded whatever the body.
_MAX_PAIRS = 1024


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the request, None when none is presented (or another scheme is used).

    Raises :class:`~.errors.InvalidRequest` for several ``Authorization`` headers, a malformed
    ``Bearer`` credential, or a header token repeated in the query string.
    """
    token = _header_token(scope["headers"])
    if token is not None and scope["query_string"] and has_token_parameter(scope["query_string"]):
        raise InvalidRequest("token in several places")
    return token


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


def _header_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    value: bytes | None = None
    for name, field in headers:
        if name == b"authorization":
            if value is not None:
                raise InvalidRequest("several authorization headers")
            value = field
    return None if value is None else _credentials(value)


def _credentials(value: bytes) -> str | None:
    """``credentials = "Bearer" 1*SP b64token``, the scheme name compared case-insensitively."""
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != _SCHEME:
        if value[:6].lower() == _SCHEME and (len(value) == 6 or value[6] not in _TCHAR):
            raise InvalidRequest("malformed bearer credentials")  # e.g. "Bearer", "Bearer\r\n", "Bearer,x"
        return None  # another scheme, e.g. Basic or "Bearerx": no bearer token presented
    token = token.lstrip(b" ")
    characters = token.rstrip(b"=")
    if not characters or characters.translate(None, _B64TOKEN):
        raise InvalidRequest("malformed bearer credentials")
    return token.decode("ascii")
