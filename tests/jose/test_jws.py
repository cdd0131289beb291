"""Signature checks (RFC 7515 §5.2 step 8): RSASSA-PKCS1-v1_5 straight through ``cryptography``."""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from fastapi_kc_m2m._jose.jws import b64url_decode, signature_is_valid, split_compact
from fastapi_kc_m2m.testing import TestIssuer


def _parts(issuer: TestIssuer) -> tuple[bytes, bytes]:
    _, _, signing_input, signature = split_compact(issuer.token())
    return signing_input, b64url_decode(signature.decode())


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_pkcs1_signatures_are_checked_without_joserfc_algorithms(alg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = TestIssuer(algorithm=alg)
    signing_input, signature = _parts(issuer)
    monkeypatch.setattr(JWSRegistry, "algorithms", {})  # the prepared padding and hash objects do it all
    assert signature_is_valid(signing_input, signature, alg, issuer.signing_key)
    assert not signature_is_valid(signing_input + b"x", signature, alg, issuer.signing_key)
    assert not signature_is_valid(signing_input, signature[:-1], alg, issuer.signing_key)
    assert not signature_is_valid(signing_input, signature, alg, TestIssuer(algorithm=alg).signing_key)


def test_a_pkcs1_algorithm_with_a_key_of_another_type_is_refused() -> None:
    signing_input, signature = _parts(TestIssuer())
    assert not signature_is_valid(signing_input, signature, "RS256", ECKey.generate_key("P-256"))


@pytest.mark.parametrize("alg", ["PS256", "ES256", "EdDSA"])
def test_other_algorithms_go_through_joserfc(alg: str) -> None:
    issuer = TestIssuer(algorithm=alg)
    signing_input, signature = _parts(issuer)
    assert signature_is_valid(signing_input, signature, alg, issuer.signing_key)
    assert not signature_is_valid(signing_input + b"x", signature, alg, issuer.signing_key)


@pytest.mark.parametrize("junk", [" ", "\n", "\t", ".", "=", "+", "/", "!", "\u00e9", "\x00"])
def test_b64url_decode_refuses_any_other_character(junk: str) -> None:
    """Four of them keep the length a multiple of four: a lenient decoder would skip them and read "abc"."""
    assert b64url_decode("YWJj") == b"abc"
    with pytest.raises(ValueError, match="base64"):
        b64url_decode(f"YW{junk * 4}Jj")


@pytest.mark.parametrize("segment", ["", "YWJjZ", "YWI=", "YQ=="], ids=["empty", "length-4k+1", "padded", "padded-2"])
def test_b64url_decode_refuses_empty_truncated_or_padded_segments(segment: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        b64url_decode(segment)


def test_b64url_decode_reads_both_url_safe_characters() -> None:
    assert b64url_decode("-_8") == b"\xfb\xff"
