"""The distribution as a user gets it: ``python -m build`` makes a wheel and an sdist that ``twine check``
accepts, and the built wheel, installed into a clean virtual environment per extra with the pinned
versions (``-c constraints.txt``), works bare and with each extra (tests/system/wheel_smoke.py).

The wheel is built once per module; each environment is made once and shared by the cases it serves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from email import message_from_string
from pathlib import Path
from typing import Any

import pytest

from fastapi_kc_m2m import __version__
from tests.helpers import RedisServer

pytestmark = pytest.mark.distribution

ROOT = Path(__file__).parents[2]
SMOKE = Path(__file__).with_name("wheel_smoke.py")
VERSION = __version__  # the repository's fastapi_kc_m2m/_version.py
EXTRAS = {"uvicorn", "redis", "prometheus-client", "opentelemetry-api"}


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run ``argv`` (its failure output in the assertion message); its standard output."""
    result = subprocess.run([str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it (``python -m build``, isolated build environment)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Callable[[str], Path]:
    """``venv(extra)``: a clean environment with the wheel installed with ``extra`` ("" for none); its bin/."""
    made: dict[str, Path] = {}

    def make(extra: str) -> Path:
        if extra not in made:
            home = tmp_path_factory.mktemp(f"venv-{extra or 'bare'}")
            run(sys.executable, "-m", "venv", "--without-pip", home)
            requirement = f"{wheel}[{extra}]" if extra else str(wheel)
            run(sys.executable, "-m", "pip", "--python", home / "bin" / "python", "install", "--quiet",
                "-c", ROOT / "constraints.txt", requirement)  # fmt: skip
            made[extra] = home / "bin"
        return made[extra]

    return make


def smoke(bin_dir: Path, case: str, *args: str) -> dict[str, Any]:
    """What wheel_smoke.py's ``case`` saw, run by that environment from a directory outside the repository."""
    return json.loads(run(bin_dir / "python", "-I", SMOKE, case, *args, cwd=bin_dir))


def installed(bin_dir: Path) -> set[str]:
    """The distributions in that environment, names normalised (PEP 503)."""
    listing = run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "list", "--format=json")
    return {normalised(entry["name"]) for entry in json.loads(listing)}


def normalised(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------ the artefacts
def test_twine_check_passes_on_both(dist: Path) -> None:
    artefacts = sorted(dist.iterdir())
    assert [path.name for path in artefacts] == [f"fastapi_kc_m2m-{VERSION}-py3-none-any.whl",
                                                 f"fastapi_kc_m2m-{VERSION}.tar.gz"]  # fmt: skip
    assert run(sys.executable, "-m", "twine", "check", "--strict", *artefacts).count("PASSED") == 2


def test_the_wheel_holds_the_package_typed_and_licensed(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"fastapi_kc_m2m", f"fastapi_kc_m2m-{VERSION}.dist-info"}
    assert "fastapi_kc_m2m/py.typed" in names
    assert f"fastapi_kc_m2m-{VERSION}.dist-info/licenses/LICENSE" in names


def test_the_sdist_holds_the_package_and_its_documents_only(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        top = {Path(name).parts[1] for name in archive.getnames() if len(Path(name).parts) > 1}
    assert top == {"fastapi_kc_m2m", "fastapi_kc_m2m.egg-info", "CHANGELOG.md", "LICENSE", "MANIFEST.in",
                   "PKG-INFO", "README.md", "pyproject.toml", "setup.cfg"}  # fmt: skip


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert releases[0] in {"Unreleased", VERSION}
    assert set(re.findall(r"^### (.+)$", text, re.MULTILINE)) <= {"Added", "Changed", "Deprecated", "Removed",
                                                                   "Fixed", "Security"}  # fmt: skip


# ------------------------------------------------------------------ installed with no extras
def test_bare_install_imports_and_protects_an_app(venv: Callable[[str], Path]) -> None:
    bin_dir = venv("")
    seen = smoke(bin_dir, "bare")
    assert seen.pop("package_file").startswith(str(bin_dir.parent))  # the wheel's copy, not the repository
    assert seen == {"version": VERSION, "metadata_version": VERSION, "statuses": [401, 200]}


def test_bare_install_command_line_version(venv: Callable[[str], Path]) -> None:
    assert run(venv("") / "kc-m2m", "--version").strip() == f"kc-m2m {VERSION}"


def test_the_wheel_requires_no_extra_unconditionally(wheel: Path) -> None:
    metadata = zipfile.ZipFile(wheel).read(f"fastapi_kc_m2m-{VERSION}.dist-info/METADATA").decode()
    required = message_from_string(metadata).get_all("Requires-Dist") or []
    unconditional = {normalised(re.split(r"[\s<>=!~\[]", line)[0]) for line in required if ";" not in line}
    assert "fastapi" in unconditional
    assert not unconditional & EXTRAS


def test_bare_install_pulls_no_extra(venv: Callable[[str], Path]) -> None:
    names = installed(venv(""))
    assert "fastapi-kc-m2m" in names
    assert not names & (EXTRAS - {"opentelemetry-api"}), names  # fastapi and starlette require the OTel API


# ------------------------------------------------------------------ one environment per extra
def test_testing_extra_serves_the_issuer_on_loopback(venv: Callable[[str], Path]) -> None:
    assert smoke(venv("testing"), "testing") == {"issuer": True, "requests": {"discovery": 1, "jwks": 1}}


def test_redis_extra_talks_to_a_real_redis(venv: Callable[[str], Path]) -> None:
    with RedisServer() as server:
        seen = smoke(venv("redis"), "redis", server.url)
    assert seen == {"read": {"claims": {"sub": "a"}}, "claims": [True, False]}


def test_prometheus_extra_exposes_the_families(venv: Callable[[str], Path]) -> None:
    seen = smoke(venv("prometheus"), "prometheus")
    assert seen["status"] == 200
    assert "kc_m2m_verifications_total" in seen["families"]


def test_otel_extra_traces_as_a_no_op_without_an_sdk(venv: Callable[[str], Path]) -> None:
    assert smoke(venv("otel"), "otel") == {"client_id": "machine-a", "sdk": False}


def test_all_extra_brings_every_extra(venv: Callable[[str], Path]) -> None:
    bin_dir = venv("all")
    assert installed(bin_dir) >= EXTRAS
    assert set(smoke(bin_dir, "all").values()) == {True}
