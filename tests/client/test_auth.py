"""Machine A's ClientCredentialsAuth against the test issuer's token endpoint on loopback (RFC 6749 §4.4)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from fastapi_kc_m2m._idp.client_auth import load_private_key
from fastapi_kc_m2m.client import ClientCredentialsAuth, ClientCredentialsError, jwks_endpoint, key_id
from fastapi_kc_m2m.client.auth import _access_token
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, generate_key, loopback_socket
from tests.helpers import api_client, token_endpoint_realm

pytestmark = pytest.mark.anyio

SECRET = "s3cret-do-not-leak"
API = "http://api.test/orders"


class Api:
    """The protected API as an httpx transport handler: records tokens, answers 401 to refused ones."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.refused: set[str] = set()
        self.refuse_all = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.tokens.append(token)
        if self.refuse_all or token in self.refused:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json={"ok": True})

    def client(self, auth: ClientCredentialsAuth) -> httpx.Client:
        return httpx.Client(auth=auth, transport=httpx.MockTransport(self))

    def async_client(self, auth: ClientCredentialsAuth) -> httpx.AsyncClient:
        return httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(self))


@pytest.fixture(scope="module")
def kc() -> Iterator[TestIssuer]:
    """One loopback issuer for the module, with the clients most tests use."""
    with TestIssuer.serving() as issuer:
        issuer.register_client("machine-a", secret=SECRET)
        issuer.register_client("no-service-account", secret=SECRET)
        issuer.no_service_account.add("no-service-account")
        yield issuer


@pytest.fixture
def issuer(kc: TestIssuer) -> TestIssuer:
    kc.requests.clear()
    kc.heal()
    return kc


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def make_auth() -> Iterator[Any]:
    """``make_auth(**options)``: a ClientCredentialsAuth for sync use, closed after the test."""
    made: list[ClientCredentialsAuth] = []

    def make(client_id: str = "machine-a", **options: Any) -> ClientCredentialsAuth:
        auth = ClientCredentialsAuth(client_id, **options)
        made.append(auth)
        return auth

    yield make
    for auth in made:
        auth.close()


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


# ------------------------------------------------------------------ every client authentication method
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_secret_methods_get_a_token_for_the_client(issuer: TestIssuer, make_auth: Any, api: Api, method: Any) -> None:
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET, method=method)
    with api.client(auth) as client:
        assert client.get(API).status_code == 200
    claims = claims_of(api.tokens[0])
    assert (claims["azp"], claims["iss"], claims["aud"]) == ("machine-a", issuer.issuer, issuer.audience)
    assert issuer.requests["token"] == 1
    assert issuer.requests["discovery"] == 1  # the token endpoint came from discovery


def key_sources(tmp_path: Path) -> Iterator[tuple[str, Any, Any, dict[str, Any]]]:
    """(algorithm, private key as given, public key registered, options) for each way to give a key."""
    rsa = generate_key("RS256")
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(rsa.as_pem(private=True))
    yield "RS256", str(pem_file), rsa, {}
    yield "PS256", rsa.as_pem(private=True), rsa, {"algorithm": "PS256"}
    ec = generate_key("ES256")
    yield "ES256", ec.as_dict(private=True), ec, {}
    yield "ES256", json.dumps(ec.as_dict(private=True)), ec, {"algorithm": "ES256"}


@pytest.mark.parametrize("index", range(4))
def test_private_key_jwt_from_pem_file_pem_bytes_and_jwk(
    issuer: TestIssuer, make_auth: Any, tmp_path: Path, index: int
) -> None:
    algorithm, source, public, options = list(key_sources(tmp_path))[index]
    client_id = f"jwt-client-{index}"
    issuer.register_client(client_id, public_key=public)
    auth = make_auth(client_id, issuer=issuer.issuer, private_key=source, **options)
    token = auth.get_token()
    assert claims_of(token.value)["azp"] == client_id
    assert auth._credentials._header["alg"] == algorithm  # type: ignore[attr-defined]


