"""Smoke checks run by a clean virtual environment's interpreter against the installed wheel (not the
repository: no pytest, no test helpers there). ``python wheel_smoke.py CASE [ARG]`` prints one JSON object
of what it saw; tests/system/test_distribution.py judges it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

import fastapi_kc_m2m
from fastapi_kc_m2m.testing import TestIssuer


async def bare() -> dict[str, Any]:
    """The version from both places, where the package lies, and a protected app's 401 and 200."""
    from fastapi import Depends, FastAPI  # noqa: PLC0415 - the case's own imports

    from fastapi_kc_m2m import require_scope  # noqa: PLC0415

    issuer = TestIssuer(audience="machine-b")
    rs = issuer.auth()
    app = FastAPI(lifespan=rs.lifespan)

    @app.get("/orders", dependencies=[Depends(require_scope("orders:read"))])
    async def orders() -> list[str]:
        return []

    rs.install(app)
    async with rs, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        refused = await client.get("/orders")
        allowed = await client.get("/orders", headers={"Authorization": f"Bearer {issuer.token(scope='orders:read')}"})
    return {
        "version": fastapi_kc_m2m.__version__,
        "metadata_version": importlib.metadata.version("fastapi_kc_m2m"),
        "package_file": fastapi_kc_m2m.__file__,
        "statuses": [refused.status_code, allowed.status_code],
    }


async def testing() -> dict[str, Any]:
    """TestIssuer.serving() on loopback (uvicorn) and a verification over real HTTP."""
    with TestIssuer.serving() as issuer:
        async with fastapi_kc_m2m.KeycloakAuth(issuer.settings()) as auth:
            principal = await auth.verify(issuer.token())
        return {"issuer": principal.issuer.startswith("http://127.0.0.1:"), "requests": dict(issuer.requests)}


async def redis(url: str) -> dict[str, Any]:
    """RedisStore on a real redis-server: a value put, read back and claimed once."""
    from fastapi_kc_m2m.server.redis_store import RedisStore  # noqa: PLC0415 - needs the redis extra

    store = RedisStore.from_url(url, prefix="wheel-smoke:", timeout=5)
    try:
        await store.put(b"\x01" * 32, {"claims": {"sub": "a"}}, 30)
        return {
            "read": await store.get(b"\x01" * 32),
            "claims": [await store.put_if_absent(b"\x02" * 32, {}, 30) for _ in range(2)],
        }
    finally:
        await store.aclose()


async def prometheus() -> dict[str, Any]:
    """KC_M2M_METRICS=prometheus counts a verification; metrics_app() exposes the kc_m2m_ families."""
    issuer = TestIssuer()
    async with issuer.auth(metrics="prometheus") as auth:
        await auth.verify(issuer.token())
    transport = httpx.ASGITransport(app=fastapi_kc_m2m.metrics_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        scraped = await client.get("/")
    families = {line.split()[2] for line in scraped.text.splitlines() if line.startswith("# TYPE kc_m2m_")}
    return {"status": scraped.status_code, "families": sorted(families)}


async def otel() -> dict[str, Any]:
    """KC_M2M_TRACING=otel with opentelemetry-api alone (no SDK): spans are no-ops, verification works."""
    issuer = TestIssuer()
    async with issuer.auth(tracing="otel") as auth:
        principal = await auth.verify(issuer.token())
    return {"client_id": principal.client_id, "sdk": importlib.util.find_spec("opentelemetry.sdk") is not None}


async def all_extras() -> dict[str, Any]:
    """Every extra's modules import."""
    modules = ["uvicorn", "redis", "prometheus_client", "opentelemetry.trace", "fastapi_kc_m2m.server.redis_store",
               "fastapi_kc_m2m.server.metrics", "fastapi_kc_m2m.testing.serving"]  # fmt: skip
    return {module: importlib.import_module(module).__name__ == module for module in modules}


CASES: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "bare": bare, "testing": testing, "redis": redis, "prometheus": prometheus, "otel": otel, "all": all_extras,
}  # fmt: skip

if __name__ == "__main__":
    print(json.dumps(asyncio.run(CASES[sys.argv[1]](*sys.argv[2:]))))
