"""The calling side loads no web framework and no settings model (a worker or a CLI pays for neither)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "pydantic_settings", "pydantic", "fastapi_kc_m2m.server", "fastapi_kc_m2m.asgi")


def loaded_after(statement: str) -> set[str]:
    """The top modules (and our rooms) a fresh interpreter has loaded after ``statement``."""
    probe = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)  # noqa: S603
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    [
        "import fastapi_kc_m2m.client",
        "from fastapi_kc_m2m.client import ClientCredentialsAuth, jwks_endpoint",
        "from fastapi_kc_m2m import ClientCredentialsAuth",
    ],
)
def test_the_calling_side_loads_no_web_framework(statement: str) -> None:
    modules = loaded_after(statement)
    assert "fastapi_kc_m2m.client.auth" in modules
    assert not modules & set(HEAVY)


def test_the_probe_sees_the_web_framework_when_it_is_loaded() -> None:
    """The check above could not pass by accident: the resource-server side does load them."""
    modules = loaded_after("from fastapi_kc_m2m import require_scope")
    assert {"fastapi", "starlette", "pydantic_settings", "fastapi_kc_m2m.asgi"} <= modules