def test_assertion_audience_is_the_token_endpoint_without_an_issuer(issuer: TestIssuer, make_auth: Any) -> None:
    key = generate_key("RS256")
    issuer.register_client("by-endpoint", public_key=key)
    endpoint = issuer.discovery_document()["token_endpoint"]
    auth = make_auth("by-endpoint", token_endpoint=endpoint, private_key=key)
    assert claims_of(auth.get_token().value)["azp"] == "by-endpoint"
    assert issuer.requests["discovery"] == 0


def test_the_kid_header_names_the_key(issuer: TestIssuer, make_auth: Any) -> None:
    key = generate_key("ES256", kid="next-2026")
    issuer.register_client("with-kid", public_key=key)
    good = make_auth("with-kid", issuer=issuer.issuer, private_key=key.as_dict(private=True))
    assert good.get_token().value
    wrong = make_auth("with-kid", issuer=issuer.issuer, private_key=key, key_id="other")
    with pytest.raises(ClientCredentialsError) as refused:
        wrong.get_token()
    assert refused.value.error == "invalid_client"


def test_the_requested_scope_is_sent(issuer: TestIssuer, make_auth: Any) -> None:
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET, scope=["openid", "phone"])
    token = auth.get_token()
    assert token.scope == "openid phone profile email"
    assert claims_of(token.value)["scope"] == "openid phone profile email"


async def test_async_client_gets_and_presents_a_token(issuer: TestIssuer, api: Api) -> None:
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET)
    async with api.async_client(auth) as client:
        assert (await client.get(API)).status_code == 200
    async with issuer.auth() as verifier:
        principal = await verifier.verify(api.tokens[0])
    assert principal.client_id == "machine-a"
    assert (await auth.aget_token()).value == api.tokens[0]
    await auth.aclose()


# ------------------------------------------------------------------ token endpoint errors (RFC 6749 §5.2)
@pytest.mark.parametrize(
    ("client_id", "options", "error", "status"),
    [
        ("machine-a", {"client_secret": "wrong"}, "invalid_client", 401),
        (
            "machine-a",
            {"client_secret": SECRET, "method": "client_secret_post", "scope": "admin"},
            "invalid_scope",
            400,
        ),
        ("no-service-account", {"client_secret": SECRET}, "unauthorized_client", 400),
        ("unknown", {"private_key": generate_key("RS256")}, "invalid_client", 401),
    ],
)
def test_token_endpoint_errors_raise_with_the_oauth_code_only(
    issuer: TestIssuer, make_auth: Any, api: Api, client_id: str, options: dict[str, Any], error: str, status: int
) -> None:
    auth = make_auth(client_id, issuer=issuer.issuer, **options)
    with api.client(auth) as client, pytest.raises(ClientCredentialsError) as raised:
        client.get(API)
    assert (raised.value.error, raised.value.status_code) == (error, status)
    assert SECRET not in str(raised.value)
    assert "client_assertion" not in str(raised.value)
    assert api.tokens == []  # the API was never called without a token


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_id": "machine-a", "client_secret": SECRET}, "invalid_request"),
        ({"grant_type": "password", "client_id": "machine-a", "client_secret": SECRET}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "machine-a"}, "invalid_client"),
    ],
)
def test_the_test_issuer_refuses_malformed_grants(issuer: TestIssuer, form: dict[str, str], error: str) -> None:
    endpoint = issuer.discovery_document()["token_endpoint"]
    response = httpx.post(endpoint, data=form)
    assert response.json() == {"error": error}
    assert response.status_code == (401 if error == "invalid_client" else 400)
    assert issuer.requests["token"] == 1


