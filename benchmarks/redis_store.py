"""The DPoP replay check (RFC 9449 §11.1) on a shared Redis against the in-memory one, in one run.

Starts its own redis-server (Debian's package) on a free loopback port. In process, interleaved rounds:
``TokenVerifier.authenticate`` of a cached DPoP-bound token with a fresh ES256 proof per request, with the
replay store in memory and on Redis (``KC_M2M_REDIS_URL``: one ``SET NX PX`` per proof), one loopback
``SET NX PX`` with redis-py for reference, and the same through ``RedisStore.put_if_absent`` (what the
store adds to the bare command). Target: Redis - memory <= that one loopback round trip.

Memory: 10,000 distinct proofs with a 5 s window leave that many keys, and none once the window passed.

    .venv/bin/python benchmarks/redis_store.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis

from fastapi_kc_m2m import RequestContext, TokenVerifier
from fastapi_kc_m2m._jose.dpop import ProofKey, access_token_hash, make_proof
from fastapi_kc_m2m.server.redis_store import RedisStore
from fastapi_kc_m2m.testing import TestIssuer, generate_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import RedisServer  # the tests' real redis-server, from the repository root

PER_ROUND = 400
PROOFS = 10_000
WINDOW = 5.0
URL = "http://api.test/orders"


def contexts(key: ProofKey, token: str, count: int) -> list[RequestContext]:
    ath = access_token_hash(token)
    proofs = (make_proof(key, htm="GET", htu=URL, iat=time.time(), ath=ath) for _ in range(count))
    return [RequestContext(token, "DPoP", "GET", URL, proof) for proof in proofs]


async def per_request(verifier: TokenVerifier, batch: list[RequestContext]) -> float:
    start = time.perf_counter()
    for context in batch:
        await verifier.authenticate(context)
    return (time.perf_counter() - start) / len(batch) * 1e6


async def per_put(put: Callable[[bytes], Awaitable[object]]) -> float:
    """Microseconds per ``put`` of a new key: a bare ``SET NX PX``, or one through the store."""
    start = time.perf_counter()
    for n in range(PER_ROUND):
        await put(f"bench:{time.perf_counter_ns()}:{n}".encode())
    return (time.perf_counter() - start) / PER_ROUND * 1e6


async def latency(server: RedisServer, rounds: int) -> None:
    issuer, key = TestIssuer(), generate_key("ES256")
    token = issuer.token(dpop_key=key, lifetime=3600)
    client = Redis(port=server.port)
    store = RedisStore.from_url(server.url, prefix="bench:", timeout=1.0)
    results: dict[str, list[float]] = {"memory": [], "redis": [], "set": [], "store": []}
    async with (
        TokenVerifier(issuer.settings(), transport=issuer.transport) as memory,
        TokenVerifier(issuer.settings(redis_url=server.url), transport=issuer.transport) as shared,
    ):
        for verifier in (memory, shared):
            await verifier.authenticate(contexts(key, token, 1)[0])  # keys loaded, token cached, connected
        for _ in range(rounds):
            results["memory"].append(await per_request(memory, contexts(key, token, PER_ROUND)))
            results["redis"].append(await per_request(shared, contexts(key, token, PER_ROUND)))
            results["set"].append(await per_put(lambda key: client.set(key, b"{}", nx=True, px=60_000)))
            results["store"].append(await per_put(lambda key: store.put_if_absent(key, {}, 60.0)))
    await client.aclose()
    await store.aclose()
    best = {name: min(values) for name, values in results.items()}
    print(f"best of {rounds} interleaved rounds of {PER_ROUND}")
    print(f"DPoP request, replay store in memory     {best['memory']:8.2f} us")
    print(f"DPoP request, replay store on Redis      {best['redis']:8.2f} us")
    print(f"  difference                             {best['redis'] - best['memory']:8.2f} us")
    print(f"one bare SET NX PX on loopback (ref.)    {best['set']:8.2f} us   (target: difference <= this)")
    added = best["store"] - best["set"]
    print(f"the same via RedisStore.put_if_absent    {best['store']:8.2f} us   (+{added:.2f} us)")


async def bounded_memory(server: RedisServer) -> None:
    issuer, key = TestIssuer(), generate_key("ES256")
    token = issuer.token(dpop_key=key, lifetime=3600)
    client = Redis(port=server.port)
    await client.flushall()
    settings = issuer.settings(redis_url=server.url, dpop_max_age=WINDOW, dpop_max_ahead=0)
    async with TokenVerifier(settings, transport=issuer.transport) as verifier:
        for _ in range(PROOFS // 500):
            for context in contexts(key, token, 500):  # minted just in time: each within its window
                await verifier.authenticate(context)
    after = await client.dbsize()
    used = (await client.info("memory"))["used_memory"]
    await asyncio.sleep(WINDOW + 2)
    for _ in range(50):  # Redis expires keys lazily and in sampled rounds: poll, bounded
        if await client.dbsize() == 0:
            break
        await asyncio.sleep(0.2)
    left = await client.dbsize()
    print(f"{PROOFS} distinct proofs: {after} keys ({used / 1e6:.1f} MB used) after the run,")
    print(f"  {left} keys ({(await client.info('memory'))['used_memory'] / 1e6:.1f} MB) {WINDOW + 2:.0f} s later")
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(latency(server, options.rounds))
        asyncio.run(bounded_memory(server))


if __name__ == "__main__":
    main()
