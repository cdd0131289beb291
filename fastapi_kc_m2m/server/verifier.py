"""Verification of Keycloak access tokens: ``await verifier.verify(token) -> ServicePrincipal``.

Order of work (RFC 8725 §3, RFC 9068 §4): size cap, strict compact JWS, header rules, claim rules
(the trusted issuer first), then the issuer's key set (:mod:`.realms`: created for a realm a pattern
matches), the key and the signature. Everything before the key set is local, so junk tokens and
untrusted issuers cause no network call and create no key set. Only a
token that passed all of it may then be introspected (RFC 7662, :mod:`.introspection`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from .._idp.discovery import ProviderMetadata
from .._idp.tracing import Spans
from .._jose.claims import (
    calling_client,
    check_audience,
    check_client,
    check_header,
    check_times,
    check_type,
    confirmation,
)
from .._jose.jws import decode_segment, signature_is_valid, split_compact
from .._jose.strictjson import loads_object
from ..errors import AuthError, IdentityProviderUnavailable, InvalidToken
from ..principal import ServicePrincipal
from ..settings import KeycloakSettings
from .cache import TokenCache, bounded_put
from .certificate import CertificateBinding
from .context import RequestContext, Verification
from .dpop import ProofChecker
from .exchange import ExchangedTokenAuth, TokenExchanger
from .introspection import Introspector
from .keyset import KeySet
from .observer import LoggingObserver, Observer
from .realms import KeySets
from .store import MemoryStore, Store, StoreUnavailable

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .redis_store import RedisStore

__all__ = ["TokenVerifier"]

# Distinct JOSE headers remembered after passing the header rules: one per signing key in practice.
_HEADER_CACHE_SIZE = 64
_MALFORMED = "malformed token"


class TokenVerifier:
    """Verifies incoming access tokens. Owns the HTTP client towards Keycloak, one key set per trusted
    issuer (:class:`~.realms.KeySets`), the verified-token cache and, when introspection is configured,
    the introspector (which may raise ``ValueError`` for an unusable key).

    Use it as an async context manager so the HTTP client is closed::

        async with TokenVerifier(KeycloakSettings(server_url=..., realm=..., audience="orders")) as verifier:
            principal = await verifier.verify(token)

    ``store`` keeps introspection answers and the DPoP proofs seen, shared by replicas (default: the Redis
    of ``KC_M2M_REDIS_URL``, else in this process, apart and bounded); ``observer`` receives what happens
    (default: :class:`~.observer.LoggingObserver`, or with ``KC_M2M_METRICS=prometheus``
    :class:`~.metrics.MetricsObserver` on ``registry``, default prometheus_client's ``REGISTRY``; an
    observer given replaces it: subclass ``MetricsObserver`` to keep the metrics). ``KC_M2M_TRACING=otel``
    gives the observer, yours too unless it has :attr:`~.observer.Observer.spans`, OpenTelemetry spans.
    """

    def __init__(
        self,
        settings: KeycloakSettings | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        observer: Observer | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``http_client`` (kept open on close) or ``transport`` replace the default HTTP set-up."""
        self.settings = settings if settings is not None else KeycloakSettings()  # type: ignore[call-arg]
        self._given_client = http_client
        self._transport = transport
        self._clock = clock
        self._observer = observer if observer is not None else self._default_observer(registry)
        if self.settings.tracing == "otel" and self._observer.spans is None:
            self._observer.spans = Spans()
        self._own_store = self._redis_store() if store is None else None
        # ``is None``, not ``or``: an empty MemoryStore is falsy.
        shared = store if store is not None else self._own_store
        self._store = MemoryStore(self.settings.introspection_cache_size, clock) if shared is None else shared
        self._dpop = ProofChecker(self.settings, clock, shared, self._observer)
        self._dpop_off = self.settings.dpop == "off"
        self._certificates = CertificateBinding(self.settings.client_cert_header is not None, self._observer)
        self._cache: TokenCache[Verification] = TokenCache(self.settings.token_cache_size, clock)
        self._introspect_all = self.settings.introspection == "always"
        self._lightweight = self.settings.lightweight_tokens
        self._may_introspect = self._introspect_all or self._lightweight
        self._algorithms = frozenset(self.settings.algorithms)
        self._headers: OrderedDict[bytes, tuple[str, str | None]] = OrderedDict()
        self._connect()

    def _default_observer(self, registry: CollectorRegistry | None) -> Observer:
        """Logs, plus Prometheus metrics when ``KC_M2M_METRICS=prometheus`` (the prometheus extra)."""
        if self.settings.metrics == "off":
            return LoggingObserver()
        try:
            from .metrics import MetricsObserver  # noqa: PLC0415 - prometheus_client is an extra
        except ImportError:
            raise ValueError(
                "KC_M2M_METRICS=prometheus needs the prometheus extra: pip install 'fastapi_kc_m2m[prometheus]'"
            ) from None
        return MetricsObserver(self.settings, registry=registry, clock=self._clock)

    def _redis_store(self) -> RedisStore | None:
        """The store on the Redis ``KC_M2M_REDIS_URL`` names (the ``redis`` extra), None without one."""
        url = self.settings.redis_url
        if url is None:
            return None
        try:
            from .redis_store import RedisStore  # noqa: PLC0415 - the redis package is an extra
        except ImportError:
            raise ValueError("KC_M2M_REDIS_URL needs the redis extra: pip install 'fastapi_kc_m2m[redis]'") from None
        settings = self.settings
        return RedisStore.from_url(
            url.get_secret_value(), prefix=settings.redis_key_prefix, timeout=settings.redis_timeout
        )

    def _connect(self) -> None:
        """Create what :meth:`aclose` closes: the HTTP client (unless the caller's), the issuers' key
        sets and the introspector, all using it."""
        self._closed = False
        self._client = self._given_client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.http_timeout, connect=self.settings.http_connect_timeout),
            follow_redirects=False,
            verify=self.settings.tls_verify,
            transport=self._transport,
        )
        self._key_sets = KeySets(self.settings, self._new_key_set, self._clock)
        self._introspector = (
            Introspector(
                self.settings,
                self._client,
                self._key_sets.metadata,
                self._clock,
                store=self._store,
                observer=self._observer,
            )
            if self.settings.introspects
            else None
        )
        self._exchanger = (
            TokenExchanger(self.settings, self._client, self._key_sets.metadata, self._clock)
            if self.settings.token_exchange
            else None
        )
        self._prefetching: asyncio.Task[bool] | None = None

    def _new_key_set(self, issuer: str) -> KeySet:
        """The key set of one issuer, with its own discovery document, on the shared HTTP client."""
        limits, retry = self.settings.http_limits, self.settings.jwks_retry_interval
        metadata = ProviderMetadata(issuer, self._client, limits, retry_interval=retry, clock=self._clock)
        return KeySet(
            metadata,
            self._client,
            self.settings,
            clock=self._clock,
            observer=self._observer,
            on_retired=functools.partial(self._forget_keys, issuer),
        )

    async def __aenter__(self) -> TokenVerifier:
        """Open again after :meth:`aclose`, so an app's lifespan can run more than once."""
        if self._closed:
            self._connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel background fetches and close the HTTP client if this object created it; entering
        the verifier again creates them anew."""
        self._closed = True
        if self._prefetching is not None:
            self._prefetching.cancel()
        for key_set in self._key_sets.values():
            key_set.close()
        if self._introspector is not None:
            self._introspector.close()
        if self._exchanger is not None:
            self._exchanger.close()
        if self._given_client is None:
            await self._client.aclose()
        if self._own_store is not None:
            await self._own_store.aclose()

    @property
    def ready(self) -> bool:
        """Whether every fixed trusted issuer has usable keys loaded and the store answers (for readiness
        probes); realms a pattern matches do not count, one tenant's outage is not the service's."""
        return self._store.available and all(key_set.ready for key_set in self._key_sets.fixed.values())

    @property
    def introspector(self) -> Introspector | None:
        """The introspector, when introspection is configured."""
        return self._introspector

    @property
    def exchanger(self) -> TokenExchanger | None:
        """The token exchanger (RFC 8693), when ``KC_M2M_TOKEN_EXCHANGE`` is on."""
        return self._exchanger

    def downstream_auth(
        self, context: RequestContext, verification: Verification, audience: str, scope: str | None = None
    ) -> ExchangedTokenAuth:
        """An ``httpx.Auth`` calling ``audience`` on behalf of the caller :meth:`authenticate` verified;
        with token exchange off a set-up mistake, refused with 503 and reported, like introspection."""
        if self._exchanger is None:
            self._observer.misconfigured("a downstream call needs KC_M2M_TOKEN_EXCHANGE=true; refusing with 503")
            error = IdentityProviderUnavailable(math.ceil(self.settings.jwks_retry_interval), "token exchange is off")
            error.route = True
            raise error
        return ExchangedTokenAuth(self._exchanger, context, verification, audience, scope)

    def key_set(self, issuer: str) -> KeySet:
        """The key set held for a trusted ``issuer`` (``KeyError`` for others)."""
        return self._key_sets.lookup(issuer)

    async def prefetch(self) -> bool:
        """Load every fixed issuer's keys now; True when all of them succeeded."""
        results = [await key_set.refresh() for key_set in self._key_sets.fixed.values()]
        return all(results)

    async def startup(self, *, prefetch: bool = True, strict: bool = False) -> None:
        """Load the keys at start-up: in the background (start-up never waits for Keycloak), or with
        ``strict=True`` now, raising :class:`~.errors.IdentityProviderUnavailable` when that fails. A store
        set-up that lets replays through, or a store not answering, is reported (:meth:`Observer.hint`)."""
        await self._inspect_store()
        if strict:
            if not await self.prefetch():
                raise IdentityProviderUnavailable(
                    math.ceil(self.settings.jwks_retry_interval), "keys unavailable at start-up"
                )
        elif prefetch:
            self._prefetching = asyncio.get_running_loop().create_task(self.prefetch())

    async def _inspect_store(self) -> None:
        try:
            problems = await self._store.inspect()
        except StoreUnavailable:
            problems = ["the shared store does not answer at start-up: DPoP requests get 503 until it does"]
        for problem in problems:
            self._observer.hint(problem)

    async def settled(self) -> None:
        """Wait until no background work is under way: the start-up prefetch, key-set refreshes and
        introspection calls (for tests, and for an orderly shut-down)."""
        if self._prefetching is not None:
            await asyncio.wait([self._prefetching])
        for key_set in self._key_sets.values():
            await key_set.settled()
        if self._introspector is not None:
            await self._introspector.settled()

    async def verify(self, token: str, *, introspect: bool = False) -> ServicePrincipal:
        """Verify a bearer token and return its principal, or raise an :class:`~.errors.AuthError`
        (:meth:`authenticate` for a whole request context)."""
        return (await self.authenticate(RequestContext(token), introspect=introspect)).principal

    async def authenticate(self, context: RequestContext, *, introspect: bool = False) -> Verification:
        """Verify what a request presented and return the one result authorization works with.

        The token is introspected (RFC 7662) after local verification when ``introspect`` is true, the
        policy is ``always``, or it is a lightweight token; ``introspect=True`` with introspection off is
        a set-up mistake, refused with :class:`~.errors.IdentityProviderUnavailable` and reported.

        The DPoP side (RFC 9449 §7: scheme, proof, binding, nonce, replay) and the certificate binding
        (RFC 8705 §3) are checked on every request, a cached token's too (:mod:`.dpop`, :mod:`.certificate`).

        Raises :class:`~.errors.InvalidToken` for every token fault (an inactive token included),
        :class:`~.errors.InvalidDPoPProof` and :class:`~.errors.UseDPoPNonce` for proof faults, and
        :class:`~.errors.IdentityProviderUnavailable` when no usable keys or introspection answer can
        be had.
        """
        token = context.token
        started, cached = time.perf_counter(), False
        try:
            if len(token) > self.settings.max_token_bytes:
                raise InvalidToken("token too large")
            raw = token.encode("utf-8", "surrogatepass")  # non-ASCII bytes never pass decode_segment
            digest = hashlib.sha256(raw).digest()
            verification = self._cache.get(digest)
            cached = verification is not None
            if verification is None:
                verification = await self._verify_new(raw, digest)
                expires = min(verification.principal.expires_at, self._clock() + self.settings.token_cache_ttl)
                self._cache.put(digest, verification, expires)
            if introspect or self._may_introspect:
                verification = await self._introspected(token, verification, introspect)
            self._certificates.check(context, verification.x5t)
            jkt = self._dpop.bound_key(context, verification.jkt)
            if jkt is not None:
                await self._dpop.check(context, jkt, verification.digest)
            self._observer.token_accepted(verification, cached=cached)  # once, after every check passed
        except AuthError as error:
            self._refused(error, context)
            raise
        finally:
            self._observer.verification_timed(time.perf_counter() - started, cached)
        return verification

    def _refused(self, error: AuthError, context: RequestContext) -> None:
        self.report_refusal(error, context.path, context.method)

    def report_refusal(self, error: AuthError, path: str | None, method: str | None) -> None:
        """Tell the observer of ``error`` with the request's path and method (for refusal events), once:
        the ASGI layer reports its own refusals (RFC 6750 §3.1) and the verifier's again as no-ops; a
        route's refusal of an accepted token (``error.route``) is told apart."""
        if error.reported:
            return
        error.reported = True
        error.path, error.method = path, method
        if error.route:
            self._observer.route_refused(error)
        else:
            self._observer.token_refused(error)

    async def introspect(self, context: RequestContext, verification: Verification) -> Verification:
        """Introspect (RFC 7662) a token :meth:`authenticate` verified, whatever the policy (a route's
        ``require_active_token()``); refusals as :meth:`authenticate`."""
        try:
            return await self._introspected(context.token, verification, requested=True)
        except AuthError as error:
            error.route = True  # the route's require_active_token(), after the token was accepted
            self._refused(error, context)
            raise

    async def _introspected(self, token: str, verification: Verification, requested: bool) -> Verification:
        if self._introspector is None:  # require_active_token() while introspection is off: fail closed
            self._observer.misconfigured(
                "introspection requested (require_active_token) but off: set KC_M2M_INTROSPECTION=per_route"
                " and the client credentials; refusing with 503"
            )
            raise IdentityProviderUnavailable(math.ceil(self.settings.jwks_retry_interval), "introspection is off")
        if requested or self._introspect_all or verification.lightweight:
            return await self._introspector.check(token, verification)
        return verification

    def dpop_nonce(self) -> str | None:
        """The current DPoP server nonce (RFC 9449 §8) for a ``DPoP-Nonce`` header; None when nonces are off."""
        return self._dpop.nonce()

    def _check_header(self, segment: bytes) -> tuple[str, str | None]:
        """``(alg, kid)`` of a header segment; Keycloak reuses one header per key, so it is cached."""
        checked = self._headers.get(segment)
        if checked is None:
            checked = check_header(loads_object(decode_segment(segment)), self._algorithms)
            bounded_put(self._headers, segment, checked, _HEADER_CACHE_SIZE)
        return checked

    async def _verify_new(self, token: bytes, digest: bytes) -> Verification:
        try:
            header, payload, signing_input, signature = split_compact(token)
            alg, kid = self._check_header(header)
            claims = loads_object(decode_segment(payload))
            signature = decode_segment(signature)
        except ValueError:  # the one place a malformed token's parse error becomes a refusal
            raise InvalidToken(_MALFORMED) from None
        issuer = None
        try:
            jkt = check_type(claims)
            if jkt is not None and self._dpop_off:
                raise InvalidToken("sender-constrained tokens are not supported")
            issuer = self._key_sets.trusted(claims.get("iss"))
            if issuer is None:
                raise InvalidToken("untrusted issuer")
            check_times(claims, self._clock(), self.settings.clock_skew)
            # No aud in a token means a lightweight token, when those are accepted: introspection supplies it.
            lightweight = self._lightweight and "aud" not in claims
            if not lightweight:
                check_audience(claims, self.settings.audience_for(issuer))
            check_client(claims, self.settings.allowed_clients)
            # Only now, every local check passed, may a realm seen first cost a fetch.
            key_set = self._key_sets.get(issuer)
            key = key_set.fresh_key(kid, alg)
            if key is None:
                key = await self._key_sets.key_for(key_set, kid, alg)
            if not signature_is_valid(signing_input, signature, alg, key):
                raise InvalidToken("invalid signature")
        except AuthError as error:
            error.issuer = issuer
            error.client_id = calling_client(claims)
            raise
        x5t = confirmation(claims)[1]
        principal = ServicePrincipal.from_claims(claims, realm=key_set.realm)
        return Verification(principal, digest, lightweight, kid=kid, jkt=jkt, x5t=x5t)

    def _forget_keys(self, issuer: str, kids: frozenset[str | None]) -> None:
        """Drop cached verifications by keys ``issuer`` no longer publishes; a token without ``kid``
        was checked with the then only key, which may be among them."""
        self._cache.drop_where(lambda v: v.principal.issuer == issuer and (v.kid is None or v.kid in kids))