def test_a_repeated_parameter_is_an_invalid_request(issuer: TestIssuer) -> None:
    endpoint = issuer.discovery_document()["token_endpoint"]
    body = f"grant_type=client_credentials&client_id=machine-a&client_secret={SECRET}&scope=openid&scope=phone"
    response = httpx.post(endpoint, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (response.status_code, response.json()) == (400, {"error": "invalid_request"})


def test_an_unreachable_token_endpoint_is_a_network_error(make_auth: Any) -> None:
    with loopback_socket() as closed:  # bound, never listening: connections are refused
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/x/protocol/openid-connect/token"
        auth = make_auth(token_endpoint=endpoint, client_secret=SECRET)
        with pytest.raises(ClientCredentialsError) as raised:
            auth.get_token()
    assert raised.value.error == "network_error"
    assert raised.value.status_code is None
    assert str(raised.value).endswith(": ConnectError")


async def test_a_hanging_token_endpoint_times_out_as_a_network_error(issuer: TestIssuer) -> None:
    issuer.fail("token", "timeout")
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET, timeout=0.2)
    with pytest.raises(ClientCredentialsError) as raised:
        await auth.aget_token()
    endpoint = issuer.discovery_document()["token_endpoint"]
    assert raised.value.error == "network_error"
    assert re.search(rf"token request at {re.escape(endpoint)} failed after \d+\.\d\d s: timed out$", str(raised.value))
    await auth.aclose()


@pytest.mark.parametrize(("mode", "status"), [("html", 200), ("status", 500)])
def test_an_unusable_answer_is_an_invalid_response(issuer: TestIssuer, make_auth: Any, mode: Any, status: int) -> None:
    issuer.fail("token", mode)
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    assert raised.value.status_code == status
    assert raised.value.error == ("invalid_response" if mode == "html" else "unknown_error")


def test_a_wrong_realm_names_discovery_its_url_and_the_status(issuer: TestIssuer, make_auth: Any) -> None:
    wrong = issuer.issuer.replace("/realms/test", "/realms/nope")
    with pytest.raises(ValueError, match="user name or password") as refused:  # never sent, never repeated
        make_auth(issuer=wrong.replace("://", f"://user:{SECRET}@"), client_secret=SECRET)
    assert SECRET not in str(refused.value)
    auth = make_auth(issuer=wrong, client_secret=SECRET)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    url = re.escape(f"{wrong}/.well-known/openid-configuration")
    assert raised.value.error == "invalid_response"
    expected = rf"discovery at {url} answered HTTP 404 after \d+\.\d\d s: is the realm right\?$"
    assert re.search(expected, str(raised.value))
    assert SECRET not in str(raised.value)


def test_a_refused_token_request_names_the_token_endpoint(issuer: TestIssuer, make_auth: Any) -> None:
    auth = make_auth(issuer=issuer.issuer, client_secret="wrong-" + SECRET)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    endpoint = re.escape(issuer.discovery_document()["token_endpoint"])
    assert raised.value.error == "invalid_client"
    assert re.search(rf"token request at {endpoint} answered HTTP 401 after \d+\.\d\d s$", str(raised.value))
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("endpoint", ["discovery", "token"])
async def test_an_oversized_answer_is_an_invalid_response(issuer: TestIssuer, endpoint: Any) -> None:
    issuer.fail(endpoint, "oversized")  # 1 MiB, over the 64 KiB default cap
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET)
    with pytest.raises(ClientCredentialsError) as raised:
        await auth.aget_token()
    await auth.aclose()
    assert raised.value.error == "invalid_response"
    assert str(raised.value).endswith(": body too large")


def test_an_oversized_token_answer_is_an_invalid_response_for_sync_clients(issuer: TestIssuer, make_auth: Any) -> None:
    issuer.fail("token", "oversized")
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET, max_response_bytes=1024)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    assert (raised.value.error, str(raised.value).rsplit(": ", 1)[1]) == ("invalid_response", "body too large")


