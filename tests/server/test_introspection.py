"""Token introspection (RFC 7662): policies, strict ``active``, caching, single flight, fail-closed,
lightweight tokens, the Keycloak 26.6.2+ audience hint; over loopback where the wire matters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastapi_kc_m2m import (
    AuthError,
    IdentityProviderUnavailable,
    InvalidToken,
    KeycloakAuth,
    KeycloakAuthMiddleware,
    KeycloakSettings,
    Principal,
    auth_error_handler,
    require_active_token,
)
from fastapi_kc_m2m._idp.client_auth import ClientSecretBasic
from fastapi_kc_m2m._idp.singleflight import KeyedSingleFlight
from fastapi_kc_m2m._jose.dpop import access_token_hash, make_proof
from fastapi_kc_m2m.errors import InvalidDPoPProof
from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.server.store import MemoryStore
from fastapi_kc_m2m.testing import OMIT, FrozenClock, TestIssuer, generate_key
from tests.helpers import INTROSPECT_PATH, INTROSPECTION_SECRET, Gate, answering, bearer

pytestmark = pytest.mark.anyio

SECRET = INTROSPECTION_SECRET


@pytest.fixture
def issuer(clock: FrozenClock) -> TestIssuer:
    issuer = TestIssuer(clock=clock)
    issuer.register_client(secret=SECRET)
    return issuer


def introspecting(issuer: TestIssuer, **overrides: Any) -> KeycloakAuth:
    """A verifier introspecting at ``issuer`` in-process: policy ``always`` unless overridden."""
    return issuer.auth(**({"introspection": "always", "client_secret": SECRET} | overrides))


# ------------------------------------------------------------------ policy
async def test_active_token_is_accepted_after_one_call(issuer: TestIssuer) -> None:
    token = issuer.token()
    async with introspecting(issuer) as auth:
        principal = await auth.verify(token)
        assert principal.client_id == "machine-a"
        assert (await auth.verify(token)) is principal
    assert issuer.requests["introspection"] == 1


async def test_policy_off_never_introspects_and_refuses_a_request_for_it(
    issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.token()
    issuer.revoke(token)
    async with issuer.auth() as auth:
        assert (await auth.verify(token)).client_id == "machine-a"
        with pytest.raises(IdentityProviderUnavailable):  # fails closed: never the local result, never a 500
            await auth.verify(token, introspect=True)
    assert "KC_M2M_INTROSPECTION=per_route" in caplog.text
    assert issuer.requests["introspection"] == 0


async def test_per_route_policy_introspects_only_when_asked(issuer: TestIssuer) -> None:
    token = issuer.token()
    issuer.revoke(token)
    async with introspecting(issuer, introspection="per_route") as auth:
        assert (await auth.verify(token)).client_id == "machine-a"
        assert issuer.requests["introspection"] == 0
        with pytest.raises(InvalidToken, match="not active"):
            await auth.verify(token, introspect=True)
    assert issuer.requests["introspection"] == 1


async def test_introspection_never_replaces_local_verification(issuer: TestIssuer) -> None:
    async with introspecting(issuer) as auth:
        for bad in issuer.bad_tokens().values():
            with pytest.raises(InvalidToken):
                await auth.verify(bad)
    assert issuer.requests["introspection"] == 0  # refused locally before any call


# ------------------------------------------------------------------ RFC 7662 §2.2: strict active
async def test_inactive_answer_is_401(issuer: TestIssuer) -> None:
    token = issuer.token()
    issuer.revoke(token)
    async with introspecting(issuer) as auth:
        with pytest.raises(InvalidToken) as refused:
            await auth.verify(token)
    assert refused.value.status_code == 401
    assert refused.value.description == "the access token is not active"


NO_BOOLEAN = "answer without a boolean active"
NOT_JSON = "not a JSON object"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"active": "true"}', NO_BOOLEAN),
        (b'{"active": 1}', NO_BOOLEAN),
        (b'{"active": null}', NO_BOOLEAN),
        (b'{"active": "false"}', NO_BOOLEAN),
        (b'{"active": 0}', NO_BOOLEAN),
        (b'{"active": []}', NO_BOOLEAN),
        (b'{"active": {}}', NO_BOOLEAN),
        (b'{"scope": "x"}', NO_BOOLEAN),
        (b"[true]", NOT_JSON),
        (b"true", NOT_JSON),
        (b'{"active": true', NOT_JSON),
        (b'{"active": true, "active": true}', NOT_JSON),
        (b"", NOT_JSON),
    ],
)
async def test_anything_but_boolean_active_fails_closed(
    issuer: TestIssuer, caplog: pytest.LogCaptureFixture, body: bytes, reason: str
) -> None:
    async with answering(issuer, body) as auth:
        with pytest.raises(IdentityProviderUnavailable) as failed:
            await auth.verify(issuer.token())
    assert failed.value.status_code == 503
    assert failed.value.retry_after == 5
    assert f"failed ({reason})" in caplog.text


async def test_boolean_false_is_inactive_and_true_active(issuer: TestIssuer) -> None:
    async with answering(issuer, b'{"active": false}') as auth:
        with pytest.raises(InvalidToken):
            await auth.verify(issuer.token())
    async with answering(issuer, b'{"active": true}') as auth:
        assert (await auth.verify(issuer.token())).client_id == "machine-a"


# ------------------------------------------------------------------ failures: 503 + Retry-After, no fallback
def api(auth: KeycloakAuth) -> FastAPI:
    app = FastAPI()
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders")
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    @app.get("/refund", dependencies=[require_active_token()])
    async def refund(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    return app


@contextlib.asynccontextmanager
async def api_client(auth: KeycloakAuth) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api(auth))
    async with auth, httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


@pytest.mark.parametrize("mode", ["status", "timeout", "html", "oversized", "active_string", "active_missing"])
async def test_each_failure_mode_is_503_with_retry_after(issuer: TestIssuer, clock: FrozenClock, mode: Any) -> None:
    issuer.fail("introspection", mode)
    token = issuer.token()
    async with api_client(introspecting(issuer, introspection_timeout=0.2)) as client:
        response = await client.get("/orders", headers=bearer(token))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json() == {"error_description": "token introspection is unavailable"}
        issuer.heal()  # failures are not cached: after the retry interval the next request asks again
        clock.advance(5)
        assert (await client.get("/orders", headers=bearer(token))).status_code == 200
    assert issuer.requests["introspection"] == 2


async def test_failed_introspection_backs_off_for_the_retry_interval(
    issuer: TestIssuer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 7662 §4: after a failed call, one issuer's further calls are refused at once (503 + Retry-After
    with the remaining time), with neither a call nor a warning, until the retry interval has passed."""
    caplog.set_level(logging.WARNING, logger="fastapi_kc_m2m")
    issuer.fail("introspection", "status")
    token = issuer.token()
    async with api_client(introspecting(issuer, jwks_retry_interval=5)) as client:
        for _ in range(200):
            response = await client.get("/orders", headers=bearer(token))
            assert (response.status_code, response.headers["retry-after"]) == (503, "5")
        clock.advance(3.5)
        assert (await client.get("/orders", headers=bearer(token))).headers["retry-after"] == "2"
        assert (issuer.requests["introspection"], len(caplog.records)) == (1, 1)
        issuer.heal()
        clock.advance(1.5)
        assert (await client.get("/orders", headers=bearer(token))).status_code == 200
    assert issuer.requests["introspection"] == 2


