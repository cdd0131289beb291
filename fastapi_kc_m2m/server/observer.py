"""The one observer hook: what the resource server reports about key sets, tokens and introspection.

:class:`Observer`'s methods do nothing; :class:`LoggingObserver`, the default, writes today's log lines
on the ``fastapi_kc_m2m`` logger. Subclass it (and call ``super()``) to add metrics or traces and keep
the logs; :class:`TracingObserver` (``KC_M2M_TRACING=otel``) adds OpenTelemetry spans through
:meth:`Observer.span`. Nothing handed to an observer holds a token, a proof, a secret or a key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager

from .._idp.tracing import Attributes, Spans
from ..errors import AuthError
from .context import Verification

__all__ = ["Attributes", "LoggingObserver", "Observer", "TracingObserver"]

logger = logging.getLogger("fastapi_kc_m2m")


class Observer:
    """Receives events; override the methods you need."""

    def key_set_loaded(self, issuer: str, keys: int, skipped: int) -> None:
        """A key set was fetched: ``keys`` usable signing keys, ``skipped`` other entries."""

    def key_set_failed(self, issuer: str, reason: str, serving: bool) -> None:
        """A key-set fetch failed for ``reason``; ``serving`` tells whether the last good keys still serve."""

    def token_accepted(self, verification: Verification, cached: bool) -> None:
        """A token was accepted, verified now or (``cached``) found in the verified-token cache."""

    def token_refused(self, error: AuthError) -> None:
        """A token was refused: ``error.reason`` is the reason code, ``error.issuer`` the issuer when
        trusted, ``error.client_id`` the token's unverified calling client when it names one."""

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
        ``error.type`` on failure) to the dict it yields. Default: records nothing."""
        return contextlib.nullcontext({})


class LoggingObserver(Observer):
    """The default observer: log lines on the ``fastapi_kc_m2m`` logger."""

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
        logger.debug("refused: %s, issuer %s, client %s", error.reason, error.issuer, error.client_id)

    def introspected(self, issuer: str, result: str, seconds: float) -> None:
        if result not in ("active", "inactive"):
            logger.warning("introspection at %s failed (%s); refusing with 503", issuer, result)

    def dpop_proof(self, outcome: str, reason: str) -> None:
        logger.debug("DPoP proof %s: %s", outcome, reason)

    def misconfigured(self, message: str) -> None:
        logger.error("%s", message)

    def hint(self, message: str) -> None:
        logger.warning("%s", message)


class TracingObserver(LoggingObserver):
    """:class:`LoggingObserver` plus an OpenTelemetry span (``[otel]`` extra) around each call to Keycloak;
    with the API alone (no SDK configured) the spans are no-ops."""

    def __init__(self) -> None:
        self._spans = Spans()

    def span(self, name: str, attributes: Mapping[str, str | int]) -> AbstractContextManager[Attributes]:
        return self._spans.span(name, attributes)
