"""The Redis store against real redis-server processes: its operations, DPoP replay (RFC 9449 §11.1) and
introspection answers (RFC 7662) shared by verifiers, and the drills: Redis down, slow, restarted, evicting,
and a three-node Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis, RedisCluster

from fastapi_kc_m2m import KeycloakAuth, KeycloakAuthMiddleware, Principal
from fastapi_kc_m2m._jose.dpop import ProofKey, access_token_hash, make_proof
from fastapi_kc_m2m.errors import IdentityProviderUnavailable, InvalidDPoPProof
from fastapi_kc_m2m.server import redis_store
from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.server.observer import Observer
from fastapi_kc_m2m.server.redis_store import DOWN_FOR, RedisStore
from fastapi_kc_m2m.server.store import StoreUnavailable
from fastapi_kc_m2m.settings import KeycloakSettings, SettingsError
from fastapi_kc_m2m.testing import TestIssuer, generate_key
from tests.helpers import API_URL, Gate, RedisServer, api_client, bearer, wait_until

pytestmark = pytest.mark.anyio

HTU = f"{API_URL}/orders"
SECRET = "introspection-secret"


@pytest.fixture
def key() -> ProofKey:
    return generate_key("ES256")


def presented(token: str, key: ProofKey, now: float, jti: str | None = None) -> RequestContext:
    """``GET HTU`` with ``Authorization: DPoP token`` and a fresh proof made with ``key``."""
    proof = make_proof(key, htm="GET", htu=HTU, iat=now, ath=access_token_hash(token), **({"jti": jti} if jti else {}))
    return RequestContext(token, "DPoP", "GET", HTU, proof)


def dpop_headers(token: str, key: ProofKey, now: float) -> dict[str, str]:
    proof = make_proof(key, htm="GET", htu=HTU, iat=now, ath=access_token_hash(token))
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def app_for(auth: KeycloakAuth) -> httpx.AsyncClient:
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders")
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    return api_client(app)


class Hints(Observer):
    def __init__(self) -> None:
        self.hints: list[str] = []

    def hint(self, message: str) -> None:
        self.hints.append(message)


async def set_calls(client: Redis) -> int:
    """How many SET commands the server has run (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port)
    yield client
    await client.aclose()


# ------------------------------------------------------------------ the store's operations
async def test_operations_keep_json_under_prefixed_digests_with_a_ttl(redis_client: Redis, redis_prefix: str) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    digest = b"\x01" * 32
    assert await store.get(digest) is None
    await store.put(digest, {"claims": {"sub": "a"}}, 30)
    assert await store.get(digest) == {"claims": {"sub": "a"}}
    assert await store.put_if_absent(digest, {}, 30) is False
    assert await store.put_if_absent(b"\x02" * 32, {}, 30) is True
    assert await store.put_if_absent(b"\x03" * 32, {}, 0) is False
    await store.put(b"\x04" * 32, {}, 0)
    keys = sorted(await redis_client.keys(redis_prefix + "*"))
    assert keys == [(redis_prefix + "01" * 32).encode(), (redis_prefix + "02" * 32).encode()]
    assert 0 < await redis_client.pttl(keys[0]) <= 30_000


async def test_a_value_that_is_not_a_json_object_counts_as_absent(redis_client: Redis, redis_prefix: str) -> None:
    await redis_client.set(redis_prefix + "05" * 32, b"[1]")
    assert await RedisStore(redis_client, prefix=redis_prefix).get(b"\x05" * 32) is None


# ------------------------------------------------------------------ shared by verifiers
async def test_a_proof_accepted_by_one_verifier_is_refused_by_another(
    issuer: TestIssuer, redis_server: RedisServer, redis_prefix: str, key: ProofKey
) -> None:
    token, now = issuer.token(dpop_key=key), issuer.clock()
    context = presented(token, key, now)
    shared = {"redis_url": redis_server.url, "redis_key_prefix": redis_prefix}
    async with issuer.auth(**shared) as first, issuer.auth(**shared) as second:
        await first.authenticate(context)
        with pytest.raises(InvalidDPoPProof, match="DPoP proof replayed"):
            await second.authenticate(context)
        await second.authenticate(presented(token, key, now))  # another proof passes


async def test_keys_hold_digests_never_the_token_or_proof(
    issuer: TestIssuer, redis_server: RedisServer, redis_client: Redis, redis_prefix: str, key: ProofKey
) -> None:
    issuer.register_client(secret=SECRET)
    token = issuer.token(dpop_key=key)
    context = presented(token, key, issuer.clock(), jti="jti-visible")
    settings = {"redis_url": redis_server.url, "redis_key_prefix": redis_prefix}
    async with issuer.auth(**settings, introspection="always", client_secret=SECRET) as auth:
        await auth.authenticate(context)
    keys = await redis_client.keys(redis_prefix + "*")
    assert len(keys) == 2  # the introspection answer and the proof
    for name in keys:
        text = name.decode() + (await redis_client.get(name) or b"").decode()
        assert token not in text
        assert "jti-visible" not in text
        assert context.proof is not None
        assert context.proof not in text
        assert len(name) == len(redis_prefix) + 64