async def test_wrong_client_credentials_fail_closed(issuer: TestIssuer) -> None:
    async with api_client(introspecting(issuer, client_secret="wrong")) as client:
        response = await client.get("/orders", headers=bearer(issuer.token()))
    assert response.status_code == 503


async def test_unreachable_endpoint_and_discovery_failure_fail_closed(issuer: TestIssuer) -> None:
    closed = {issuer.issuer: "http://127.0.0.1:9/introspect"}  # discard port: connection refused
    async with introspecting(issuer, introspection_endpoints=closed) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
    async with introspecting(issuer, jwks_uris={issuer.issuer: issuer.discovery_document()["jwks_uri"]}) as auth:
        issuer.fail("discovery", "status")
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
    assert issuer.requests["introspection"] == 0


async def test_endpoint_from_settings_skips_discovery(issuer: TestIssuer) -> None:
    endpoints = issuer.discovery_document()
    overrides = {"jwks_uris": {issuer.issuer: endpoints["jwks_uri"]}}
    overrides["introspection_endpoints"] = {issuer.issuer: endpoints["introspection_endpoint"]}
    async with introspecting(issuer, **overrides) as auth:
        await auth.verify(issuer.token())
    assert issuer.requests["discovery"] == 0
    assert issuer.requests["introspection"] == 1


