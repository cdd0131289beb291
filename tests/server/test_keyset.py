"""The key-set cache: single flight, unknown-kid refetch and cooldown, rotation, outages, refresh ahead,
discovery, redirects, several issuers, readiness and cancellation.

In-process issuers with a FrozenClock travel in time; a real loopback server proves the fetch counts
under real concurrency and one outage over real HTTP.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from fastapi_kc_m2m import IdentityProviderUnavailable, InvalidToken, KeycloakAuth, KeycloakSettings, KeySet
from fastapi_kc_m2m.testing import OMIT, FailureMode, FrozenClock, TestIssuer, generate_key
from tests.helpers import Gate, wait_until

pytestmark = pytest.mark.anyio

MODES: list[FailureMode] = ["status", "timeout", "html", "oversized", "no_keys"]
TTL, AHEAD, COOLDOWN, MAX_STALE, RETRY = 300.0, 30.0, 30.0, 3600.0, 5.0
FAST: dict[str, Any] = {"http_timeout": 0.3, "token_cache_size": 0}


# ---------------------------------------------------------------------------- helpers

_RSA_POOL: list[rsa.RSAPrivateKey] = []


@pytest.fixture(autouse=True)
def reuse_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA generation would dominate the run time: each test draws distinct keys from a shared pool."""
    drawn = itertools.count()

    def pooled(size: int) -> rsa.RSAPrivateKey:
        index = next(drawn)
        while len(_RSA_POOL) <= index:
            _RSA_POOL.append(rsa.generate_private_key(65537, 2048))
        return _RSA_POOL[index] if size == 2048 else rsa.generate_private_key(65537, size)

    monkeypatch.setattr(RSAKey.binding, "generate_private_key", staticmethod(pooled))


class Router(httpx.AsyncBaseTransport):
    """Send each request to the transport of its host, and remember (host, path) of every request."""

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.host, request.url.path))
        return await self.routes[request.url.host].handle_async_request(request)


def key_set(auth: KeycloakAuth, issuer: TestIssuer) -> KeySet:
    return auth.key_set(issuer.issuer)


async def settled(auth: KeycloakAuth, issuer: TestIssuer) -> None:
    """Wait (bounded) for a background fetch of ``issuer``'s key set to finish."""
    with anyio.fail_after(3):
        await key_set(auth, issuer).settled()


def random_kid_token(issuer: TestIssuer) -> str:
    return issuer.token(header={"kid": secrets.token_urlsafe(12)})


async def verify_all(auth: KeycloakAuth, tokens: list[str]) -> list[BaseException | None]:
    """Verify every token concurrently; the exception of each, or None when it verified."""
    outcomes: list[BaseException | None] = [None] * len(tokens)

    async def one(index: int, token: str) -> None:
        try:
            await auth.verify(token)
        except Exception as exc:
            outcomes[index] = exc

    async with anyio.create_task_group() as group:
        for index, token in enumerate(tokens):
            group.start_soon(one, index, token)
    return outcomes


@pytest.fixture
async def fast_auth(issuer: TestIssuer) -> AsyncIterator[KeycloakAuth]:
    async with issuer.auth(**FAST) as verifier:
        yield verifier


@pytest.fixture
def frozen_served(clock: FrozenClock) -> Iterator[TestIssuer]:
    """A loopback issuer that mints with the frozen clock, so the verifier can share it."""
    with TestIssuer.serving(clock=clock) as running:
        yield running


# ---------------------------------------------------------------------------- single flight


async def test_cold_cache_500_concurrent_verifications_fetch_once_over_loopback(served_issuer: TestIssuer) -> None:
    tokens = [served_issuer.token() for _ in range(500)]
    async with KeycloakAuth(served_issuer.settings()) as auth:
        assert not auth.ready
        outcomes = await verify_all(auth, tokens)
        assert auth.ready
    assert outcomes == [None] * 500
    assert served_issuer.requests == {"discovery": 1, "jwks": 1}


async def test_cold_cache_concurrent_verifications_share_one_failed_fetch(
    issuer: TestIssuer, fast_auth: KeycloakAuth
) -> None:
    issuer.fail("jwks", "status")
    outcomes = await verify_all(fast_auth, [issuer.token() for _ in range(100)])
    assert all(isinstance(outcome, IdentityProviderUnavailable) for outcome in outcomes)
    assert issuer.requests == {"discovery": 1, "jwks": 1}


