"""Token exchange (RFC 8693, Keycloak 26.2+ standard token exchange): call Machine C on behalf of the caller.

Machine B, authenticated as its own client (the credentials introspection uses,
:func:`~.introspection.own_client_authentication`), trades the caller's verified access token for one meant
for another audience:

- ``POST grant_type=urn:ietf:params:oauth:grant-type:token-exchange``, ``subject_token``,
  ``subject_token_type=urn:ietf:params:oauth:token-type:access_token``, ``audience`` and optional ``scope``
  (§2.1) to the issuer's ``token_endpoint`` (or ``KC_M2M_TOKEN_ENDPOINTS``); the answer must be a Bearer
  access token (§2.2.1);
- answers are kept per (SHA-256 of the caller's token, audience, scope), bounded, until shortly before they
  expire (``min(30 s, 10 %)`` of their life, as Machine A refreshes); one exchange in flight per key;
- a DPoP- or certificate-bound caller token (RFC 9449 §6, RFC 8705 §3) is refused before any call: it can
  only be exchanged with the caller's key, which this service does not hold;
- Keycloak refusing (§2.2.2) raises :class:`~..errors.TokenExchangeError` with its error code, Keycloak
  unreachable or answering garbage :class:`~..errors.IdentityProviderUnavailable`; neither carries a token,
  a secret or Keycloak's text.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field

import httpx

from .._idp.discovery import ProviderMetadata
from .._idp.http import FetchError, json_answer, read_answer
from .._idp.oauth import error_code, renew_at
from .._idp.singleflight import KeyedSingleFlight
from ..errors import AuthError, IdentityProviderUnavailable, TokenExchangeError
from ..settings import KeycloakSettings
from .cache import TokenCache
from .context import RequestContext, Verification
from .introspection import own_client_authentication

__all__ = ["ACCESS_TOKEN_TYPE", "TOKEN_EXCHANGE_GRANT", "ExchangedToken", "ExchangedTokenAuth", "TokenExchanger"]

#: RFC 8693 §2.1 and §3.
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

_BOUND = "a sender-constrained token cannot be exchanged"
_UNAVAILABLE = "token exchange is unavailable"


class _Unusable(Exception):
    """An answer that is no token exchange response (RFC 8693 §2.2)."""


@dataclass(frozen=True, slots=True)
class ExchangedToken:
    """An access token issued by exchange (RFC 8693 §2.2.1); ``repr()`` never shows it."""

    value: str = field(repr=False)
    expires_at: float
    scope: str | None


def _exchanged_token(response: httpx.Response, now: float) -> ExchangedToken:
    """RFC 8693 §2.2: the issued Bearer access token, or :class:`TokenExchangeError` with the §2.2.2 code
    of a 4xx refusal; anything else is :class:`_Unusable`."""
    try:
        body = json_answer(response.content)
    except FetchError:
        raise _Unusable from None
    code = error_code(body)
    if 400 <= response.status_code < 500 and code is not None:
        raise TokenExchangeError(code)
    value, lifetime, scope = body.get("access_token"), body.get("expires_in"), body.get("scope")
    if response.status_code != 200 or not isinstance(value, str) or not value:
        raise _Unusable
    if body.get("issued_token_type") != ACCESS_TOKEN_TYPE or str(body.get("token_type")).lower() != "bearer":
        raise _Unusable
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        raise _Unusable
    return ExchangedToken(value, now + lifetime, scope if isinstance(scope, str) else None)


class TokenExchanger:
    """Exchanges verified caller tokens for downstream tokens at their issuer, cached and single-flight."""

    def __init__(
        self,
        settings: KeycloakSettings,
        client: httpx.AsyncClient,
        metadata: Mapping[str, ProviderMetadata],
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._client = client
        self._metadata = metadata
        self._clock = clock
        self._credentials = own_client_authentication(settings, clock)
        self._cache: TokenCache[ExchangedToken] = TokenCache(settings.token_exchange_cache_size, clock)
        self._flights: KeyedSingleFlight[bytes, ExchangedToken] = KeyedSingleFlight()
        self._retry_after = math.ceil(settings.jwks_retry_interval)

    @property
    def client_id(self) -> str:
        """The client the exchange authenticates as (the requester, Machine B)."""
        return self._credentials.client_id

    async def exchange(
        self, token: str, verification: Verification, audience: str, scope: str | None = None
    ) -> ExchangedToken:
        """An access token for ``audience`` (and ``scope``) on behalf of the caller of ``token``, which
        ``verification`` verified; a kept one while it is fresh."""
        if verification.jkt is not None or verification.x5t is not None:
            raise TokenExchangeError(description=_BOUND)
        key = hashlib.sha256(b"\0".join([verification.digest, audience.encode(), (scope or "").encode()])).digest()
        kept = self._cache.get(key)
        if kept is not None:
            return kept
        issuer = verification.principal.issuer
        return await self._flights.run(key, lambda: self._exchange(key, token, issuer, audience, scope))

    def close(self) -> None:
        """Cancel exchanges under way."""
        self._flights.cancel()

    async def _exchange(self, key: bytes, token: str, issuer: str, audience: str, scope: str | None) -> ExchangedToken:
        started = self._clock()
        try:
            request = await self._request(token, issuer, audience, scope)
            exchanged = _exchanged_token(await read_answer(self._client, request, self._settings.http_limits), started)
        except (FetchError, _Unusable):
            raise IdentityProviderUnavailable(self._retry_after, _UNAVAILABLE) from None
        lifetime = exchanged.expires_at - started
        self._cache.put(key, exchanged, renew_at(exchanged.expires_at, lifetime))  # kept until renewal is due
        return exchanged

    async def _request(self, token: str, issuer: str, audience: str, scope: str | None) -> httpx.Request:
        """RFC 8693 §2.1: the exchange request, authenticated as our client (RFC 6749 §2.3)."""
        url = self._settings.token_endpoints.get(issuer)
        if url is None:
            url = await self._metadata[issuer].endpoint("token_endpoint")
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": audience,
        } | ({} if scope is None else {"scope": scope})
        request = self._credentials.request(self._client, url, form, audience=issuer)
        request.headers["Accept"] = "application/json"
        return request


class ExchangedTokenAuth(httpx.Auth):
    """``httpx.AsyncClient(auth=...)`` for a downstream call on behalf of one caller: each request carries
    the exchanged token (RFC 6750 §2.1), exchanged again through the :class:`TokenExchanger` once it nears
    expiry. Async clients only; ``repr()`` shows the audience, never a token."""

    def __init__(
        self,
        exchanger: TokenExchanger,
        context: RequestContext,
        verification: Verification,
        audience: str,
        scope: str | None = None,
    ) -> None:
        self._exchanger = exchanger
        self._token = context.token
        self._verification = verification
        self.audience = audience
        self.scope = scope

    def __repr__(self) -> str:
        return f"ExchangedTokenAuth(audience={self.audience!r}, scope={self.scope!r})"

    async def token(self) -> ExchangedToken:
        """The exchanged token for the next request; a failure is the route's, after the caller was accepted."""
        try:
            return await self._exchanger.exchange(self._token, self._verification, self.audience, self.scope)
        except AuthError as error:
            error.route = True
            raise

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {(await self.token()).value}"
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ExchangedTokenAuth needs an httpx.AsyncClient: the exchange runs on the event loop")
