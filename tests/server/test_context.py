"""The request context and the verification: what a request presented stays out of their text."""

from __future__ import annotations

from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.testing import TestIssuer


def test_the_context_repr_never_shows_the_token_or_the_proof() -> None:
    token = TestIssuer().token()
    context = RequestContext(token, "DPoP", "GET", "https://api.test/orders", "proof-jwt-text", b"\x30\x82", "/orders")
    text = f"{context!r} {context}"
    assert token not in text
    assert token.split(".")[2] not in text  # not even the signature
    assert "proof-jwt-text" not in text
    assert "scheme='DPoP'" in text
    assert "path='/orders'" in text
