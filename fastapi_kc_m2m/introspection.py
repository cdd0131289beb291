"""Token introspection (RFC 7662): is a token that verified locally still active at Keycloak?

Local verification cannot see a revoked token; introspection can, for the price of a call, which is
kept small and never trusted blindly:

- the JWT is always verified locally first; introspection only ever narrows what is accepted;
- ``POST token=…&token_type_hint=access_token`` to the issuer's ``introspection_endpoint`` (RFC 7662
  §2.1), authenticated as the resource server's own client (:mod:`.client_auth`);
- the answer counts only when ``active`` is the JSON boolean ``true`` (§2.2); ``false`` means inactive
  (401); anything else — an error status, a timeout, a body that is not a JSON object, ``active``
  missing or not a boolean — fails closed with 503 and ``Retry-After``, never falling back to the local
  result (§4);
- answers are cached by the token's SHA-256, active ones for ``introspection_cache_ttl`` but never past
  the token's ``exp``, inactive ones for ``introspection_cache_ttl`` (a revoked token never becomes
  active again; a re-enabled client's tokens are refused that much longer); failures are not cached;
- one call in flight per token: concurrent requests with the same token share it (§4: limit the load).

That cache time is exactly how long a token revoked in Keycloak stays usable here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ._cache import TokenCache
from ._claims import check_audience, check_client, check_type
from ._discovery import ProviderMetadata
from ._http import FetchError, read_json_object
from ._singleflight import KeyedSingleFlight
from .client_auth import ClientAuthentication, client_authentication, load_private_key
from .errors import IdentityProviderUnavailable, InvalidToken
from .principal import ServicePrincipal
from .settings import KeycloakSettings

__all__ = ["Introspector", "client_credentials_from"]

logger = logging.getLogger("fastapi_kc_m2m")

_NOT_ACTIVE = "the access token is not active"
_UNAVAILABLE = "token introspection is unavailable"

#: What an introspection decides for a token: the principal to serve, or the description of the refusal.
Outcome = ServicePrincipal | str


class _Failure(Exception):
    """An introspection answer that cannot be used; the message is a fixed phrase for the log."""


def client_credentials_from(settings: KeycloakSettings, clock: Callable[[], float]) -> ClientAuthentication:
    """The resource server's client authentication as configured; a ``ValueError`` names the variable."""
    key = None
    if settings.client_auth_method == "private_key_jwt" and settings.client_private_key is not None:
        try:
            key = load_private_key(
                settings.client_private_key.get_secret_value(), algorithm=settings.client_assertion_alg
            )
        except OSError:
            raise ValueError("KC_M2M_CLIENT_PRIVATE_KEY: cannot read the PEM file (or give a JWK as JSON)") from None
        except ValueError as exc:
            raise ValueError(f"KC_M2M_CLIENT_PRIVATE_KEY: {exc}") from None
    secret = settings.client_secret.get_secret_value() if settings.client_secret is not None else None
    return client_authentication(
        settings.client_auth_method,
        settings.introspecting_client_id,
        secret=secret,
        private_key=key,
        algorithm=settings.client_assertion_alg,
        key_id=settings.client_key_id,
        clock=clock,
    )


