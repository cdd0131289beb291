"""Every ```python and ```sh block of the README and docs/ runs, and the docs site builds strictly.

The blocks of one page run in order in one namespace (top-level ``await`` allowed) in a temporary
directory, against a served TestIssuer: the prelude (``world``) and its names are documented on
docs/index.md ("How the examples on these pages are run"). A block preceded by ``<!-- not-run: why -->``
is skipped; there are few, each with its reason.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_kc_m2m import KeycloakResourceServer, KeycloakSettings, require_scope
from fastapi_kc_m2m.testing import TestIssuer, serve_app
from tests.helpers import bearer, build_docs

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?:<!-- not-run: (?P<why>.+?) -->\n)?```(?P<lang>python|sh)\n(?P<code>.*?)^```", re.S | re.M)
SECRET = "s3cret"
MAX_NOT_RUN = 4  # the two commands (README, docs/index.md), the mTLS client, the long fuzz run
sys.path.insert(0, str(ROOT / "docs"))
import gen_reference  # noqa: E402 - the MkDocs hook, beside the pages it fills


@dataclass(frozen=True)
class Block:
    page: Path
    lang: str
    code: str
    not_run: str | None


def blocks(page: Path) -> list[Block]:
    """The fenced python and sh blocks of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    return [Block(page, m["lang"], m["code"], m["why"]) for m in FENCE.finditer(text)]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    """The prelude: a served test issuer with client ``machine-a``, an API needing ``orders:read``, and
    the ``KC_M2M_*`` environment pointing at them."""
    with TestIssuer.serving(realm="demo", audience="machine-b", optional_scopes={"orders:read"}) as issuer:
        issuer.register_client("machine-a", secret=SECRET)
        env = {"KC_M2M_SERVER_URL": issuer.base_url, "KC_M2M_REALM": "demo", "KC_M2M_AUDIENCE": "machine-b"}
        with pytest.MonkeyPatch.context() as patch, serve_app(_api(env), lifespan="on") as api:
            for name, value in env.items():
                patch.setenv(name, value)
            yield {
                "SERVER_URL": issuer.base_url,
                "ISSUER": issuer.issuer,
                "SECRET": SECRET,
                "API": api,
                "token": issuer.token(scope="orders:read"),
                "issuer": issuer,
            }


def _api(env: dict[str, str]) -> FastAPI:
    settings = KeycloakSettings(server_url=env["KC_M2M_SERVER_URL"], realm="demo", audience="machine-b")
    rs = KeycloakResourceServer(settings)
    app = FastAPI(lifespan=rs.lifespan)

    @app.get("/orders", dependencies=[Depends(require_scope("orders:read"))])
    async def orders() -> list[str]:
        return []

    return app


async def run_page(page: Path, names: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Run the page's runnable blocks in order; return the python namespace they shared."""
    namespace = dict(names)
    for block in (b for b in blocks(page) if b.not_run is None):
        if block.lang == "python":
            code = compile(block.code, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)  # noqa: S307 - our own documentation
            if inspect.iscoroutine(result):
                await result
        else:
            env = os.environ | {k: v for k, v in names.items() if isinstance(v, str)}
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
            with anyio.fail_after(60):
                done = await anyio.run_process(
                    ["/bin/bash", "-euo", "pipefail", "-c", block.code], cwd=directory, env=env, check=False
                )
            assert done.returncode == 0, f"{page_id(page)}: {block.code}\n{done.stderr.decode()}"
    return namespace


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=page_id)
async def test_every_block_of_the_page_runs(
    page: Path, world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await run_page(page, world, tmp_path)


def test_few_blocks_are_not_run_and_each_says_why() -> None:
    skipped = [b for p in PAGES for b in blocks(p) if b.not_run is not None]
    assert len(skipped) <= MAX_NOT_RUN
    assert all(len(b.not_run or "") > 20 for b in skipped)
    assert sum(len(blocks(p)) for p in PAGES) > 4 * MAX_NOT_RUN


def test_the_fence_pattern_finds_markers_and_languages() -> None:
    text = "<!-- not-run: a reason of some length -->\n```sh\nmake x\n```\n```python\nx = 1\n```\n```nginx\ny\n```\n"
    found = [(m["lang"], m["why"]) for m in FENCE.finditer(text)]
    assert found == [("sh", "a reason of some length"), ("python", None)]


async def test_the_quickstart_serves_as_promised(world: dict[str, Any], tmp_path: Path) -> None:
    """The README's quickstart app, run as written with the README's variables, answers as it says."""
    quickstart = blocks(ROOT / "README.md")[1]
    assert "Depends(require_scope(" in quickstart.code
    namespace: dict[str, Any] = {}
    exec(compile(quickstart.code, "README.md", "exec"), namespace)  # noqa: S102 - our README
    issuer: TestIssuer = world["issuer"]
    reader = issuer.token(scope="orders:read")
    writer = issuer.token(scope="orders:read", client_roles={"machine-b": ["writer"]})
    with serve_app(namespace["app"], lifespan="on") as url:
        async with httpx.AsyncClient(base_url=url) as client:

            async def status(method: str, token: str | None = None) -> int:
                headers = {} if token is None else bearer(token)
                return (await client.request(method, "/orders", headers=headers)).status_code

            assert (await status("GET", reader), await status("GET", issuer.token()), await status("GET")) == (
                200,
                403,
                401,
            )
            assert (await client.get("/orders", headers=bearer(reader))).json() == {"client": "machine-a"}
            assert (await status("POST", writer), await status("POST", reader)) == (200, 403)
            assert (await client.get("/openapi.json")).status_code == 200  # excluded, as the quickstart says


def test_the_test_example_passes_as_a_users_test(pytester: pytest.Pytester) -> None:
    example = next(b.code for b in blocks(ROOT / "docs" / "testing.md") if "async def test_" in b.code)
    pytester.makepyfile(test_users_api=example)
    pytester.makeconftest('@__import__("pytest").fixture\ndef anyio_backend():\n    return "asyncio"\n')
    result = pytester.runpytest_subprocess("-p", "anyio", "-W", "error")
    result.assert_outcomes(passed=1)


def test_the_configuration_page_names_every_setting_and_nothing_else() -> None:
    page = gen_reference.on_page_markdown((ROOT / "docs" / "configuration.md").read_text(encoding="utf-8"))
    documented = set(re.findall(r"^\| `(KC_M2M_[A-Z_]+)` \|", page, flags=re.M))
    assert documented == {f"KC_M2M_{name.upper()}" for name in KeycloakSettings.model_fields}


def test_the_cli_page_shows_every_command_and_option() -> None:
    page = gen_reference.on_page_markdown((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))
    for heading in ("## kc-m2m keygen", "## kc-m2m token", "## kc-m2m verify"):
        assert heading in page
    assert "--cert-key" in page
    assert "<!-- generated" not in page


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copytree(ROOT / "fastapi_kc_m2m", tmp_path / "fastapi_kc_m2m")
    assert build_docs(tmp_path / "site", tmp_path / "mkdocs.yml").returncode == 0
    with (tmp_path / "docs" / "comparison.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the missing page](missing.md).\n")
    broken = build_docs(tmp_path / "site", tmp_path / "mkdocs.yml")
    assert broken.returncode != 0
    assert "missing.md" in broken.stderr + broken.stdout


def test_the_benchmarks_page_shows_the_readmes_latest_figures() -> None:
    page = gen_reference.on_page_markdown((ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8"))
    assert "| command | case | figure |" in page
    assert "<!-- generated" not in page
