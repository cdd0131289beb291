"""The mTLS drill (RFC 8705 §3): Machine B under uvicorn behind a real nginx (Debian's package,
``scripts/bootstrap --with-node``) terminating mutual TLS with certificates generated per run, and
forwarding the client certificate in ``ssl-client-cert`` (``nginx/mtls.conf.template``, the file
docker-compose.yml's nginx service runs).

A token bound to certificate A passes through nginx with A, is refused (401) with B, nginx refuses a
caller without a certificate, and a forged ``ssl-client-cert`` sent straight to uvicorn is ignored
(nginx connects from 127.0.0.2, the only trusted proxy; the direct caller is 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from fastapi_kc_m2m import KeycloakAuthMiddleware, Principal
from fastapi_kc_m2m.testing import TestIssuer
from fastapi_kc_m2m.testing.serving import serve_app
from tests.helpers import Certificate, CertificateAuthority, bearer, free_port, nginx_mtls_config

PROXY_ADDRESS = "127.0.0.2"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture(scope="module")
def api(issuer: TestIssuer) -> Iterator[str]:
    """Machine B under uvicorn on loopback, trusting the certificate header from nginx's address only."""
    auth = issuer.auth(
        client_cert_header="ssl-client-cert", client_cert_format="pem-urlencoded", trusted_proxies=PROXY_ADDRESS
    )
    app = FastAPI(lifespan=auth.lifespan)
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders")
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    with serve_app(app, lifespan="on") as base_url:
        yield base_url


def nginx_config(tmp: Path, ca: CertificateAuthority, listen: str, upstream: str) -> Path:
    """``nginx/mtls.conf.template`` with this run's prefix, certificates and ports."""
    server_cert, server_key = ca.issue("localhost", server=True).write(tmp, "server")
    client_ca = tmp / "client-ca.pem"
    client_ca.write_bytes(ca.root.pem)
    values = {"PREFIX": str(tmp), "LISTEN": listen, "SERVER_CERT": server_cert, "SERVER_KEY": server_key,
              "CLIENT_CA": str(client_ca), "UPSTREAM": upstream, "PROXY_ADDRESS": PROXY_ADDRESS}  # fmt: skip
    path = tmp / "nginx.conf"
    path.write_text(nginx_mtls_config({f"MTLS_{name}": value for name, value in values.items()}))
    return path


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority, api: str) -> Iterator[str]:
    """nginx in the foreground (``daemon off``) on a free loopback port; stopped whatever happens."""
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        raise RuntimeError("nginx is missing: run scripts/bootstrap --with-node")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = nginx_config(tmp, ca, f"127.0.0.1:{port}", api.removeprefix("http://"))
    argv = [nginx, "-p", str(tmp), "-c", str(config), "-e", str(tmp / "error.log")]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        _wait_for_port(process, port, tmp / "error.log")
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


def client(ca: CertificateAuthority, tmp: Path, cert: Certificate | None) -> httpx.Client:
    """An HTTPS client trusting the run's CA and presenting ``cert`` (none if None)."""
    context = ssl.create_default_context(cadata=ca.root.pem.decode())
    if cert is not None:
        cert_path, key_path = cert.write(tmp, f"client-{cert.x5t[:8]}")
        context.load_cert_chain(cert_path, key_path)
    return httpx.Client(verify=context, timeout=10)


@pytest.fixture(scope="module")
def certs(ca: CertificateAuthority) -> tuple[Certificate, Certificate]:
    return ca.issue("machine-a"), ca.issue("machine-b")


def test_bound_token_passes_with_its_certificate(
    proxy: str, ca: CertificateAuthority, issuer: TestIssuer, certs: Any, tmp_path: Path
) -> None:
    cert_a, _ = certs
    token = issuer.token(cnf={"x5t#S256": cert_a.x5t})
    with client(ca, tmp_path, cert_a) as http:
        response = http.get(f"{proxy}/orders", headers=bearer(token))
    assert (response.status_code, response.json()) == (200, {"client": "machine-a"})


def test_another_certificate_is_refused_even_with_a_forged_header(
    proxy: str, ca: CertificateAuthority, issuer: TestIssuer, certs: Any, tmp_path: Path
) -> None:
    cert_a, cert_b = certs
    token = issuer.token(cnf={"x5t#S256": cert_a.x5t})
    forged = {"ssl-client-cert": quote(cert_a.pem.decode(), safe="")}  # nginx replaces the client's copy
    with client(ca, tmp_path, cert_b) as http:
        for headers in (bearer(token), bearer(token) | forged):
            response = http.get(f"{proxy}/orders", headers=headers)
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_without_a_client_certificate_nginx_refuses(
    proxy: str, ca: CertificateAuthority, issuer: TestIssuer, certs: Any, tmp_path: Path
) -> None:
    token = issuer.token(cnf={"x5t#S256": certs[0].x5t})
    with client(ca, tmp_path, None) as http:
        try:
            status = http.get(f"{proxy}/orders", headers=bearer(token)).status_code
        except httpx.TransportError:  # a TLS 1.3 server may end the handshake instead
            status = None
    assert status in (400, None)


def test_a_forged_header_straight_to_uvicorn_is_ignored(api: str, issuer: TestIssuer, certs: Any) -> None:
    cert_a, _ = certs
    token = issuer.token(cnf={"x5t#S256": cert_a.x5t})
    forged = {"ssl-client-cert": quote(cert_a.pem.decode(), safe="")}
    response = httpx.get(f"{api}/orders", headers=bearer(token) | forged, timeout=10)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
