"""End to end: the same FastAPI app served by uvicorn, unprotected, behind KeycloakAuthMiddleware (token cache
on; every request verified in full with ``KC_M2M_TOKEN_CACHE_SIZE=0``; metrics on with
``KC_M2M_METRICS=prometheus``; ``KC_M2M_INTROSPECTION=always``, its answer cached) and behind the peers of
``peers.py`` (fastapi-keycloak-middleware and a hand-written PyJWT + ``PyJWKClient`` dependency, installed
into ``benchmarks/.venv-peers`` only, made here on first use), with 1 uvicorn worker and then with 2
(``workers.py``: uvicorn's supervisor, with the ``TCP_NODELAY`` that ``uvicorn --workers`` loses).

Tokens come from an independent Keycloak-shaped server, ``interop/server.mjs`` (panva's oidc-provider;
``scripts/bootstrap --with-node`` installs it), a fresh one for each measurement (they live 300 s, as
Keycloak's). Before measuring, every protected app must answer 200 to a good token and 401 to a forged
signature and to a token for another audience. The load generator is wrk (Debian: ``apt-get install
wrk``); without it a small Python keep-alive client stands in. Each round measures every app in turn,
each taking each place in turn; the median of the per-round ratios to the unprotected app is reported
with its target, every round for transparency; the ratios are also drawn as a chart (``--chart``)::

    .venv/bin/python benchmarks/e2e.py [--seconds 6] [--rounds 5] [--connections 32] [--chart docs/benchmarks.svg]
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
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from chart import write_chart  # benchmarks/ is on sys.path: this script's folder
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI

from fastapi_kc_m2m import KeycloakAuth, KeycloakAuthMiddleware
from fastapi_kc_m2m._jose.jws import b64url

PATH = "/orders"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REALM, AUDIENCE = "interop", "machine-b"
PEERS_VENV = HERE / ".venv-peers"
PEER_REQUIREMENTS = ["fastapi-keycloak-middleware==2.0.0", "PyJWT[crypto]==2.15.1", "fastapi", "uvicorn"]
OURS = "fastapi-kc-m2m"
FKM = "fastapi-keycloak-middleware 2.0.0"
PYJWT = "PyJWT 2.15.1 + PyJWKClient"


def create_app() -> FastAPI:
    """The app under test; ``BENCH_PROTECTED=1`` adds the middleware (settings from ``KC_M2M_*``)."""
    return build_app(KeycloakAuth() if os.environ.get("BENCH_PROTECTED") == "1" else None)


def build_app(auth: KeycloakAuth | None, *, exclude_paths: Iterable[str] = ()) -> FastAPI:
    """The one route measured, unprotected without ``auth``, else behind the middleware and its lifespan."""
    if auth is None:
        app = FastAPI()
    else:
        app = FastAPI(lifespan=auth.lifespan)
        app.add_middleware(KeycloakAuthMiddleware, auth=auth, exclude_paths=exclude_paths)

    @app.get(PATH)
    async def orders() -> dict[str, list[int]]:
        return {"orders": [1, 2, 3]}

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Variant:
    """One app measured: the interpreter serving it, its factory and its environment."""

    python: Path
    factory: str
    env: dict[str, str]


class InteropIssuer:
    """``node interop/server.mjs`` on a free loopback port; :meth:`token` asks it for a fresh access token."""

    def __init__(self, state: Path) -> None:
        if shutil.which("node") is None or not (ROOT / "interop" / "node_modules" / "oidc-provider").is_dir():
            raise SystemExit("interop/server.mjs needs node and its packages: run scripts/bootstrap --with-node")
        (state / "client-keys.json").write_text("{}")
        self.port = free_port()
        self.server_url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.server_url}/realms/{REALM}"
        command = ["node", str(ROOT / "interop" / "server.mjs"), "--port", str(self.port), "--state", str(state)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        _wait_for_port(self.port, self.process)

    def token(self, client_id: str = "reporting") -> str:
        """A client-credentials token of ``client_id`` (``reporting``: for this API; ``stranger``: not)."""
        response = httpx.post(
            f"{self.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "scope": "orders:read"},
            auth=(client_id, f"{client_id}-secret"),
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def own_app(settings: dict[str, str] | None = None) -> Variant:
    """:func:`create_app` in this interpreter: unprotected, or behind the middleware with ``settings``
    (``KC_M2M_*`` variables)."""
    env = {"BENCH_PROTECTED": "0"} if settings is None else settings | {"BENCH_PROTECTED": "1"}
    return Variant(Path(sys.executable), "e2e:create_app", env)


def variants(issuer: InteropIssuer) -> dict[str, Variant]:
    """The apps measured side by side, ours and the peers'."""
    ours = {"KC_M2M_SERVER_URL": issuer.server_url, "KC_M2M_REALM": REALM, "KC_M2M_AUDIENCE": AUDIENCE}
    peer = {"BENCH_SERVER_URL": issuer.server_url, "BENCH_REALM": REALM, "BENCH_AUDIENCE": AUDIENCE}
    secret = {"KC_M2M_CLIENT_SECRET": f"{AUDIENCE}-secret"}  # introspecting as the API's own client
    peers = peers_python()
    return {
        "unprotected": own_app(),
        f"{OURS}, cached": own_app(ours),
        f"{OURS}, full": own_app(ours | {"KC_M2M_TOKEN_CACHE_SIZE": "0"}),
        f"{OURS}, metrics": own_app(ours | {"KC_M2M_METRICS": "prometheus"}),
        f"{OURS}, introspected": own_app(ours | {"KC_M2M_INTROSPECTION": "always"} | secret),
        FKM: Variant(peers, "peers:create_app", peer | {"BENCH_PEER": "fastapi-keycloak-middleware"}),
        PYJWT: Variant(peers, "peers:create_app", peer | {"BENCH_PEER": "pyjwt"}),
    }


