"""``KeycloakAuthMiddleware``: a pure ASGI middleware that lets only verified machine callers through.

For HTTP requests and WebSocket handshakes it extracts the access token (RFC 6750 §2.1; with its
proof for the DPoP scheme, RFC 9449 §7.1), verifies it
with :class:`~..server.verifier.TokenVerifier` and sets ``scope["user"]`` (a :class:`ServiceUser`) and
``scope["auth"]`` (Starlette ``AuthCredentials`` holding the token's scopes), so ``request.user``,
``request.auth.scopes`` and ``starlette.authentication.requires`` work. Refusals follow RFC 6750 §3.

Every request shape the caller controls is authenticated, CORS preflights included: put Starlette's
``CORSMiddleware`` outside this middleware (``add_middleware`` it after this one) to answer them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AuthError, InvalidRequest, MissingCredentials
from ..server.verifier import TokenVerifier
from .bearer import has_token_parameter
from .credentials import request_context
from .openapi import document_openapi
from .responses import dpop_offer, send_refusal
from .state import STATE_KEY, ServiceUser

__all__ = ["KeycloakAuthMiddleware", "ServiceUser"]

_FORM = b"application/x-www-form-urlencoded"
_FORM_SCAN_LIMIT = 65536  # larger form bodies pass unexamined: a token there is never used anyway
_NO_FORM_BODY = frozenset({"GET", "HEAD"})  # RFC 6750 §2.2: no form-body token with GET (nor for WebSockets)


class KeycloakAuthMiddleware:
    """Verify the bearer token of every HTTP request and WebSocket handshake, or refuse it.

    ``exclude_paths`` are freed exactly, ``exclude_prefixes`` with everything below them on a segment
    boundary (``/public`` frees ``/public/x`` but never ``/public-admin``), both matched against the
    path as the router sees it (below any ``root_path`` or ``Mount``), ``exclude_methods`` by method.
    With ``allow_anonymous=True`` requests without credentials pass as anonymous, so routes that need
    a principal (the dependencies) refuse them and the others serve.
    """

    def __init__(
        self,
        app: ASGIApp,
        auth: TokenVerifier,
        *,
        exclude_paths: Iterable[str] = (),
        exclude_prefixes: Iterable[str] = (),
        exclude_methods: Iterable[str] = (),
        allow_anonymous: bool = False,
    ) -> None:
        self.app = app
        self.auth = auth
        self._realm = auth.settings.audience
        self._documented = False
        self._dpop = dpop_offer(auth.settings)
        self._paths = frozenset(exclude_paths)
        self._prefixes = tuple(prefix.rstrip("/") for prefix in exclude_prefixes)
        self._methods = frozenset(method.upper() for method in exclude_methods)
        self._allow_anonymous = allow_anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" and scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = self.auth
        if not self._documented:
            self._document(scope.get("app"))
        sent = _Progress(send)
        try:
            if self._excluded(scope):
                _set_anonymous(scope)
            else:
                receive = await self._authenticate(scope, receive)
            await self.app(scope, receive, sent)
        except AuthError as error:  # raised here or by a dependency
            if sent.started and not sent.accepted:
                raise  # a second response start would break the ASGI protocol: the server handles it
            await send_refusal(scope, receive, send, error, self._realm, accepted=sent.accepted, dpop=self._dpop)

    def _document(self, app: object) -> None:
        """Document the flow and refusals in the app's OpenAPI once, lifespan or not (RFC 6749 §4.4)."""
        self._documented = True
        if isinstance(app, FastAPI):
            document_openapi(app, self.auth.settings)

    async def _authenticate(self, scope: Scope, receive: Receive) -> Receive:
        """Set the user of ``scope``; return ``receive``, replaying any body read to inspect it."""
        context = request_context(scope, self.auth.settings)
        if context is None:
            if not self._allow_anonymous:
                raise MissingCredentials()
            _set_anonymous(scope)
            return receive
        verification = await self.auth.authenticate(context)  # before the body: bad tokens cost no read
        if scope.get("method", "GET") not in _NO_FORM_BODY and _is_form(scope):
            receive = await _reject_form_token(receive)
        scope["user"] = ServiceUser(verification.principal, context=context, verification=verification)
        scope["auth"] = AuthCredentials(list(verification.principal.scopes))
        return receive

    def _excluded(self, scope: Scope) -> bool:
        method = scope.get("method")
        if method in self._methods:
            return True
        path = get_route_path(scope)  # what the router matches: scope["path"] keeps the root_path
        if path in self._paths:
            return True
        if not self._prefixes:
            return False
        freed = any(
            path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/") for prefix in self._prefixes
        )
        return freed and "/." not in path  # dot segments could climb out of the freed subtree


class _Progress:
    """The app's ``send``, noting whether the response started and whether a WebSocket is accepted
    and not yet closed (ASGI: a response starts once; an open WebSocket is refused by a close)."""

    __slots__ = ("accepted", "send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.accepted = False

    async def __call__(self, message: Message) -> None:
        self.started = True
        if message["type"] == "websocket.accept":
            self.accepted = True
        elif message["type"] == "websocket.close":
            self.accepted = False
        await self.send(message)


def _set_anonymous(scope: Scope) -> None:
    scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()


def _is_form(scope: Scope) -> bool:
    """Whether the body is form-encoded: media types compare case-insensitively (RFC 9110 §8.3.1)."""
    content_type = next((value for key, value in scope["headers"] if key == b"content-type"), b"")
    return content_type.partition(b";")[0].strip().lower() == _FORM


async def _reject_form_token(receive: Receive) -> Receive:
    """Read a form body (RFC 6750 §2.2) to refuse a second token in it; return a receive replaying it."""
    messages: deque[Message] = deque()
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body") or size > _FORM_SCAN_LIMIT:
            break
    if size <= _FORM_SCAN_LIMIT and has_token_parameter(b"".join(m.get("body", b"") for m in messages)):
        raise InvalidRequest("token in several places")

    async def replay() -> Message:
        return messages.popleft() if messages else await receive()

    return replay