@pytest.fixture(scope="module")
def drip() -> Iterator[str]:
    """A realm whose discovery answers at once and whose token endpoint drips one byte per 0.2 s."""

    async def token(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b" "
                await asyncio.sleep(0.2)

        return StreamingResponse(body(), media_type="application/json")

    with token_endpoint_realm("drip", token) as issuer:
        yield issuer


def test_a_slow_drip_is_cut_at_the_deadline_for_sync_clients(drip: str, make_auth: Any) -> None:
    auth = make_auth(issuer=drip, client_secret=SECRET, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    assert time.monotonic() - started < 1.0 + 1.5  # the drip lasts 20 s
    assert raised.value.error == "network_error"
    assert "token request at" in str(raised.value)


async def test_a_slow_drip_is_cut_at_the_deadline_for_async_clients(drip: str) -> None:
    auth = ClientCredentialsAuth("machine-a", issuer=drip, client_secret=SECRET, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ClientCredentialsError) as raised:
        await auth.aget_token()
    await auth.aclose()
    assert time.monotonic() - started < 1.0 + 1.5
    assert raised.value.error == "network_error"
    assert "token request at" in str(raised.value)


def test_discovery_naming_another_issuer_is_refused(issuer: TestIssuer, make_auth: Any) -> None:
    claimed = issuer.issuer.replace("/realms/test", "/realms/test/")  # same document, another issuer string
    auth = make_auth(issuer=claimed + "x", client_secret=SECRET)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    assert (raised.value.error, issuer.requests["token"]) == ("invalid_response", 0)


def response(status: int = 200, **body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (response(access_token="a b\r\nX-Evil: 1", token_type="Bearer", expires_in=300), "no usable access_token"),
        (response(access_token="abc", token_type="DPoP", expires_in=300), "token_type is not Bearer"),
        (response(access_token="abc", token_type="Bearer", expires_in=-5), "expires_in is not a positive number"),
        (response(access_token="abc", token_type="Bearer", expires_in=True), "expires_in is not a positive number"),
        (response(400, error="bad\ncode", error_description=SECRET), "no OAuth error code"),
    ],
)
def test_token_responses_are_checked_before_use(answer: httpx.Response, detail: str) -> None:
    with pytest.raises(ClientCredentialsError) as raised:
        _access_token(answer, 0.0, "token request")
    assert raised.value.error == "invalid_response"
    assert str(raised.value).endswith(detail)
    assert SECRET not in str(raised.value)


def test_the_servers_error_description_is_not_repeated() -> None:
    answer = response(401, error="invalid_client", error_description=f"bad secret {SECRET}")
    with pytest.raises(ClientCredentialsError) as raised:
        _access_token(answer, 0.0, "token request")
    assert raised.value.error == "invalid_client"
    assert SECRET not in str(raised.value)


def test_a_missing_expires_in_means_a_short_default_life() -> None:
    token = _access_token(response(access_token="abc", token_type="bearer"), 1000.0, "token request")
    assert (token.expires_at, token.refresh_at) == (1060.0, 1054.0)


# ------------------------------------------------------------------ secrets stay secret
def test_repr_and_logs_show_no_secret_assertion_or_token(
    issuer: TestIssuer, make_auth: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = generate_key("RS256")
    issuer.register_client("logged", public_key=key)
    secret_auth = make_auth(issuer=issuer.issuer, client_secret=SECRET)
    key_auth = make_auth("logged", issuer=issuer.issuer, private_key=key)
    with caplog.at_level(logging.DEBUG):
        tokens = [secret_auth.get_token(), key_auth.get_token()]
    shown = repr(secret_auth) + repr(key_auth) + repr(tokens) + caplog.text + repr(key_auth._credentials)
    assert "machine-a" in repr(secret_auth)
    assert SECRET not in shown
    assert all(token.value not in shown for token in tokens)
    assert "eyJhbGci" not in shown  # no JWT at all (a header starting {"alg"): neither a token nor an assertion
    assert str(key.as_dict(private=True)["d"]) not in shown


# ------------------------------------------------------------------ caching, sharing, refreshing
async def test_200_concurrent_async_requests_share_one_token_fetch(issuer: TestIssuer, api: Api) -> None:
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET)
    async with api.async_client(auth) as client:
        responses = await asyncio.gather(*(client.get(API) for _ in range(200)))
    await auth.aclose()
    assert {r.status_code for r in responses} == {200}
    assert issuer.requests["token"] == 1
    assert len(set(api.tokens)) == 1


def test_concurrent_threads_share_one_token_fetch(issuer: TestIssuer, make_auth: Any, api: Api) -> None:
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET)
    with api.client(auth) as client, ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(lambda _: client.get(API).status_code, range(200)))
    assert set(statuses) == {200}
    assert issuer.requests["token"] == 1


