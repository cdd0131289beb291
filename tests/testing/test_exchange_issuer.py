"""The test issuer's token exchange follows Keycloak 26.2+ standard token exchange (V2), refusal by refusal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fastapi_kc_m2m.server.exchange import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from fastapi_kc_m2m.testing import OMIT, FrozenClock, TestIssuer, generate_key
from fastapi_kc_m2m.testing.issuer import parse

pytestmark = pytest.mark.anyio

SECRET = "b-secret"


@pytest.fixture
def issuer(clock: FrozenClock) -> TestIssuer:
    issuer = TestIssuer(clock=clock)
    issuer.register_client("machine-a", secret="a-secret", client_roles={"machine-c": ["reader"], "other": ["x"]})
    issuer.register_client("machine-b", secret=SECRET, exchange_audiences=["machine-c"])
    issuer.register_client("machine-c", secret="c-secret")
    return issuer


async def exchange(
    issuer: TestIssuer, subject: str, client: tuple[str, str] = ("machine-b", SECRET), **form: Any
) -> httpx.Response:
    """POST a token exchange (RFC 8693 §2.1) as ``client``; ``OMIT`` leaves a field out."""
    fields = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": "machine-c",
    } | form
    async with httpx.AsyncClient(transport=issuer.transport) as http:
        return await http.post(
            f"{issuer.issuer}/protocol/openid-connect/token",
            data={name: value for name, value in fields.items() if value is not OMIT},
            auth=client,
        )


async def test_the_exchanged_token_keeps_the_subject_and_names_the_requester(issuer: TestIssuer) -> None:
    subject = issuer.token(client_id="machine-a", scope="profile email")
    response = await exchange(issuer, subject, scope="email")
    answer = response.json()
    assert response.status_code == 200
    assert answer["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert answer["token_type"] == "Bearer"
    assert "refresh_token" not in answer  # a client-credentials subject: access tokens only
    claims, caller = parse(answer["access_token"]).payload, parse(subject).payload
    assert (claims["sub"], claims["preferred_username"]) == (caller["sub"], "service-account-machine-a")
    assert (claims["azp"], claims["aud"], claims["scope"]) == ("machine-b", "machine-c", "email")
    assert claims["resource_access"]["machine-c"] == {"roles": ["reader"]}
    assert "other" not in claims["resource_access"]
    assert "act" not in claims  # impersonation, not delegation
    assert issuer.requests["exchange"] == 1


async def test_without_audience_the_requesters_audiences_are_used(issuer: TestIssuer) -> None:
    response = await exchange(issuer, issuer.token(), audience=OMIT)
    assert parse(response.json()["access_token"]).payload["aud"] == "machine-c"


@pytest.mark.parametrize(
    ("form", "client", "error", "status"),
    [
        ({}, ("machine-b", "wrong"), "invalid_client", 401),
        ({}, ("machine-c", "c-secret"), "unauthorized_client", 400),  # standard token exchange not enabled
        ({"subject_token": OMIT}, None, "invalid_request", 400),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}, None, "invalid_request", 400),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, None, "invalid_request", 400),
        ({"audience": "machine-z"}, None, "invalid_client", 400),  # no such client
        ({"audience": "machine-a"}, None, "invalid_request", 400),  # exists, but not B's to ask for
        ({"scope": "profile admin"}, None, "invalid_scope", 400),  # scopes only narrow
    ],
)
async def test_requests_keycloak_refuses(
    issuer: TestIssuer, form: dict[str, Any], client: tuple[str, str] | None, error: str, status: int
) -> None:
    response = await exchange(issuer, issuer.token(), client or ("machine-b", SECRET), **form)
    assert (response.status_code, response.json()) == (status, {"error": error})


@pytest.mark.parametrize("case", ["foreign", "expired", "revoked", "not_for_requester", "dpop_bound", "cert_bound"])
async def test_subject_tokens_keycloak_refuses(issuer: TestIssuer, case: str) -> None:
    now = int(issuer.clock())
    subject = {
        "foreign": lambda: issuer.token(key=generate_key()),
        "expired": lambda: issuer.token(exp=now - 1),
        "revoked": issuer.token,
        "not_for_requester": lambda: issuer.token(audience="machine-c"),
        "dpop_bound": lambda: issuer.token(dpop_key=generate_key("ES256")),
        "cert_bound": lambda: issuer.token(cnf={"x5t#S256": "thumbprint"}),
    }[case]()
    if case == "revoked":
        issuer.revoke(subject)
    expected = {
        "not_for_requester": (403, "access_denied"),
        "dpop_bound": (400, "invalid_request"),
        "cert_bound": (400, "invalid_request"),
    }.get(case, (400, "invalid_token"))
    response = await exchange(issuer, subject)
    assert (response.status_code, response.json()["error"]) == expected
