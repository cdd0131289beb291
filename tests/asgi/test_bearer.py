"""Bearer extraction (RFC 6750 §2.1) and the bounded scan for a second token (RFC 6750 §2.2-2.3)."""

from __future__ import annotations

import pytest

from fastapi_kc_m2m.asgi import bearer
from fastapi_kc_m2m.asgi.bearer import has_token_parameter
from fastapi_kc_m2m.errors import InvalidRequest


def scope(authorization: bytes) -> dict[str, object]:
    return {"headers": [(b"authorization", authorization)], "query_string": b""}


@pytest.mark.parametrize("value", [b"Bearer\r\n", b"Bearer\x00", b"Bearer\x1fabc", b"BEARER\x7f", b"Bearer;x"])
def test_a_non_token_character_after_the_scheme_is_malformed(value: bytes) -> None:
    with pytest.raises(InvalidRequest):
        bearer.bearer_token(scope(value))


@pytest.mark.parametrize("value", [b"Bearerx abc", b"Bearer-2 abc", b"Bearer_x"])
def test_a_longer_scheme_name_is_another_scheme(value: bytes) -> None:
    assert bearer.bearer_token(scope(value)) is None


@pytest.mark.parametrize(
    ("encoded", "found"),
    [
        (b"a=1&access_token=x", True),
        (b"access_token", True),
        (b"a=1&access%5Ftoken=x", True),
        (b"%61ccess_token=x", True),
        (b"a=access_token&b=1", False),
        (b"xaccess_token=1", False),
        (b"access_token_x=1", False),
        (b"a=%41", False),
    ],
)
def test_names_are_compared_percent_decoded(encoded: bytes, found: bool) -> None:
    assert has_token_parameter(encoded) is found


def count_names(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    examined: list[bytes] = []
    name = bearer._name

    def counting(pair: bytes) -> bytes:
        examined.append(pair)
        return name(pair)

    monkeypatch.setattr(bearer, "_name", counting)
    return examined


def test_a_body_without_the_name_or_an_escape_examines_no_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    examined = count_names(monkeypatch)
    assert not has_token_parameter(b"a&" * 32768)
    assert examined == []


def test_the_pairs_examined_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    examined = count_names(monkeypatch)
    assert not has_token_parameter(b"%41&" * 16384)
    assert len(examined) == bearer._MAX_PAIRS
