"""Cost of metrics per cached request, measured side by side in one run.

Each round times, back to back, ``KeycloakAuth.verify`` of one repeated token (a verified-token cache
hit) with ``KC_M2M_METRICS=off`` and with ``prometheus`` (on a private registry), and likewise a refused
junk token. The best round of each is reported, the least disturbed by other load on a shared machine.
Target: metrics on cost at most 2 us more per cached request.

    .venv/bin/python benchmarks/metrics.py
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry

from fastapi_kc_m2m import AuthError, KeycloakAuth
from fastapi_kc_m2m.testing import TestIssuer

ROUNDS = 9
REPEATS = 20_000


async def timed(auth: KeycloakAuth, token: str, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        with contextlib.suppress(AuthError):
            await auth.verify(token)
    return (time.perf_counter() - start) / count * 1e6


async def main() -> None:
    issuer = TestIssuer()
    token = issuer.token()
    off = KeycloakAuth(issuer.settings(), transport=issuer.transport, clock=issuer.clock)
    on = KeycloakAuth(
        issuer.settings(metrics="prometheus"),
        transport=issuer.transport,
        clock=issuer.clock,
        registry=CollectorRegistry(),
    )
    figures: dict[str, list[float]] = {"off": [], "on": [], "junk off": [], "junk on": []}
    async with off, on:
        for auth in (off, on):
            await auth.verify(token)
        for _ in range(ROUNDS):
            figures["off"].append(await timed(off, token, REPEATS))
            figures["on"].append(await timed(on, token, REPEATS))
            figures["junk off"].append(await timed(off, "junk", REPEATS // 4))
            figures["junk on"].append(await timed(on, "junk", REPEATS // 4))
    best = {name: min(values) for name, values in figures.items()}
    print(f"best of {ROUNDS} interleaved rounds")
    print(f"{'cached request, metrics off':34s} {best['off']:7.2f} us")
    print(
        f"{'cached request, metrics on':34s} {best['on']:7.2f} us   +{best['on'] - best['off']:.2f} us (target <= 2 us)"
    )
    junk_extra = best["junk on"] - best["junk off"]
    print(f"{'refused junk token, metrics off':34s} {best['junk off']:7.2f} us")
    print(f"{'refused junk token, metrics on':34s} {best['junk on']:7.2f} us   +{junk_extra:.2f} us")


if __name__ == "__main__":
    asyncio.run(main())
