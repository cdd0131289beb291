"""``metrics_app()``: the Prometheus exposition as an ASGI app, for apps that do not serve one already.

Mount it (``app.mount("/metrics", metrics_app())``). It is authenticated like every other path under
:class:`~.middleware.KeycloakAuthMiddleware`; to let Prometheus scrape without a token, say so with
``exclude_paths={"/metrics"}`` (and keep the port off the public network). An app that protects routes
with dependencies only does not protect a mount: put the middleware in front, or serve it on another port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["metrics_app"]


def metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """The text exposition of ``registry`` (default: prometheus_client's ``REGISTRY``, where
    ``KC_M2M_METRICS=prometheus`` registers the ``kc_m2m_*`` families); needs the prometheus extra."""
    try:
        from prometheus_client import REGISTRY, make_asgi_app  # noqa: PLC0415 - an extra
    except ImportError:
        raise ValueError("metrics_app needs the prometheus extra: pip install 'fastapi_kc_m2m[prometheus]'") from None
    return make_asgi_app(REGISTRY if registry is None else registry)