async def test_a_replay_against_the_same_verifier_costs_no_round_trip(
    issuer: TestIssuer, redis_server: RedisServer, redis_client: Redis, redis_prefix: str, key: ProofKey
) -> None:
    context = presented(issuer.token(dpop_key=key), key, issuer.clock())
    async with issuer.auth(redis_url=redis_server.url, redis_key_prefix=redis_prefix) as auth:
        await auth.authenticate(context)
        before = await set_calls(redis_client)
        with pytest.raises(InvalidDPoPProof, match="DPoP proof replayed"):
            await auth.authenticate(context)
        assert await set_calls(redis_client) == before


async def test_an_introspection_answer_is_served_to_the_other_verifier(
    issuer: TestIssuer, redis_server: RedisServer, redis_prefix: str
) -> None:
    issuer.register_client(secret=SECRET)
    token = issuer.token()
    settings = {"redis_url": redis_server.url, "redis_key_prefix": redis_prefix, "client_secret": SECRET}
    async with (
        issuer.auth(**settings, introspection="always") as first,
        issuer.auth(**settings, introspection="per_route") as second,
    ):
        await first.verify(token)
        issuer.revoke(token)
        await second.verify(token, introspect=True)  # the shared answer: no call
    assert issuer.requests["introspection"] == 1


async def test_concurrent_misses_make_one_call_per_verifier(
    issuer: TestIssuer, redis_server: RedisServer, redis_prefix: str
) -> None:
    issuer.register_client(secret=SECRET)
    gate = Gate(issuer.transport, "/token/introspect")
    settings = issuer.settings(
        introspection="always", client_secret=SECRET, redis_url=redis_server.url, redis_key_prefix=redis_prefix
    )
    token = issuer.token()
    async with (
        KeycloakAuth(settings, transport=gate, clock=issuer.clock) as first,
        KeycloakAuth(settings, transport=gate, clock=issuer.clock) as second,
    ):
        await first.prefetch()
        await second.prefetch()
        waiters = [asyncio.ensure_future(auth.verify(token)) for auth in (first, second) for _ in range(50)]
        await wait_until(lambda: gate.waiting == 2, seconds=10)  # one call per verifier, the rest joined them
        gate.open()
        await asyncio.gather(*waiters)
    assert issuer.requests["introspection"] == 2


# ------------------------------------------------------------------ drills
async def test_redis_down_dpop_gets_503_bearer_passes_introspection_asks_keycloak(
    issuer: TestIssuer, own_redis: RedisServer, key: ProofKey
) -> None:
    issuer.register_client(secret=SECRET)
    dpop_token, bearer_token = issuer.token(dpop_key=key), issuer.token()
    async with issuer.auth(redis_url=own_redis.url, introspection="always", client_secret=SECRET) as auth:
        own_redis.stop()
        async with app_for(auth) as client:
            refused = await client.get("/orders", headers=dpop_headers(dpop_token, key, issuer.clock()))
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json() == {"error_description": "DPoP replay check unavailable"}
            assert (await client.get("/orders", headers=bearer(bearer_token))).status_code == 200
            assert (await client.get("/orders", headers=bearer(bearer_token))).status_code == 200
        assert not auth.ready
    assert issuer.requests["introspection"] == 3  # every request asked Keycloak: nothing could be kept


async def test_a_slow_redis_is_bounded_by_the_timeout(
    issuer: TestIssuer, own_redis: RedisServer, key: ProofKey
) -> None:
    token = issuer.token(dpop_key=key)
    async with issuer.auth(redis_url=own_redis.url, redis_timeout=0.2) as auth:
        await auth.authenticate(presented(token, key, issuer.clock()))  # connected
        own_redis.pause()
        try:
            started = time.monotonic()
            with pytest.raises(IdentityProviderUnavailable) as refused:
                await auth.authenticate(presented(token, key, issuer.clock()))
            assert time.monotonic() - started < 2.0  # 0.2 s timeout, generous for a loaded machine
            assert refused.value.retry_after >= 1
        finally:
            own_redis.resume()


async def test_the_timeout_bounds_an_applications_client_too(own_redis: RedisServer) -> None:
    client = Redis(port=own_redis.port)  # no socket timeout of its own
    store = RedisStore(client, timeout=0.2)
    try:
        await store.put(b"\x01" * 32, {}, 30)
        own_redis.pause()
        with anyio.fail_after(5), pytest.raises(StoreUnavailable):
            await store.put_if_absent(b"\x02" * 32, {}, 30)
    finally:
        own_redis.resume()
        await client.aclose()


