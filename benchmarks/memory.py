"""Resident memory under a flood of distinct, well-formed but invalid tokens.

1,000,000 tokens go through ``KeycloakAuth.verify`` with a warm key set, each one new: valid structure,
valid base64url JSON, and claims or header chosen so they fail at different stages, in turn: a bad
signature under the real key, an untrusted issuer, an expiry in the past, an audience not ours, an
algorithm not allowed, and an unknown ``kid`` while the refetch cooldown holds. Tokens are made on the
fly from one signed token (re-signing a million would take far longer than verifying them). Resident
memory (VmRSS) is printed before, every 100,000 tokens and after; the target is growth < 50 MB.

    .venv/bin/python benchmarks/memory.py [count]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable

from fastapi_kc_m2m import InvalidToken
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, b64url

COUNT = 1_000_000
REPORT_EVERY = 100_000
WARM_UP = 1_000
TARGET_MB = 50.0


def resident_mb(field: str = "VmRSS") -> float:
    """The process's resident set size (or its peak, ``VmHWM``) in MB, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def token_factory(issuer: TestIssuer) -> Callable[[int], str]:
    """Token number ``i``: distinct from every other, failing at the stage ``i`` picks."""
    genuine = issuer.token()
    header_b64, _, signature = genuine.split(".")
    claims = issuer.claims()
    header = {"alg": "RS256", "typ": "JWT", "kid": issuer.signing_key.kid}
    encoded_header = {name: b64url(json.dumps(header | {"alg": name}).encode()) for name in ("RS256", "HS256")}
    now = int(issuer.clock())

    def payload(i: int, **changes: object) -> str:
        return b64url(json.dumps(claims | {"jti": f"flood-{i}"} | changes).encode())

    stages: list[Callable[[int], tuple[str, str]]] = [
        lambda i: (header_b64, payload(i)),  # bad signature, known kid
        lambda i: (header_b64, payload(i, iss=f"https://attacker.test/realms/{i}")),  # untrusted issuer
        lambda i: (header_b64, payload(i, exp=now - 3600 - i % 86400)),  # expired
        lambda i: (header_b64, payload(i, aud=f"service-{i}")),  # not our audience
        lambda i: (encoded_header["HS256"], payload(i)),  # algorithm not allowed
        lambda i: (b64url(json.dumps(header | {"kid": f"kid-{i}"}).encode()), payload(i)),  # unknown kid
    ]

    def make(i: int) -> str:
        head, body = stages[i % len(stages)](i)
        return f"{head}.{body}.{signature}"

    return make


async def main(count: int) -> None:
    issuer = TestIssuer(clock=FrozenClock())
    make = token_factory(issuer)
    reasons: Counter[str] = Counter()
    async with issuer.auth() as auth:
        assert await auth.prefetch()

        async def flood(start: int, stop: int) -> None:
            for i in range(start, stop):
                try:
                    await auth.verify(make(i))
                except InvalidToken as refused:
                    reasons[refused.description] += 1
                else:
                    raise AssertionError(f"token {i} verified")

        await flood(0, WARM_UP)  # one-time allocations: the unknown-kid refetch, caches of the libraries
        before = resident_mb()
        print(f"{count:,} distinct invalid tokens through KeycloakAuth.verify (warm key set)")
        print(f"{'tokens':>10} {'VmRSS MB':>9} {'growth MB':>10} {'tokens/s':>9}")
        print(f"{0:>10,} {before:9.1f} {0.0:10.1f}")
        started = time.perf_counter()
        done = 0
        while done < count:
            step = min(REPORT_EVERY, count - done)
            await flood(WARM_UP + done, WARM_UP + done + step)
            done += step
            rate = done / (time.perf_counter() - started)
            print(f"{done:>10,} {resident_mb():9.1f} {resident_mb() - before:10.1f} {rate:9,.0f}", flush=True)
        elapsed = time.perf_counter() - started
    growth = resident_mb() - before
    print("refusals:", ", ".join(f"{reason} {n:,}" for reason, n in reasons.most_common()))
    print(f"jwks fetches: {issuer.requests['jwks']} (the prefetch and one unknown-kid refetch)")
    print(f"peak VmHWM {resident_mb('VmHWM'):.1f} MB; {count / elapsed:,.0f} tokens/s over {elapsed:.0f} s")
    verdict = "ok" if growth < TARGET_MB else "OVER TARGET"
    print(f"resident memory growth {growth:.1f} MB for {count:,} tokens (target < {TARGET_MB:.0f} MB): {verdict}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else COUNT))
