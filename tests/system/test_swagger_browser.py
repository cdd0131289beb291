"""Swagger UI's "Authorize" in a real browser: the example's Machine B and the test issuer on loopback, Debian's
chromium getting a token by the client-credentials grant (RFC 6749 §4.4) from the issuer's origin (CORS, as
Keycloak's web origins allow), then calling protected routes with it (RFC 6750 §2.1)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import swagger_ui
from playwright.sync_api import Page, Route

from example_service import demo
from example_service.app import READ_SCOPE
from fastapi_kc_m2m.asgi.openapi import SCHEME_NAME
from fastapi_kc_m2m.testing import TestIssuer, loopback_socket, serve_app
from tests import helpers
from tests.helpers import chromium_page

CLIENT, SECRET = "swagger", "swagger-s3cret"  # a client without machine-b's writer role
#: Where FastAPI's ``/docs`` loads Swagger UI from; served from swagger-ui-py's copy (network only to loopback).
SWAGGER_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/*"
SWAGGER_UI = Path(swagger_ui.__file__).parent / "static"
LIST_ORDERS, PLACE_ORDER = "list_orders_orders_get", "place_order_orders_post"


class Served(NamedTuple):
    api_url: str
    realm: TestIssuer


@contextlib.contextmanager
def machine_b(*, cors: bool) -> Iterator[Served]:
    """Machine B on loopback, trusting a test issuer on another port; with ``cors``, its page's origin is
    among the issuer's web origins."""
    with loopback_socket() as sock:
        origins = [f"http://127.0.0.1:{sock.getsockname()[1]}"] if cors else []
        with TestIssuer.serving(realm="demo", optional_scopes={READ_SCOPE}, web_origins=origins) as realm:
            realm.register_client(CLIENT, secret=SECRET)
            realm.register_client("machine-b", secret=demo.MACHINE_B_SECRET)
            api = demo.create_app(realm.auth(client_secret=demo.MACHINE_B_SECRET, **demo.INTROSPECTION))
            with serve_app(api, sock, lifespan="on") as api_url:
                yield Served(api_url, realm)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with machine_b(cors=True) as served:
        yield served


def swagger_asset(route: Route) -> None:
    route.fulfill(path=SWAGGER_UI / route.request.url.rsplit("/", 1)[-1])


def open_docs(page: Page, api_url: str) -> None:
    """Machine B's ``/docs``, Swagger UI's files served from swagger-ui-py's copy; the route is removed
    once they are in, so that the browser's own CORS preflights are checked (Playwright answers them
    while a route is set)."""
    page.route(SWAGGER_CDN, swagger_asset)
    page.goto(f"{api_url}/docs")
    page.wait_for_selector(f"#operations-default-{LIST_ORDERS}")
    page.unroute(SWAGGER_CDN)


def authorize(page: Page, *scopes: str) -> None:
    """Fill the Authorize dialog with the client's id and secret, tick ``scopes``, and authorize."""
    page.click("button.authorize")
    dialog = page.locator(".modal-ux")
    dialog.locator("input[data-name=clientId]").fill(CLIENT)
    dialog.locator("input[data-name=clientSecret]").fill(SECRET)
    for scope in scopes:
        dialog.locator(".scopes label", has_text=scope).click()
    dialog.locator("button.authorize").click()


def execute(page: Page, operation: str) -> tuple[int, str]:
    """Try out and execute ``operation``; the status of its call and the status Swagger UI shows."""
    block = page.locator(f"#operations-default-{operation}")
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    with page.expect_response(lambda response: "/orders" in response.url) as answer:
        block.locator("button.execute").click()
    shown = block.locator(".live-responses-table .response .response-col_status").first.inner_text()
    return answer.value.status, shown.strip()


def test_the_openapi_names_the_issuers_token_endpoint(served: Served) -> None:
    schema = httpx.get(f"{served.api_url}/openapi.json", timeout=10).json()
    flow = schema["components"]["securitySchemes"][SCHEME_NAME]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{served.realm.issuer}/protocol/openid-connect/token"
    assert READ_SCOPE in flow["scopes"]


def test_swagger_ui_authorizes_and_calls_a_protected_route(served: Served, tmp_path: Path) -> None:
    with chromium_page(tmp_path) as page:
        open_docs(page, served.api_url)
        authorize(page, READ_SCOPE)
        page.locator(".modal-ux button", has_text="Logout").wait_for()  # authorized: a token from the issuer
        page.locator(".modal-ux button", has_text="Close").click()
        page.locator(".modal-ux").wait_for(state="detached")
        assert execute(page, LIST_ORDERS) == (200, "200")
        assert execute(page, PLACE_ORDER) == (403, "403")  # the client lacks machine-b's writer role


def test_a_token_without_the_routes_scope_gets_403(served: Served, tmp_path: Path) -> None:
    with chromium_page(tmp_path) as page:
        open_docs(page, served.api_url)
        authorize(page)  # orders:read not ticked: the token lacks it
        page.locator(".modal-ux button", has_text="Logout").wait_for()
        page.locator(".modal-ux button", has_text="Close").click()
        assert execute(page, LIST_ORDERS) == (403, "403")


def test_without_the_web_origin_the_page_gets_no_token(tmp_path: Path) -> None:
    """The issuer answers, but the browser keeps the answer from a page of an origin it does not allow."""
    with machine_b(cors=False) as served, chromium_page(tmp_path) as page:
        open_docs(page, served.api_url)
        authorize(page, READ_SCOPE)
        error = page.locator(".modal-ux .errors")
        error.wait_for()
        assert "Failed to fetch" in error.inner_text()
        assert page.locator(".modal-ux button", has_text="Logout").count() == 0


def fail_in_a_page(screenshots: Path) -> None:
    with chromium_page(screenshots) as page:
        page.set_content("<p>rendered</p>")
        raise AssertionError("the check failed")


def test_the_browser_page_leaves_a_screenshot_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as caught:
        fail_in_a_page(tmp_path)
    [shot] = tmp_path.glob("chromium-*.png")
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert caught.value.__notes__ == [f"screenshot of the page: {shot}"]


def test_the_browser_page_fails_without_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(pytest.fail.Exception, match="run scripts/bootstrap --with-node"), chromium_page():
        pass