async def test_failures_never_log_tokens_or_secrets(issuer: TestIssuer, caplog: pytest.LogCaptureFixture) -> None:
    token = issuer.token()
    caplog.set_level(logging.DEBUG, logger="fastapi_kc_m2m")
    for mode in ("status", "html", "active_string"):
        issuer.fail("introspection", mode)
        async with introspecting(issuer) as auth:
            with pytest.raises(IdentityProviderUnavailable):
                await auth.verify(token)
    assert "introspection at http://keycloak.test/realms/test failed (status 500)" in caplog.text
    for secret in (token, token.split(".")[1], token.split(".")[2], SECRET, "s3"):
        assert secret not in caplog.text


# ------------------------------------------------------------------ the cache
async def test_positive_answers_are_cached_for_the_ttl(issuer: TestIssuer, clock: FrozenClock) -> None:
    token = issuer.token()
    async with introspecting(issuer, introspection_cache_ttl=30) as auth:
        await auth.verify(token)
        clock.advance(29.9)
        await auth.verify(token)
        assert issuer.requests["introspection"] == 1
        clock.advance(0.1)
        await auth.verify(token)
    assert issuer.requests["introspection"] == 2


async def test_positive_answers_never_outlive_exp(issuer: TestIssuer, clock: FrozenClock) -> None:
    token = issuer.token(lifetime=10)
    async with introspecting(issuer) as auth:
        await auth.verify(token)
        clock.advance(10)  # exp reached; local verification still allows the 60 s clock skew
        with pytest.raises(InvalidToken, match="not active"):
            await auth.verify(token)
    assert issuer.requests["introspection"] == 2


async def test_negative_answers_are_cached_for_the_ttl(issuer: TestIssuer, clock: FrozenClock) -> None:
    token = issuer.token()
    issuer.revoke(token)
    async with introspecting(issuer) as auth:
        for _ in range(3):
            with pytest.raises(InvalidToken):
                await auth.verify(token)
        assert issuer.requests["introspection"] == 1
        clock.advance(30)
        issuer.revoked.clear()  # e.g. a client re-enabled: seen once the negative answer expires
        assert (await auth.verify(token)).client_id == "machine-a"
    assert issuer.requests["introspection"] == 2


async def test_cache_ttl_zero_asks_every_time(issuer: TestIssuer) -> None:
    token = issuer.token()
    async with introspecting(issuer, introspection_cache_ttl=0) as auth:
        for _ in range(3):
            await auth.verify(token)
    assert issuer.requests["introspection"] == 3


# ------------------------------------------------------------------ revocation over a real loopback server
METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[TestIssuer, FrozenClock]]:
    """One issuer on a real loopback port for the module, on a frozen clock, with a client per method."""
    clock = FrozenClock()
    with TestIssuer.serving(clock=clock) as issuer:
        for method in METHODS[:2]:
            issuer.register_client(method, secret=SECRET)
        yield issuer, clock


def loopback_settings(issuer: TestIssuer, method: str, **credential: Any) -> KeycloakSettings:
    """Settings introspecting as the client named after ``method`` (a key client gets a new key)."""
    if method == "private_key_jwt" and not credential:
        key = generate_key("ES256")
        issuer.register_client(method, public_key=key)
        credential = {"client_private_key": json.dumps(key.as_dict(private=True)), "client_assertion_alg": "ES256"}
    credential = {"client_secret": SECRET} | credential if method != "private_key_jwt" else credential
    return issuer.settings(introspection="always", client_id=method, client_auth_method=method, **credential)


