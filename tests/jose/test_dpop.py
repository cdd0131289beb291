"""DPoP proofs (RFC 9449): the RFC's known answers, and proofs made here pass the checks made here."""

from __future__ import annotations

import pytest

from fastapi_kc_m2m._jose.algorithms import SUPPORTED_ALGORITHMS
from fastapi_kc_m2m._jose.dpop import access_token_hash, check_proof, jwk_thumbprint, make_proof, normalized_htu
from fastapi_kc_m2m.testing import generate_key

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
        access_token="t",
    )
    assert (checked.jkt, checked.htu, checked.iat) == (key.thumbprint(), "https://api.example/orders", NOW)
