"""Machine A over mutual TLS (RFC 8705): certificate client authentication and certificate-bound tokens,
with real TLS handshakes on loopback against the test issuer served over HTTPS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastapi_kc_m2m._jose.jws import parse
from fastapi_kc_m2m._jose.x5t import certificate_thumbprint
from fastapi_kc_m2m.client import ClientCredentialsAuth, ClientCredentialsError
from fastapi_kc_m2m.testing import TestIssuer, serve_app
from tests.helpers import Certificate, Pki, make_pki

pytestmark = pytest.mark.anyio

SECRET = "mtls-s3cret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def kc(pki: Pki) -> Iterator[TestIssuer]:
    with TestIssuer.serving(tls=pki.server_files) as issuer:
        issuer.register_client("machine-a", tls_subject="CN=machine-a")  # no secret, no key: certificate only
        issuer.register_client("billing", secret=SECRET)
        yield issuer


def by_certificate(kc: TestIssuer, pki: Pki, client: Certificate) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        "machine-a", issuer=kc.issuer, client_cert=client, verify=ssl.create_default_context(cafile=pki.ca)
    )


def confirmation(token: str) -> object:
    return parse(token).payload.get("cnf")


def test_a_certificate_alone_gets_a_token_bound_to_it_from_the_mtls_alias(kc: TestIssuer, pki: Pki) -> None:
    auth = by_certificate(kc, pki, pki.client)
    try:
        token = auth.get_token()
    finally:
        auth.close()
    alias = kc.discovery_document()["mtls_endpoint_aliases"]["token_endpoint"]
    assert auth.token_endpoint == alias != kc.discovery_document()["token_endpoint"]
    assert confirmation(token.value) == {"x5t#S256": pki.client.x5t}
    assert parse(token.value).payload["azp"] == "machine-a"


async def test_a_certificate_alone_gets_a_bound_token_async(kc: TestIssuer, pki: Pki) -> None:
    auth = by_certificate(kc, pki, pki.client)
    try:
        token = await auth.aget_token()
    finally:
        await auth.aclose()
    assert auth.token_endpoint == kc.discovery_document()["mtls_endpoint_aliases"]["token_endpoint"]
    assert confirmation(token.value) == {"x5t#S256": pki.client.x5t}


def test_another_certificate_of_the_ca_is_not_the_registered_client(kc: TestIssuer, pki: Pki) -> None:
    auth = by_certificate(kc, pki, pki.other_client)
    with pytest.raises(ClientCredentialsError) as caught:
        auth.get_token()
    auth.close()
    assert caught.value.error == "invalid_client"
    assert caught.value.status_code == 401


def test_without_a_certificate_the_handshake_fails_naming_the_step(kc: TestIssuer, pki: Pki) -> None:
    auth = ClientCredentialsAuth(
        "billing", issuer=kc.issuer, client_secret=SECRET, verify=ssl.create_default_context(cafile=pki.ca)
    )
    with pytest.raises(ClientCredentialsError) as caught:
        auth.get_token()
    auth.close()
    assert caught.value.error == "network_error"
    assert f"discovery at {kc.issuer}/.well-known/openid-configuration failed" in str(caught.value)


async def test_without_a_certificate_the_token_request_fails_naming_the_step(kc: TestIssuer, pki: Pki) -> None:
    endpoint = kc.discovery_document()["token_endpoint"]
    auth = ClientCredentialsAuth(
        "billing", token_endpoint=endpoint, client_secret=SECRET, verify=ssl.create_default_context(cafile=pki.ca)
    )
    with pytest.raises(ClientCredentialsError) as caught:
        await auth.aget_token()
    await auth.aclose()
    assert caught.value.error == "network_error"
    assert f"token request at {endpoint} failed" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_secret_over_mutual_tls_authenticates_and_the_token_is_bound(kc: TestIssuer, pki: Pki) -> None:
    auth = ClientCredentialsAuth(
        "billing",
        issuer=kc.issuer,
        client_secret=SECRET,
        client_cert=pki.client,
        verify=ssl.create_default_context(cafile=pki.ca),
    )
    try:
        token = auth.get_token()
    finally:
        auth.close()
    assert parse(token.value).payload["azp"] == "billing"  # "billing" has no tls_subject: the secret did it
    assert confirmation(token.value) == {"x5t#S256": pki.client.x5t}


def test_the_callers_own_client_presents_the_same_certificate_to_the_api(kc: TestIssuer, pki: Pki) -> None:
    """What the README tells: one SSL context with the certificate, for the auth and the caller's client."""

    async def seen(request: Request) -> JSONResponse:
        chain = request.scope["extensions"]["tls"]["client_cert_chain"]
        der = ssl.PEM_cert_to_DER_cert(chain[0])
        return JSONResponse(
            {"x5t#S256": certificate_thumbprint(der), "authorization": request.headers["authorization"]}
        )

    context = pki.context(pki.client)
    auth = ClientCredentialsAuth("machine-a", issuer=kc.issuer, client_cert=pki.client, verify=context)
    with (
        serve_app(Starlette(routes=[Route("/orders", seen)]), tls=pki.server_files) as api,
        httpx.Client(verify=context, auth=auth) as client,
    ):
        answer = client.get(f"{api}/orders").json()
    auth.close()
    token = answer["authorization"].removeprefix("Bearer ")
    assert confirmation(token) == {"x5t#S256": answer["x5t#S256"]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "tls_client_auth", "client_secret": SECRET}, "tls_client_auth needs client_cert alone"),
        ({"method": "self_signed_tls_client_auth"}, "self_signed_tls_client_auth needs client_cert alone"),
        ({}, "give exactly one of client_secret and private_key, or client_cert alone"),
    ],
)
def test_certificate_methods_need_the_certificate_alone(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentialsAuth("machine-a", token_endpoint="https://kc.test/token", **options)  # type: ignore[arg-type]


def test_a_key_that_is_not_the_certificates_is_refused_without_showing_either(pki: Pki) -> None:
    with pytest.raises(ValueError, match="client_cert: not a PEM certificate and its matching private key") as caught:
        ClientCredentialsAuth(
            "machine-a", token_endpoint="https://kc.test/token", client_cert=(pki.client.cert, pki.other_client.key)
        )
    assert "PRIVATE" not in str(caught.value)
