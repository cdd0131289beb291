"""The README's quickstart and its test example run as written: extracted from README.md and run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastapi_kc_m2m import KeycloakSettings
from fastapi_kc_m2m.testing import TestIssuer, serve_app

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section headed ``section``."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_sections_hold_their_examples() -> None:
    assert "Depends(require_scope(" in python_blocks("Quickstart")[0]
    assert "async def test_" in python_blocks("Testing your own API without Keycloak")[1]


def test_the_quickstart_serves_as_promised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run against a Keycloak-shaped issuer on loopback, configured by the README's variables."""
    with TestIssuer.serving(realm="demo", audience="machine-b") as issuer:
        monkeypatch.setenv("KC_M2M_SERVER_URL", issuer.base_url)
        monkeypatch.setenv("KC_M2M_REALM", "demo")
        monkeypatch.setenv("KC_M2M_AUDIENCE", "machine-b")
        namespace: dict[str, Any] = {}
        exec(compile(python_blocks("Quickstart")[0], "README.md", "exec"), namespace)  # noqa: S102 - our README
        with serve_app(namespace["app"], lifespan="on") as url, httpx.Client(base_url=url) as client:

            def status(method: str, token: str | None = None) -> int:
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                return client.request(method, "/orders", headers=headers).status_code

            reader = issuer.token(scope="orders:read")
            writer = issuer.token(scope="orders:read", client_roles={"machine-b": ["writer"]})
            assert (status("GET", reader), status("GET", issuer.token()), status("GET")) == (200, 403, 401)
            assert client.get("/orders", headers={"Authorization": f"Bearer {reader}"}).json() == {
                "client": "machine-a"
            }
            assert (status("POST", writer), status("POST", reader)) == (200, 403)
            assert client.get("/openapi.json").status_code == 200  # excluded, as the quickstart says


def test_the_readme_test_example_passes_as_a_users_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_users_api=python_blocks("Testing your own API without Keycloak")[1])
    pytester.makeconftest('@__import__("pytest").fixture\ndef anyio_backend():\n    return "asyncio"\n')
    result = pytester.runpytest_subprocess("-p", "anyio", "-W", "error")
    result.assert_outcomes(passed=1)


def test_the_readme_test_kit_lines_run() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python_blocks("Testing your own API without Keycloak")[0], "README.md", "exec"), namespace)  # noqa: S102
    assert {"expired", "alg_none"} <= set(namespace["bad"])


def test_the_configuration_table_names_every_setting_and_nothing_else() -> None:
    table = README.read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(KC_M2M_[A-Z_]+)` \|", table, flags=re.M))
    assert documented == {f"KC_M2M_{name.upper()}" for name in KeycloakSettings.model_fields}
