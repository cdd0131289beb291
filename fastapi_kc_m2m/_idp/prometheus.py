"""Prometheus metric families shared per registry (``[prometheus]`` extra, imported only when asked for).

Several instances in one process (tests, several apps, several clients) get the same family from
:func:`family` instead of failing with a duplicate registration.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

__all__ = ["family", "registry_or_default"]

_M = TypeVar("_M", bound="MetricWrapperBase")
_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, MetricWrapperBase]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # clients may be made on several threads at once


def registry_or_default(registry: CollectorRegistry | None) -> CollectorRegistry:
    """``registry``, else prometheus_client's default one; an ``ImportError`` says which extra to install."""
    try:
        from prometheus_client import REGISTRY  # noqa: PLC0415 - only when metrics are asked for
    except ImportError:
        raise ImportError("metrics need prometheus-client: pip install 'fastapi_kc_m2m[prometheus]'") from None
    return REGISTRY if registry is None else registry


def family(
    kind: type[_M],
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    **options: Any,
) -> _M:
    """The ``kind`` (Counter, Histogram, Gauge) family ``name`` in ``registry``, registered on first use
    with ``options`` (a histogram's ``buckets``)."""
    with _LOCK:
        families = _FAMILIES.setdefault(registry, {})
        found = families.get(name)
        if found is None:
            found = families[name] = kind(name, documentation, labels, registry=registry, **options)
    if not isinstance(found, kind):
        raise ValueError(f"metric {name} is already registered as another kind")
    return found