def peers_python() -> Path:
    """The interpreter of ``benchmarks/.venv-peers``, made and filled on first use (the peers never enter
    the project's environment); FastAPI, Starlette and uvicorn at the project's pinned versions."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / "requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if not stamp.is_file() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)  # noqa: S603
        install = [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), *PEER_REQUIREMENTS]
        subprocess.run(install, check=True)  # noqa: S603 - pinned packages into the benchmark's own venv
        stamp.write_text(wanted)
    return python


def start_server(variant: Variant, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving ``variant`` with ``workers`` worker processes on a free loopback port."""
    port = free_port()
    if workers > 1:  # uvicorn's --workers would lose TCP_NODELAY (see workers.py)
        command = [str(variant.python), str(HERE / "workers.py"), variant.factory, str(port), str(workers)]
    else:
        command = [str(variant.python), "-m", "uvicorn", variant.factory, "--factory", "--app-dir", str(HERE)]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env=os.environ | variant.env)  # noqa: S603 - our own arguments
    _wait_for_port(port, server)
    return server, port


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until ``process`` accepts connections on ``port``; it is killed if it does not within 20 s."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{process.args!r} did not start")


def forged(token: str) -> str:
    """``token`` with its header and claims kept and a signature by a key the issuer never had."""
    head, body, _ = token.split(".")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


def check_apps(servers: dict[str, tuple[subprocess.Popen[bytes], int]], issuer: InteropIssuer) -> None:
    """Each app answers a good token with 200, and each protected one a forged signature and a token
    for another audience with 401: a peer that skipped a check would be measured doing less."""
    good = issuer.token()
    cases = {"good": (good, 200), "forged": (forged(good), 401), "other audience": (issuer.token("stranger"), 401)}
    for name, (_, port) in servers.items():
        for case, (token, expected) in cases.items():
            if name == "unprotected" and case != "good":
                continue
            answer = httpx.get(f"http://127.0.0.1:{port}{PATH}", headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != expected:
                raise SystemExit(f"{name}: {case} token got {answer.status_code}, expected {expected}")
    print(f"checked: every app 200 with a good token; every protected one 401 with a forged or {AUDIENCE}-less one")


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


Load = Callable[[int, str, float, int], float]


@contextmanager
def serving(apps: dict[str, Variant], workers: int) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], int]]]:
    """Every app of ``apps`` served by its own uvicorn with ``workers`` workers, stopped on exit."""
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, variant in apps.items():
            servers[name] = start_server(variant, workers)
        yield servers
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait()


