"""The mTLS drill (RFC 8705 §3): Machine B under uvicorn behind a real nginx (Debian's package,
``scripts/bootstrap --with-node``) terminating mutual TLS with certificates generated per run, and
forwarding the client certificate in ``ssl-client-cert`` (``nginx/mtls.conf.template``, the one
docker-compose.yml runs).

A token bound to certificate A passes through nginx with A, is refused (401) with B, nginx refuses a
caller without a certificate, and a forged ``ssl-client-cert`` sent straight to uvicorn is ignored
(nginx connects from 127.0.0.2, the only trusted proxy; the direct caller is 127.0.0.1). The nginx harness
is :func:`tests.helpers.nginx_mtls`, shared with the oidc-provider interop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from fastapi_kc_m2m import KeycloakAuthMiddleware, Principal
from fastapi_kc_m2m.testing import TestIssuer
from fastapi_kc_m2m.testing.serving import serve_app
from tests.helpers import NGINX_PROXY_ADDRESS, Certificate, Pki, bearer, make_pki, nginx_mtls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture(scope="module")
def api(issuer: TestIssuer) -> Iterator[str]:
    """Machine B under uvicorn on loopback, trusting the certificate header from nginx's address only."""
    auth = issuer.auth(
        client_cert_header="ssl-client-cert", client_cert_format="pem-urlencoded", trusted_proxies=NGINX_PROXY_ADDRESS
    )
    app = FastAPI(lifespan=auth.lifespan)
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders")
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    with serve_app(app, lifespan="on") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, pki: Pki, api: str) -> Iterator[str]:
    with nginx_mtls(tmp_path_factory.mktemp("nginx"), pki, api) as base_url:
        yield base_url


def client(pki: Pki, cert: Certificate | None) -> httpx.Client:
    """An HTTPS client trusting the run's CA and presenting ``cert`` (none if None)."""
    return httpx.Client(verify=pki.context(cert), timeout=10)


@pytest.fixture(scope="module")
def certs(pki: Pki) -> tuple[Certificate, Certificate]:
    return pki.client, pki.other_client


def test_bound_token_passes_with_its_certificate(proxy: str, pki: Pki, issuer: TestIssuer, certs: Any) -> None:
    cert_a, _ = certs
    token = issuer.token(cnf={"x5t#S256": cert_a.x5t})
    with client(pki, cert_a) as http:
        response = http.get(f"{proxy}/orders", headers=bearer(token))
    assert (response.status_code, response.json()) == (200, {"client": "machine-a"})


def test_another_certificate_is_refused_even_with_a_forged_header(
    proxy: str, pki: Pki, issuer: TestIssuer, certs: Any
) -> None:
    cert_a, cert_b = certs
    token = issuer.token(cnf={"x5t#S256": cert_a.x5t})
    forged = {"ssl-client-cert": quote(cert_a.pem.decode(), safe="")}  # nginx replaces the client's copy
    with client(pki, cert_b) as http:
        for headers in (bearer(token), bearer(token) | forged):
            response = http.get(f"{proxy}/orders", headers=headers)
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_without_a_client_certificate_nginx_refuses(proxy: str, pki: Pki, issuer: TestIssuer, certs: Any) -> None:
    token = issuer.token(cnf={"x5t#S256": certs[0].x5t})
    with client(pki, None) as http:
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
