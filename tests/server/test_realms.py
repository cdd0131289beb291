"""Many realms chosen by the token (KC_M2M_REALMS): exact issuer match, a key set per realm created after
the local checks, missing realms remembered, a bounded number of lookups, LRU eviction, per-realm
audiences and introspection endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fastapi_kc_m2m import IdentityProviderUnavailable, InvalidToken, KeycloakAuth
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer
from tests.helpers import INTROSPECTION_SECRET

pytestmark = pytest.mark.anyio

BASE = "http://keycloak.test"


class Counted(httpx.AsyncBaseTransport):
    """The issuer's transport, remembering the path of every request sent through it."""

    def __init__(self, issuer: TestIssuer) -> None:
        self._inner = issuer.transport
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self._inner.handle_async_request(request)


@pytest.fixture
def server(clock: FrozenClock) -> TestIssuer:
    """A Keycloak server whose own realm is ``test``; tenant realms are added to it."""
    return TestIssuer(BASE, clock=clock, algorithm="ES256")


@pytest.fixture
def transport(server: TestIssuer) -> Counted:
    return Counted(server)


def multi(server: TestIssuer, transport: Counted, **overrides: Any) -> KeycloakAuth:
    """A verifier trusting ``tenant-*`` on the server, counting its requests."""
    values: dict[str, Any] = {"issuers": (), "server_url": BASE, "realms": ("tenant-*",), "token_cache_size": 0}
    return KeycloakAuth(server.settings(**(values | overrides)), transport=transport, clock=server.clock)


@pytest.fixture
async def auth_multi(server: TestIssuer, transport: Counted) -> AsyncIterator[KeycloakAuth]:
    verifier = multi(server, transport)
    async with verifier:
        yield verifier


def ghost_token(server: TestIssuer, name: str) -> str:
    """A well-formed token naming a realm the server does not have."""
    return server.sign(server.claims() | {"iss": f"{server.base_url}/realms/{name}"})


async def test_each_matching_realm_gets_its_own_key_set_on_first_use(
    server: TestIssuer, transport: Counted, auth_multi: KeycloakAuth
) -> None:
    a, b = server.add_realm("tenant-a"), server.add_realm("tenant-b")
    assert transport.paths == []  # nothing is fetched before a token names a realm
    principal = await auth_multi.verify(a.token())
    assert (principal.issuer, principal.realm) == (a.issuer, "tenant-a")
    assert (a.requests, b.requests) == ({"discovery": 1, "jwks": 1}, {})
    assert (await auth_multi.verify(b.token())).realm == "tenant-b"
    assert b.requests == {"discovery": 1, "jwks": 1}
    await auth_multi.verify(a.token())
    assert a.requests == {"discovery": 1, "jwks": 1}  # the realm's keys are kept
    with pytest.raises(InvalidToken, match="no key matches"):  # one realm's key never verifies another's
        await auth_multi.verify(a.token(iss=b.issuer))


@pytest.mark.parametrize(
    "issuer",
    [
        f"{BASE}/realms/other",  # matches no pattern
        f"{BASE}/realms/test",  # the server's own realm, not listed
        f"{BASE}/realms/tenant-a/",
        f"{BASE}/realms/tenant-a/../test",
        f"{BASE}/realms/tenant-a%2F..%2Ftest",
        f"{BASE}/realms/tenant-..",
        f"{BASE}/realms/tenant-\u0430",  # Cyrillic a
        f"{BASE}/realms/tenant-a?x=1",
        f"{BASE}//realms/tenant-a",
        f"{BASE.upper()}/realms/tenant-a",
        "http://elsewhere.test/realms/tenant-a",
        f"{BASE}:80/realms/tenant-a",
    ],
)
async def test_only_the_exact_issuer_of_a_matching_realm_is_trusted(
    server: TestIssuer, transport: Counted, auth_multi: KeycloakAuth, issuer: str
) -> None:
    with pytest.raises(InvalidToken, match="untrusted issuer"):
        await auth_multi.verify(server.token(iss=issuer))
    assert transport.paths == []


