"""MkDocs hook: the configuration and CLI reference pages, generated from the code so neither can drift.

``<!-- generated: settings -->`` becomes the table of ``KeycloakSettings`` fields and
``<!-- generated: cli -->`` the help of every ``kc-m2m`` command, from the argparse parser itself, and
``<!-- generated: api -->`` one mkdocstrings entry per public name of ``fastapi_kc_m2m``, and
``<!-- generated: benchmarks -->`` the README's "Benchmarks" section (the latest figures live there once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

import fastapi_kc_m2m
from fastapi_kc_m2m import KeycloakSettings
from fastapi_kc_m2m.cli import _parser

SETTINGS_MARKER = "<!-- generated: settings -->"
CLI_MARKER = "<!-- generated: cli -->"
API_MARKER = "<!-- generated: api -->"
BENCHMARKS_MARKER = "<!-- generated: benchmarks -->"
README = Path(__file__).resolve().parents[1] / "README.md"
HELP_WIDTH = "100"


def _default(field: Any) -> str:
    """A field's default as the environment would spell it; ``required`` when there is none."""
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default is PydanticUndefined else field.default
    if value in (None, (), {}, ""):
        return "—"
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def settings_table() -> str:
    """One row per settings field: variable, default, description."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in KeycloakSettings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `KC_M2M_{name.upper()}` | {_default(field)} | {meaning} |")
    return "\n".join(rows)


@contextlib.contextmanager
def _help_width() -> Iterator[None]:
    """argparse wraps help to ``COLUMNS``: fix it, so the page does not depend on the terminal."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def cli_reference() -> str:
    """``kc-m2m --help`` and each command's ``--help``, each under its own heading."""
    with _help_width():
        parser = _parser()
        sections = [f"## kc-m2m\n\n```text\n{parser.format_help()}```"]
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in commands.choices.items():
            sections.append(f"## kc-m2m {name}\n\n```text\n{sub.format_help()}```")
    return "\n\n".join(sections)


def api_reference() -> str:
    """A mkdocstrings directive for each public name, in the module that defines it (PEP 562 table)."""
    where = fastapi_kc_m2m._WHERE
    return "\n\n".join(f"::: fastapi_kc_m2m{where[name]}.{name}" for name in sorted(where) if name != "__version__")


def readme_benchmarks() -> str:
    """The body of the README's "Benchmarks" section, its links made relative to docs/."""
    body = README.read_text(encoding="utf-8").split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    return body.replace("](docs/", "](")


GENERATORS = {
    SETTINGS_MARKER: settings_table,
    CLI_MARKER: cli_reference,
    API_MARKER: api_reference,
    BENCHMARKS_MARKER: readme_benchmarks,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the markers of a page (an MkDocs event hook)."""
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
