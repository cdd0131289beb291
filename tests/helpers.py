"""What several test modules need: request headers, an in-process client for an app, a gate that
holds an identity provider's answers, polling for background work, a DPoP token endpoint and API,
real redis-server and prometheus processes, a per-run PKI made with ``kc-m2m ca``/``cert``, nginx terminating
mutual TLS in front of an API (``nginx/mtls.conf.template``, the compose file's own), the spans recorded,
and a page of Debian's chromium driven by Playwright."""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from fastapi_kc_m2m import KeycloakResourceServer, cli
from fastapi_kc_m2m._jose.dpop import Proof, ProofError, access_token_hash, check_proof
from fastapi_kc_m2m._jose.x5t import certificate_thumbprint
from fastapi_kc_m2m.testing import TestIssuer, TLSFiles, serve_app

API_URL = "http://api.test"
#: ``algs`` of the DPoP challenge with the default KC_M2M_DPOP_ALGORITHMS (RFC 9449 §7.1).
DPOP_ALGS = 'algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512"'
#: The challenges a request without credentials gets by default (KC_M2M_DPOP=allowed): both schemes.
NO_CREDENTIALS_CHALLENGE = f'Bearer realm="machine-b", DPoP {DPOP_ALGS}'


#: The secret introspecting verifiers authenticate with: characters form-urlencoding must carry (RFC 6749 §2.3.1).
INTROSPECTION_SECRET = "s3 cr:et+/"
INTROSPECT_PATH = "/protocol/openid-connect/token/introspect"


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header presenting ``token`` (RFC 6750 §2.1)."""
    return {"Authorization": f"Bearer {token}"}


def api_client(
    app: ASGIApp, base_url: str = API_URL, root_path: str = "", peer: tuple[str, int] = ("127.0.0.1", 123)
) -> httpx.AsyncClient:
    """An httpx client calling ``app`` in-process (no lifespan runs: see the ``lifespan_client`` fixture);
    a ``root_path`` is set in the scope as ``uvicorn --root-path`` does (the path keeps it), ``peer`` is
    the scope's ``client``."""
    transport = httpx.ASGITransport(app=app, root_path=root_path, client=peer)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


class Gate(httpx.AsyncBaseTransport):
    """Holds the answers to requests whose path ends with ``suffix`` until opened: a slow identity
    provider. The answer is produced first, so what is held is its delivery; ``waiting`` counts them."""

    def __init__(self, inner: httpx.AsyncBaseTransport, suffix: str = "/certs") -> None:
        self.inner = inner
        self.suffix = suffix
        self.opened = anyio.Event()
        self.waiting = 0

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.opened = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith(self.suffix):
            self.waiting += 1
            try:
                await self.opened.wait()
            finally:
                self.waiting -= 1
        return response