async def test_after_a_failure_the_store_counts_as_down_without_a_round_trip(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "DOWN_FOR", 60.0)
    client = Redis(port=own_redis.port)
    store = RedisStore(client)
    try:
        own_redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.put_if_absent(b"\x01" * 32, {}, 30)
        own_redis.start()
        with pytest.raises(StoreUnavailable) as down:
            await store.put_if_absent(b"\x01" * 32, {}, 30)
        assert down.value.retry_after > 30
        assert not store.available
        assert await set_calls(client) == 0  # the restarted server saw no SET
    finally:
        await client.aclose()


async def test_a_restarted_redis_is_used_again_with_replay_protection(
    issuer: TestIssuer, own_redis: RedisServer, key: ProofKey
) -> None:
    token = issuer.token(dpop_key=key)
    async with issuer.auth(redis_url=own_redis.url) as first, issuer.auth(redis_url=own_redis.url) as second:
        await first.authenticate(presented(token, key, issuer.clock()))
        await second.authenticate(presented(token, key, issuer.clock()))  # both connected
        own_redis.stop()
        with pytest.raises(IdentityProviderUnavailable):
            await first.authenticate(presented(token, key, issuer.clock()))
        own_redis.start()
        time.sleep(DOWN_FOR)  # noqa: ASYNC251 - nothing else runs meanwhile
        context = presented(token, key, issuer.clock())
        await first.authenticate(context)
        with pytest.raises(InvalidDPoPProof, match="DPoP proof replayed"):
            await second.authenticate(context)
        assert first.ready


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
async def test_an_evicting_policy_is_warned_about_at_start_up(issuer: TestIssuer, policy: str) -> None:
    hints = Hints()
    with RedisServer("--maxmemory-policy", policy) as server:
        async with issuer.auth(redis_url=server.url, observer=hints) as auth:
            await auth.startup(prefetch=False)
    assert len(hints.hints) == 1
    assert f"maxmemory-policy is {policy}" in hints.hints[0]
    assert "noeviction" in hints.hints[0]


async def test_noeviction_and_a_forbidden_config_command_are_not_warned_about(
    issuer: TestIssuer, redis_server: RedisServer
) -> None:
    hints = Hints()
    with RedisServer("--rename-command", "CONFIG", "") as locked:
        for url in (redis_server.url, locked.url):
            async with issuer.auth(redis_url=url, observer=hints) as auth:
                await auth.startup(prefetch=False)
                assert auth._store.available
    assert hints.hints == []


async def test_a_redis_down_at_start_up_is_reported(issuer: TestIssuer) -> None:
    hints = Hints()
    server = RedisServer()  # never started
    async with issuer.auth(redis_url=server.url, observer=hints) as auth:
        await auth.startup(prefetch=False)
    assert hints.hints == ["the shared store does not answer at start-up: DPoP requests get 503 until it does"]


async def test_a_redis_cluster_serves_the_store_unchanged(
    issuer: TestIssuer, redis_cluster: list[int], redis_prefix: str, key: ProofKey
) -> None:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster[0])
    try:
        store = RedisStore(client, prefix=redis_prefix, timeout=2.0)
        digests = [bytes([n]) * 32 for n in range(20)]  # spread over the three nodes' slots
        for digest in digests:
            assert await store.put_if_absent(digest, {"n": digest[0]}, 30)
            assert not await store.put_if_absent(digest, {}, 30)
        assert [await store.get(digest) for digest in digests] == [{"n": n} for n in range(20)]
        assert await store.inspect() == []
        token, now = issuer.token(dpop_key=key), issuer.clock()
        async with issuer.auth(store=store) as auth:
            context = presented(token, key, now)
            await auth.authenticate(context)
        async with issuer.auth(store=store) as other:
            with pytest.raises(InvalidDPoPProof, match="DPoP proof replayed"):
                await other.authenticate(context)
    finally:
        await client.aclose()


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize("url", ["redis://r:6379/0", "rediss://:pw@r:6380", "unix:///run/redis.sock"])
def test_redis_urls_are_accepted(url: str) -> None:
    settings = KeycloakSettings(issuers=("https://kc/realms/a",), audience="api", redis_url=url)  # type: ignore[arg-type]
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url
    assert (settings.redis_key_prefix, settings.redis_timeout) == ("kc-m2m:", 0.25)


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"redis_url": "http://user:hunter2@r:6379"}, "KC_M2M_REDIS_URL must start with redis://"),
        ({"redis_key_prefix": "has space"}, "KC_M2M_REDIS_KEY_PREFIX"),
        ({"redis_timeout": 0}, "KC_M2M_REDIS_TIMEOUT"),
    ],
)
def test_bad_redis_settings_fail_at_start_up(overrides: dict[str, Any], hint: str) -> None:
    with pytest.raises(SettingsError, match=hint) as refused:
        KeycloakSettings(issuers=("http://kc/realms/a",), audience="api", **overrides)
    assert "hunter2" not in str(refused.value)