@pytest.fixture
def frozen() -> Iterator[tuple[TestIssuer, FrozenClock]]:
    clock = FrozenClock()
    with TestIssuer.serving(clock=clock) as issuer:
        issuer.register_client("machine-a", secret=SECRET)
        yield issuer, clock


async def test_a_token_is_refreshed_exactly_once_ahead_of_expiry(
    frozen: tuple[TestIssuer, FrozenClock], api: Api
) -> None:
    issuer, clock = frozen
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET, clock=clock)
    async with api.async_client(auth) as client:
        await client.get(API)
        clock.advance(300 - 30 - 1)  # 300 s tokens: refreshed 30 s (min(30, 10 %)) before expiry
        await asyncio.gather(*(client.get(API) for _ in range(20)))
        assert issuer.requests["token"] == 1
        clock.advance(1)
        await asyncio.gather(*(client.get(API) for _ in range(50)))
    await auth.aclose()
    assert issuer.requests["token"] == 2
    assert len(set(api.tokens)) == 2
    assert set(api.tokens[-50:]) == {api.tokens[-1]} != {api.tokens[0]}


def test_short_lived_tokens_refresh_at_ninety_percent(frozen: tuple[TestIssuer, FrozenClock], make_auth: Any) -> None:
    issuer, clock = frozen
    issuer.token_lifetime = 60
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET, clock=clock)
    first = auth.get_token()
    clock.advance(53.9)
    assert auth.get_token() is first
    clock.advance(0.1)
    assert auth.get_token() is not first
    assert issuer.requests["token"] == 2


def test_a_401_refreshes_once_and_retries_once(issuer: TestIssuer, make_auth: Any, api: Api) -> None:
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET)
    api.refused.add(auth.get_token().value)  # e.g. revoked, or the API restarted with new keys
    with api.client(auth) as client:
        response = client.post(API, json={"order": 1})
    assert response.status_code == 200
    assert issuer.requests["token"] == 2
    assert len(api.tokens) == 2
    assert api.tokens[0] != api.tokens[1]


async def test_a_second_401_is_returned_without_another_retry(issuer: TestIssuer, api: Api) -> None:
    api.refuse_all = True
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET)
    async with api.async_client(auth) as client:
        response = await client.get(API)
    await auth.aclose()
    assert response.status_code == 401
    assert (len(api.tokens), issuer.requests["token"]) == (2, 2)


def test_a_token_fetched_for_a_401_is_not_refreshed_for_another_401_for_a_while(
    frozen: tuple[TestIssuer, FrozenClock], make_auth: Any, api: Api
) -> None:
    issuer, clock = frozen
    api.refuse_all = True  # e.g. the API does not accept this client at all
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET, clock=clock)
    with api.client(auth) as client:
        statuses = {client.get(API).status_code for _ in range(100)}
        assert (statuses, issuer.requests["token"], len(api.tokens)) == ({401}, 2, 101)
        clock.advance(5)  # RETRY_401_AFTER: the refreshed token is old enough to be refreshed again
        client.get(API)
    assert issuer.requests["token"] == 3


async def test_concurrent_401s_share_one_refresh(issuer: TestIssuer, api: Api) -> None:
    auth = ClientCredentialsAuth("machine-a", issuer=issuer.issuer, client_secret=SECRET)
    api.refused.add((await auth.aget_token()).value)
    async with api.async_client(auth) as client:
        responses = await asyncio.gather(*(client.get(API) for _ in range(30)))
    await auth.aclose()
    assert {r.status_code for r in responses} == {200}
    assert issuer.requests["token"] == 2


