"""The test issuer as a user's tests set it up: optional scopes, registered roles, serving on loopback."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest

from fastapi_kc_m2m.testing import TestIssuer

pytestmark = pytest.mark.anyio

SECRET = "billing-s3cret"


async def grant(issuer: TestIssuer, **form: str) -> httpx.Response:
    """A client-credentials request of ``billing`` at the issuer's token endpoint, in-process."""
    async with httpx.AsyncClient(transport=issuer.transport) as client:
        return await client.post(
            f"{issuer.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": "billing", "client_secret": SECRET, **form},
        )


async def granted_claims(issuer: TestIssuer, **form: str) -> Any:
    """The verified claims of the token the issuer grants ``billing``."""
    response = await grant(issuer, **form)
    assert response.status_code == 200, response.text
    async with issuer.auth() as auth:
        return await auth.verify(response.json()["access_token"])


async def test_a_scope_is_granted_once_it_is_optional() -> None:
    refusing, granting = TestIssuer(), TestIssuer(optional_scopes={"orders:read"})
    for issuer in (refusing, granting):
        issuer.register_client("billing", secret=SECRET)
    refused = await grant(refusing, scope="orders:read")
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_scope"})
    principal = await granted_claims(granting, scope="orders:read openid")
    assert principal.scopes == {"orders:read", "openid", "profile", "email"}


async def test_registered_roles_ride_on_granted_tokens() -> None:
    issuer = TestIssuer()
    issuer.register_client("billing", secret=SECRET, realm_roles=["auditor"], client_roles={"machine-b": ["writer"]})
    principal = await granted_claims(issuer)
    assert principal.client_id == "billing"
    assert "auditor" in principal.realm_roles
    assert principal.roles_of("machine-b") == {"writer"}
    assert principal.roles_of("account") == {"manage-account", "view-profile"}


async def test_a_client_registered_without_roles_gets_none() -> None:
    issuer = TestIssuer()
    issuer.register_client("billing", secret=SECRET)
    principal = await granted_claims(issuer)
    assert principal.roles_of("machine-b") == frozenset()
    assert principal.realm_roles == {"offline_access", "uma_authorization", "default-roles-test"}


async def test_served_issuer_takes_constructor_options() -> None:
    with TestIssuer.serving(optional_scopes={"orders:read"}) as issuer:
        issuer.register_client("billing", secret=SECRET, client_roles={"machine-b": ["writer"]})
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{issuer.issuer}/protocol/openid-connect/token",
                data={"grant_type": "client_credentials", "scope": "orders:read"},
                auth=("billing", SECRET),
            )
        assert response.status_code == 200
        async with issuer.auth() as auth:
            principal = await auth.verify(response.json()["access_token"])
        assert principal.roles_of("machine-b") == {"writer"}


def test_serving_without_uvicorn_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the "testing" extra were not installed
    serving = TestIssuer.serving()
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fastapi_kc_m2m\[testing\]'") as error:
        serving.__enter__()
    assert error.value.name == "uvicorn"
    assert error.value.__cause__ is None