async def wait_until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Poll ``condition`` until it holds, failing after ``seconds`` (background work, or a server's
    thread, has no event to await)."""
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await anyio.sleep(0.005)


def proof_claims(proof: str) -> dict[str, Any]:
    """The claims of a DPoP proof (or any JWS), unverified."""
    return dict(json.loads(base64.urlsafe_b64decode(proof.split(".")[1] + "==")))


class DPoPPeer:
    """A DPoP token endpoint (``POST /token``) and API (``/orders``) in one Starlette app (:attr:`app`),
    checking proofs with ``check_proof`` (RFC 9449 §4.3, §7.1) and refusing a replayed ``jti`` (§11.1).

    With ``nonces`` each side demands its own nonce, handed out with ``400 use_dpop_nonce`` by the token
    endpoint (§8) and ``401 DPoP error="use_dpop_nonce"`` by the API (§9); ``asked`` counts the demands.
    The token endpoint answers ``token_type`` (default ``DPoP``) and checks no client credentials.
    ``accepted`` holds the claims of the proofs each side accepted, ``presented`` every API request's
    ``(token, proof)``; ``bound`` maps issued tokens to their ``jkt``; tokens in ``refused`` get a 401.
    """

    ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "PS256", "RS256", "EdDSA"})

    def __init__(self, *, nonces: bool = True, token_type: str = "DPoP") -> None:  # noqa: S107 - not a secret
        self.token_type = token_type
        self.nonces = {"token": "token-nonce-1", "api": "api-nonce-1"} if nonces else {}
        self.asked = {"token": 0, "api": 0}
        self.accepted: dict[str, list[dict[str, Any]]] = {"token": [], "api": []}
        self.presented: list[tuple[str, str]] = []
        self.bound: dict[str, str] = {}
        self.refused: set[str] = set()
        self._jtis: set[str] = set()
        routes = [Route("/token", self._token, methods=["POST"]), Route("/orders", self._api, methods=["GET", "POST"])]
        self.app = Starlette(routes=routes)

    def _check(self, request: Request, side: str, token: str | None) -> Proof | str:
        """The accepted proof, else why it is refused (an error code, or a nonce demand)."""
        proof = request.headers.get("DPoP", "")
        try:
            checked = check_proof(
                proof, algorithms=self.ALGORITHMS, htm=request.method, htu=str(request.url),
                now=time.time(), max_age=60, max_ahead=15, ath=None if token is None else access_token_hash(token),
            )  # fmt: skip
        except ProofError:
            return "invalid_dpop_proof"
        if token is not None and checked.jkt != self.bound[token]:
            return "invalid_token"
        if side in self.nonces and checked.nonce != self.nonces[side]:
            self.asked[side] += 1
            return "use_dpop_nonce"
        if checked.jti in self._jtis:
            return "invalid_dpop_proof"
        self._jtis.add(checked.jti)
        self.accepted[side].append(proof_claims(proof))
        return checked

    async def _token(self, request: Request) -> JSONResponse:
        checked = self._check(request, "token", None)
        if isinstance(checked, str):
            return JSONResponse({"error": checked}, 400, headers=self._nonce_header("token"))
        token = f"at-{uuid.uuid4().hex}"
        self.bound[token] = checked.jkt
        return JSONResponse({"access_token": token, "token_type": self.token_type, "expires_in": 300})

    async def _api(self, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        self.presented.append((token, request.headers.get("DPoP", "")))
        refused = scheme != "DPoP" or token not in self.bound or token in self.refused
        refusal = "invalid_token" if refused else self._check(request, "api", token)
        if not isinstance(refusal, str):
            return JSONResponse({"ok": True})
        headers = {"WWW-Authenticate": f'DPoP algs="ES256", error="{refusal}"'} | self._nonce_header("api")
        return JSONResponse({}, 401, headers=headers)

    def _nonce_header(self, side: str) -> dict[str, str]:
        return {"DPoP-Nonce": self.nonces[side]} if side in self.nonces else {}


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_answers(port: int) -> bool:
    """Whether a Redis on loopback ``port`` answers PING now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A real ``redis-server`` (Debian's package; ``scripts/bootstrap --with-node`` installs it) on a free
    loopback port, without persistence; ``extra`` arguments go to its command line. Fails, never skips,
    when it is missing. :meth:`stop` and :meth:`start` again keep the port (a restart)."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is missing: run scripts/bootstrap --with-node")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--protected-mode", "no", *extra]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: str | None = None) -> RedisServer:
        """Start it and wait (up to 20 s, for a loaded machine) until it answers PING."""
        self._process = subprocess.Popen(self._argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + 20
        while not redis_answers(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop it (resumed first if paused) and wait for it to end."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing answers: a slow Redis."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_ports(count: int) -> list[int]:
    """``count`` free loopback ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 < 65536 and port not in ports:
            with contextlib.suppress(OSError), socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 10000))
                ports.append(port)
    return ports


def create_cluster(ports: list[int]) -> None:
    """Join the cluster-enabled redis-servers on ``ports`` into one cluster (no replicas) and wait, up to
    30 s, until every node reports it ok."""
    nodes = [f"127.0.0.1:{port}" for port in ports]
    _redis_cli("--cluster", "create", *nodes, "--cluster-yes").check_returncode()
    deadline = time.monotonic() + 30
    while not all(_cluster_ok(port) for port in ports):
        if time.monotonic() > deadline:
            raise RuntimeError("the Redis Cluster did not become ok")
        time.sleep(0.1)


def _cluster_ok(port: int) -> bool:
    return "cluster_state:ok" in _redis_cli("-p", str(port), "cluster", "info").stdout


def _redis_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Debian's ``redis-cli`` with ``args`` (our own, never input), bounded to 60 s."""
    return subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603, S607


class Certificate(NamedTuple):
    """A certificate file and its private key file (PEM, as ``kc-m2m cert`` writes them): what
    ``client_cert=`` and ``SSLContext.load_cert_chain`` take. ``pem``, ``der`` and ``x5t`` (the
    ``cnf["x5t#S256"]`` of tokens bound to it, RFC 8705 §3.1) read the certificate."""

    cert: Path
    key: Path

    @property
    def pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.pem).public_bytes(Encoding.DER)

    @property
    def x5t(self) -> str:
        return certificate_thumbprint(self.der)


@dataclass(frozen=True, slots=True)
class Pki:
    """A CA made per run by ``kc-m2m ca`` (``ca.cert.pem``), a loopback server certificate (``server``:
    localhost, 127.0.0.1) and two client certificates it signed by ``kc-m2m cert`` (``machine-a``, EC;
    ``machine-z``, RSA), all in one directory."""

    ca: Path
    server: Certificate
    client: Certificate
    other_client: Certificate

    @property
    def server_files(self) -> TLSFiles:
        """The server's files for :func:`fastapi_kc_m2m.testing.serve_app`."""
        return TLSFiles(*self.server, self.ca)

    def context(self, client: Certificate | None = None) -> ssl.SSLContext:
        """A client context trusting the CA, presenting ``client`` if given."""
        context = ssl.create_default_context(cafile=self.ca)
        if client is not None:
            context.load_cert_chain(*client)
        return context


def make_pki(directory: Path) -> Pki:
    """Run ``kc-m2m ca`` and ``kc-m2m cert`` in ``directory`` (in-process) and return what they wrote."""
    out = ["--out", str(directory)]
    ca = ["--ca", str(directory / "ca.cert.pem"), "--ca-key", str(directory / "ca.key.pem")]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["ca", "--name", "ca", *out]) == 0
        assert (
            cli.main(["cert", *ca, "--name", "server", "--server", "--dns", "localhost", "--ip", "127.0.0.1", *out])
            == 0
        )
        assert cli.main(["cert", *ca, "--name", "machine-a", "--kind", "ec", *out]) == 0
        assert cli.main(["cert", *ca, "--name", "machine-z", *out]) == 0

    def pair(name: str) -> Certificate:
        return Certificate(directory / f"{name}.cert.pem", directory / f"{name}.key.pem")

    return Pki(directory / "ca.cert.pem", pair("server"), pair("machine-a"), pair("machine-z"))


