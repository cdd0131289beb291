"""CORS at the test issuer's token endpoint, for pages of its web origins only (Keycloak's ``webOrigins``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fastapi_kc_m2m.testing import TestIssuer

pytestmark = pytest.mark.anyio

PAGE = "http://127.0.0.1:8000"
OTHER = "http://127.0.0.1:9000"
SECRET = "swagger-s3cret"


async def call(issuer: TestIssuer, method: str, origin: str, **options: Any) -> httpx.Response:
    """``method`` at the issuer's token endpoint, in-process, from a page of ``origin``."""
    headers = {"Origin": origin, **options.pop("headers", {})}
    async with httpx.AsyncClient(transport=issuer.transport) as client:
        url = f"{issuer.issuer}/protocol/openid-connect/token"
        return await client.request(method, url, headers=headers, **options)


async def grant(issuer: TestIssuer, origin: str, secret: str = SECRET) -> httpx.Response:
    issuer.register_client("swagger", secret=SECRET)
    return await call(issuer, "POST", origin, auth=("swagger", secret), data={"grant_type": "client_credentials"})


async def preflight(issuer: TestIssuer, origin: str) -> httpx.Response:
    headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    return await call(issuer, "OPTIONS", origin, headers=headers)


@pytest.mark.parametrize("origins", [[PAGE], [f"{PAGE}/"], ["*"]])
async def test_a_page_of_a_web_origin_reads_the_token(origins: list[str]) -> None:
    response = await grant(TestIssuer(web_origins=origins), PAGE)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"


async def test_a_page_of_another_origin_gets_no_cors_headers() -> None:
    response = await grant(TestIssuer(web_origins=[PAGE]), OTHER)
    assert response.status_code == 200  # the browser, not the issuer, withholds it from the page
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_no_origin_may_read_it_by_default() -> None:
    response = await grant(TestIssuer(), PAGE)
    assert "access-control-allow-origin" not in response.headers


async def test_a_refusal_is_readable_by_a_web_origin() -> None:
    """So the page can show ``invalid_client`` (RFC 6749 §5.2) rather than a network error."""
    response = await grant(TestIssuer(web_origins=[PAGE]), PAGE, secret="wrong")
    assert (response.status_code, response.json()) == (401, {"error": "invalid_client"})
    assert response.headers["access-control-allow-origin"] == PAGE


async def test_the_preflight_allows_a_web_origin_to_post_with_credentials() -> None:
    issuer = TestIssuer(web_origins=[PAGE])
    response = await preflight(issuer, PAGE)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    allowed = {name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "dpop"} <= allowed
    assert response.headers["access-control-max-age"] == "3600"
    assert issuer.requests["token"] == 0  # not a token request


async def test_the_preflight_allows_nothing_to_another_origin() -> None:
    response = await preflight(TestIssuer(web_origins=[PAGE]), OTHER)
    assert response.status_code == 200
    cors = {name for name in response.headers if name.startswith("access-control-")}
    assert cors == set()


async def test_web_origins_may_be_added_once_the_page_is_served() -> None:
    issuer = TestIssuer()
    issuer.web_origins.add(PAGE)
    assert (await preflight(issuer, PAGE)).headers["access-control-allow-origin"] == PAGE