@pytest.mark.parametrize("method", METHODS)
async def test_revoked_token_is_refused_once_the_cache_time_passes(
    loopback: tuple[TestIssuer, FrozenClock], method: str
) -> None:
    issuer, clock = loopback
    before = issuer.requests["introspection"]
    token = issuer.token(audience=["machine-b", method])
    async with KeycloakAuth(loopback_settings(issuer, method), clock=clock) as auth:  # real HTTP to 127.0.0.1
        assert (await auth.verify(token)).client_id == "machine-a"
        issuer.revoke(token)
        clock.advance(29)
        assert (await auth.verify(token)).client_id == "machine-a"  # within the cache time: still usable
        clock.advance(1)
        with pytest.raises(InvalidToken, match="not active"):
            await auth.verify(token)
        assert (await auth.verify(issuer.token())).client_id == "machine-a"
    assert issuer.requests["introspection"] - before == 3


@pytest.mark.parametrize("method", METHODS)
async def test_loopback_endpoint_rejects_wrong_credentials(
    loopback: tuple[TestIssuer, FrozenClock], method: str
) -> None:
    issuer, clock = loopback
    wrong: dict[str, Any] = {"client_secret": "wrong"}
    if method == "private_key_jwt":
        issuer.register_client(method, public_key=generate_key("ES256"))
        unregistered = generate_key("ES256")
        wrong = {"client_private_key": json.dumps(unregistered.as_dict(private=True)), "client_assertion_alg": "ES256"}
    before = issuer.requests["introspection"]
    async with KeycloakAuth(loopback_settings(issuer, method, **wrong), clock=clock) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(issuer.token())
    assert issuer.requests["introspection"] - before == 1


async def test_loopback_endpoint_refuses_anonymous_and_repeated_parameters(
    loopback: tuple[TestIssuer, FrozenClock],
) -> None:
    issuer, _ = loopback
    endpoint = issuer.discovery_document()["introspection_endpoint"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    basic, _ = ClientSecretBasic("client_secret_basic", SECRET).credentials(issuer.issuer)
    async with httpx.AsyncClient() as client:
        anonymous = await client.post(endpoint, data={"token": issuer.token()})
        repeated = await client.post(endpoint, content=b"token=a&token=b", headers=form | basic)
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "invalid_client"})
    assert repeated.status_code == 400


async def test_loopback_answers_are_keycloak_shaped(loopback: tuple[TestIssuer, FrozenClock]) -> None:
    issuer, _ = loopback
    endpoint = issuer.discovery_document()["introspection_endpoint"]
    token = issuer.token(scope="orders:read")
    basic, _ = ClientSecretBasic("client_secret_basic", SECRET).credentials(issuer.issuer)
    async with httpx.AsyncClient(headers=basic) as client:  # httpx.BasicAuth would not form-urlencode
        answer = (await client.post(endpoint, data={"token": token})).json()
        inactive = [issuer.bad_tokens()["expired"], issuer.bad_tokens()["unknown_key"], "junk"]
        answers = [(await client.post(endpoint, data={"token": bad})).content for bad in inactive]
    assert answer["active"] is True
    assert (answer["client_id"], answer["username"], answer["token_type"]) == (
        "machine-a",
        "service-account-machine-a",
        "Bearer",
    )
    assert (answer["scope"], answer["aud"], answer["iss"]) == ("orders:read", "machine-b", issuer.issuer)
    assert answers == [b'{"active":false}'] * 3


# ------------------------------------------------------------------ single flight and bounded memory
async def test_one_call_in_flight_per_token(issuer: TestIssuer) -> None:
    gate = Gate(issuer.transport, INTROSPECT_PATH)
    settings = issuer.settings(introspection="always", client_secret=SECRET, introspection_cache_ttl=0)
    token = issuer.token()
    async with KeycloakAuth(settings, transport=gate, clock=issuer.clock) as auth:
        await auth.prefetch()
        waiters = [asyncio.ensure_future(auth.verify(token)) for _ in range(1000)]
        await asyncio.sleep(0.05)  # every waiter has verified locally and joined the call
        gate.opened.set()
        principals = await asyncio.gather(*waiters)
    assert {principal.client_id for principal in principals} == {"machine-a"}
    assert issuer.requests["introspection"] == 1  # no cache (ttl 0): only the single flight can explain it


