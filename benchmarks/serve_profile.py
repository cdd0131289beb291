"""Where a request's time goes under uvicorn: the question of issue 17 (in process a fully verified request
cost ~64 us more than an unprotected one, under uvicorn ~120 us).

The unprotected app and ours (token cache on; ``KC_M2M_TOKEN_CACHE_SIZE=0``, every request verified in
full), each served by uvicorn (1 worker) and loaded by wrk (32 connections) in interleaved rounds with
tokens from ``interop/server.mjs``. For each app it prints, per request:

- requests/s and the uvicorn process's CPU time (user + system, ``/proc/PID/stat``), so the ratio can be
  read as CPU spent rather than throughput alone (the process runs at ~100 % of one core throughout);
- measured inside the server: the wall time of ``TokenVerifier.authenticate`` (through the observer hook's
  ``verification_timed``; on these paths it never suspends, so wall time is its own CPU time) and of the
  RSA signature check alone (the verifier's ``signature_is_valid``, wrapped by a timer in this process
  only);
- the same two figures in process over the same token: back to back (what ``verify.py`` measures), each
  after a request to the unprotected app, and each after the thread idled 50 us, as an event loop waiting
  for requests does;
- with ``--callgrind``, instructions per request under uvicorn: each app runs under ``valgrind
  --tool=callgrind``; after a warm-up ``callgrind_control`` zeroes the counters and dumps them after
  ``--requests`` sequential keep-alive requests. Instruction counts do not depend on the host's load.

    .venv/bin/python benchmarks/serve_profile.py [--rounds 3] [--seconds 4] [--callgrind --requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import e2e  # benchmarks/ is on sys.path: this script's folder
import httpx
from fastapi import FastAPI
from joserfc.jwk import Key
from starlette.types import Message, Scope

import fastapi_kc_m2m.server.verifier as verifier_module
from fastapi_kc_m2m import KeycloakAuth, KeycloakSettings
from fastapi_kc_m2m._jose.jws import signature_is_valid
from fastapi_kc_m2m.server.observer import LoggingObserver

FACTORY = "serve_profile:create_app"
STATS = "/_profile"  # excluded from authentication: the timings, read and reset by this script


class TimingObserver(LoggingObserver):
    """The default observer, also keeping how long each ``authenticate`` took."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def verification_timed(self, seconds: float, cached: bool) -> None:
        self.seconds.append(seconds)
        super().verification_timed(seconds, cached)


def timing_signatures() -> list[float]:
    """Wrap the verifier's RSA signature check in a timer; the list the seconds go to."""
    seconds: list[float] = []

    def timed(signing_input: bytes, signature: bytes, alg: str, key: Key) -> bool:
        start = time.perf_counter()
        try:
            return signature_is_valid(signing_input, signature, alg, key)
        finally:
            seconds.append(time.perf_counter() - start)

    verifier_module.signature_is_valid = timed  # type: ignore[attr-defined]  # the name the verifier calls
    return seconds


def create_app() -> FastAPI:
    """e2e's app (settings from ``KC_M2M_*``), with the timers and ``/_profile`` to read them."""
    if os.environ.get("BENCH_PROTECTED") != "1":
        return e2e.create_app()
    observer, signatures = TimingObserver(), timing_signatures()
    app = e2e.build_app(KeycloakAuth(observer=observer), exclude_paths=[STATS])

    @app.get(STATS)
    async def stats(reset: bool = False) -> dict[str, float]:
        figures = {"authenticate": _median_us(observer.seconds)}
        if signatures:  # none with the token cache on: the one token was verified before
            figures["signature"] = _median_us(signatures)
        if reset:
            observer.seconds.clear()
            signatures.clear()
        return figures

    return app


