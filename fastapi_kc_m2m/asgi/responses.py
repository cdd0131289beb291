"""The one place where an :class:`~.errors.AuthError` becomes an HTTP response or a WebSocket refusal.

Status codes and ``WWW-Authenticate`` challenges follow RFC 6750 §3 and §3.1; bodies are
``{"error": …, "error_description": …}`` built from the exceptions' fixed phrases only, and ``{}``
for a request without credentials (RFC 6750 §3.1: no error information then).
"""

from __future__ import annotations

import json
from typing import cast, overload

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from ..errors import AuthError, IdentityProviderUnavailable, InsufficientScope, MissingCredentials
from .state import find_auth

__all__ = ["auth_error_handler", "refusal", "send_refusal"]

_DENIAL_EXTENSION = "websocket.http.response"


def refusal(error: AuthError, realm: str | None) -> Response:
    """The HTTP response for ``error``: status, RFC 6750 §3 challenge and JSON body (``{}`` when no
    credentials were presented: RFC 6750 §3.1 gives that response no error information)."""
    members = {"error": error.error, "error_description": error.description}
    body = {} if isinstance(error, MissingCredentials) else {k: v for k, v in members.items() if v is not None}
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, IdentityProviderUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    else:
        headers["WWW-Authenticate"] = _challenge(error, realm)
    return Response(json.dumps(body), error.status_code, headers, media_type="application/json")


async def send_refusal(
    scope: Scope, receive: Receive, send: Send, error: AuthError, realm: str | None, *, accepted: bool = False
) -> None:
    """Refuse a connection: an HTTP response, or for a WebSocket not yet accepted the HTTP denial
    response where the server supports it, else (and once ``accepted``) a close with code 1008
    (policy violation, RFC 6455 §7.4.1)."""
    denial = _DENIAL_EXTENSION in scope.get("extensions", {}) and not accepted
    if scope["type"] == "websocket" and not denial:
        await send({"type": "websocket.close", "code": WS_1008_POLICY_VIOLATION, "reason": error.description})
        return
    await refusal(error, realm)(scope, receive, send)


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
    realm = auth.settings.audience if auth is not None else None
    if isinstance(connection, WebSocket):
        accepted = connection.application_state != WebSocketState.CONNECTING
        await send_refusal(connection.scope, connection.receive, connection.send, refused, realm, accepted=accepted)
        return None
    return refusal(refused, realm)


def _challenge(error: AuthError, realm: str | None) -> str:
    """``Bearer realm="…", error="…", error_description="…", scope="…"`` (RFC 6750 §3)."""
    parameters = {"realm": realm, "error": error.error}
    if error.error:
        parameters["error_description"] = error.description
    if isinstance(error, InsufficientScope):
        parameters["scope"] = error.scope
    pairs = [f'{name}="{_quotable(value)}"' for name, value in parameters.items() if value]
    return "Bearer " + ", ".join(pairs) if pairs else "Bearer"


def _quotable(value: str) -> str:
    """Values are fixed phrases, scope names and the configured audience: never escaped, so checked."""
    if '"' in value or "\\" in value:
        raise ValueError(f"cannot quote {value!r} in a WWW-Authenticate challenge")
    return value