@functools.cache
def shared_pki() -> Pki:
    """One :func:`make_pki` per test process, for modules needing certificates at import (parametrize);
    removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="kc-m2m-pki-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return make_pki(directory)


#: nginx's mutual-TLS front of Machine B (RFC 8705 §3), shared by the drill, the interop suite and compose.
NGINX_MTLS_TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "mtls.conf.template"
_MTLS_VARIABLE = re.compile(r"\$\{(MTLS_\w+)\}")


def nginx_mtls_variables() -> set[str]:
    """The ``${MTLS_...}`` variables of ``nginx/mtls.conf.template``."""
    return set(_MTLS_VARIABLE.findall(NGINX_MTLS_TEMPLATE.read_text()))


def nginx_mtls_config(values: Mapping[str, str]) -> str:
    """``nginx/mtls.conf.template`` filled as the official nginx image's envsubst does with
    ``NGINX_ENVSUBST_FILTER=^MTLS_`` (nginx's own ``$host`` untouched); a variable not given raises KeyError."""
    return _MTLS_VARIABLE.sub(lambda match: values[match[1]], NGINX_MTLS_TEMPLATE.read_text())


#: The address nginx connects to Machine B from, the only trusted proxy (KC_M2M_TRUSTED_PROXIES).
NGINX_PROXY_ADDRESS = "127.0.0.2"


@contextlib.contextmanager
def nginx_mtls(directory: Path, pki: Pki, upstream: str) -> Iterator[str]:
    """Debian's nginx (``scripts/bootstrap --with-node``) in the foreground with ``nginx/mtls.conf.template`` on a
    free loopback port, serving ``pki.server``, requiring client certificates of ``pki.ca`` and
    forwarding them in ``ssl-client-cert`` to ``upstream`` (``http://host:port``) from
    :data:`NGINX_PROXY_ADDRESS`; yields its base URL; stopped whatever happens."""
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        raise RuntimeError("nginx is missing: run scripts/bootstrap --with-node")
    port = free_port()
    values = {"PREFIX": str(directory), "LISTEN": f"127.0.0.1:{port}", "SERVER_CERT": str(pki.server.cert),
              "SERVER_KEY": str(pki.server.key), "CLIENT_CA": str(pki.ca),
              "UPSTREAM": upstream.removeprefix("http://"), "PROXY_ADDRESS": NGINX_PROXY_ADDRESS}  # fmt: skip
    config, log = directory / "nginx.conf", directory / "error.log"
    config.write_text(nginx_mtls_config({f"MTLS_{name}": value for name, value in values.items()}))
    argv = [nginx, "-p", str(directory), "-c", str(config), "-e", str(log)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        _wait_for_port(process, port, log)
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait (up to 20 s, for a loaded machine) until nginx accepts connections on ``port``."""
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                errors = log.read_text() if log.exists() else ""
                raise RuntimeError(f"nginx did not start: {errors}") from None
            time.sleep(0.05)


class Interposed(httpx.AsyncBaseTransport):
    """The issuer's transport, with introspection requests answered by ``answer`` instead."""

    def __init__(self, issuer: TestIssuer, answer: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> None:
        self._inner = issuer.transport
        self._answer = answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(INTROSPECT_PATH):
            return await self._answer(request)
        return await self._inner.handle_async_request(request)


def answering(issuer: TestIssuer, body: bytes, **overrides: Any) -> KeycloakResourceServer:
    """A verifier introspecting (policy ``always`` unless overridden) whose every introspection call
    gets ``body`` as a 200 JSON answer; the calls are counted in ``issuer.requests``."""

    async def answer(request: httpx.Request) -> httpx.Response:
        issuer.requests["introspection"] += 1
        return httpx.Response(200, stream=httpx.ByteStream(body), headers={"Content-Type": "application/json"})

    settings = issuer.settings(**({"introspection": "always", "client_secret": INTROSPECTION_SECRET} | overrides))
    return KeycloakResourceServer(settings, transport=Interposed(issuer, answer), clock=issuer.clock)


@functools.cache
def _span_exporter() -> InMemorySpanExporter:
    """The one exporter of the process's tracer provider (OpenTelemetry lets it be set only once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


class Spans:
    """The OpenTelemetry spans finished from now on (opentelemetry-sdk's in-memory exporter)."""

    def __init__(self) -> None:
        self._exporter = _span_exporter()
        self._exporter.clear()

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self._exporter.get_finished_spans() if span.name == name]

    def text(self) -> str:
        """Every finished span's name, attributes, status and events as one string, to look for secrets in."""
        spans = self._exporter.get_finished_spans()
        return repr([(s.name, dict(s.attributes or {}), s.status.description, s.events) for s in spans])


class PrometheusServer:
    """A real ``prometheus`` (Debian's package; ``scripts/bootstrap --with-node`` installs it) on a free
    loopback port, scraping ``targets`` (job name -> ``host:port``) at ``path`` every second with
    ``rule_files``, its config and storage in ``directory``. Fails, never skips, when it is missing."""

    def __init__(
        self, directory: Path, targets: dict[str, str], rule_files: tuple[Path, ...] = (), path: str = "/metrics"
    ) -> None:
        if shutil.which("prometheus") is None:
            raise RuntimeError("prometheus is missing: run scripts/bootstrap --with-node")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        scrapes = [{"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}
                   for job, target in targets.items()]  # fmt: skip
        document = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(path) for path in rule_files], "scrape_configs": scrapes}  # fmt: skip
        config.write_text(json.dumps(document))  # JSON is YAML
        self._argv = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        """Start it and wait (up to 30 s, for a loaded machine) until it reports ready."""
        self._process = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + 30
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus on port {self.port} did not start")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (the HTTP API's ``/api/v1/query``)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float:
        """The single sample ``expr`` evaluates to now (0 when it has none)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    def scraped(self, job: str) -> float:
        """The time of the newest scrape of ``job`` (0 before the first)."""
        return self.value(f'timestamp(up{{job="{job}"}})')  # of the selector itself: the sample's time

    def wait_for_scrape(self, job: str, seconds: float = 30) -> None:
        """Wait until ``job`` has been scraped after this call (its counters as of now are in)."""
        since, deadline = time.time(), time.monotonic() + seconds
        while self.scraped(job) <= since:  # a scrape that began after this call
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not scrape {job}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop it and wait for it to end."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Debian's chromium (scripts/bootstrap --with-node installs it; Playwright's own browser builds cannot be downloaded).
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, nothing of its own on the network (no updates, sync or field trials), as root (no sandbox), and
#: no host resolved but localhost and 127.0.0.1: only loopback is reached.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


@contextlib.contextmanager
def chromium_page(screenshots: Path | None = None, *, timeout: float = 15.0) -> Iterator[Page]:
    """A page of headless chromium (a fresh profile), Playwright waiting up to ``timeout`` seconds for each
    action; only loopback is reached (serve other hosts' files with ``page.route``, but note that while a
    route is set, Playwright answers CORS preflights itself). When the block raises, a screenshot goes into
    ``screenshots`` (default: the temporary directory) and its path into the exception's notes. Fails,
    never skips, without chromium."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap --with-node")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=timeout * 1000)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout * 1000)
            try:
                yield page
            except Exception as error:
                error.add_note(_screenshot(page, Path(screenshots or tempfile.gettempdir())))
                raise
        finally:
            browser.close()