# ---------------------------------------------------------------------------- unknown kid


async def test_random_kids_cause_at_most_one_refetch_per_cooldown(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    assert issuer.requests["jwks"] == 1

    concurrent = await verify_all(fast_auth, [random_kid_token(issuer) for _ in range(500)])
    assert all(isinstance(outcome, InvalidToken) for outcome in concurrent)
    for _ in range(500):
        with pytest.raises(InvalidToken):
            await fast_auth.verify(random_kid_token(issuer))
    assert issuer.requests["jwks"] == 2  # one refetch for 1000 random kids

    clock.advance(COOLDOWN - 1)
    with pytest.raises(InvalidToken):
        await fast_auth.verify(random_kid_token(issuer))
    assert issuer.requests["jwks"] == 2

    clock.advance(1)  # the cooldown has passed: one more refetch, then quiet again
    for _ in range(50):
        with pytest.raises(InvalidToken):
            await fast_auth.verify(random_kid_token(issuer))
    assert issuer.requests["jwks"] == 3
    assert issuer.requests["discovery"] == 1
    await fast_auth.verify(issuer.token())  # the real key still serves


async def test_random_kids_on_a_cold_cache(issuer: TestIssuer, fast_auth: KeycloakAuth) -> None:
    concurrent = await verify_all(fast_auth, [random_kid_token(issuer) for _ in range(500)])
    assert all(isinstance(outcome, InvalidToken) for outcome in concurrent)
    assert issuer.requests == {"discovery": 1, "jwks": 1}  # keys loaded for these calls are not refetched at once
    for _ in range(500):
        with pytest.raises(InvalidToken):
            await fast_auth.verify(random_kid_token(issuer))
    assert issuer.requests == {"discovery": 1, "jwks": 2}  # later calls: one refetch per cooldown


async def test_unknown_kid_waits_out_the_retry_interval_after_a_failed_fetch(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    issuer.fail("jwks", "status")
    clock.advance(TTL)
    await fast_auth.verify(issuer.token())  # starts the refresh, which fails
    await settled(fast_auth, issuer)
    assert issuer.requests["jwks"] == 2
    with pytest.raises(InvalidToken):
        await fast_auth.verify(random_kid_token(issuer))
    assert issuer.requests["jwks"] == 2  # no refetch within the retry interval, cooldown or not

    clock.advance(RETRY)
    with pytest.raises(InvalidToken):
        await fast_auth.verify(random_kid_token(issuer))
    await settled(fast_auth, issuer)
    assert issuer.requests["jwks"] == 3


async def test_random_kids_signed_by_attacker_keys_are_refused(issuer: TestIssuer, fast_auth: KeycloakAuth) -> None:
    await fast_auth.verify(issuer.token())
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await fast_auth.verify(issuer.token(key=generate_key("RS256")))
    assert issuer.requests["jwks"] == 2


async def test_token_without_kid_causes_no_refetch(issuer: TestIssuer, fast_auth: KeycloakAuth) -> None:
    issuer.rotate()  # two signing keys: a token must say which one
    assert await fast_auth.prefetch()
    with pytest.raises(InvalidToken):
        await fast_auth.verify(issuer.token(header={"kid": None}))
    assert issuer.requests["jwks"] == 1


# ---------------------------------------------------------------------------- rotation


async def test_rotation_new_key_verifies_and_old_tokens_keep_verifying(
    issuer: TestIssuer, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    old_tokens = [issuer.token() for _ in range(20)]
    issuer.rotate()
    new_tokens = [issuer.token() for _ in range(200)]
    outcomes = await verify_all(fast_auth, new_tokens + old_tokens)
    assert outcomes == [None] * 220
    assert issuer.requests["jwks"] == 2  # one refetch served every request with the new kid
    for token in old_tokens[:3] + new_tokens[:3]:
        await fast_auth.verify(token)
    assert issuer.requests["jwks"] == 2


async def test_second_rotation_after_the_cooldown_verifies_at_once(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    issuer.rotate()
    await fast_auth.verify(issuer.token())
    clock.advance(COOLDOWN)
    issuer.rotate()
    assert await verify_all(fast_auth, [issuer.token() for _ in range(50)]) == [None] * 50
    assert issuer.requests["jwks"] == 3


async def test_rotation_while_a_refresh_ahead_is_in_flight(issuer: TestIssuer, clock: FrozenClock) -> None:
    """Requests with the new kid that join a refresh started before the rotation still verify."""
    gate = Gate(issuer.transport)
    gate.open()
    async with KeycloakAuth(issuer.settings(**FAST), transport=gate, clock=clock) as auth:
        assert await auth.prefetch()
        clock.advance(TTL - AHEAD + 1)
        gate.close()
        await auth.verify(issuer.token())  # starts the refresh; its answer, with the old keys, is held
        await wait_until(lambda: gate.waiting == 1)
        issuer.rotate()
        async with anyio.create_task_group() as group:
            outcomes: list[BaseException | None] = []

            async def run() -> None:
                outcomes.extend(await verify_all(auth, [issuer.token() for _ in range(50)]))

            group.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            gate.open()
        assert outcomes == [None] * 50
    assert issuer.requests["jwks"] == 3  # prefetch, the stale refresh, one refetch for the new kid


# ---------------------------------------------------------------------------- outages


async def _warm_outage(auth: KeycloakAuth, issuer: TestIssuer, clock: FrozenClock, mode: FailureMode) -> None:
    assert await auth.prefetch()
    issuer.fail("jwks", mode)
    clock.advance(TTL + 1)
    await auth.verify(issuer.token())  # a refresh is attempted in the background; the last good keys serve
    await settled(auth, issuer)
    assert issuer.requests["jwks"] == 2
    await auth.verify(issuer.token())
    await settled(auth, issuer)
    assert issuer.requests["jwks"] == 2  # no new attempt within the retry interval

    clock.advance(RETRY)
    await auth.verify(issuer.token())
    await settled(auth, issuer)
    assert issuer.requests["jwks"] == 3
    assert auth.ready

    clock.advance(MAX_STALE - (TTL + 1 + RETRY))  # exactly max-stale after the last good fetch
    await auth.verify(issuer.token())
    await settled(auth, issuer)
    assert auth.ready

    assert issuer.requests["jwks"] == 4

    clock.advance(1)  # past max-stale: the old keys no longer serve
    assert not auth.ready
    with pytest.raises(IdentityProviderUnavailable) as refused:
        await auth.verify(issuer.token())
    assert refused.value.status_code == 503
    assert refused.value.retry_after == RETRY - 1  # the last attempt was a second ago
    assert issuer.requests["jwks"] == 4

    clock.advance(RETRY)
    with pytest.raises(IdentityProviderUnavailable) as refused:
        await auth.verify(issuer.token())
    assert refused.value.retry_after >= 1
    assert issuer.requests["jwks"] == 5
    with pytest.raises(IdentityProviderUnavailable):
        await auth.verify(issuer.token())
    assert issuer.requests["jwks"] == 5

    issuer.heal()
    clock.advance(RETRY)
    await auth.verify(issuer.token())
    assert auth.ready


@pytest.mark.parametrize("mode", MODES)
async def test_warm_cache_outage_serves_last_good_keys_until_max_stale(
    mode: FailureMode, issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    await _warm_outage(fast_auth, issuer, clock, mode)


async def test_warm_cache_outage_over_loopback(frozen_served: TestIssuer, clock: FrozenClock) -> None:
    async with KeycloakAuth(frozen_served.settings(**FAST), clock=clock) as auth:
        await _warm_outage(auth, frozen_served, clock, "status")


async def test_unknown_kid_during_an_outage_keeps_the_old_keys(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    issuer.fail("jwks", "no_keys")
    with pytest.raises(InvalidToken):
        await fast_auth.verify(random_kid_token(issuer))
    assert issuer.requests["jwks"] == 2
    await fast_auth.verify(issuer.token())
    assert fast_auth.ready


@pytest.mark.parametrize("endpoint", ["discovery", "jwks"])
@pytest.mark.parametrize("mode", MODES)
async def test_cold_cache_outage_gives_503_without_a_fetch_storm(
    endpoint: Any, mode: FailureMode, issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    issuer.fail(endpoint, mode)
    with pytest.raises(IdentityProviderUnavailable) as refused:
        await fast_auth.verify(issuer.token())
    assert refused.value.status_code == 503
    assert refused.value.retry_after >= 1
    assert issuer.requests[endpoint] == 1

    for _ in range(20):
        with pytest.raises(IdentityProviderUnavailable) as again:
            await fast_auth.verify(issuer.token())
        assert again.value.retry_after >= 1
    clock.advance(RETRY - 0.5)
    with pytest.raises(IdentityProviderUnavailable) as late:
        await fast_auth.verify(issuer.token())
    assert late.value.retry_after == 1
    assert issuer.requests[endpoint] == 1  # no fetch storm within the retry interval

    clock.advance(0.5)  # the retry interval has passed: exactly one more attempt
    with pytest.raises(IdentityProviderUnavailable):
        await fast_auth.verify(issuer.token())
    assert issuer.requests[endpoint] == 2

    issuer.heal()
    clock.advance(RETRY)
    await fast_auth.verify(issuer.token())
    assert fast_auth.ready


async def test_cold_cache_timeout_over_loopback(served_issuer: TestIssuer) -> None:
    served_issuer.fail("jwks", "timeout")
    async with KeycloakAuth(served_issuer.settings(**FAST)) as auth:
        with anyio.fail_after(2):
            with pytest.raises(IdentityProviderUnavailable) as refused:
                await auth.verify(served_issuer.token())
        assert refused.value.retry_after >= 1
        for _ in range(10):
            with pytest.raises(IdentityProviderUnavailable):
                await auth.verify(served_issuer.token())
        assert not auth.ready
    assert served_issuer.requests == {"discovery": 1, "jwks": 1}


# ---------------------------------------------------------------------------- refresh ahead


async def test_refresh_ahead_runs_in_the_background(issuer: TestIssuer, clock: FrozenClock) -> None:
    gate = Gate(issuer.transport)
    gate.open()
    async with KeycloakAuth(issuer.settings(**FAST), transport=gate, clock=clock) as auth:
        assert await auth.prefetch()
        clock.advance(TTL - AHEAD - 1)
        await auth.verify(issuer.token())
        assert issuer.requests["jwks"] == 1  # still fresh: no refresh yet

        clock.advance(2)
        new_key = issuer.rotate()
        gate.close()
        with anyio.fail_after(1):
            await auth.verify(issuer.token(key=issuer.published[0]))  # served by the current keys
        await wait_until(lambda: gate.waiting == 1)
        assert issuer.requests["jwks"] == 2  # the refresh is under way, and the verify did not wait for it
        with anyio.fail_after(1):
            await auth.verify(issuer.token(key=issuer.published[0]))
        assert issuer.requests["jwks"] == 2  # one refresh in flight, not one per request

        gate.open()
        await settled(auth, issuer)
        await auth.verify(issuer.token(key=new_key))
        assert issuer.requests["jwks"] == 2  # installed by the refresh: no unknown-kid refetch needed


async def test_refresh_ahead_restarts_the_ttl(issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth) -> None:
    assert await fast_auth.prefetch()
    clock.advance(TTL - AHEAD)
    await fast_auth.verify(issuer.token())
    await settled(fast_auth, issuer)
    assert issuer.requests["jwks"] == 2
    clock.advance(TTL - AHEAD - 1)
    await fast_auth.verify(issuer.token())
    assert issuer.requests["jwks"] == 2
    clock.advance(1)
    await fast_auth.verify(issuer.token())
    await settled(fast_auth, issuer)
    assert issuer.requests["jwks"] == 3


async def test_retired_key_stops_verifying_after_a_refresh(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    old = issuer.signing_key
    assert await fast_auth.prefetch()
    issuer.rotate()
    issuer.retire(old)
    clock.advance(TTL)
    await fast_auth.verify(issuer.token())
    await settled(fast_auth, issuer)
    with pytest.raises(InvalidToken):
        await fast_auth.verify(issuer.token(key=old))


async def test_token_verified_before_its_key_was_retired_is_refused_after_the_refresh(
    issuer: TestIssuer, auth: KeycloakAuth
) -> None:
    """The token cache holds no verification past its key's retirement (RFC 7517 §5: the current keys)."""
    old = issuer.signing_key
    kept, retired, keyless = issuer.token(), issuer.token(), issuer.token(header={"kid": OMIT})
    for token in (kept, retired, keyless):
        await auth.verify(token)
    issuer.rotate()
    assert await auth.key_set(issuer.issuer).refresh()  # a rotation retiring nothing keeps the cache
    assert (await auth.verify(retired)).client_id == "machine-a"
    issuer.retire(old)
    kept = issuer.token()
    await auth.verify(kept)
    assert await auth.key_set(issuer.issuer).refresh()
    for token in (retired, keyless):
        with pytest.raises(InvalidToken):
            await auth.verify(token)
    assert (await auth.verify(kept)).client_id == "machine-a"


# ---------------------------------------------------------------------------- discovery


async def test_discovery_naming_another_issuer_gives_no_keys(issuer: TestIssuer, clock: FrozenClock) -> None:
    configured = "http://kc-frontend.test/realms/test"  # the ASGI transport ignores the host
    settings = KeycloakSettings(issuers=(configured,), audience=issuer.audience, allow_http=True, **FAST)
    async with KeycloakAuth(settings, transport=issuer.transport, clock=clock) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token(iss=configured))
        assert not await auth.prefetch()
        assert not auth.ready
    assert issuer.requests["jwks"] == 0


async def test_discovery_jwks_uri_that_is_not_http_gives_no_keys(
    issuer: TestIssuer, fast_auth: KeycloakAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = issuer.discovery_document() | {"jwks_uri": "file:///etc/passwd"}
    monkeypatch.setattr(issuer, "discovery_document", lambda: document)
    with pytest.raises(IdentityProviderUnavailable):
        await fast_auth.verify(issuer.token())
    assert issuer.requests == {"discovery": 1}


async def test_jwks_uris_setting_skips_discovery(issuer: TestIssuer) -> None:
    certs = f"{issuer.issuer}/protocol/openid-connect/certs"
    async with issuer.auth(jwks_uris={issuer.issuer: certs}, **FAST) as auth:
        await auth.verify(issuer.token())
    assert issuer.requests == {"jwks": 1}


async def test_jwks_uri_on_another_host_than_iss(issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    backchannel = "http://kc-internal.test:8080/realms/test/protocol/openid-connect/certs"
    document = issuer.discovery_document() | {"jwks_uri": backchannel}
    monkeypatch.setattr(issuer, "discovery_document", lambda: document)
    router = Router({"keycloak.test": issuer.transport, "kc-internal.test": issuer.transport})
    async with KeycloakAuth(issuer.settings(**FAST), transport=router, clock=issuer.clock) as auth:
        await auth.verify(issuer.token())
    assert router.seen == [
        ("keycloak.test", "/realms/test/.well-known/openid-configuration"),
        ("kc-internal.test", "/realms/test/protocol/openid-connect/certs"),
    ]


async def test_jwks_uri_on_another_loopback_server() -> None:
    with TestIssuer.serving() as issuer, TestIssuer.serving(realm="backchannel") as keys:
        keys.published = issuer.published  # the second server publishes the issuer's keys
        certs = f"{keys.issuer}/protocol/openid-connect/certs"
        async with KeycloakAuth(issuer.settings(jwks_uris={issuer.issuer: certs}, **FAST)) as auth:
            await auth.verify(issuer.token())
    assert issuer.requests == {}
    assert keys.requests == {"jwks": 1}


async def test_discovery_is_fetched_once_across_refreshes(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    for _ in range(3):
        clock.advance(TTL)
        await fast_auth.verify(issuer.token())
        await settled(fast_auth, issuer)
    assert issuer.requests == {"discovery": 1, "jwks": 4}


# ---------------------------------------------------------------------------- HTTP limits


async def test_redirects_are_not_followed(issuer: TestIssuer) -> None:
    certs = f"{issuer.issuer}/protocol/openid-connect/certs"
    moved = httpx.MockTransport(lambda request: httpx.Response(302, headers={"Location": certs}))
    router = Router({"keycloak.test": issuer.transport, "moved.test": moved})
    settings = issuer.settings(jwks_uris={issuer.issuer: "http://moved.test/certs"}, **FAST)
    async with KeycloakAuth(settings, transport=router, clock=issuer.clock) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
    assert router.seen == [("moved.test", "/certs")]
    assert issuer.requests["jwks"] == 0


async def test_discovery_redirect_is_not_followed(issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = issuer.discovery_document()
    monkeypatch.setattr(issuer, "discovery_document", lambda: real)

    def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": f"{issuer.issuer}/.well-known/openid-configuration"})

    router = Router({"keycloak.test": httpx.MockTransport(redirect), "kc-real.test": issuer.transport})
    async with KeycloakAuth(issuer.settings(**FAST), transport=router, clock=issuer.clock) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
    assert len(router.seen) == 1


async def test_compressed_jwks_is_neither_asked_for_nor_accepted(issuer: TestIssuer) -> None:
    asked: list[str | None] = []

    def compressed(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Accept-Encoding"))
        body = gzip.compress(json.dumps(issuer.jwks()).encode())
        return httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})

    router = Router({"keycloak.test": issuer.transport, "gzip.test": httpx.MockTransport(compressed)})
    settings = issuer.settings(jwks_uris={issuer.issuer: "http://gzip.test/certs"}, **FAST)
    async with KeycloakAuth(settings, transport=router, clock=issuer.clock) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
    assert asked == ["identity"]


async def test_body_cap_is_exact(issuer: TestIssuer, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    size = [4097]
    original = issuer.jwks

    def padded() -> dict[str, Any]:
        document = original()
        base = len(json.dumps(document | {"padding": ""}, separators=(",", ":")).encode())
        return document | {"padding": "x" * (size[0] - base)}

    monkeypatch.setattr(issuer, "jwks", padded)
    async with issuer.auth(http_max_body=4096, **FAST) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
        size[0] = 4096
        clock.advance(RETRY)
        await auth.verify(issuer.token())
    assert issuer.requests["jwks"] == 2


# ---------------------------------------------------------------------------- several issuers


@pytest.fixture
def realms(clock: FrozenClock) -> tuple[TestIssuer, TestIssuer]:
    return (
        TestIssuer("http://kc-a.test", "alpha", clock=clock),
        TestIssuer("http://kc-b.test", "beta", clock=clock),
    )


@pytest.fixture
async def both(realms: tuple[TestIssuer, TestIssuer], clock: FrozenClock) -> AsyncIterator[KeycloakAuth]:
    a, b = realms
    settings = KeycloakSettings(issuers=(a.issuer, b.issuer), audience="machine-b", allow_http=True, **FAST)
    router = Router({"kc-a.test": a.transport, "kc-b.test": b.transport})
    async with KeycloakAuth(settings, transport=router, clock=clock) as auth:
        yield auth


async def test_each_issuer_has_its_own_key_set(realms: tuple[TestIssuer, TestIssuer], both: KeycloakAuth) -> None:
    a, b = realms
    principal = await both.verify(a.token())
    assert principal.issuer == a.issuer
    assert a.requests == {"discovery": 1, "jwks": 1}
    assert b.requests == {}  # a token of realm A causes no fetch at realm B

    principal = await both.verify(b.token())
    assert principal.issuer == b.issuer
    assert b.requests == {"discovery": 1, "jwks": 1}
    assert a.requests == {"discovery": 1, "jwks": 1}


async def test_token_of_one_realm_signed_with_the_other_realms_key_is_refused(
    realms: tuple[TestIssuer, TestIssuer], both: KeycloakAuth
) -> None:
    a, b = realms
    await both.verify(a.token())
    await both.verify(b.token())
    with pytest.raises(InvalidToken):
        await both.verify(a.token(key=b.signing_key))
    with pytest.raises(InvalidToken):  # B's signature under A's kid
        await both.verify(a.token(key=b.signing_key, header={"kid": a.signing_key.kid}))
    assert b.requests == {"discovery": 1, "jwks": 1}


async def test_same_kid_in_two_realms_does_not_mix_keys(clock: FrozenClock) -> None:
    a = TestIssuer("http://kc-a.test", "alpha", clock=clock)
    b = TestIssuer("http://kc-b.test", "beta", clock=clock)
    for realm in (a, b):
        realm.signing_key = generate_key("RS256", kid="shared")
        realm.published = [realm.signing_key]
    settings = KeycloakSettings(issuers=(a.issuer, b.issuer), audience="machine-b", allow_http=True, **FAST)
    router = Router({"kc-a.test": a.transport, "kc-b.test": b.transport})
    async with KeycloakAuth(settings, transport=router, clock=clock) as auth:
        await auth.verify(a.token())
        await auth.verify(b.token())
        with pytest.raises(InvalidToken):
            await auth.verify(a.token(key=b.signing_key))
        with pytest.raises(InvalidToken):
            await auth.verify(b.token(key=a.signing_key))


async def test_untrusted_issuer_causes_no_fetch(realms: tuple[TestIssuer, TestIssuer], both: KeycloakAuth) -> None:
    a, b = realms
    with pytest.raises(InvalidToken):
        await both.verify(a.token(iss="http://kc-a.test/realms/other"))
    assert a.requests == {}
    assert b.requests == {}


async def test_outage_of_one_issuer_leaves_the_other_serving(
    realms: tuple[TestIssuer, TestIssuer], clock: FrozenClock, both: KeycloakAuth
) -> None:
    a, b = realms
    b.fail("jwks", "status")
    assert not await both.prefetch()
    assert not both.ready
    await both.verify(a.token())
    with pytest.raises(IdentityProviderUnavailable):
        await both.verify(b.token())
    b.heal()
    clock.advance(RETRY)
    await both.verify(b.token())
    assert await both.prefetch()
    assert both.ready


# ---------------------------------------------------------------------------- readiness


async def test_ready_and_prefetch(issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth) -> None:
    assert not fast_auth.ready
    assert issuer.requests == {}
    assert await fast_auth.prefetch()
    assert fast_auth.ready
    assert issuer.requests == {"discovery": 1, "jwks": 1}
    clock.advance(MAX_STALE)
    assert fast_auth.ready
    clock.advance(1)
    assert not fast_auth.ready
    assert await fast_auth.prefetch()
    assert fast_auth.ready


async def test_prefetch_reports_failure(issuer: TestIssuer, fast_auth: KeycloakAuth) -> None:
    issuer.fail("jwks", "html")
    assert not await fast_auth.prefetch()
    assert not fast_auth.ready
    issuer.heal()
    assert await fast_auth.prefetch()
    assert fast_auth.ready


async def test_failed_refresh_does_not_make_a_warm_cache_unready(
    issuer: TestIssuer, clock: FrozenClock, fast_auth: KeycloakAuth
) -> None:
    assert await fast_auth.prefetch()
    issuer.fail("jwks", "oversized")
    clock.advance(TTL)
    assert not await fast_auth.prefetch()
    assert fast_auth.ready


# ---------------------------------------------------------------------------- cancellation


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch(issuer: TestIssuer, clock: FrozenClock) -> None:
    gate = Gate(issuer.transport)
    async with KeycloakAuth(issuer.settings(**FAST), transport=gate, clock=clock) as auth:
        outcome: list[str] = []

        async def patient() -> None:
            await auth.verify(issuer.token())
            outcome.append("verified")

        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as impatient:
                group.start_soon(patient)
                await wait_until(lambda: gate.waiting == 1)
                impatient.cancel()
                await auth.verify(issuer.token())  # joins the fetch, then is cancelled
            assert impatient.cancelled_caught
            assert key_set(auth, issuer).fetching
            gate.open()
        assert outcome == ["verified"]
        assert auth.ready
        await auth.verify(issuer.token())
    assert issuer.requests == {"discovery": 1, "jwks": 1}


async def test_fetch_survives_when_its_only_waiter_is_cancelled(issuer: TestIssuer, clock: FrozenClock) -> None:
    gate = Gate(issuer.transport)
    async with KeycloakAuth(issuer.settings(**FAST), transport=gate, clock=clock) as auth:
        async with anyio.create_task_group() as group:
            group.start_soon(auth.verify, issuer.token())
            await wait_until(lambda: gate.waiting == 1)
            group.cancel_scope.cancel()
        assert key_set(auth, issuer).fetching
        assert not auth.ready
        gate.open()
        await wait_until(lambda: auth.ready)
        await auth.verify(issuer.token())
    assert issuer.requests == {"discovery": 1, "jwks": 1}


async def test_close_cancels_a_fetch_under_way(issuer: TestIssuer, clock: FrozenClock) -> None:
    gate = Gate(issuer.transport)
    auth = KeycloakAuth(issuer.settings(**FAST), transport=gate, clock=clock)
    keys = key_set(auth, issuer)
    task = asyncio.ensure_future(keys.refresh())
    await wait_until(lambda: gate.waiting == 1)
    await auth.aclose()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not keys.fetching
