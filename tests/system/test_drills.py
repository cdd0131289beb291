"""Drills: Keycloak misbehaving under load, over real loopback HTTP.

Slow Keycloak: the JWKS endpoint answers only after 10 s. With keys cached, a refresh falls due and
many requests arrive at once: they are all served from the cached keys without waiting, exactly one
fetch goes out and gives up at ``http_timeout``, an unknown ``kid`` joins that fetch instead of starting
another, and no new attempt follows until the retry interval has passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import anyio
import pytest

from fastapi_kc_m2m import InvalidToken, KeycloakAuth
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio

HTTP_TIMEOUT = 2.0  # the fetch's bound; the slow endpoint would answer after 10 s
CONCURRENT = 300
TTL, AHEAD, RETRY = 300.0, 30.0, 5.0


@pytest.fixture
def slow_issuer(clock: FrozenClock) -> Iterator[TestIssuer]:
    with TestIssuer.serving(clock=clock) as running:
        yield running


async def timed_verifications(auth: KeycloakAuth, tokens: list[str]) -> list[float]:
    """Verify every token concurrently; the seconds each took (all must verify)."""
    durations: list[float] = []

    async def one(token: str) -> None:
        started = time.perf_counter()
        await auth.verify(token)
        durations.append(time.perf_counter() - started)

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(one, token)
    return durations


async def test_slow_keycloak_cached_keys_serve_and_one_bounded_fetch(
    slow_issuer: TestIssuer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_kc_m2m")
    settings = slow_issuer.settings(http_timeout=HTTP_TIMEOUT, token_cache_size=0)
    async with KeycloakAuth(settings, clock=clock) as auth:
        assert await auth.prefetch()
        assert slow_issuer.requests == {"discovery": 1, "jwks": 1}
        slow_issuer.fail("jwks", "slow")
        clock.advance(TTL - AHEAD)  # the background refresh is due

        started = time.perf_counter()
        durations = await timed_verifications(auth, [slow_issuer.token() for _ in range(CONCURRENT)])
        assert len(durations) == CONCURRENT
        assert max(durations) < HTTP_TIMEOUT / 2  # nobody waited for the fetch (it takes HTTP_TIMEOUT)
        await wait_until(lambda: slow_issuer.requests["jwks"] == 2, seconds=HTTP_TIMEOUT)
        keys = auth.key_set(slow_issuer.issuer)
        assert keys.fetching

        # An unknown kid joins the fetch under way rather than starting a second one.
        with pytest.raises(InvalidToken):
            await auth.verify(slow_issuer.token(header={"kid": "rotated-in"}))
        fetch_seconds = time.perf_counter() - started
        assert not keys.fetching
        assert HTTP_TIMEOUT - 0.1 < fetch_seconds < HTTP_TIMEOUT + 2.0  # gave up at its bound, not at 10 s
        assert slow_issuer.requests == {"discovery": 1, "jwks": 2}
        assert any("fetch failed (timed out)" in record.getMessage() for record in caplog.records)

        # No pile-up: within the retry interval, requests keep being served and nothing is fetched.
        clock.advance(RETRY - 1)
        durations = await timed_verifications(auth, [slow_issuer.token() for _ in range(CONCURRENT)])
        with pytest.raises(InvalidToken):
            await auth.verify(slow_issuer.token(header={"kid": "rotated-in"}))
        await anyio.sleep(0.2)
        assert max(durations) < HTTP_TIMEOUT / 2
        assert slow_issuer.requests == {"discovery": 1, "jwks": 2}

        clock.advance(1)  # the retry interval has passed: exactly one new attempt
        await timed_verifications(auth, [slow_issuer.token() for _ in range(CONCURRENT)])
        await wait_until(lambda: slow_issuer.requests["jwks"] == 3, seconds=HTTP_TIMEOUT)
        await anyio.sleep(0.2)
        assert slow_issuer.requests == {"discovery": 1, "jwks": 3}
        assert auth.ready  # the cached keys are far from max-stale