class Introspector:
    """Introspects locally verified tokens at their issuer, with a bounded cache and one call per token."""

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
        self._credentials = client_credentials_from(settings, clock)
        self._cache: TokenCache[Outcome] = TokenCache(settings.introspection_cache_size, clock)
        self._flights: KeyedSingleFlight[bytes, Outcome] = KeyedSingleFlight()
        self._retry_after = math.ceil(settings.jwks_retry_interval)
        self._hinted = False

    async def check(self, token: str, digest: bytes, verified: ServicePrincipal) -> ServicePrincipal:
        """The principal of ``token`` if Keycloak says it is active.

        ``verified`` is the principal local verification built from ``token`` and ``digest`` its
        SHA-256. A lightweight token's principal (one without ``aud``) is rebuilt from the answer.
        Raises :class:`~.errors.InvalidToken` when inactive and
        :class:`~.errors.IdentityProviderUnavailable` when no usable answer can be had.
        """
        outcome = self._cache.get(digest)
        if outcome is None:
            outcome = await self._flights.run(digest, lambda: self._introspect(token, digest, verified))
        if isinstance(outcome, str):
            raise InvalidToken(outcome)
        return outcome

    def close(self) -> None:
        """Cancel introspection calls under way."""
        self._flights.cancel()

    async def _introspect(self, token: str, digest: bytes, verified: ServicePrincipal) -> Outcome:
        try:
            outcome = self._judge(await self._ask(token, verified.issuer), verified)
        except Exception as exc:  # any failure, even an unforeseen one, fails closed (RFC 7662 §4)
            reason = str(exc) if isinstance(exc, FetchError | _Failure) else type(exc).__name__
            logger.warning("introspection at %s failed (%s); refusing with 503", verified.issuer, reason)
            raise IdentityProviderUnavailable(self._retry_after, _UNAVAILABLE) from None
        deadline = self._clock() + self._settings.introspection_cache_ttl
        if not isinstance(outcome, str):
            deadline = min(deadline, verified.expires_at)
        self._cache.put(digest, outcome, deadline)
        return outcome

    async def _ask(self, token: str, issuer: str) -> Mapping[str, Any]:
        """RFC 7662 §2.1: the introspection request, authenticated as our client, with a bounded answer."""
        url = self._settings.introspection_endpoints.get(issuer)
        if url is None:
            url = await self._metadata[issuer].endpoint("introspection_endpoint")
        form = {"token": token, "token_type_hint": "access_token"}
        request = self._credentials.request(self._client, url, form, audience=issuer)
        request.headers["Accept"] = "application/json"
        return await read_json_object(
            self._client,
            request,
            max_bytes=self._settings.http_max_body,
            time_limit=self._settings.introspection_timeout,
        )

    def _judge(self, answer: Mapping[str, Any], verified: ServicePrincipal) -> Outcome:
        """RFC 7662 §2.2: ``active`` must be the boolean ``true``; ``false`` refuses, anything else fails."""
        active = answer.get("active")
        if active is False:
            self._hint_audience(verified)
            return _NOT_ACTIVE
        if active is not True:
            raise _Failure("answer without a boolean active")
        if verified.audiences:
            return verified  # a full token: its locally verified claims stand
        return self._lightweight_principal(answer, verified)

    def _lightweight_principal(self, answer: Mapping[str, Any], verified: ServicePrincipal) -> Outcome:
        """A lightweight token's principal from the answer's full claims; ``iss`` and ``exp`` stay the
        verified token's, and the audience and client rules apply to the answer."""
        if answer.get("iss") != verified.issuer:
            raise _Failure("answer names another issuer")
        claims = {**answer, "iss": verified.issuer, "exp": verified.expires_at}
        try:
            check_type(claims)
            check_audience(claims, self._settings.audience)
            check_client(claims, self._settings.allowed_clients)
        except InvalidToken as refusal:
            return refusal.description
        return ServicePrincipal.from_claims(claims)

    def _hint_audience(self, verified: ServicePrincipal) -> None:
        """Keycloak 26.6.2+ calls a token inactive unless the introspecting client is in its ``aud``."""
        client_id = self._credentials.client_id
        if self._hinted or client_id in verified.audiences:
            return
        self._hinted = True
        logger.warning(
            "introspection: Keycloak called a token inactive that verified here, and the introspecting client"
            " %r is not in its aud. If valid tokens are refused: Keycloak 26.6.2+ answers active:false unless"
            " the introspecting client is in aud; add an audience mapper (included.client.audience=%s) to the"
            " calling clients, or set KC_M2M_CLIENT_ID to a client the tokens name (shown once)",
            client_id,
            client_id,
        )
