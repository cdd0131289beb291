"""Prometheus metrics of the resource server (``KC_M2M_METRICS=prometheus``, the ``prometheus`` extra).

Imported only when metrics are on. The families, registered once per registry (several verifiers in
one process share them), and their labels:

=========================================  ==================================  =========================================
family                                     labels                              what
=========================================  ==================================  =========================================
``kc_m2m_verifications_total``             ``outcome``, ``reason``,            requests, once each: ``accepted``
                                           ``client_id``                       (``ok``: every check passed), ``refused``
                                                                               (400/401), ``unavailable`` (503)
``kc_m2m_route_refusals_total``            ``outcome``, ``reason``             accepted tokens refused by their route's
                                                                               scope, role (403), active token (401/503)
                                                                               or exchange (502/503) requirement
``kc_m2m_verification_seconds``            ``cache`` (``hit``/``miss``)        time in the verifier per request
``kc_m2m_token_remaining_seconds``         ``client_id``                       ``exp - now`` of a newly verified token
``kc_m2m_token_lifetime_seconds``          ``client_id``                       ``exp - iat`` of a newly verified token
``kc_m2m_jwks_fetches_total``              ``issuer``, ``result`` (ok/error)   key-set fetches (RFC 7517 §5)
``kc_m2m_jwks_age_seconds``                ``issuer``                          since the last good fetch (at scrape)
``kc_m2m_jwks_keys``                       ``issuer``                          usable signing keys loaded
``kc_m2m_introspections_total``            ``result`` (active/inactive/        introspection calls (RFC 7662)
                                           error)
``kc_m2m_introspection_seconds``           (none)                              their duration
``kc_m2m_dpop_proofs_total``               ``outcome``, ``reason``             DPoP proofs checked (RFC 9449 §4.3)
``kc_m2m_certificate_bindings_total``      ``outcome`` (accepted/missing/      certificate-bound tokens (RFC 8705 §3)
                                           mismatch)
=========================================  ==================================  =========================================

Labels stay bounded: ``reason`` is one of :data:`REASONS` (else ``other``), ``issuer`` only a trusted
one (empty for realms matched by a ``KC_M2M_REALMS`` pattern, an unbounded set), ``client_id`` empty
(so absent in Prometheus) unless ``KC_M2M_ALLOWED_CLIENTS`` lists the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .._idp.prometheus import family, registry_or_default
from ..errors import REASON_CODES, AuthError, IdentityProviderUnavailable, reason_code
from ..settings import KeycloakSettings
from .context import Verification
from .observer import LoggingObserver

__all__ = ["REASONS", "MetricsObserver"]

#: Every reason code (:attr:`~fastapi_kc_m2m.errors.AuthError.reason`) the package raises, and ``ok``.
REASONS: frozenset[str] = frozenset(REASON_CODES.values())

_FAST = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LIFE = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 86400.0)


class _Families:
    """The collectors of one registry, shared by every observer on it (:func:`.._idp.prometheus.family`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return family(Counter, registry, name, doc, labels)

        def gauge(name: str, doc: str) -> Gauge:
            return family(Gauge, registry, name, doc, ("issuer",))

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return family(Histogram, registry, name, doc, labels, buckets=buckets)

        self.verifications = counter(
            "kc_m2m_verifications_total", "Requests verified, by outcome and reason", "outcome", "reason", "client_id"
        )
        self.route_refusals = counter(
            "kc_m2m_route_refusals_total", "Accepted tokens refused by a route's requirement", "outcome", "reason"
        )
        self.verification_seconds = histogram(
            "kc_m2m_verification_seconds", "Time verifying a request", ("cache",), _FAST
        )
        self.token_remaining = histogram(
            "kc_m2m_token_remaining_seconds", "exp - now of newly verified tokens", ("client_id",), _LIFE
        )
        self.token_lifetime = histogram(
            "kc_m2m_token_lifetime_seconds", "exp - iat of newly verified tokens", ("client_id",), _LIFE
        )
        self.jwks_fetches = counter("kc_m2m_jwks_fetches_total", "Key-set fetches", "issuer", "result")
        self.jwks_age = gauge("kc_m2m_jwks_age_seconds", "Seconds since the last good key-set fetch")
        self.jwks_keys = gauge("kc_m2m_jwks_keys", "Usable signing keys loaded")
        self.introspections = counter("kc_m2m_introspections_total", "Introspection calls", "result")
        self.introspection_seconds = histogram(
            "kc_m2m_introspection_seconds", "Duration of introspection calls", (), _FAST
        )
        self.dpop_proofs = counter("kc_m2m_dpop_proofs_total", "DPoP proofs checked", "outcome", "reason")
        self.certificate_bindings = counter(
            "kc_m2m_certificate_bindings_total", "Certificate-bound tokens checked", "outcome"
        )

    def key_set_loaded(self, issuer: str, keys: int) -> None:
        """Note a good fetch; the age gauge reads the time since it when scraped."""
        loaded = time.monotonic()
        self.jwks_age.labels(issuer).set_function(lambda: time.monotonic() - loaded)
        self.jwks_keys.labels(issuer).set(keys)
        self.jwks_fetches.labels(issuer, "ok").inc()


class MetricsObserver(LoggingObserver):
    """The logging observer plus Prometheus metrics; subclass it (calling ``super()``) to add your own."""

    def __init__(
        self,
        settings: KeycloakSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._families = _Families(registry_or_default(registry))
        self._clients = frozenset(settings.allowed_clients)
        # Realms matched by pattern are not a bounded set: their issuers share one empty label.
        self._issuers = None if settings.issuers_bounded else frozenset(settings.trusted_issuers)
        self._clock = clock
        f = self._families
        self._hit = f.verification_seconds.labels("hit")
        self._miss = f.verification_seconds.labels("miss")
        self._accepted: dict[str, Counter] = {}  # by client label: the hot path skips labels()

    def _client(self, client_id: str | None) -> str:
        return client_id if client_id in self._clients else ""

    def _issuer(self, issuer: str) -> str:
        return issuer if self._issuers is None or issuer in self._issuers else ""

    def token_accepted(self, verification: Verification, cached: bool) -> None:
        principal = verification.principal
        client = self._client(principal.client_id)
        counter = self._accepted.get(client)
        if counter is None:
            counter = self._accepted[client] = self._families.verifications.labels("accepted", "ok", client)
        counter.inc()
        if not cached:
            self._families.token_remaining.labels(client).observe(principal.expires_at - self._clock())
            issued = principal.claims.get("iat")
            if isinstance(issued, int | float) and not isinstance(issued, bool):
                self._families.token_lifetime.labels(client).observe(principal.expires_at - issued)

    def verification_timed(self, seconds: float, cached: bool) -> None:
        (self._hit if cached else self._miss).observe(seconds)

    def token_refused(self, error: AuthError) -> None:
        super().token_refused(error)
        outcome = "unavailable" if isinstance(error, IdentityProviderUnavailable) else "refused"
        self._families.verifications.labels(outcome, error.reason, self._client(error.client_id)).inc()

    def route_refused(self, error: AuthError) -> None:
        super().route_refused(error)
        outcome = "unavailable" if isinstance(error, IdentityProviderUnavailable) else "refused"
        self._families.route_refusals.labels(outcome, error.reason).inc()

    def key_set_loaded(self, issuer: str, keys: int, skipped: int) -> None:
        super().key_set_loaded(issuer, keys, skipped)
        self._families.key_set_loaded(self._issuer(issuer), keys)

    def key_set_failed(self, issuer: str, reason: str, serving: bool) -> None:
        super().key_set_failed(issuer, reason, serving)
        self._families.jwks_fetches.labels(self._issuer(issuer), "error").inc()

    def introspected(self, issuer: str, result: str, seconds: float) -> None:
        super().introspected(issuer, result, seconds)
        self._families.introspections.labels(result if result in ("active", "inactive") else "error").inc()
        self._families.introspection_seconds.observe(seconds)

    def dpop_proof(self, outcome: str, reason: str) -> None:
        super().dpop_proof(outcome, reason)
        self._families.dpop_proofs.labels(outcome, reason_code(reason)).inc()

    def certificate_binding(self, outcome: str) -> None:
        super().certificate_binding(outcome)
        self._families.certificate_bindings.labels(outcome).inc()
