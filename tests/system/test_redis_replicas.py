"""Two replicas for real: two uvicorn processes of one service behind one public URL, sharing one real
redis-server. A DPoP proof one accepted is refused by the other (RFC 9449 §11.1); a token one
introspected is served by the other from the shared answer (RFC 7662 §4), until the cache time ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastapi_kc_m2m._jose.dpop import access_token_hash, make_proof
from fastapi_kc_m2m.testing import TestIssuer, generate_key
from tests.helpers import RedisServer, bearer, free_port

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "http://orders.example"  # what the load balancer in front of both replicas is called
SECRET = "replica-secret"
CACHE_TTL = 3


def start_replica(issuer: TestIssuer, redis: RedisServer, prefix: str) -> tuple[subprocess.Popen[bytes], str]:
    """A replica on a free loopback port, once it answers (up to 60 s on a loaded machine)."""
    port = free_port()
    env = os.environ | {
        "KC_M2M_SERVER_URL": issuer.base_url,
        "KC_M2M_REALM": issuer.realm,
        "KC_M2M_AUDIENCE": issuer.audience,
        "KC_M2M_PUBLIC_URL": PUBLIC_URL,
        "KC_M2M_INTROSPECTION": "per_route",
        "KC_M2M_CLIENT_SECRET": SECRET,
        "KC_M2M_INTROSPECTION_CACHE_TTL": str(CACHE_TTL),
        "KC_M2M_REDIS_URL": redis.url,
        "KC_M2M_REDIS_KEY_PREFIX": prefix,
    }
    command = [sys.executable, "-m", "uvicorn", "tests.system.redis_replica_app:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 - our own test app
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/orders", timeout=2).status_code == 401:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the replica did not start")


@pytest.fixture
def replicas(served_issuer: TestIssuer, redis_server: RedisServer, redis_prefix: str) -> Iterator[list[str]]:
    """Two replicas' URLs, sharing the session's Redis under this test's prefix."""
    served_issuer.register_client(secret=SECRET)
    started: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for _ in range(2):
            process, url = start_replica(served_issuer, redis_server, redis_prefix)
            started.append(process)
            urls.append(url)
        yield urls
    finally:
        for process in started:
            process.terminate()
            process.wait(20)


def test_a_proof_accepted_by_one_replica_is_refused_by_the_other(
    served_issuer: TestIssuer, replicas: list[str]
) -> None:
    key = generate_key("ES256")
    token = served_issuer.token(dpop_key=key)
    proof = make_proof(key, htm="GET", htu=f"{PUBLIC_URL}/orders", iat=time.time(), ath=access_token_hash(token))
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    first, second = (httpx.get(f"{url}/orders", headers=headers, timeout=10) for url in replicas)
    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json() == {"error": "invalid_dpop_proof", "error_description": "DPoP proof replayed"}


def test_an_answer_introspected_by_one_replica_serves_the_other_until_the_cache_time_ends(
    served_issuer: TestIssuer, replicas: list[str]
) -> None:
    token = served_issuer.token()
    assert httpx.get(f"{replicas[0]}/active", headers=bearer(token), timeout=10).status_code == 200
    asked = time.monotonic()
    served_issuer.revoke(token)
    assert httpx.get(f"{replicas[1]}/active", headers=bearer(token), timeout=10).status_code == 200
    assert served_issuer.requests["introspection"] == 1  # the other replica made no call
    deadline = asked + CACHE_TTL + 30  # bounded: the answer expires after CACHE_TTL
    while httpx.get(f"{replicas[1]}/active", headers=bearer(token), timeout=10).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert time.monotonic() - asked >= CACHE_TTL - 0.5  # not before the cache time (Redis PX, whole ms)
    assert served_issuer.requests["introspection"] == 2