def test_a_streamed_body_is_not_replayed_after_a_401(issuer: TestIssuer, make_auth: Any, api: Api) -> None:
    auth = make_auth(issuer=issuer.issuer, client_secret=SECRET)
    api.refused.add(auth.get_token().value)
    with api.client(auth) as client:
        response = client.post(API, content=iter([b"chunk-1", b"chunk-2"]))
    assert response.status_code == 401
    assert (len(api.tokens), issuer.requests["token"]) == (1, 1)


# ------------------------------------------------------------------ configuration mistakes
def _weak_rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused on purpose
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client_secret": SECRET}, "give issuer"),
        ({"issuer": "kc.example/realms/x", "client_secret": SECRET}, r"absolute http\(s\) URL"),
        ({"issuer": "http://kc/realms/x"}, "exactly one of client_secret and private_key"),
        ({"issuer": "http://kc/realms/x", "client_secret": SECRET, "method": "private_key_jwt"}, "needs private_key"),
        ({"issuer": "http://kc/realms/x", "private_key": b"junk"}, "not an RSA"),
        ({"issuer": "http://kc/realms/x", "client_secret": SECRET, "timeout": 0}, "must be positive"),
        ({"issuer": "http://kc/realms/x", "client_secret": SECRET, "max_response_bytes": 0}, "must be positive"),
        ({"issuer": "http://kc/realms/x", "private_key": _weak_rsa_pem()}, "not an RSA"),
        (
            {"issuer": "http://kc/realms/x", "private_key": generate_key("RS256"), "algorithm": "ES256"},
            "does not fit ES256",
        ),
    ],
)
def test_configuration_mistakes_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentialsAuth("machine-a", **options)


def test_pem_text_is_a_key_and_unreadable_key_material_is_never_repeated(issuer: TestIssuer, make_auth: Any) -> None:
    key = generate_key("RS256")
    issuer.register_client("pem-text", public_key=key)
    auth = make_auth("pem-text", issuer=issuer.issuer, private_key=key.as_pem(private=True).decode())
    assert claims_of(auth.get_token().value)["azp"] == "pem-text"
    body = "".join(key.as_pem(private=True).decode().splitlines()[1:-1])  # the key without its PEM lines
    with pytest.raises(OSError, match=r"^cannot read the key file: ") as raised:
        ClientCredentialsAuth("pem-text", issuer=issuer.issuer, private_key=body)
    assert body[:32] not in str(raised.value)


# ------------------------------------------------------------------ the client's own JWKS (RFC 7517), for jwks.url
async def test_the_jwks_endpoint_publishes_current_and_next_public_keys_by_kid() -> None:
    current = load_private_key(generate_key("RS256").as_pem(private=True))  # PEM: no kid of its own
    upcoming = generate_key("ES256", kid="next")
    app = Starlette(routes=[Route("/jwks.json", jwks_endpoint(current, upcoming))])
    async with api_client(app, "http://a") as client:
        response = await client.get("/jwks.json")
    keys = {key["kid"]: key for key in response.json()["keys"]}
    assert response.headers["content-type"] == "application/jwk-set+json"
    assert set(keys) == {current.thumbprint(), upcoming.kid}
    assert all(key["use"] == "sig" and not {"d", "p", "q", "dp", "dq", "qi"} & key.keys() for key in keys.values())
    # Rotating to the next key: the assertion names it, and Keycloak finds it in the set by that kid.
    auth = ClientCredentialsAuth(
        "machine-a", issuer="http://kc/realms/x", private_key=upcoming, key_id=key_id(upcoming)
    )
    assertion = auth._credentials.assertion("http://kc/x")  # type: ignore[attr-defined]
    kid = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "=="))["kid"]
    assert jwt.decode(assertion, ECKey.import_key(keys[kid])).claims["iss"] == "machine-a"
