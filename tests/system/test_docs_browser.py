"""The built documentation site in Debian's chromium: the home page and a recipe page render with every
asset loaded (no failed request, no HTTP error) and Material's header and navigation; their screenshots
go into docs/img/, which docs/screenshots.md shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Response

from tests.helpers import REPO, build_docs, chromium_page, serving_directory

SHOTS = REPO / "docs" / "img"
PAGES = {"home.png": "/", "recipe.png": "/recipes/dpop/"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("site")
    built = build_docs(directory)
    assert built.returncode == 0, built.stderr
    with serving_directory(directory) as url:
        yield url


def failures(page: Page) -> list[str]:
    """Collects each request that failed or answered an HTTP error, from now on."""
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(f"failed: {request.url}"))

    def check(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"HTTP {response.status}: {response.url}")

    page.on("response", check)
    return failed


@pytest.mark.parametrize(("shot", "path"), PAGES.items())
def test_the_page_renders_with_every_asset(site: str, shot: str, path: str, tmp_path: Path) -> None:
    with chromium_page(tmp_path) as page:
        failed = failures(page)
        page.goto(site + path, wait_until="networkidle")
        assert page.locator("header.md-header").is_visible()
        assert page.locator("nav.md-nav--primary").count() == 1
        assert page.locator("article.md-content__inner h1").first.is_visible()
        assert page.evaluate("getComputedStyle(document.querySelector('.md-header')).position") == "sticky"
        page.screenshot(path=SHOTS / shot)
        assert failed == []
