import pytest

from fastapi_kc_m2m import KeycloakAuth
from fastapi_kc_m2m.testing import TestIssuer

pytestmark = pytest.mark.anyio


async def test_keycloak_shaped_token_is_accepted(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    principal = await auth.verify(issuer.token(scope="orders:read"))
    assert principal.client_id == "machine-a"
    assert principal.scopes == {"orders:read"}


async def test_loopback_issuer_serves_discovery_and_keys(served_issuer: TestIssuer) -> None:
    async with KeycloakAuth(served_issuer.settings()) as auth:
        principal = await auth.verify(served_issuer.token())
    assert principal.issuer.startswith("http://127.0.0.1:")
    assert served_issuer.requests == {"discovery": 1, "jwks": 1}