async def test_a_thousand_concurrent_requests_with_one_token_make_one_call(issuer: TestIssuer) -> None:
    token = issuer.token()
    async with api_client(introspecting(issuer)) as client:
        responses = await asyncio.gather(*(client.get("/orders", headers=bearer(token)) for _ in range(1000)))
    assert {response.status_code for response in responses} == {200}
    assert issuer.requests["introspection"] == 1


async def test_a_thousand_distinct_tokens_keep_memory_bounded(clock: FrozenClock) -> None:
    issuer = TestIssuer(algorithm="ES256", clock=clock)  # fast to mint
    issuer.register_client(secret=SECRET)
    tokens = [issuer.token() for _ in range(1000)]
    store = MemoryStore(100, clock)
    async with introspecting(issuer, introspection_cache_size=100, store=store) as auth:
        results = await asyncio.gather(*(auth.verify(token) for token in tokens))
        introspector = auth.introspector
        assert introspector is not None
        assert len(store) <= 100
        assert introspector.in_flight == 0  # every call finished and was forgotten
    assert len(results) == 1000
    assert issuer.requests["introspection"] == 1000


async def test_a_cancelled_waiter_does_not_cancel_the_shared_call() -> None:
    flights: KeyedSingleFlight[str, int] = KeyedSingleFlight()
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 7

    first = asyncio.ensure_future(flights.run("k", work))
    second = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 7
    assert len(flights) == 0


# ------------------------------------------------------------------ require_active_token()
async def test_require_active_token_behind_the_middleware(issuer: TestIssuer, clock: FrozenClock) -> None:
    token = issuer.token()
    async with api_client(introspecting(issuer, introspection="per_route")) as client:
        assert (await client.get("/refund", headers=bearer(token))).json() == {"client": "machine-a"}
        issuer.revoke(token)
        assert (await client.get("/orders", headers=bearer(token))).status_code == 200  # not introspected
        assert (await client.get("/refund", headers=bearer(token))).status_code == 200  # cached answer
        clock.advance(30)
        refused = await client.get("/refund", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json()["error_description"] == "the access token is not active"
        assert (await client.get("/refund")).status_code == 401  # no token at all
        issuer.fail("introspection", "status")
        failed = await client.get("/refund", headers=bearer(issuer.token()))
        assert (failed.status_code, failed.headers["retry-after"]) == (503, "5")
    assert issuer.requests["introspection"] == 3


async def test_require_active_token_without_the_middleware(issuer: TestIssuer, lifespan_client: Any) -> None:
    app = FastAPI()
    app.add_exception_handler(AuthError, auth_error_handler)

    @app.get("/refund", dependencies=[require_active_token()])
    async def refund(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    token = issuer.token()
    issuer.revoke(token)
    auth = introspecting(issuer, introspection="per_route")
    async with lifespan_client(app, auth.lifespan) as client:
        assert (await client.get("/refund", headers=bearer(issuer.token()))).status_code == 200
        assert (await client.get("/refund", headers=bearer(token))).status_code == 401


# ------------------------------------------------------------------ lightweight access tokens (Keycloak 24+)
async def test_lightweight_token_takes_aud_and_roles_from_introspection(issuer: TestIssuer) -> None:
    token = issuer.token(lightweight=True, client_roles={"machine-b": ["writer"]}, realm_roles=("auditor",))
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert set(payload) == {"exp", "iat", "jti", "iss", "typ", "azp", "scope", "sub"}
    assert payload["jti"].startswith("trltcc:")
    async with introspecting(issuer, introspection="off", lightweight_tokens=True) as auth:
        principal = await auth.verify(token)
        assert principal.audiences == ("machine-b",)
        assert principal.roles_of("machine-b") == {"writer"}
        assert "auditor" in principal.realm_roles
        assert principal.claims["exp"] == principal.expires_at
        assert principal.issuer == issuer.issuer
        assert (await auth.verify(token)) == principal  # from the stored answer: no second call (below)
    assert issuer.requests["introspection"] == 1


async def test_lightweight_tokens_are_refused_unless_enabled(issuer: TestIssuer) -> None:
    async with introspecting(issuer, introspection="always") as auth:
        with pytest.raises(InvalidToken, match="audience"):
            await auth.verify(issuer.token(lightweight=True))
    assert issuer.requests["introspection"] == 0


async def test_lightweight_token_never_passes_without_an_answer(issuer: TestIssuer, clock: FrozenClock) -> None:
    token = issuer.token(lightweight=True)
    issuer.fail("introspection", "timeout")
    async with introspecting(issuer, introspection="off", lightweight_tokens=True, introspection_timeout=0.2) as auth:
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(token)
        issuer.heal()
        clock.advance(5)  # the retry interval after a failed call
        issuer.revoke(token)
        with pytest.raises(InvalidToken, match="not active"):
            await auth.verify(token)
        full = issuer.token()  # a full token with policy off: not introspected
        assert (await auth.verify(full)).audiences == ("machine-b",)
    assert issuer.requests["introspection"] == 2


async def test_lightweight_token_for_another_audience_is_refused(issuer: TestIssuer) -> None:
    token = issuer.token(lightweight=True, audience=["billing", "account"])
    async with introspecting(issuer, lightweight_tokens=True) as auth:
        for _ in range(2):
            with pytest.raises(InvalidToken, match="not meant for this audience"):
                await auth.verify(token)
    assert issuer.requests["introspection"] == 1  # the refusal is cached too


async def test_lightweight_token_client_allow_list_applies(issuer: TestIssuer) -> None:
    async with introspecting(issuer, lightweight_tokens=True, allowed_clients=("machine-c",)) as auth:
        with pytest.raises(InvalidToken, match="client not allowed"):
            await auth.verify(issuer.token(lightweight=True))


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"iss": "http://keycloak.test/realms/other"}, IdentityProviderUnavailable),
        ({"iss": OMIT}, IdentityProviderUnavailable),
        ({"typ": "Refresh"}, InvalidToken),
        ({"aud": "account"}, InvalidToken),
    ],
)
async def test_lightweight_answer_must_fit_the_token(issuer: TestIssuer, answer: dict[str, Any], error: type) -> None:
    token = issuer.token(lightweight=True)
    full = issuer.introspection_answer(token, issuer.audience) | answer
    body = json.dumps({name: value for name, value in full.items() if value is not OMIT}).encode()
    async with answering(issuer, body, introspection="off", lightweight_tokens=True) as auth:
        with pytest.raises(error):
            await auth.verify(token)


