"""Optional OpenTelemetry spans around calls to the identity provider (``[otel]`` extra, API only).

Without an SDK configured, the API's spans are no-ops. Attributes never hold a token, a secret, an
assertion or exception text: only the issuer, client id, endpoint host, a fixed result phrase and the
HTTP status.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

from .._version import __version__
from .http import FetchError

__all__ = ["Attributes", "Spans", "failure_attributes", "host"]

#: Span attributes: names (OpenTelemetry semantic conventions where one fits) to strings or integers.
Attributes = dict[str, str | int]


def host(url: str) -> str:
    """The host of ``url``, the ``server.address`` attribute (never its path, query or userinfo)."""
    return urlsplit(url).hostname or ""


class Spans:
    """Starts spans on the ``fastapi_kc_m2m`` tracer of the global tracer provider."""

    def __init__(self) -> None:
        try:
            from opentelemetry import trace  # noqa: PLC0415 - only when tracing is asked for
        except ImportError:
            raise ImportError("tracing needs opentelemetry-api: pip install 'fastapi_kc_m2m[otel]'") from None
        self._tracer = trace.get_tracer("fastapi_kc_m2m", __version__)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, str | int]) -> Iterator[Attributes]:
        """A current span ``name``; the caller adds outcome attributes to the yielded dict, recorded when
        the block ends; an ``error.type`` among them marks the span failed. Exceptions are not recorded
        (their text could hold what a log must not)."""
        from opentelemetry.trace import StatusCode  # noqa: PLC0415 - loaded by __init__ already

        outcome: Attributes = {}
        with self._tracer.start_as_current_span(
            name, attributes=dict(attributes), record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield outcome
            finally:
                span.set_attributes(outcome)
                if "error.type" in outcome:
                    span.set_status(StatusCode.ERROR)


def failure_attributes(exc: Exception, reason: str) -> Attributes:
    """The outcome attributes of a failed call: ``reason`` (a fixed phrase), the exception's class as
    ``error.type``, and the HTTP status that refused the answer, if that was the reason."""
    outcome: Attributes = {"kc_m2m.result": reason, "error.type": type(exc).__name__}
    if isinstance(exc, FetchError) and exc.status_code is not None:
        outcome["http.response.status_code"] = exc.status_code
    return outcome
