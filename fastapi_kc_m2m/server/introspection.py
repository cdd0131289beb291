"""Token introspection (RFC 7662): is a token that verified locally still active at Keycloak?

Local verification cannot see a revoked token; introspection can, for the price of a call, which is
kept small and never trusted blindly:

- the JWT is always verified locally first; introspection only ever narrows what is accepted;
- ``POST token=…&token_type_hint=access_token`` to the issuer's ``introspection_endpoint`` (RFC 7662
  §2.1), authenticated as the resource server's own client (:mod:`.._idp.client_auth`);
- the answer counts only when ``active`` is the JSON boolean ``true`` (§2.2); ``false`` means inactive
  (401); anything else — an error status, a timeout, a body that is not a JSON object, ``active``
  missing or not a boolean — fails closed with 503 and ``Retry-After``, never falling back to the local
  result (§4); for ``jwks_retry_interval`` after such a failure, that issuer's further calls are refused
  at once with 503 and the remaining time as ``Retry-After``, without a call or a warning (§4: limit
  the load on a failing server);
- answers are kept in the :class:`~.store.Store` under the token's SHA-256, active ones for
  ``introspection_cache_ttl`` but never past the token's ``exp``, inactive ones for
  ``introspection_cache_ttl`` (a revoked token never becomes active again; a re-enabled client's
  tokens are refused that much longer); failures are not cached; a shared store that cannot answer
  (:class:`~.store.StoreUnavailable`) is passed over: Keycloak is asked, the answer is not kept;
- one call in flight per token: concurrent requests with the same token share it (§4: limit the load).

That cache time is exactly how long a token revoked in Keycloak stays usable here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .._idp.client_auth import ClientAuthentication, client_authentication, load_private_key
from .._idp.discovery import ProviderMetadata
from .._idp.http import FetchError, HttpLimits, read_json_object
from .._idp.singleflight import KeyedSingleFlight
from .._idp.tracing import Attributes, failure_attributes, host
from .._jose.claims import check_audience, check_client, check_type, confirmation
from ..errors import IdentityProviderUnavailable, InvalidToken
from ..principal import ServicePrincipal
from ..settings import KeycloakSettings
from .context import Verification
from .observer import LoggingObserver, Observer
from .store import Store, StoreUnavailable, StoreValue

__all__ = ["Introspector", "own_client_authentication"]

_NOT_ACTIVE = "the access token is not active"
_UNAVAILABLE = "token introspection is unavailable"


class _Failure(Exception):
    """An introspection answer that cannot be used; the message is a fixed phrase for the log."""


def own_client_authentication(settings: KeycloakSettings, clock: Callable[[], float]) -> ClientAuthentication:
    """The resource server's own client authentication as configured; a ``ValueError`` names the variable."""
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
    """Introspects locally verified tokens at their issuer, with answers in a store and one call per token."""

    def __init__(
        self,
        settings: KeycloakSettings,
        client: httpx.AsyncClient,
        metadata: Mapping[str, ProviderMetadata],
        clock: Callable[[], float],
        *,
        store: Store,
        observer: Observer | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._metadata = metadata
        self._clock = clock
        self._credentials = own_client_authentication(settings, clock)
        self._store = store
        self._observer = observer or LoggingObserver()
        self._flights: KeyedSingleFlight[bytes, StoreValue] = KeyedSingleFlight()
        self._retry_after = math.ceil(settings.jwks_retry_interval)
        self._retry_at: dict[str, float] = {}  # per issuer, after a failed call
        self._hinted = False

    @property
    def client_id(self) -> str:
        """The client introspection authenticates as."""
        return self._credentials.client_id

    async def check(self, token: str, verified: Verification) -> Verification:
        """``verified`` (local verification of ``token``) if Keycloak says the token is active.

        A lightweight token's principal is rebuilt from the answer. Raises
        :class:`~.errors.InvalidToken` when inactive and :class:`~.errors.IdentityProviderUnavailable`
        when no usable answer can be had.
        """
        answer = await self._stored(verified.digest)
        if answer is None:
            self._check_backing_off(verified.principal.issuer)
            answer = await self._flights.run(verified.digest, lambda: self._introspect(token, verified))
        refusal = answer.get("refused")
        if isinstance(refusal, str):
            raise InvalidToken(refusal)
        claims = answer.get("claims")
        if not isinstance(claims, dict):
            return verified._replace(introspected=True)
        principal = ServicePrincipal.from_claims(dict(claims), realm=verified.principal.realm)
        jkt, x5t = confirmation(claims)
        return verified._replace(principal=principal, introspected=True, jkt=jkt, x5t=x5t)

    @property
    def in_flight(self) -> int:
        """How many introspection calls are under way."""
        return len(self._flights)

    async def settled(self) -> None:
        """Wait until no call is under way."""
        await self._flights.wait()

    def close(self) -> None:
        """Cancel introspection calls under way."""
        self._flights.cancel()

    async def _stored(self, digest: bytes) -> StoreValue | None:
        """The kept answer for ``digest``; None when there is none or the store does not answer."""
        try:
            return await self._store.get(digest)
        except StoreUnavailable:
            return None

    def _check_backing_off(self, issuer: str) -> None:
        """Refuse at once while ``issuer``'s last call failed less than the retry interval ago."""
        wait = self._retry_at.get(issuer, -math.inf) - self._clock()
        if wait > 0:
            raise IdentityProviderUnavailable(math.ceil(wait), _UNAVAILABLE)

    async def _introspect(self, token: str, verified: Verification) -> StoreValue:
        issuer = verified.principal.issuer
        started = time.perf_counter()
        with self._observer.span("kc_m2m.introspection", {"kc_m2m.issuer": issuer}) as outcome:
            try:
                answer = self._judge(await self._ask(token, issuer, outcome), verified)
            except Exception as exc:  # any failure, even an unforeseen one, fails closed (RFC 7662 §4)
                reason = str(exc) if isinstance(exc, FetchError | _Failure) else type(exc).__name__
                outcome.update(failure_attributes(exc, reason))
                self._observer.introspected(issuer, reason, time.perf_counter() - started)
                self._retry_at[issuer] = self._clock() + self._settings.jwks_retry_interval
                raise IdentityProviderUnavailable(self._retry_after, _UNAVAILABLE) from None
            result = "inactive" if "refused" in answer else "active"
            outcome.update({"kc_m2m.result": result, "http.response.status_code": 200})
        self._observer.introspected(issuer, result, time.perf_counter() - started)
        ttl = self._settings.introspection_cache_ttl
        if "refused" not in answer:
            ttl = min(ttl, verified.principal.expires_at - self._clock())
        with contextlib.suppress(StoreUnavailable):  # not kept: the next request asks again
            await self._store.put(verified.digest, answer, ttl)
        return answer

    async def _ask(self, token: str, issuer: str, outcome: Attributes) -> Mapping[str, Any]:
        """RFC 7662 §2.1: the introspection request, authenticated as our client, with a bounded answer;
        the endpoint's host goes to the span's ``outcome``."""
        url = self._settings.introspection_endpoints.get(issuer)
        if url is None:
            url = await self._metadata[issuer].endpoint("introspection_endpoint")
        outcome["server.address"] = host(url)
        form = {"token": token, "token_type_hint": "access_token"}
        request = self._credentials.request(self._client, url, form, audience=issuer)
        request.headers["Accept"] = "application/json"
        limits = HttpLimits(self._settings.http_max_body, self._settings.introspection_timeout)
        return await read_json_object(self._client, request, limits)

    def _judge(self, answer: Mapping[str, Any], verified: Verification) -> StoreValue:
        """RFC 7662 §2.2: ``active`` must be the boolean ``true``; ``false`` refuses, anything else fails.

        What is kept: ``{"refused": description}``, ``{}`` for an active full token (its locally verified
        claims stand), or ``{"claims": …}`` for an active lightweight token.
        """
        active = answer.get("active")
        if active is False:
            self._hint_audience(verified.principal)
            return {"refused": _NOT_ACTIVE}
        if active is not True:
            raise _Failure("answer without a boolean active")
        if not verified.lightweight:
            return {}
        return self._lightweight_claims(answer, verified)

    def _lightweight_claims(self, answer: Mapping[str, Any], verification: Verification) -> StoreValue:
        """A lightweight token's claims from the answer; ``iss`` and ``exp`` stay the verified token's,
        an answer without ``typ`` or ``cnf`` (RFC 7662 §2.2 has neither) keeps the token's, and the type,
        binding, audience and client rules apply to the answer: its ``cnf.jkt`` (with ``token_type``
        ``DPoP``, RFC 9449 §6.2) or ``cnf.x5t#S256`` (RFC 8705 §3.2) binds the token, and must be the
        token's own when it has one."""
        verified = verification.principal
        if answer.get("iss") != verified.issuer:
            raise _Failure("answer names another issuer")
        kept = {name: verified.claims[name] for name in ("typ", "cnf") if name in verified.claims}
        claims = {**kept, **answer, "iss": verified.issuer, "exp": verified.expires_at}
        try:
            check_type(claims)
            bound = (verification.jkt, verification.x5t)
            if bound != (None, None) and confirmation(claims) != bound:
                raise InvalidToken("token binding mismatch")
            check_audience(claims, self._settings.audience_for(verified.issuer))
            check_client(claims, self._settings.allowed_clients)
        except InvalidToken as refusal:
            return {"refused": refusal.description}
        return {"claims": claims}

    def _hint_audience(self, verified: ServicePrincipal) -> None:
        """Keycloak 26.6.2+ calls a token inactive unless the introspecting client is in its ``aud``."""
        client_id = self._credentials.client_id
        if self._hinted or client_id in verified.audiences:
            return
        self._hinted = True
        self._observer.hint(
            "introspection: Keycloak called a token inactive that verified here, and the introspecting client"
            f" {client_id!r} is not in its aud. If valid tokens are refused: Keycloak 26.6.2+ answers active:false"
            " unless the introspecting client is in aud; add an audience mapper"
            f" (included.client.audience={client_id}) to the calling clients, or set KC_M2M_CLIENT_ID to a"
            " client the tokens name (shown once)"
        )
