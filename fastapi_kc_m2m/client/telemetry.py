"""What Machine A reports about its token requests: Prometheus metrics and OpenTelemetry spans, both optional.

- ``kc_m2m_client_token_requests_total{client_id, result}``: ``result`` is ``ok`` or the
  :class:`~.auth.ClientCredentialsError` code when it is one of a fixed set, else ``other``;
- ``kc_m2m_client_token_seconds{client_id}``: how long getting a token took (discovery included);
- ``kc_m2m_client_token_renewals_total{client_id, reason}``: a cached token replaced, ``reason``
  ``early`` (refreshed ahead of expiry), ``expired`` or ``401`` (the API refused it, RFC 6750 §3.1);
- the span ``kc_m2m.client.token_request`` with the client id, the endpoint host, the result and the
  HTTP status.

The client id is the caller's own configured one, so labels stay bounded; no token, secret or assertion
is ever a label or an attribute.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .._idp.prometheus import family, registry_or_default
from .._idp.tracing import Attributes, Spans, host

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ClientTelemetry"]

_SPAN = "kc_m2m.client.token_request"


class ClientTelemetry:
    """Counts and traces one client's token requests; does nothing unless ``metrics`` or ``tracing``."""

    def __init__(
        self,
        client_id: str,
        codes: Collection[str],
        *,
        metrics: bool = False,
        registry: CollectorRegistry | None = None,
        tracing: bool = False,
    ) -> None:
        self._client_id = client_id
        self._codes = codes
        self._spans = Spans() if tracing else None
        self._requests: Counter | None = None
        self._seconds: Histogram | None = None
        self._renewals: Counter | None = None
        if metrics:
            self._families(registry_or_default(registry))

    def _families(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram  # noqa: PLC0415 - only with metrics on

        self._requests = family(
            Counter, registry, "kc_m2m_client_token_requests_total", "Machine A's token requests by result",
            ("client_id", "result"),
        )  # fmt: skip
        self._seconds = family(
            Histogram, registry, "kc_m2m_client_token_seconds", "How long Machine A took to get a token",
            ("client_id",),
        )  # fmt: skip
        self._renewals = family(
            Counter, registry, "kc_m2m_client_token_renewals_total", "Machine A's cached tokens replaced, by reason",
            ("client_id", "reason"),
        )  # fmt: skip

    def renewed(self, reason: str) -> None:
        """A cached token is being replaced for ``reason`` (``early``, ``expired`` or ``401``)."""
        if self._renewals is not None:
            self._renewals.labels(self._client_id, reason).inc()

    @contextmanager
    def token_request(self, endpoint: str) -> Iterator[None]:
        """Around getting one token from ``endpoint`` (the token endpoint, or the issuer before discovery)."""
        started = time.perf_counter()
        outcome: Attributes = {"kc_m2m.result": "ok", "http.response.status_code": 200}
        with self._span(endpoint) as recorded:
            try:
                yield
            except Exception as exc:
                outcome = self._failure(exc)
                raise
            except BaseException:  # the flow was closed or cancelled mid-request
                outcome = {"kc_m2m.result": "cancelled", "error.type": "cancelled"}
                raise
            finally:
                recorded.update(outcome)
                self._count(outcome, time.perf_counter() - started)

    @contextmanager
    def _span(self, endpoint: str) -> Iterator[Attributes]:
        if self._spans is None:
            yield {}
            return
        attributes = {"kc_m2m.client_id": self._client_id, "server.address": host(endpoint)}
        with self._spans.span(_SPAN, attributes) as recorded:
            yield recorded

    def _failure(self, exc: Exception) -> Attributes:
        """The outcome attributes of a failure: a code from the fixed set (else ``other``), the status."""
        error = getattr(exc, "error", None)
        result = error if isinstance(error, str) and error in self._codes else "other"
        outcome: Attributes = {"kc_m2m.result": result, "error.type": result}
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            outcome["http.response.status_code"] = status
        return outcome

    def _count(self, outcome: Attributes, seconds: float) -> None:
        if self._requests is not None and self._seconds is not None:
            self._requests.labels(self._client_id, str(outcome["kc_m2m.result"])).inc()
            self._seconds.labels(self._client_id).observe(seconds)
