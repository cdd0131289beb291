"""The one observer hook: what the resource server reports about key sets, tokens and introspection.

:class:`Observer`'s methods do nothing; :class:`LoggingObserver`, the default, writes today's log lines
on the ``fastapi_kc_m2m`` logger (``KC_M2M_METRICS=prometheus`` uses its subclass
:class:`~.metrics.MetricsObserver`). Subclass either (and call ``super()``) to send events elsewhere and
keep the logs and metrics (``KC_M2M_TRACING=otel`` adds OpenTelemetry spans through
:meth:`Observer.span`); pass it as ``TokenVerifier(observer=...)``. Methods run on the event loop, on
the request path: they must return quickly and never block (hand slow work to a queue). Nothing handed
to an observer holds a token, a proof, a secret or a key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from .._idp.tracing import Attributes, Spans
from ..errors import AuthError
from .context import Verification

__all__ = ["Attributes", "LoggingObserver", "Observer"]

logger = logging.getLogger("fastapi_kc_m2m")


class Observer:
    """Receives events; override the methods you need."""

    #: Where :meth:`span` starts OpenTelemetry spans (``[otel]`` extra); ``KC_M2M_TRACING=otel`` sets it
    #: on the verifier's observer when unset. ``None``: no spans.
    spans: Spans | None = None

    def key_set_loaded(self, issuer: str, keys: int, skipped: int) -> None:
        """A key set was fetched: ``keys`` usable signing keys, ``skipped`` other entries."""

    def key_set_failed(self, issuer: str, reason: str, serving: bool) -> None:
        """A key-set fetch failed for ``reason``; ``serving`` tells whether the last good keys still serve."""

    def token_accepted(self, verification: Verification, cached: bool) -> None:
        """A token was accepted, verified now or (``cached``) found in the verified-token cache."""

    def token_refused(self, error: AuthError) -> None:
        """A request was refused, once, by the verifier or the ASGI layer (no token, a malformed
        header): ``error.reason`` is the reason code, ``error.issuer`` the issuer when
        trusted, ``error.client_id`` the token's unverified calling client when it names one,
        ``error.path`` and ``error.method`` the request's when known."""

    def route_refused(self, error: AuthError) -> None:
        """A request whose token was accepted (:meth:`token_accepted`) was then refused, once, by its
        route's requirement: a scope or role (403), an active token by introspection
        (``require_active_token()``), or a downstream token by exchange (``downstream()``: 502, 503);
        ``error`` as in :meth:`token_refused`."""

    def verification_timed(self, seconds: float, cached: bool) -> None:
        """One request's verification took ``seconds``, accepted or not; ``cached``: the token was in
        the verified-token cache."""

    def certificate_binding(self, outcome: str) -> None:
        """A certificate-bound token (RFC 8705 §3) was checked: ``outcome`` is ``accepted``, ``missing``
        (no client certificate) or ``mismatch``."""

    def introspected(self, issuer: str, result: str, seconds: float) -> None:
        """An introspection call (RFC 7662) ended: ``result`` is ``active``, ``inactive`` or the
        reason it failed."""

    def dpop_proof(self, outcome: str, reason: str) -> None:
        """A DPoP proof (RFC 9449) was checked: ``outcome`` is ``accepted`` or ``refused``, ``reason``
        a fixed phrase."""

    def misconfigured(self, message: str) -> None:
        """A set-up mistake was found while serving; ``message`` says what to change."""

    def hint(self, message: str) -> None:
        """Something looks like a set-up mistake; ``message`` says what to check."""

    def span(self, name: str, attributes: Mapping[str, str | int]) -> AbstractContextManager[Attributes]:
        """Around a call to Keycloak (``kc_m2m.jwks_fetch``, ``kc_m2m.introspection``), begun with
        ``attributes``; the caller adds the outcome (``kc_m2m.result``, ``http.response.status_code``,
        ``error.type`` on failure) to the dict it yields. Default: a span of :attr:`spans`, if set."""
        return contextlib.nullcontext({}) if self.spans is None else self.spans.span(name, attributes)


class LoggingObserver(Observer):
    """The default observer: log lines on the ``fastapi_kc_m2m`` logger.

    Each refusal is one record (message ``refused: <reason>, issuer <issuer>, client <client>`` at
    ``refusal_level``, DEBUG by default) whose ``extra`` fields are ``reason``, ``issuer``, ``client_id``,
    ``path``, ``method`` and ``suppressed``. They are rate-limited by a token bucket: at most
    ``refusal_burst + refusal_rate * t`` records in any ``t`` seconds (20 at once, then 10 a second by
    default); the next record after a gap counts the refusals left out in ``suppressed``.
    """

    def __init__(
        self, *, refusal_level: int = logging.DEBUG, refusal_rate: float = 10.0, refusal_burst: int = 20
    ) -> None:
        self._refusals = _RefusalLog(refusal_level, refusal_rate, refusal_burst)

    def key_set_loaded(self, issuer: str, keys: int, skipped: int) -> None:
        if skipped:
            logger.debug("key set of %s: skipped %d entries that are not usable signing keys", issuer, skipped)
        logger.info("key set of %s: loaded %d signing keys", issuer, keys)

    def key_set_failed(self, issuer: str, reason: str, serving: bool) -> None:
        logger.warning(
            "key set of %s: fetch failed (%s); %s",
            issuer,
            reason,
            "serving the last good keys" if serving else "no usable keys",
        )
        if reason == "discovery names another issuer":
            logger.error(
                "discovery for %s names another issuer; configure the exact issuer Keycloak reports"
                " (fix KC_HOSTNAME so every caller sees the same one)",
                issuer,
            )

    def token_refused(self, error: AuthError) -> None:
        self._refusals.record(error)

    def route_refused(self, error: AuthError) -> None:
        self._refusals.record(error)

    def introspected(self, issuer: str, result: str, seconds: float) -> None:
        if result not in ("active", "inactive"):
            logger.warning("introspection at %s failed (%s); refusing with 503", issuer, result)

    def dpop_proof(self, outcome: str, reason: str) -> None:
        logger.debug("DPoP proof %s: %s", outcome, reason)

    def misconfigured(self, message: str) -> None:
        logger.error("%s", message)

    def hint(self, message: str) -> None:
        logger.warning("%s", message)


class _RefusalLog:
    """Refusal records through a token bucket of ``burst`` tokens refilled at ``rate`` a second."""

    def __init__(self, level: int, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._level = level
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._suppressed = 0

    def record(self, error: AuthError) -> None:
        """Log ``error`` unless the bucket is empty; then only count it."""
        if not logger.isEnabledFor(self._level):
            return
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self._suppressed += 1
            return
        self._tokens -= 1
        fields: dict[str, object] = {"reason": error.reason, "issuer": error.issuer, "client_id": error.client_id}
        fields |= {"path": error.path, "method": error.method, "suppressed": self._suppressed}
        self._suppressed = 0
        logger.log(self._level, "refused: %s, issuer %s, client %s", error.reason, error.issuer, error.client_id,
                   extra=fields)  # fmt: skip
