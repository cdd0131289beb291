"""The resource server's copy of the discovery document (OpenID Connect Discovery 1.0 §4)."""

from __future__ import annotations

import httpx
import pytest

from fastapi_kc_m2m._idp.discovery import ProviderMetadata, endpoint_of, mtls_endpoint_of
from fastapi_kc_m2m._idp.http import FetchError, HttpLimits
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer

pytestmark = pytest.mark.anyio


async def test_failed_discovery_is_not_refetched_within_the_retry_interval(
    issuer: TestIssuer, clock: FrozenClock
) -> None:
    issuer.fail("discovery", "status")
    async with httpx.AsyncClient(transport=issuer.transport) as client:
        metadata = ProviderMetadata(issuer.issuer, client, HttpLimits(65536, 1.0), retry_interval=5, clock=clock)
        for _ in range(100):
            with pytest.raises(FetchError):
                await metadata.endpoint("jwks_uri")
        assert issuer.requests["discovery"] == 1
        issuer.heal()
        clock.advance(4.9)
        with pytest.raises(FetchError, match="failed recently"):
            await metadata.endpoint("jwks_uri")
        clock.advance(0.1)
        assert await metadata.endpoint("jwks_uri") == issuer.discovery_document()["jwks_uri"]
        assert await metadata.endpoint("introspection_endpoint")  # kept: no further fetch
    assert issuer.requests["discovery"] == 2


# ------------------------------------------------------------------ mtls_endpoint_aliases (RFC 8705 §5)
DOCUMENT = {"issuer": "https://kc.test/realms/r", "token_endpoint": "https://kc.test/token"}


def test_the_mtls_alias_is_preferred_when_advertised() -> None:
    document = DOCUMENT | {"mtls_endpoint_aliases": {"token_endpoint": "https://mtls.kc.test/token"}}
    assert mtls_endpoint_of(document, DOCUMENT["issuer"], "token_endpoint") == "https://mtls.kc.test/token"
    assert endpoint_of(document, DOCUMENT["issuer"], "token_endpoint") == "https://kc.test/token"


@pytest.mark.parametrize("aliases", [None, {}, {"introspection_endpoint": "https://mtls.kc.test/i"}, "nonsense"])
def test_without_an_alias_the_endpoint_is_used(aliases: object) -> None:
    document = DOCUMENT | ({} if aliases is None else {"mtls_endpoint_aliases": aliases})
    assert mtls_endpoint_of(document, DOCUMENT["issuer"], "token_endpoint") == "https://kc.test/token"


@pytest.mark.parametrize("alias", ["ftp://kc.test/token", 42, "https://user:pw@kc.test/token"])
def test_an_unusable_alias_is_refused_not_skipped(alias: object) -> None:
    document = DOCUMENT | {"mtls_endpoint_aliases": {"token_endpoint": alias}}
    with pytest.raises(FetchError, match=r"^discovery has no usable mtls_endpoint_aliases.token_endpoint$"):
        mtls_endpoint_of(document, DOCUMENT["issuer"], "token_endpoint")


def test_the_alias_needs_the_right_issuer_too() -> None:
    document = DOCUMENT | {"mtls_endpoint_aliases": {"token_endpoint": "https://mtls.kc.test/token"}}
    with pytest.raises(FetchError, match="another issuer"):
        mtls_endpoint_of(document, "https://evil.test/realms/r", "token_endpoint")