def measure(
    apps: dict[str, Variant], issuer: InteropIssuer, workers: int, load: Load, options: argparse.Namespace
) -> dict[str, list[float]]:
    """Requests per second of each app, one figure per round, each app taking each place in turn."""
    rates: dict[str, list[float]] = {name: [] for name in apps}
    with serving(apps, workers) as servers:
        check_apps(servers, issuer)
        for _, port in servers.values():
            load(port, issuer.token(), 2, options.connections)  # warm-up
        order = list(servers.items())
        for round_ in range(options.rounds):
            shift = round_ % len(order)
            for name, (_, port) in order[shift:] + order[:shift]:
                rates[name].append(load(port, issuer.token(), options.seconds, options.connections))
    return rates


#: The target of each protected app's ratio to the unprotected one (issue 17); the peers have none.
TARGETS = {f"{OURS}, cached": 0.95, f"{OURS}, full": 0.85, f"{OURS}, metrics": 0.95, f"{OURS}, introspected": 0.95}


def report(workers: int, rates: dict[str, list[float]]) -> dict[str, float]:
    """Prints each app's requests/s and ratio to the unprotected app with its target; returns the ratios."""
    print(f"uvicorn {workers} worker{'s' if workers > 1 else ''}:")
    ratios = {name: _ratio(rounds, rates["unprotected"]) for name, rounds in rates.items() if name != "unprotected"}
    for name, rounds in rates.items():
        each = ", ".join(f"{r:.0f}" for r in rounds)
        figure = f"  {name + ':':38}{statistics.median(rounds):8.0f} requests/s"
        if name in ratios:
            target = TARGETS.get(name)
            figure += f"   ratio {ratios[name]:.2f}" + (f" (target >= {target:.2f})" if target else " (peer)     ")
        print(f"{figure:84} rounds: {each}")
    return ratios


def report_workers(one: dict[str, float], two: dict[str, float]) -> None:
    """The two-worker ratios against the one-worker ones (target: within 0.03)."""
    for name in (f"{OURS}, cached", f"{OURS}, full"):
        gap = two[name] - one[name]
        print(f"two workers vs one, {name}: {two[name]:.2f} vs {one[name]:.2f}, {gap:+.3f} (target within 0.03)")


def _ratio(rates: list[float], baseline: list[float]) -> float:
    """The median of the per-round ratios of ``rates`` to ``baseline``."""
    return statistics.median(r / b for r, b in zip(rates, baseline, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each measuring every app in turn")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts to run")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "benchmarks.svg", help="the SVG written")
    options = parser.parse_args()
    load: Load = wrk
    if shutil.which("wrk") is None:
        print("wrk not found (Debian/Ubuntu: apt-get install wrk); using the slower Python load generator")
        load = python_load
    shape = f"{options.connections} connections, {options.rounds} x {options.seconds:g} s"
    print(f"load generator: {load.__name__}, {shape}")
    with tempfile.TemporaryDirectory() as state:
        issuer = InteropIssuer(Path(state))
        try:
            apps = variants(issuer)
            ratios = {n: report(n, measure(apps, issuer, n, load, options)) for n in options.workers}
        finally:
            issuer.close()
    if {1, 2} <= ratios.keys():
        report_workers(ratios[1], ratios[2])
    groups = {f"uvicorn, {workers} worker{'s' if workers > 1 else ''}": figures for workers, figures in ratios.items()}
    title = "Requests/s relative to the unprotected app (higher is better)"
    write_chart(options.chart, title, groups, target=TARGETS[f"{OURS}, full"])
    print(f"chart: {options.chart}")


if __name__ == "__main__":
    main()
