"""What introspection costs once its answer is cached, measured side by side in one run.

Each round times, back to back, one repeated token through ``KeycloakAuth.verify`` with introspection
off and with ``introspection="always"`` (both caches warm, so this is the steady state of a caller
reusing its token), then the same through ``KeycloakAuthMiddleware`` in a Starlette app driven by
``httpx.ASGITransport``. The best round of each is reported, which is the least disturbed by other load
on a shared machine; the requests/s with introspection cached are reported as a ratio to those
without (target, issue 17: >= 0.95; ``e2e.py`` measures it under uvicorn too). A cache miss costs one
call to Keycloak (a network round trip) and is not measured.

    .venv/bin/python benchmarks/introspection.py
"""

from __future__ import annotations

import asyncio
import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fastapi_kc_m2m import KeycloakAuth, KeycloakAuthMiddleware
from fastapi_kc_m2m.testing import TestIssuer

ROUNDS = 9
REPEATS = 20_000
REQUESTS = 300
SECRET = "benchmark-secret"


async def timed_verify(auth: KeycloakAuth, token: str) -> float:
    start = time.perf_counter()
    for _ in range(REPEATS):
        await auth.verify(token)
    return (time.perf_counter() - start) / REPEATS * 1e6


async def timed_requests(client: httpx.AsyncClient, token: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    for _ in range(REQUESTS):
        response = await client.get("/", headers=headers)
        assert response.status_code == 200
    return (time.perf_counter() - start) / REQUESTS * 1e6


def app(auth: KeycloakAuth) -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.user.display_name)

    application = Starlette(routes=[Route("/", hello)])
    application.add_middleware(KeycloakAuthMiddleware, auth=auth)
    return application


async def main() -> None:
    issuer = TestIssuer()
    issuer.register_client(secret=SECRET)
    token = issuer.token()
    figures: dict[str, list[float]] = {"plain": [], "introspected": [], "plain_http": [], "introspected_http": []}
    async with (
        issuer.auth() as plain,
        issuer.auth(introspection="always", client_secret=SECRET) as introspected,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app(plain)), base_url="http://api") as plain_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app(introspected)), base_url="http://api") as intro_http,
    ):
        await plain.verify(token)
        await introspected.verify(token)  # the one introspection call; every later one is a cache hit
        for _ in range(ROUNDS):
            figures["plain"].append(await timed_verify(plain, token))
            figures["introspected"].append(await timed_verify(introspected, token))
            figures["plain_http"].append(await timed_requests(plain_http, token))
            figures["introspected_http"].append(await timed_requests(intro_http, token))
    assert issuer.requests["introspection"] == 1
    best = {name: min(values) for name, values in figures.items()}

    print(f"best of {ROUNDS} interleaved rounds; repeated token, caches warm, 1 introspection call in total")
    print(f"{'verify, introspection off':44s} {best['plain']:9.2f} us   1.00x")
    ratio = best["introspected"] / best["plain"]
    print(f"{'verify, introspection always (cached)':44s} {best['introspected']:9.2f} us   {ratio:.2f}x")
    print(f"{'middleware request, introspection off':44s} {best['plain_http']:9.2f} us   1.00x")
    ratio = best["introspected_http"] / best["plain_http"]
    print(f"{'middleware request, introspection always':44s} {best['introspected_http']:9.2f} us   {ratio:.2f}x")
    rate = best["plain_http"] / best["introspected_http"]
    print(f"requests/s introspection-cached / introspection off: {rate:.2f} (target >= 0.95)")


if __name__ == "__main__":
    asyncio.run(main())