def _median_us(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e6 if seconds else 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (proc(5): fields 14 and 15 of ``stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_stats(port: int, *, reset: bool = False) -> dict[str, float]:
    answer = httpx.get(f"http://127.0.0.1:{port}{STATS}", params={"reset": reset})
    answer.raise_for_status()
    figures: dict[str, float] = answer.json()
    return figures


def apps(issuer: e2e.InteropIssuer) -> dict[str, e2e.Variant]:
    ours = {"KC_M2M_SERVER_URL": issuer.server_url, "KC_M2M_REALM": e2e.REALM, "KC_M2M_AUDIENCE": e2e.AUDIENCE}
    python = Path(sys.executable)
    return {
        "unprotected": e2e.Variant(python, FACTORY, {"BENCH_PROTECTED": "0"}),
        "cached": e2e.Variant(python, FACTORY, ours | {"BENCH_PROTECTED": "1"}),
        "full": e2e.Variant(python, FACTORY, ours | {"BENCH_PROTECTED": "1", "KC_M2M_TOKEN_CACHE_SIZE": "0"}),
    }


def measure(issuer: e2e.InteropIssuer, options: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Per app: requests/s, CPU us per request and the in-server medians, one figure per round."""
    figures: dict[str, dict[str, list[float]]] = {}
    with e2e.serving(apps(issuer), 1) as servers:
        e2e.check_apps(servers, issuer)
        token = issuer.token()
        for _, port in servers.values():
            e2e.wrk(port, token, 2, options.connections)  # warm-up
        order = list(servers.items())
        for round_ in range(options.rounds):
            shift = round_ % len(order)
            for name, (server, port) in order[shift:] + order[:shift]:
                row = figures.setdefault(name, {})
                protected = name != "unprotected"
                if protected:
                    server_stats(port, reset=True)
                before = cpu_seconds(server.pid)
                rate = e2e.wrk(port, token, options.seconds, options.connections)
                used = cpu_seconds(server.pid) - before
                row.setdefault("requests/s", []).append(rate)
                row.setdefault("CPU us/request", []).append(used / (rate * round(options.seconds)) * 1e6)
                for figure, value in (server_stats(port) if protected else {}).items():
                    row.setdefault(f"{figure} us (in server)", []).append(value)
    return figures


def in_process(issuer: e2e.InteropIssuer) -> dict[str, float]:
    """``authenticate`` and the signature check of one token in process (cache off): back to back, after
    a request to the unprotected app (its ASGI callable awaited directly), and with the thread idle for
    50 us before each verification, as a server's event loop waiting for the next request is."""
    settings = KeycloakSettings(
        server_url=issuer.server_url, realm=e2e.REALM, audience=e2e.AUDIENCE, token_cache_size=0, allow_http=True
    )
    unprotected = e2e.build_app(None)
    cases: dict[str, Callable[[], Awaitable[None]]] = {
        "back to back": _nothing,
        "after a FastAPI request": functools.partial(_request, unprotected),
        "after 50 us idle": _idle,
    }
    figures: dict[str, float] = {}
    for case, between in cases.items():
        observer, signatures = TimingObserver(), timing_signatures()
        asyncio.run(_verify_repeatedly(KeycloakAuth(settings, observer=observer), issuer.token(), between))
        figures[f"authenticate us, {case}"] = _median_us(observer.seconds[500:])
        figures[f"signature us, {case}"] = _median_us(signatures[500:])
    return figures


async def _verify_repeatedly(auth: KeycloakAuth, token: str, between: Callable[[], Awaitable[None]]) -> None:
    async with auth:
        for _ in range(3000):
            await between()
            await auth.verify(token)


async def _nothing() -> None:
    return None


async def _idle() -> None:
    time.sleep(50e-6)  # noqa: ASYNC251 - the idle core is what is measured


async def _request(app: FastAPI) -> None:
    """One GET of the app's route, its ASGI callable awaited directly; the answer is dropped."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": e2e.PATH,
        "raw_path": e2e.PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    await app(scope, receive, send)


def callgrind(issuer: e2e.InteropIssuer, requests: int) -> dict[str, float]:
    """Instructions per request of each app under uvicorn and callgrind."""
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, variant in apps(issuer).items():
            output = Path(folder) / f"callgrind.{name}"
            with _under_callgrind(variant, output) as (server, port):
                token = issuer.token()
                _sequential(port, token, 300)
                _callgrind_control("--zero", server.pid)
                _sequential(port, token, requests)
                _callgrind_control("--dump", server.pid)
            dump = next(Path(folder).glob(f"callgrind.{name}.*")).read_text()
            match = re.search(r"^(?:summary|totals): (\d+)", dump, re.MULTILINE)
            if match is None:
                raise SystemExit(f"no instruction count in the callgrind dump of {name}")
            counts[name] = int(match.group(1)) / requests
    return counts


def _callgrind_control(action: str, pid: int) -> None:
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True)  # noqa: S603, S607


@contextmanager
def _under_callgrind(variant: e2e.Variant, output: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = e2e.free_port()
    uvicorn = [str(variant.python), "-m", "uvicorn", variant.factory, "--factory", "--app-dir", str(e2e.HERE)]
    uvicorn += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}", *uvicorn]
    server = subprocess.Popen(command, env=os.environ | variant.env, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        _wait(port, server)
        yield server, port
    finally:
        server.terminate()
        server.wait()


def _wait(port: int, server: subprocess.Popen[bytes]) -> None:
    """Until ``server`` (slow under valgrind) accepts connections on ``port``; 180 s at most."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("uvicorn under callgrind did not start")


def _sequential(port: int, token: str, count: int) -> None:
    """``count`` requests one after the other on one keep-alive connection, each answered 200."""
    request = f"GET {e2e.PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            connection.sendall(request)
            answer = b""
            while not answer.endswith(b"]}"):
                chunk = connection.recv(65536)
                if not chunk:
                    raise SystemExit("the app closed the connection")
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"the app answered {answer[:40]!r}")


def report(figures: dict[str, dict[str, list[float]]], local: dict[str, float], counts: dict[str, float]) -> None:
    """Medians over the rounds, and each protected app's extra per request over the unprotected one."""
    base = {name: statistics.median(values) for name, values in figures["unprotected"].items()}
    base_ir = counts.get("unprotected")
    for name, row in figures.items():
        print(f"{name}:")
        for figure, values in row.items():
            value = statistics.median(values)
            compared = figure in base and name != "unprotected"
            extra = f"   ({value - base[figure]:+.1f} against unprotected)" if compared else ""
            print(f"  {figure:34} {value:9.1f}{extra}")
        if name in counts:
            extra = f"   ({(counts[name] - base_ir) / 1000:+.0f}k)" if base_ir and name != "unprotected" else ""
            print(f"  {'instructions/request (callgrind)':34} {counts[name] / 1000:8.0f}k{extra}")
    print("in process, same token, cache off:")
    for figure, value in local.items():
        print(f"  {figure:40} {value:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per request")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted under callgrind")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        issuer = e2e.InteropIssuer(Path(state))
        try:
            figures = measure(issuer, options)
            local = in_process(issuer)
            counts = callgrind(issuer, options.requests) if options.callgrind else {}
        finally:
            issuer.close()
    report(figures, local, counts)


if __name__ == "__main__":
    main()
