"""Token exchange (RFC 8693) by the resource server: the request, the cache, single flight, typed errors,
sender-constrained subject tokens refused before any call."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fastapi_kc_m2m import (
    IdentityProviderUnavailable,
    KeycloakAuth,
    KeycloakSettings,
    SettingsError,
    TokenExchangeError,
)
from fastapi_kc_m2m.server.context import RequestContext, Verification
from fastapi_kc_m2m.testing import FailureMode, FrozenClock, TestIssuer
from fastapi_kc_m2m.testing.issuer import parse
from tests.helpers import INTROSPECTION_SECRET, Gate, wait_until

pytestmark = pytest.mark.anyio

SECRET = INTROSPECTION_SECRET


@pytest.fixture
def issuer(clock: FrozenClock) -> TestIssuer:
    """Machine B (the audience) may exchange towards machine-c; both are registered clients."""
    issuer = TestIssuer(clock=clock)
    issuer.register_client(secret=SECRET, exchange_audiences=["machine-c", "machine-d"])
    issuer.register_client("machine-c", secret="c-secret")
    issuer.register_client("machine-d", secret="d-secret")
    return issuer


def exchanging(issuer: TestIssuer, **overrides: Any) -> KeycloakAuth:
    return issuer.auth(**({"token_exchange": True, "client_secret": SECRET} | overrides))


async def verified(auth: KeycloakAuth, token: str) -> Verification:
    return await auth.authenticate(RequestContext(token))


async def test_exchange_gives_a_token_for_the_audience_on_behalf_of_the_caller(issuer: TestIssuer) -> None:
    sent: list[dict[str, list[str]]] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/token"):
            sent.append(parse_qs(request.content.decode()))

    token = issuer.token(scope="profile email")
    async with (
        httpx.AsyncClient(transport=issuer.transport, event_hooks={"request": [record]}) as client,
        KeycloakAuth(issuer.settings(token_exchange=True, client_secret=SECRET), http_client=client) as auth,
    ):
        verification = await verified(auth, token)
        exchanged = await auth.downstream_auth(RequestContext(token), verification, "machine-c", "profile").token()
    claims = parse(exchanged.value).payload
    assert (claims["sub"], claims["azp"], claims["aud"]) == (verification.principal.subject, "machine-b", "machine-c")
    assert claims["scope"] == "profile"
    assert sent == [
        {
            "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "subject_token": [token],
            "subject_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
            "audience": ["machine-c"],
            "scope": ["profile"],
        }
    ]
    assert token not in repr(exchanged)
    assert exchanged.value not in repr(exchanged)


async def test_exchanges_are_kept_per_token_audience_and_scope_until_near_expiry(
    issuer: TestIssuer, clock: FrozenClock
) -> None:
    token = issuer.token()
    async with exchanging(issuer) as auth:
        verification = await verified(auth, token)
        exchanger = auth.exchanger
        assert exchanger is not None
        first = await exchanger.exchange(token, verification, "machine-c")
        assert await exchanger.exchange(token, verification, "machine-c") == first
        assert issuer.requests["exchange"] == 1
        await exchanger.exchange(token, verification, "machine-d")
        await exchanger.exchange(token, verification, "machine-c", "email")
        other = issuer.token()
        await exchanger.exchange(other, await verified(auth, other), "machine-c")
        assert issuer.requests["exchange"] == 4
        clock.advance(issuer.token_lifetime - 31)  # 300 s tokens are kept until 30 s before they expire
        assert await exchanger.exchange(token, verification, "machine-c") == first
        clock.advance(2)
        renewed = await exchanger.exchange(token, verification, "machine-c")
    assert renewed != first
    assert issuer.requests["exchange"] == 5


async def test_a_cache_size_of_zero_keeps_nothing(issuer: TestIssuer) -> None:
    token = issuer.token()
    async with exchanging(issuer, token_exchange_cache_size=0) as auth:
        verification = await verified(auth, token)
        assert auth.exchanger is not None
        for _ in range(2):
            await auth.exchanger.exchange(token, verification, "machine-c")
    assert issuer.requests["exchange"] == 2


async def test_one_exchange_in_flight_per_key(issuer: TestIssuer) -> None:
    gate = Gate(issuer.transport, suffix="/token")
    token = issuer.token()
    settings = issuer.settings(token_exchange=True, client_secret=SECRET)
    async with KeycloakAuth(settings, transport=gate, clock=issuer.clock) as auth:
        verification = await verified(auth, token)
        assert auth.exchanger is not None
        exchanges = [
            asyncio.ensure_future(auth.exchanger.exchange(token, verification, "machine-c")) for _ in range(20)
        ]
        await wait_until(lambda: gate.waiting > 0)
        gate.open()
        results = await asyncio.gather(*exchanges)
    assert len({result.value for result in results}) == 1
    assert issuer.requests["exchange"] == 1


@pytest.mark.parametrize("binding", [{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, {"x5t": "x5t-of-a-cert"}])
async def test_a_sender_constrained_subject_token_is_refused_without_a_call(
    issuer: TestIssuer, binding: dict[str, str]
) -> None:
    token = issuer.token()
    async with exchanging(issuer) as auth:
        bound = (await verified(auth, token))._replace(**binding)
        assert auth.exchanger is not None
        with pytest.raises(TokenExchangeError) as refused:
            await auth.exchanger.exchange(token, bound, "machine-c")
    assert refused.value.status_code == 502
    assert refused.value.description == "a sender-constrained token cannot be exchanged"
    assert refused.value.oauth_error is None
    assert issuer.requests["exchange"] == 0


@pytest.mark.parametrize(
    ("audience", "code"),
    [("machine-z", "invalid_client"), ("machine-a", "invalid_request")],
)
async def test_keycloak_refusals_carry_its_error_code_and_nothing_secret(
    issuer: TestIssuer, audience: str, code: str
) -> None:
    issuer.register_client("machine-a", secret="a-secret")
    token = issuer.token()
    async with exchanging(issuer) as auth:
        verification = await verified(auth, token)
        assert auth.exchanger is not None
        with pytest.raises(TokenExchangeError) as refused:
            await auth.exchanger.exchange(token, verification, audience)
        await auth.exchanger.exchange(token, verification, "machine-c")  # refusals are not kept
    assert refused.value.oauth_error == code
    assert refused.value.status_code == 502
    for secret in (token, SECRET):
        assert secret not in str(refused.value)
        assert secret not in refused.value.description


async def test_a_requester_without_token_exchange_is_unauthorized_client(issuer: TestIssuer) -> None:
    issuer.register_client(secret=SECRET)  # standard token exchange not enabled
    token = issuer.token()
    async with exchanging(issuer) as auth:
        verification = await verified(auth, token)
        assert auth.exchanger is not None
        with pytest.raises(TokenExchangeError) as refused:
            await auth.exchanger.exchange(token, verification, "machine-c")
    assert refused.value.oauth_error == "unauthorized_client"


@pytest.mark.parametrize("mode", ["status", "html", "oversized", "no_keys"])
async def test_keycloak_failing_is_unavailable(issuer: TestIssuer, mode: FailureMode) -> None:
    token = issuer.token()
    async with exchanging(issuer) as auth:
        verification = await verified(auth, token)
        assert auth.exchanger is not None
        issuer.fail("token", mode)  # "no_keys": a 200 answer without access_token
        with pytest.raises(IdentityProviderUnavailable) as unavailable:
            await auth.exchanger.exchange(token, verification, "machine-c")
    assert unavailable.value.status_code == 503
    assert unavailable.value.retry_after == 5


async def test_the_token_endpoint_setting_skips_discovery(issuer: TestIssuer) -> None:
    token = issuer.token()
    endpoints = f"{issuer.issuer}/protocol/openid-connect"
    overrides = {
        "token_endpoints": {issuer.issuer: f"{endpoints}/token"},
        "jwks_uris": {issuer.issuer: f"{endpoints}/certs"},
    }
    async with exchanging(issuer, **overrides) as auth:
        verification = await verified(auth, token)
        assert auth.exchanger is not None
        await auth.exchanger.exchange(token, verification, "machine-c")
    assert issuer.requests == {"jwks": 1, "exchange": 1, "token": 1}


async def test_a_downstream_call_with_exchange_off_is_refused_with_503(issuer: TestIssuer) -> None:
    token = issuer.token()
    async with issuer.auth() as auth:
        verification = await verified(auth, token)
        with pytest.raises(IdentityProviderUnavailable):
            auth.downstream_auth(RequestContext(token), verification, "machine-c")


def test_token_exchange_needs_the_client_credentials(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError, match="KC_M2M_TOKEN_EXCHANGE with KC_M2M_CLIENT_AUTH_METHOD"):
        issuer.settings(token_exchange=True)
    with pytest.raises(SettingsError, match="KC_M2M_TOKEN_ENDPOINTS names issuers that are not trusted"):
        KeycloakSettings(issuers=issuer.issuer, audience="b", token_endpoints='{"http://other": "http://127.0.0.1/t"}')
