"""Shared fixtures: a frozen clock, an in-process test issuer and a verifier wired to it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_kc_m2m import KeycloakAuth
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, serve_app
from tests.helpers import RedisServer, api_client, cluster_ports, create_cluster

# Property-based tests (tests/test_fuzz.py): a quick profile for every run, and a long one on demand:
#   HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/test_fuzz.py
settings.register_profile("quick", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def issuer(clock: FrozenClock) -> TestIssuer:
    return TestIssuer(clock=clock)


@pytest.fixture
async def auth(issuer: TestIssuer) -> AsyncIterator[KeycloakAuth]:
    async with issuer.auth() as verifier:
        yield verifier


@pytest.fixture
def served_issuer() -> Iterator[TestIssuer]:
    """An issuer on a real loopback port (uvicorn in a thread), with the real clock."""
    with TestIssuer.serving() as running:
        yield running


@contextlib.asynccontextmanager
async def _lifespan_client(app: ASGIApp, lifespan: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for ``app`` with ``lifespan`` running and its state shared with every request,
    as an ASGI server does (httpx.ASGITransport runs no lifespan)."""
    async with lifespan(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            await app({**scope, "state": dict(state or {})}, receive, send)

        async with api_client(with_state) as c:
            yield c


@pytest.fixture
def lifespan_client() -> Any:
    """``async with lifespan_client(app, lifespan) as client``: requests see the lifespan state."""
    return _lifespan_client


@pytest.fixture
def serve() -> Any:
    """``with serve(app) as host_port``: ``app`` served by uvicorn on loopback, lifespan on."""

    @contextlib.contextmanager
    def served(app: ASGIApp) -> Iterator[str]:
        with serve_app(app, lifespan="on") as base_url:
            yield base_url.removeprefix("http://")

    return served


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (tests keep apart by key prefix: ``redis_prefix``)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, pause or restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """A real three-node Redis Cluster on loopback (``--cluster-enabled yes``, ``redis-cli --cluster create``):
    the nodes' ports."""
    workdir = str(tmp_path_factory.mktemp("redis-cluster"))
    nodes = [RedisServer("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{n}.conf", port=port)
             for n, port in enumerate(cluster_ports(3))]  # fmt: skip
    try:
        for node in nodes:
            node.start(cwd=workdir)
        create_cluster([node.port for node in nodes])
        yield [node.port for node in nodes]
    finally:
        for node in nodes:
            node.stop()
