"""End to end: the same FastAPI app served by uvicorn (1 worker) without KeycloakAuthMiddleware, behind
it, and behind it with metrics on (``KC_M2M_METRICS=prometheus``).

A test issuer runs on loopback; every request carries the same valid token. The load generator is
wrk (Debian: ``apt-get install wrk``); without it a small Python keep-alive client stands in.
Rounds alternate between the three apps (each taking each place in turn), so each round measures them
under the same machine state; the median of the per-round ratios to the unprotected app is reported
(robust to a round disturbed by other load on a shared machine), with every round for transparency;
the two protected ratios side by side give what metrics cost end to end::

    .venv/bin/python benchmarks/e2e.py [--seconds 6] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI

from fastapi_kc_m2m import KeycloakAuth, KeycloakAuthMiddleware
from fastapi_kc_m2m.testing import TestIssuer

PATH = "/orders"


def create_app() -> FastAPI:
    """The app under test; ``BENCH_PROTECTED=1`` adds the middleware (settings from ``KC_M2M_*``)."""
    if os.environ.get("BENCH_PROTECTED") != "1":
        app = FastAPI()
    else:
        auth = KeycloakAuth()
        app = FastAPI(lifespan=auth.lifespan)
        app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get(PATH)
    async def orders() -> dict[str, list[int]]:
        return {"orders": [1, 2, 3]}

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(protected: bool, issuer: TestIssuer, *, metrics: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving :func:`create_app`, unprotected or behind the middleware (with ``metrics`` on)."""
    port = free_port()
    env = os.environ | {
        "BENCH_PROTECTED": "1" if protected else "0",
        "KC_M2M_ISSUERS": issuer.issuer,
        "KC_M2M_AUDIENCE": issuer.audience,
        "KC_M2M_METRICS": "prometheus" if metrics else "off",
    }
    command = [sys.executable, "-m", "uvicorn", "e2e:create_app", "--factory", "--app-dir", str(Path(__file__).parent)]
    command += [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and arguments
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server, port
        time.sleep(0.05)
    server.kill()
    raise SystemExit("uvicorn did not start")


def wrk(port: int, token: str, seconds: float, connections: int) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "-H", f"Authorization: Bearer {token}"]
    run = subprocess.run([*command, f"http://127.0.0.1:{port}{PATH}"], capture_output=True, text=True, check=False)  # noqa: S603
    output = run.stdout
    if run.returncode:
        raise SystemExit(f"wrk failed: {run.stderr}")
    if re.search(r"Non-2xx or 3xx responses", output):
        raise SystemExit(f"the app refused requests:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    return float(match.group(1))


def python_load(port: int, token: str, seconds: float, connections: int) -> float:
    """Keep-alive HTTP/1.1 clients, one request in flight each: a stand-in for wrk."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    return keep_alive_load(port, itertools.repeat(request), seconds, connections)


def keep_alive_load(port: int, requests: Iterator[bytes], seconds: float, connections: int) -> float:
    """Requests per second of ``connections`` keep-alive HTTP/1.1 clients sending ``requests`` (each
    taken once), one in flight per client, for ``seconds``; any answer but 200 ends the benchmark."""

    async def client(deadline: float) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done = 0
        while time.monotonic() < deadline:
            writer.write(next(requests))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"the app refused a request: {head[:60]!r}")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            done += 1
        writer.close()
        return done

    async def run() -> int:
        deadline = time.monotonic() + seconds
        return sum(await asyncio.gather(*(client(deadline) for _ in range(connections))))

    return asyncio.run(run()) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each measuring the three apps in turn")
    parser.add_argument("--connections", type=int, default=32)
    options = parser.parse_args()
    load = wrk
    if shutil.which("wrk") is None:
        print("wrk not found (Debian/Ubuntu: apt-get install wrk); using the slower Python load generator")
        load = python_load
    rates: dict[str, list[float]] = {variant: [] for variant in _VARIANTS}
    with TestIssuer.serving() as issuer:
        token = issuer.token(scope="orders:read", lifetime=3600)
        servers = {name: start_server(on, issuer, metrics=metered) for name, (on, metered) in _VARIANTS.items()}
        try:
            for _, port in servers.values():
                load(port, token, 2, options.connections)  # warm-up; the protected apps fetch their keys
            order = list(servers.items())
            for round_ in range(options.rounds):  # each app takes each place in turn: no order bias
                shift = round_ % len(order)
                for name, (_, port) in order[shift:] + order[:shift]:
                    rates[name].append(load(port, token, options.seconds, options.connections))
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait()
    print(
        f"load generator: {load.__name__}, {options.connections} connections, {options.rounds} x {options.seconds:g} s"
    )
    for name, rounds in rates.items():
        each = ", ".join(f"{r:.0f}" for r in rounds)
        print(f"{name + ':':21}{statistics.median(rounds):10.0f} requests/s   (rounds: {each})")
    off, on = (_ratio(rates[name], rates["unprotected"]) for name in ("protected", "protected, metrics"))
    print(f"ratio protected/unprotected: {off:.2f} metrics off, {on:.2f} metrics on (difference {off - on:+.3f});"
          " medians of the per-round ratios")  # fmt: skip


#: The apps measured side by side: ``start_server``'s ``protected`` and ``metrics``.
_VARIANTS = {"unprotected": (False, False), "protected": (True, False), "protected, metrics": (True, True)}


def _ratio(rates: list[float], baseline: list[float]) -> float:
    """The median of the per-round ratios of ``rates`` to ``baseline``."""
    return statistics.median(r / b for r, b in zip(rates, baseline, strict=True))


if __name__ == "__main__":
    main()
