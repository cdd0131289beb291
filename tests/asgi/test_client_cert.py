"""The client certificate at the ASGI boundary (RFC 8705 §3): the TLS extension, a proxy's header trusted
only from configured proxies, the three header formats, and refusals (400, never 500) of repeated or
malformed headers; end to end with a certificate-bound token."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI

from fastapi_kc_m2m import KeycloakAuth, KeycloakAuthMiddleware, Principal
from fastapi_kc_m2m.asgi.client_cert import MAX_CERT_HEADER_BYTES
from fastapi_kc_m2m.asgi.credentials import request_context
from fastapi_kc_m2m.errors import InvalidRequest
from fastapi_kc_m2m.settings import KeycloakSettings
from fastapi_kc_m2m.testing import TestIssuer
from tests.helpers import api_client, bearer, shared_pki

pytestmark = pytest.mark.anyio

PKI = shared_pki()
CERT_A, CERT_B = PKI.client, PKI.other_client
NGINX = quote(CERT_A.pem.decode(), safe="")  # what $ssl_client_escaped_cert holds
RFC9440 = ":" + base64.b64encode(CERT_A.der).decode() + ":"
XFCC = f'By=spiffe://b;Hash={hashlib.sha256(CERT_A.der).hexdigest()};Cert="{NGINX}";Subject="CN=machine-a,O=x"'


def settings(issuer: TestIssuer, fmt: str = "pem-urlencoded", header: str = "ssl-client-cert") -> KeycloakSettings:
    return issuer.settings(client_cert_header=header, client_cert_format=fmt, trusted_proxies="10.0.0.0/8,::1")


def scope(*headers: tuple[str, str], peer: str = "10.1.2.3", tls: Any = None) -> dict[str, Any]:
    raw = [(b"authorization", b"Bearer t"), *((name.encode(), value.encode()) for name, value in headers)]
    extensions = {"tls": tls} if tls else {}
    return {"type": "http", "headers": raw, "query_string": b"", "client": (peer, 443), "extensions": extensions}


@pytest.mark.parametrize(
    ("fmt", "header", "value"),
    [
        ("pem-urlencoded", "ssl-client-cert", NGINX),
        ("rfc9440", "client-cert", RFC9440),
        ("xfcc", "x-forwarded-client-cert", XFCC),
        ("xfcc", "x-forwarded-client-cert", f"Hash={hashlib.sha256(CERT_B.der).hexdigest()};Cert=x,{XFCC}"),
    ],
)
def test_each_format_from_a_trusted_proxy(issuer: TestIssuer, fmt: str, header: str, value: str) -> None:
    context = request_context(scope((header, value)), settings(issuer, fmt, header))
    assert context is not None
    assert context.client_certificate == CERT_A.der


@pytest.mark.parametrize("peer", ["192.168.0.1", "::2", "testclient", ""])
def test_a_header_from_any_other_peer_is_ignored(issuer: TestIssuer, peer: str) -> None:
    context = request_context(scope(("ssl-client-cert", "junk"), peer=peer), settings(issuer))
    assert context is not None
    assert context.client_certificate is None


def test_no_source_configured_ignores_the_header(issuer: TestIssuer) -> None:
    context = request_context(scope(("ssl-client-cert", NGINX)), issuer.settings())
    assert context is not None
    assert context.client_certificate is None


def test_the_tls_extension_comes_first(issuer: TestIssuer) -> None:
    tls = {"client_cert_chain": [CERT_B.pem.decode(), PKI.ca.read_text()]}
    for configured in (issuer.settings(), settings(issuer)):
        context = request_context(scope(("ssl-client-cert", NGINX), tls=tls), configured)
        assert context is not None
        assert context.client_certificate == CERT_B.der


@pytest.mark.parametrize(
    ("fmt", "header", "values"),
    [
        ("pem-urlencoded", "ssl-client-cert", [NGINX, NGINX]),
        ("pem-urlencoded", "ssl-client-cert", ["-----BEGIN CERTIFICATE-----%0Aabc"]),
        ("pem-urlencoded", "ssl-client-cert", ["x" * (MAX_CERT_HEADER_BYTES + 1)]),
        ("rfc9440", "client-cert", [RFC9440[1:]]),
        ("rfc9440", "client-cert", [":not base64!:"]),
        ("rfc9440", "client-cert", [":" + base64.b64encode(b"not DER").decode() + ":"]),
        ("xfcc", "x-forwarded-client-cert", [XFCC.replace("Hash=", "Hash=00")]),
        ("xfcc", "x-forwarded-client-cert", [f"Hash={hashlib.sha256(CERT_A.der).hexdigest()}"]),
        ("xfcc", "x-forwarded-client-cert", [XFCC + ";Hash=ab"]),
        ("xfcc", "x-forwarded-client-cert", [XFCC + ","]),
        ("xfcc", "x-forwarded-client-cert", ['Cert="unterminated']),
    ],
)
def test_repeated_or_malformed_headers_are_invalid_requests(
    issuer: TestIssuer, fmt: str, header: str, values: list[str]
) -> None:
    with pytest.raises(InvalidRequest):
        request_context(scope(*((header, value) for value in values)), settings(issuer, fmt, header))


def test_a_malformed_tls_extension_certificate_is_an_invalid_request(issuer: TestIssuer) -> None:
    with pytest.raises(InvalidRequest):
        request_context(scope(tls={"client_cert_chain": ["junk"]}), issuer.settings())


def bound_app(auth: KeycloakAuth) -> FastAPI:
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders")
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    return app


async def test_end_to_end_through_the_middleware(issuer: TestIssuer) -> None:
    token = issuer.token(cnf={"x5t#S256": CERT_A.x5t})
    proxy = {"client_cert_header": "ssl-client-cert", "client_cert_format": "pem-urlencoded"}
    async with issuer.auth(**proxy, trusted_proxies="10.0.0.1") as auth:
        app = bound_app(auth)
        async with api_client(app, peer=("10.0.0.1", 1)) as proxied, api_client(app, peer=("10.0.0.2", 1)) as direct:
            assert (await proxied.get("/orders", headers=bearer(token) | {"ssl-client-cert": NGINX})).status_code == 200
            other = quote(CERT_B.pem.decode(), safe="")
            refused = await proxied.get("/orders", headers=bearer(token) | {"ssl-client-cert": other})
            assert (refused.status_code, refused.headers["www-authenticate"].count("invalid_token")) == (401, 1)
            malformed = await proxied.get("/orders", headers=bearer(token) | {"ssl-client-cert": "%ZZ"})
            assert (malformed.status_code, malformed.json()["error"]) == (400, "invalid_request")
            forged = await direct.get("/orders", headers=bearer(token) | {"ssl-client-cert": NGINX})
            assert forged.status_code == 401