@pytest.mark.parametrize(
    "claims",
    [{"exp": 1}, {"aud": "someone-else"}, {"typ": "ID"}],
)
async def test_tokens_failing_local_checks_cause_no_fetch_for_a_new_realm(
    server: TestIssuer, transport: Counted, auth_multi: KeycloakAuth, claims: dict[str, Any]
) -> None:
    tenant = server.add_realm("tenant-a")
    with pytest.raises(InvalidToken):
        await auth_multi.verify(tenant.token(**claims))
    with pytest.raises(InvalidToken):
        await auth_multi.verify(tenant.token(header={"alg": "none"}))
    assert transport.paths == []
    with pytest.raises(KeyError):  # nor a key set: junk neither fills max_realms nor uses up lookups
        auth_multi.key_set(tenant.issuer)


async def test_a_missing_realm_is_remembered_for_the_negative_ttl(
    server: TestIssuer, clock: FrozenClock, transport: Counted, auth_multi: KeycloakAuth
) -> None:
    token = ghost_token(server, "tenant-gone")
    for _ in range(3):
        with pytest.raises(InvalidToken, match="unknown realm"):
            await auth_multi.verify(token)
    assert transport.paths == ["/realms/tenant-gone/.well-known/openid-configuration"]
    clock.advance(auth_multi.settings.realm_negative_ttl + 1)
    with pytest.raises(InvalidToken, match="unknown realm"):
        await auth_multi.verify(token)
    assert len(transport.paths) == 2


async def test_concurrent_first_tokens_of_a_realm_share_one_fetch(
    server: TestIssuer, transport: Counted, auth_multi: KeycloakAuth
) -> None:
    tenant = server.add_realm("tenant-a")
    principals = await asyncio.gather(*(auth_multi.verify(tenant.token()) for _ in range(20)))
    assert {principal.realm for principal in principals} == {"tenant-a"}
    assert tenant.requests == {"discovery": 1, "jwks": 1}
    ghost = ghost_token(server, "tenant-gone")
    refusals = await asyncio.gather(*(auth_multi.verify(ghost) for _ in range(20)), return_exceptions=True)
    assert {type(refusal) for refusal in refusals} == {InvalidToken}  # 401 for all, never 503
    assert transport.paths.count("/realms/tenant-gone/.well-known/openid-configuration") == 1


async def test_realms_added_to_a_served_issuer_answer_over_loopback(served_issuer: TestIssuer) -> None:
    tenant = served_issuer.add_realm("tenant-a")
    settings = {"issuers": (), "server_url": served_issuer.base_url, "realms": ("tenant-*",)}
    async with KeycloakAuth(served_issuer.settings(**settings)) as auth:
        assert (await auth.verify(tenant.token())).realm == "tenant-a"
        with pytest.raises(InvalidToken, match="unknown realm"):
            await auth.verify(ghost_token(served_issuer, "tenant-b"))


async def test_random_realm_names_cause_a_bounded_number_of_fetches(
    server: TestIssuer, clock: FrozenClock, transport: Counted
) -> None:
    """10,000 tokens, each naming another non-existent matching realm: at most
    ``realm_lookups_per_minute`` lookups a minute (one request each), the rest 503 until the minute ends."""
    claims = server.claims(lifetime=3600)
    tokens = [server.sign(claims | {"iss": f"{BASE}/realms/tenant-{n}"}) for n in range(10_000)]
    refusals: dict[int, int] = {401: 0, 503: 0}
    async with multi(server, transport, realm_lookups_per_minute=20) as auth:
        for number, token in enumerate(tokens):
            if number == 5_000:
                clock.advance(60)
            with pytest.raises((InvalidToken, IdentityProviderUnavailable)) as refused:
                await auth.verify(token)
            refusals[refused.value.status_code] += 1
        assert len(transport.paths) == 40  # 20 in each of the two minutes
        assert refusals == {401: 40, 503: 9_960}
        assert all(path.endswith("/.well-known/openid-configuration") for path in transport.paths)


async def test_a_token_beyond_the_lookup_rate_gets_503_with_retry_after(
    server: TestIssuer, clock: FrozenClock, transport: Counted
) -> None:
    tenant = server.add_realm("tenant-a")
    async with multi(server, transport, realm_lookups_per_minute=1) as auth:
        with pytest.raises(InvalidToken):
            await auth.verify(ghost_token(server, "tenant-x"))
        clock.advance(20)
        with pytest.raises(IdentityProviderUnavailable) as refused:
            await auth.verify(tenant.token())
        assert refused.value.retry_after == 40
        clock.advance(40)
        assert (await auth.verify(tenant.token())).realm == "tenant-a"


