"""DPoP proofs (RFC 9449): the RFC's known answers, and proofs made here pass the checks made here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

from fastapi_kc_m2m._jose import dpop
from fastapi_kc_m2m._jose.algorithms import SUPPORTED_ALGORITHMS
from fastapi_kc_m2m._jose.dpop import (
    PROOF_TYPE,
    Proof,
    ProofError,
    ProofHeader,
    access_token_hash,
    check_proof,
    jwk_thumbprint,
    make_proof,
    normalized_htu,
)
from fastapi_kc_m2m._jose.jwk import VerificationKey, verification_key
from fastapi_kc_m2m.testing import b64url, generate_key

NOW = 1_800_000_000.0
# RFC 9449 Figure 4's public key and its RFC 7638 thumbprint; §7.1's token and its ath.
FIGURE_4_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
}


def test_thumbprint_and_ath_known_answers() -> None:
    assert jwk_thumbprint(FIGURE_4_JWK) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTPS://API.Example:443/orders?x=1#f", "https://api.example/orders"),
        ("http://api.example:80", "http://api.example/"),
        ("https://api.example:8443/a%7eb/%2f", "https://api.example:8443/a~b/%2F"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ],
)
def test_htu_is_compared_after_rfc_3986_normalisation(url: str, normalized: str) -> None:
    assert normalized_htu(url) == normalized


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "ES512", "PS256", "RS256", "EdDSA"])
def test_a_proof_made_here_passes_the_checks_and_binds_to_its_key(algorithm: str) -> None:
    key = generate_key(algorithm)
    htu, ath = "https://api.example/orders?page=2", access_token_hash("t")
    proof = make_proof(key, htm="POST", htu=htu, iat=NOW, ath=ath, algorithm=algorithm)
    checked = check_proof(
        proof,
        algorithms=SUPPORTED_ALGORITHMS,
        htm="POST",
        htu="https://api.example/orders",
        now=NOW,
        max_age=60,
        max_ahead=15,
        ath=access_token_hash("t"),
    )
    assert (checked.jkt, checked.htu, checked.iat) == (key.thumbprint(), "https://api.example/orders", NOW)


# ------------------------------------------------------------------ each check of §4.3 and §7.1 on its own
KEY = generate_key("ES256")
TOKEN = "eyJ.access.token"
HTU = "https://api.example/orders"


def forged(header: Mapping[str, Any] | None = None, claims: Mapping[str, Any] | None = None, **options: Any) -> str:
    """A proof valid for ``GET HTU`` with ``TOKEN`` at ``NOW``, with header and claim members replaced
    (``None`` removes one), signed ES256 by ``signer`` (default ``KEY``)."""
    key, signer = options.get("key", KEY), options.get("signer", KEY)
    members = {"typ": PROOF_TYPE, "alg": "ES256", "jwk": key.as_dict(private=False)} | dict(header or {})
    payload = {"jti": "j-1", "htm": "GET", "htu": HTU, "iat": int(NOW), "ath": access_token_hash(TOKEN)}
    payload |= dict(claims or {})
    segments = [
        b64url(json.dumps({k: v for k, v in part.items() if v is not None}).encode()) for part in (members, payload)
    ]
    signing_input = ".".join(segments)
    return f"{signing_input}.{b64url(JWSRegistry.algorithms['ES256'].sign(signing_input.encode(), signer))}"


def checked(proof: str, headers: dict[bytes, ProofHeader] | None = None, **overrides: Any) -> Proof:
    options: dict[str, Any] = {
        "algorithms": SUPPORTED_ALGORITHMS,
        "htm": "GET",
        "htu": HTU,
        "now": NOW,
        "max_age": 60,
        "max_ahead": 15,
        "ath": access_token_hash(TOKEN),
    }
    return check_proof(proof, headers=headers, **(options | overrides))


def refused_with(phrase: str, proof: str, **overrides: Any) -> None:
    with pytest.raises(ProofError, match=f"^{phrase}$"):
        checked(proof, **overrides)


def test_the_forged_baseline_proof_passes() -> None:
    assert checked(forged()) == Proof(KEY.thumbprint(), "j-1", NOW, HTU, None)


@pytest.mark.parametrize("proof", ["a.b", "a.b.c.d", "!!.e30.e30", f"{'a' * 9000}.b.c"])
def test_a_proof_must_be_a_compact_jws(proof: str) -> None:
    with pytest.raises(ProofError):
        checked(proof)


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", None, 1])
def test_typ_must_be_dpop_jwt(typ: Any) -> None:
    refused_with("not a DPoP proof", forged({"typ": typ}))


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256K", None])
def test_alg_must_be_a_supported_asymmetric_one(alg: Any) -> None:
    refused_with("proof algorithm not allowed", forged({"alg": alg}))


def test_alg_must_be_allowed_by_local_policy() -> None:
    refused_with("proof algorithm not allowed", forged(), algorithms=frozenset({"PS256"}))


def test_an_rsa_alg_must_not_claim_an_ec_key() -> None:
    refused_with("proof algorithm does not fit its key", forged({"alg": "PS256"}))


def test_an_ec_alg_must_fit_the_keys_curve() -> None:
    refused_with("unusable proof key", forged({"alg": "ES384"}))


def test_crit_is_refused() -> None:
    refused_with("unsupported proof header", forged({"crit": ["exp"]}))


def test_the_jwk_must_hold_no_private_member() -> None:
    refused_with("proof key must be a public JWK", forged({"jwk": KEY.as_dict(private=True)}))


def test_the_signature_must_verify_with_the_jwk() -> None:
    refused_with("invalid proof signature", forged(signer=generate_key("ES256")))


@pytest.mark.parametrize("jti", [None, "", 7, "x" * 257])
def test_jti_is_required(jti: Any) -> None:
    refused_with("proof jti missing", forged(claims={"jti": jti}))


@pytest.mark.parametrize("htm", ["POST", "get", None])
def test_htm_must_equal_the_method_exactly(htm: Any) -> None:
    refused_with("proof htm mismatch", forged(claims={"htm": htm}))


@pytest.mark.parametrize("htu", ["https://api.example/other", "http://api.example/orders", None])
def test_htu_must_equal_the_request_uri(htu: Any) -> None:
    refused_with("proof htu mismatch", forged(claims={"htu": htu}))


def test_htu_is_compared_normalised_without_query() -> None:
    proof = forged(claims={"htu": "HTTPS://API.EXAMPLE:443/%6Frders?x=1"})
    assert checked(proof, htu="https://api.example/orders?page=2").htu == HTU


@pytest.mark.parametrize("iat", [None, "1800000000", True])
def test_iat_must_be_a_numeric_date(iat: Any) -> None:
    refused_with("proof iat missing", forged(claims={"iat": iat}))


@pytest.mark.parametrize(
    ("iat", "accepted"), [(NOW - 60, True), (NOW - 61, False), (NOW + 15, True), (NOW + 16, False)]
)
def test_iat_must_lie_inside_the_window_on_both_sides(iat: float, accepted: bool) -> None:
    proof = forged(claims={"iat": int(iat)})
    if accepted:
        assert checked(proof).iat == iat
    else:
        refused_with("proof iat outside the window", proof)


@pytest.mark.parametrize("ath", [None, access_token_hash("another token"), "é"])
def test_ath_must_be_the_hash_of_the_access_token(ath: Any) -> None:
    refused_with("proof ath mismatch", forged(claims={"ath": ath}))


def test_a_nonce_must_be_a_string() -> None:
    refused_with("malformed proof nonce", forged(claims={"nonce": 5}))
    assert checked(forged(claims={"nonce": "n-1"})).nonce == "n-1"


def test_a_steady_key_is_imported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    imports: list[str] = []

    def counting(jwk: Any, allowed: frozenset[str]) -> VerificationKey | None:
        imports.append(jwk["kty"])
        return verification_key(jwk, allowed)

    monkeypatch.setattr(dpop, "verification_key", counting)
    headers: dict[bytes, ProofHeader] = {}
    for jti in ("a", "b", "c"):
        checked(forged(claims={"jti": jti}), headers=headers)
    assert imports == ["EC"]
    assert [header.jkt for header in headers.values()] == [KEY.thumbprint()]
    refused_with("unusable proof key", forged({"alg": "ES384"}), headers=headers)  # another header is checked anew
    refused_with("invalid proof signature", forged(signer=generate_key("ES256")), headers=headers)


def test_the_header_limit_admits_rsa_keys_and_stops_padding() -> None:
    """An RSA 4096 jwk makes a header far over joserfc's 512 bytes: admitted deliberately; padding is not."""
    rsa = RSAKey.generate_key(4096)
    big = make_proof(rsa, htm="GET", htu=HTU, iat=NOW, ath=access_token_hash(TOKEN), algorithm="PS256")
    assert len(big.split(".")[0]) > 1000
    assert checked(big).jkt == rsa.thumbprint()
    refused_with("malformed proof", forged(header={"padding": "x" * 2000}))