async def test_lightweight_answer_without_typ_keeps_the_token_typ(issuer: TestIssuer) -> None:
    token = issuer.token(lightweight=True)
    answer = issuer.introspection_answer(token, issuer.audience)
    del answer["typ"]
    async with answering(issuer, json.dumps(answer).encode(), lightweight_tokens=True) as auth:
        assert (await auth.verify(token)).claims["typ"] == "Bearer"


async def test_lightweight_principal_keeps_the_verified_exp(issuer: TestIssuer) -> None:
    token = issuer.token(lightweight=True)
    forged = issuer.introspection_answer(token, issuer.audience) | {"exp": 4_000_000_000}
    async with answering(issuer, json.dumps(forged).encode(), lightweight_tokens=True) as auth:
        principal = await auth.verify(token)
    assert principal.expires_at == issuer.introspection_answer(token, issuer.audience)["exp"]


# ------------------------------------------------------------------ DPoP-bound lightweight tokens (RFC 9449 §6.2)
def dpop_request(token: str, key: Any, now: float) -> RequestContext:
    proof = make_proof(key, htm="GET", htu="https://api.example/", iat=now, ath=access_token_hash(token))
    return RequestContext(token, "DPoP", "GET", "https://api.example/", proof)


async def test_lightweight_dpop_token_is_bound_through_the_answer(issuer: TestIssuer) -> None:
    key = generate_key("ES256")
    token = issuer.token(lightweight=True)  # the answer alone carries the binding
    bound = {"typ": "DPoP", "token_type": "DPoP", "cnf": {"jkt": key.thumbprint(), "kc-jkt-type": "DPoP"}}
    answer = issuer.introspection_answer(token, issuer.audience) | bound
    async with answering(issuer, json.dumps(answer).encode(), introspection="off", lightweight_tokens=True) as auth:
        with pytest.raises(InvalidToken, match="presented as Bearer"):
            await auth.verify(token)
        verification = await auth.authenticate(dpop_request(token, key, issuer.clock()))
        assert (verification.jkt, verification.introspected) == (key.thumbprint(), True)
        with pytest.raises(InvalidDPoPProof, match="does not match"):
            await auth.authenticate(dpop_request(token, generate_key("ES256"), issuer.clock()))


