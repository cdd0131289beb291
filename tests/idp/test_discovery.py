"""The resource server's copy of the discovery document (OpenID Connect Discovery 1.0 §4)."""

from __future__ import annotations

import httpx
import pytest

from fastapi_kc_m2m._idp.discovery import ProviderMetadata
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
