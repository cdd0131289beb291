"""The one place where an :class:`~.errors.AuthError` becomes an HTTP response or a WebSocket refusal.

Status codes and ``WWW-Authenticate`` challenges follow RFC 6750 §3 and §3.1; bodies are
``{"error": …, "error_description": …}`` built from the exceptions' fixed phrases only, and ``{}``
for a request without credentials (RFC 6750 §3.1: no error information then).

With DPoP on (RFC 9449 §7.1) a request without credentials is offered both schemes in one header
value, ``Bearer realm="…", DPoP algs="…"`` (``DPoP algs="…"`` alone when DPoP is required); a refusal
of a DPoP-scheme request (its proof's ``invalid_dpop_proof``, ``use_dpop_nonce`` with the
``DPoP-Nonce`` header of §8, any other error) or of anything while DPoP is required is challenged
``DPoP error="…", error_description="…", algs="…"``; other refusals keep the ``Bearer`` challenge.

A failed token exchange for a downstream call (:class:`~..errors.TokenExchangeError`, RFC 8693 §2.2.2) is
a 502 without a challenge: the caller was authenticated, and new credentials from it would change nothing.
"""

from __future__ import annotations

import json
from typing import NamedTuple, cast, overload

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from ..errors import (
    AuthError,
    IdentityProviderUnavailable,
    InsufficientScope,
    MissingCredentials,
    TokenExchangeError,
    UseDPoPNonce,
)
from ..settings import KeycloakSettings
from .bearer import BEARER, DPOP, presented_scheme
from .state import find_auth

__all__ = ["DPoPOffer", "auth_error_handler", "dpop_offer", "refusal", "send_refusal"]

_DENIAL_EXTENSION = "websocket.http.response"


class DPoPOffer(NamedTuple):
    """The DPoP challenge refusals carry (RFC 9449 §7.1): whether it is the only scheme, and ``algs``."""

    required: bool
    algs: str


def dpop_offer(settings: KeycloakSettings) -> DPoPOffer | None:
    """What refusals offer under ``settings``: nothing when ``KC_M2M_DPOP`` is ``off``."""
    if settings.dpop == "off":
        return None
    return DPoPOffer(settings.dpop == "required", " ".join(settings.dpop_algorithms))


def refusal(error: AuthError, realm: str | None, *, scheme: str = BEARER, dpop: DPoPOffer | None = None) -> Response:
    """The HTTP response for ``error`` to a request of ``scheme``: status, RFC 6750 §3 / RFC 9449 §7.1
    challenge and JSON body (``{}`` when no credentials were presented: RFC 6750 §3.1 gives that
    response no error information)."""
    members = {"error": error.error, "error_description": error.description}
    body = {} if isinstance(error, MissingCredentials) else {k: v for k, v in members.items() if v is not None}
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, IdentityProviderUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    elif not isinstance(error, TokenExchangeError):  # a 502: the caller's credentials are not in question
        headers["WWW-Authenticate"] = _challenge(error, realm, scheme, dpop)
    if isinstance(error, UseDPoPNonce):
        headers["DPoP-Nonce"] = error.nonce
    return Response(json.dumps(body), error.status_code, headers, media_type="application/json")


async def send_refusal(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: AuthError,
    realm: str | None,
    *,
    accepted: bool = False,
    dpop: DPoPOffer | None = None,
) -> None:
    """Refuse a connection: an HTTP response, or for a WebSocket not yet accepted the HTTP denial
    response where the server supports it, else (and once ``accepted``) a close with code 1008
    (policy violation, RFC 6455 §7.4.1), which carries no challenge or nonce; the refusal reaches the
    verifier's observer."""
    _report(scope, error)
    denial = _DENIAL_EXTENSION in scope.get("extensions", {}) and not accepted
    if scope["type"] == "websocket" and not denial:
        await send({"type": "websocket.close", "code": WS_1008_POLICY_VIOLATION, "reason": error.description})
        return
    await refusal(error, realm, scheme=presented_scheme(scope), dpop=dpop)(scope, receive, send)


@overload
async def auth_error_handler(connection: Request, error: Exception) -> Response: ...
@overload
async def auth_error_handler(connection: WebSocket, error: Exception) -> None: ...
async def auth_error_handler(connection: HTTPConnection, error: Exception) -> Response | None:
    """Starlette/FastAPI exception handler for :class:`~.errors.AuthError`, for apps without the middleware
    (typed as both of Starlette's handler kinds, so this line type-checks)::

    app.add_exception_handler(AuthError, auth_error_handler)
    """
    refused = cast(AuthError, error)  # registered for AuthError only
    auth = find_auth(connection.scope)
    realm, dpop = (auth.settings.audience, dpop_offer(auth.settings)) if auth is not None else (None, None)
    if isinstance(connection, WebSocket):
        accepted = connection.application_state != WebSocketState.CONNECTING
        await send_refusal(
            connection.scope, connection.receive, connection.send, refused, realm, accepted=accepted, dpop=dpop
        )
        return None
    _report(connection.scope, refused)
    return refusal(refused, realm, scheme=presented_scheme(connection.scope), dpop=dpop)


def _report(scope: Scope, error: AuthError) -> None:
    """Tell the request's verifier's observer of the refusal (once: see ``TokenVerifier.report_refusal``)."""
    auth = find_auth(scope)
    if auth is not None:
        auth.report_refusal(error, scope.get("path"), scope.get("method", "GET"))


def _challenge(error: AuthError, realm: str | None, scheme: str, dpop: DPoPOffer | None) -> str:
    """The challenges for ``error``: ``Bearer`` (RFC 6750 §3), ``DPoP`` (RFC 9449 §7.1) or both."""
    parameters = {"error": error.error}
    if error.error:
        parameters["error_description"] = error.description
    if isinstance(error, InsufficientScope):
        parameters["scope"] = error.scope
    bearer = _format(BEARER, {"realm": realm, **parameters})
    if dpop is None:
        return bearer
    offer = _format(DPOP, {**parameters, "algs": dpop.algs})
    if dpop.required or scheme == DPOP:
        return offer
    return f"{bearer}, {offer}" if isinstance(error, MissingCredentials) else bearer


def _format(scheme: str, parameters: dict[str, str | None]) -> str:
    """``scheme name="value", …`` for the parameters that have a value."""
    pairs = [f'{name}="{_quotable(value)}"' for name, value in parameters.items() if value]
    return f"{scheme} " + ", ".join(pairs) if pairs else scheme


def _quotable(value: str) -> str:
    """Values are fixed phrases, scope names and the configured audience: never escaped, so checked."""
    if '"' in value or "\\" in value:
        raise ValueError(f"cannot quote {value!r} in a WWW-Authenticate challenge")
    return value