async def test_an_introspected_full_token_keeps_its_binding(issuer: TestIssuer) -> None:
    key = generate_key("ES256")
    token = issuer.token(typ="DPoP", cnf={"jkt": key.thumbprint()})
    async with introspecting(issuer) as auth:
        verification = await auth.authenticate(dpop_request(token, key, issuer.clock()))
        assert (verification.jkt, verification.introspected) == (key.thumbprint(), True)
        with pytest.raises(InvalidToken, match="presented as Bearer"):
            await auth.verify(token)


async def test_lightweight_token_keeps_its_own_binding(issuer: TestIssuer) -> None:
    key = generate_key("ES256")
    token = issuer.token(lightweight=True, typ="DPoP", cnf={"jkt": key.thumbprint()})
    async with introspecting(issuer, introspection="off", lightweight_tokens=True) as auth:
        assert (await auth.authenticate(dpop_request(token, key, issuer.clock()))).jkt == key.thumbprint()
    answer = issuer.introspection_answer(token, issuer.audience) | {"cnf": {"jkt": "another-key"}}
    async with answering(issuer, json.dumps(answer).encode(), introspection="off", lightweight_tokens=True) as auth:
        with pytest.raises(InvalidToken, match="token binding mismatch"):
            await auth.authenticate(dpop_request(token, key, issuer.clock()))


async def test_an_empty_store_given_is_the_one_used(issuer: TestIssuer, clock: FrozenClock) -> None:
    store = MemoryStore(10, clock)
    async with issuer.auth(store=store, introspection="always", client_secret=SECRET) as auth:
        await auth.verify(issuer.token())
    assert len(store) == 1


# ------------------------------------------------------------------ Keycloak 26.6.2+: the introspecting client in aud
async def test_audience_rule_hint_is_logged_once(clock: FrozenClock, caplog: pytest.LogCaptureFixture) -> None:
    issuer = TestIssuer(clock=clock, audience_rule=True)
    issuer.register_client("gateway", secret=SECRET)
    caplog.set_level(logging.WARNING, logger="fastapi_kc_m2m")
    async with introspecting(issuer, client_id="gateway") as auth:
        for _ in range(3):
            with pytest.raises(InvalidToken, match="not active"):
                await auth.verify(issuer.token())
        named = issuer.token(audience=["machine-b", "gateway"])  # the audience mapper fix
        assert (await auth.verify(named)).client_id == "machine-a"
    hints = [record for record in caplog.records if "26.6.2" in record.getMessage()]
    assert len(hints) == 1
    assert "included.client.audience=gateway" in hints[0].getMessage()


async def test_no_hint_when_the_introspecting_client_is_in_aud(
    issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = issuer.token()
    issuer.revoke(token)
    caplog.set_level(logging.WARNING, logger="fastapi_kc_m2m")
    async with introspecting(issuer) as auth:  # client id defaults to the audience, which aud names
        with pytest.raises(InvalidToken):
            await auth.verify(token)
    assert "26.6.2" not in caplog.text


# ------------------------------------------------------------------ settings
def test_settings_repr_hides_credentials() -> None:
    settings = KeycloakSettings(
        issuers=("https://kc/realms/x",), audience="machine-b", introspection="always", client_secret="top-secret"
    )
    assert "top-secret" not in repr(settings)
    assert settings.introspecting_client_id == "machine-b"


async def test_unreadable_private_key_names_the_variable(issuer: TestIssuer) -> None:
    with pytest.raises(ValueError, match="KC_M2M_CLIENT_PRIVATE_KEY: cannot read"):
        issuer.auth(introspection="always", client_auth_method="private_key_jwt", client_private_key="/absent.pem")
    public = json.dumps(generate_key("RS256").as_dict(private=False))
    with pytest.raises(ValueError, match="KC_M2M_CLIENT_PRIVATE_KEY: a private key is required"):
        issuer.auth(introspection="always", client_auth_method="private_key_jwt", client_private_key=public)