def _screenshot(page: Page, directory: Path) -> str:
    """Save what ``page`` shows into ``directory``; say where (or why not)."""
    shot = directory / f"chromium-{uuid.uuid4().hex[:8]}.png"
    try:
        page.screenshot(path=shot, full_page=True)
    except PlaywrightError as error:
        return f"no screenshot of the page: {error.message}"
    return f"screenshot of the page: {shot}"


REPO = Path(__file__).resolve().parents[1]


def build_docs(site: Path, config: Path = REPO / "mkdocs.yml") -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site`` (never ``-q``: it hides the warnings strict counts)."""
    command = [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(  # noqa: S603 - our own venv's mkdocs
        command,
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


@contextlib.contextmanager
def serving_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory``'s files on a free loopback port (http.server in a thread); yield the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Requests are not logged."""

    handler = functools.partial(Quiet, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join()


@contextlib.contextmanager
def token_endpoint_realm(name: str, token: Callable[[Request], Awaitable[Response]]) -> Iterator[str]:
    """A realm ``name`` on loopback whose discovery document names one token endpoint, answered by
    ``token``; yields the realm's issuer URL."""

    async def discovery(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"issuer": f"{base}/realms/{name}", "token_endpoint": f"{base}/token"})

    routes = [
        Route(f"/realms/{name}/.well-known/openid-configuration", discovery),
        Route("/token", token, methods=["POST"]),
    ]
    with serve_app(Starlette(routes=routes)) as base_url:
        yield f"{base_url}/realms/{name}"