async def test_least_recently_used_realms_are_evicted_beyond_max_realms(server: TestIssuer, transport: Counted) -> None:
    a, b, c = (server.add_realm(f"tenant-{name}") for name in "abc")
    async with multi(server, transport, max_realms=2) as auth:
        await auth.verify(a.token())
        await auth.verify(b.token())
        await auth.verify(a.token())  # a is now the most recently used
        await auth.verify(c.token())
        assert [auth.key_set(tenant.issuer).issuer for tenant in (a, c)] == [a.issuer, c.issuer]
        with pytest.raises(KeyError):
            auth.key_set(b.issuer)
        await auth.verify(b.token())  # looked up again
        assert (a.requests["jwks"], b.requests["jwks"], c.requests["jwks"]) == (1, 2, 1)


async def test_an_outage_of_a_known_realm_stays_503_and_is_not_remembered_as_missing(
    server: TestIssuer, clock: FrozenClock, auth_multi: KeycloakAuth
) -> None:
    tenant = server.add_realm("tenant-a")
    tenant.fail("discovery", "status")
    with pytest.raises(IdentityProviderUnavailable):
        await auth_multi.verify(tenant.token())
    tenant.heal()
    clock.advance(auth_multi.settings.jwks_retry_interval)
    assert (await auth_multi.verify(tenant.token())).realm == "tenant-a"


async def test_a_listed_realm_name_is_fixed_and_keeps_the_503_of_today(server: TestIssuer, transport: Counted) -> None:
    async with multi(server, transport, realms=("tenant-*", "gone")) as auth:
        assert auth.settings.trusted_issuers == (f"{BASE}/realms/gone",)
        with pytest.raises(IdentityProviderUnavailable):
            await auth.verify(ghost_token(server, "gone"))


async def test_audiences_give_each_realm_its_client_id(server: TestIssuer, transport: Counted) -> None:
    a, b = server.add_realm("tenant-a"), server.add_realm("tenant-b", audience="b-api")
    async with multi(server, transport, audiences={"tenant-b": "b-api"}) as auth:
        assert (await auth.verify(b.token())).realm == "tenant-b"
        assert (await auth.verify(a.token())).realm == "tenant-a"  # others keep KC_M2M_AUDIENCE
        with pytest.raises(InvalidToken, match="audience"):
            await auth.verify(b.token(audience=a.audience))
        with pytest.raises(InvalidToken, match="audience"):
            await auth.verify(a.token(audience="b-api"))


async def test_introspection_asks_the_tokens_own_realm(server: TestIssuer, transport: Counted) -> None:
    a, b = server.add_realm("tenant-a"), server.add_realm("tenant-b")
    for tenant in (a, b):
        tenant.register_client(secret=INTROSPECTION_SECRET)
    b.revoke(revoked := b.token())
    async with multi(server, transport, introspection="always", client_secret=INTROSPECTION_SECRET) as auth:
        assert (await auth.verify(a.token())).realm == "tenant-a"
        with pytest.raises(InvalidToken, match="not active"):
            await auth.verify(revoked)
    assert (a.requests["introspection"], b.requests["introspection"]) == (1, 1)


async def test_a_single_realm_principal_names_its_realm(issuer: TestIssuer) -> None:
    async with issuer.auth(issuers=(), server_url=issuer.base_url, realm=issuer.realm) as auth:
        assert (await auth.verify(issuer.token())).realm == "test"
    async with issuer.auth() as by_issuers:  # KC_M2M_ISSUERS without server_url: no realm is known
        assert (await by_issuers.verify(issuer.token())).realm is None


async def test_a_lightweight_token_takes_its_realms_audience_and_keeps_its_realm(
    server: TestIssuer, transport: Counted
) -> None:
    tenant = server.add_realm("tenant-b", audience="b-api")
    tenant.register_client("machine-b", secret=INTROSPECTION_SECRET)  # one introspecting client for all realms
    overrides = {"lightweight_tokens": True, "client_secret": INTROSPECTION_SECRET, "audiences": {"tenant-b": "b-api"}}
    async with multi(server, transport, **overrides) as auth:
        principal = await auth.verify(tenant.token(lightweight=True))
        assert (principal.realm, principal.audiences) == ("tenant-b", ("b-api",))
        with pytest.raises(InvalidToken, match="audience"):
            await auth.verify(tenant.token(lightweight=True, audience="machine-b"))
