"""The strict JSON parser (RFC 8259): lone surrogate escapes are refused, real characters are kept."""

from __future__ import annotations

import pytest

from fastapi_kc_m2m._jose.strictjson import loads_object


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(rb'{"sub": "\ud800"}', id="high-alone"),
        pytest.param(rb'{"sub": "\uDFFF"}', id="low-alone-upper-case"),
        pytest.param(rb'{"sub": "a\udc00\ud800b"}', id="pair-reversed"),
        pytest.param(rb'{"\ud83d": 1}', id="in-a-member-name"),
        pytest.param(rb'{"x": [{"y": ["\ud83d"]}]}', id="nested"),
    ],
)
def test_lone_surrogate_escapes_are_refused(text: bytes) -> None:
    """RFC 8259 §8.2: such a string is no Unicode text, and echoing it back cannot be encoded."""
    with pytest.raises(ValueError, match="surrogate"):
        loads_object(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param(rb'{"sub": "\ud83d\ude00"}', "\U0001f600", id="escaped-pair"),
        pytest.param('{"sub": "\U0001f600"}'.encode(), "\U0001f600", id="raw-utf-8"),
        pytest.param(rb'{"sub": "\\ud800"}', "\\ud800", id="escaped-backslash"),
    ],
)
def test_characters_beyond_the_bmp_are_kept(text: bytes, value: str) -> None:
    assert loads_object(text) == {"sub": value}
