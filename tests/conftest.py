"""Shared fixtures: a frozen clock, an in-process test issuer and a verifier wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from fastapi_kc_m2m import KeycloakAuth
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer


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
