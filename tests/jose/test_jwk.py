"""Key filtering of a published JWK Set (_jwk.usable_keys) and checklist item 23 end to end."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from fastapi_kc_m2m import IdentityProviderUnavailable, InvalidToken
from fastapi_kc_m2m._jose.jwk import usable_keys
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, b64url, generate_key

RSA = frozenset({"RS256"})
ALL = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


def public(key: RSAKey | ECKey | OKPKey, **members: Any) -> dict[str, Any]:
    return {**key.as_dict(private=False), **members}


def b64int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def weak_rsa(bits: int) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    private = rsa.generate_private_key(65537, bits)
    numbers = private.public_key().public_numbers()
    return private, {"kty": "RSA", "kid": f"weak-{bits}", "use": "sig", "n": b64int(numbers.n), "e": b64int(numbers.e)}


def usable_quietly(jwks: Any, allowed: frozenset[str]) -> list[Any]:
    """usable_keys with joserfc's own SecurityWarning silenced, so only our filter can reject a key."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return usable_keys(jwks, allowed)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return generate_key("RS256", kid="rsa")  # type: ignore[return-value]


# ------------------------------------------------------------------ key sizes and points


@pytest.mark.parametrize("bits", [1024, 2047])
def test_rsa_modulus_below_2048_bits_is_ignored(bits: int, rsa_key: RSAKey) -> None:
    _, weak = weak_rsa(bits)
    keys = usable_quietly({"keys": [weak, public(rsa_key)]}, RSA)
    assert [key.kid for key in keys] == ["rsa"]


def test_rsa_modulus_of_2048_bits_is_kept(rsa_key: RSAKey) -> None:
    [key] = usable_keys({"keys": [public(rsa_key)]}, RSA)
    assert key.kid == "rsa"
    assert key.algorithms == RSA


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda jwk: {**jwk, "n": "not*base64url"}, id="n-not-base64url"),
        pytest.param(lambda jwk: {**jwk, "n": 12345}, id="n-number"),
        pytest.param(lambda jwk: {key: value for key, value in jwk.items() if key != "n"}, id="n-missing"),
        pytest.param(lambda jwk: {**jwk, "e": ""}, id="e-empty"),
        pytest.param(lambda jwk: {**jwk, "e": "AQ"}, id="e-one"),
    ],
)
def test_malformed_rsa_key_is_ignored(damage: Any, rsa_key: RSAKey) -> None:
    assert usable_keys({"keys": [damage(public(rsa_key))]}, RSA) == []


@pytest.mark.parametrize(
    "e", [2**32 + 1, 2**255 + 1, 2**2047 + 1, 65536, 1], ids=["2^32+1", "2^255+1", "2^2047+1", "even", "one"]
)
def test_rsa_public_exponent_outside_odd_3_to_2_32_is_ignored(e: int, rsa_key: RSAKey) -> None:
    """A hostile key set's huge exponent would cost ~5 ms per forged token (RFC 7518 §6.3.1.2, SP 800-56B)."""
    assert usable_keys({"keys": [public(rsa_key, e=b64int(e))]}, RSA) == []


@pytest.mark.parametrize("e", [3, 17, 65537, 2**32 - 1])
def test_rsa_public_exponent_in_range_is_kept(e: int, rsa_key: RSAKey) -> None:
    assert len(usable_keys({"keys": [public(rsa_key, e=b64int(e))]}, RSA)) == 1


def test_ec_point_off_the_curve_is_ignored() -> None:
    key = public(generate_key("ES256"))
    off_curve = {**key, "y": key["x"]}
    assert usable_keys({"keys": [off_curve]}, frozenset({"ES256"})) == []
    assert len(usable_keys({"keys": [key]}, frozenset({"ES256"}))) == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda jwk: {**jwk, "y": "@@@"}, id="y-not-base64url"),
        pytest.param(lambda jwk: {key: value for key, value in jwk.items() if key != "y"}, id="y-missing"),
        pytest.param(lambda jwk: {**jwk, "x": None}, id="x-null"),
        pytest.param(lambda jwk: {**jwk, "crv": "P-384"}, id="point-of-another-curve"),
        pytest.param(lambda jwk: {**jwk, "crv": "secp256k1"}, id="unsupported-curve"),
        pytest.param(lambda jwk: {**jwk, "crv": ["P-256"]}, id="crv-list"),
        pytest.param(lambda jwk: {**jwk, "crv": {"name": "P-256"}}, id="crv-object"),
    ],
)
def test_malformed_ec_key_is_ignored(damage: Any) -> None:
    good = public(generate_key("ES256", kid="good"))
    keys = usable_keys({"keys": [damage({**good, "kid": "bad"}), good]}, frozenset({"ES256", "ES384"}))
    assert [key.kid for key in keys] == ["good"]


# ------------------------------------------------------------------ use, key_ops, kty


def test_encryption_key_is_skipped(rsa_key: RSAKey) -> None:
    enc = public(generate_key("RS256", kid="enc"), use="enc", alg="RSA-OAEP")
    enc_without_alg = public(generate_key("RS256", kid="enc2"), use="enc")
    keys = usable_keys({"keys": [enc, enc_without_alg, public(rsa_key, use="sig")]}, RSA)
    assert [key.kid for key in keys] == ["rsa"]


@pytest.mark.parametrize("use", [None, "SIG", "", ["sig"]])
def test_use_other_than_sig_is_skipped(use: Any, rsa_key: RSAKey) -> None:
    assert usable_keys({"keys": [public(rsa_key, use=use)]}, RSA) == []


def test_absent_use_is_a_signing_key(rsa_key: RSAKey) -> None:
    assert "use" not in public(rsa_key)
    assert len(usable_keys({"keys": [public(rsa_key)]}, RSA)) == 1


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": b64url(b"0123456789abcdef0123456789abcdef"), "kid": "hmac"},
        {"kty": "oct", "k": b64url(b"secret"), "kid": "hmac", "alg": "RS256"},
        {"kty": "OKP", "crv": "X25519", "x": b64url(bytes(32)), "kid": "ecdh"},
        {"kty": "rsa", "n": "AQAB", "e": "AQAB"},
        {"kty": "DSA", "kid": "dsa"},
        {"kty": None},
        {"kty": ["RSA"]},
        {},
    ],
    ids=["oct", "oct-claiming-rs256", "x25519", "lowercase-rsa", "dsa", "kty-null", "kty-list", "no-kty"],
)
def test_unknown_key_type_is_skipped(jwk: dict[str, Any]) -> None:
    assert usable_keys({"keys": [jwk]}, ALL) == []


@pytest.mark.parametrize(
    "key_ops",
    [["sign"], ["encrypt", "wrapKey"], [], "verify", {"verify": True}, None],
    ids=["sign", "encrypt", "empty", "string", "object", "null"],
)
def test_key_ops_without_verify_are_skipped(key_ops: Any, rsa_key: RSAKey) -> None:
    assert usable_keys({"keys": [public(rsa_key, key_ops=key_ops)]}, RSA) == []


def test_key_ops_with_verify_are_kept(rsa_key: RSAKey) -> None:
    assert len(usable_keys({"keys": [public(rsa_key, key_ops=["sign", "verify"])]}, RSA)) == 1


# ------------------------------------------------------------------ algorithms bound to the key


def test_jwk_alg_narrows_the_algorithms(rsa_key: RSAKey) -> None:
    allowed = frozenset({"RS256", "PS256"})
    [unnamed] = usable_keys({"keys": [public(rsa_key)]}, allowed)
    [rs256] = usable_keys({"keys": [public(rsa_key, alg="RS256")]}, allowed)
    [ps256] = usable_keys({"keys": [public(rsa_key, alg="PS256")]}, allowed)
    assert unnamed.algorithms == allowed
    assert rs256.algorithms == {"RS256"}
    assert "PS256" not in rs256.algorithms
    assert ps256.algorithms == {"PS256"}


@pytest.mark.parametrize("alg", ["ES256", "RSA-OAEP", "HS256", "none", "", ["RS256"], {"RS256": 1}, 256])
def test_jwk_alg_that_does_not_fit_leaves_no_key(alg: Any, rsa_key: RSAKey) -> None:
    assert usable_keys({"keys": [public(rsa_key, alg=alg)]}, ALL) == []


def test_algorithms_outside_the_allow_list_give_no_key(rsa_key: RSAKey) -> None:
    ec, okp = generate_key("ES256"), generate_key("EdDSA")
    jwks = {"keys": [public(rsa_key), public(ec), public(okp)]}
    assert usable_keys(jwks, frozenset({"ES384"})) == []
    assert usable_keys({"keys": [public(rsa_key, alg="RS512")]}, RSA) == []
    [only_rsa] = usable_keys(jwks, frozenset({"RS256", "PS384"}))
    assert only_rsa.algorithms == {"RS256", "PS384"}


@pytest.mark.parametrize(("alg", "curve"), [("ES256", "P-256"), ("ES384", "P-384"), ("ES512", "P-521")])
def test_ec_curve_is_bound_to_its_algorithm(alg: str, curve: str) -> None:
    key = public(generate_key(alg))
    assert key["crv"] == curve
    [usable] = usable_keys({"keys": [key]}, ALL)
    assert usable.algorithms == {alg}
    others = ALL - {alg}
    assert usable_keys({"keys": [key]}, others) == []
    for other in ("ES256", "ES384", "ES512"):
        if other != alg:
            assert usable_keys({"keys": [{**key, "alg": other}]}, ALL) == []


def test_okp_ed25519_verifies_eddsa_only() -> None:
    key = public(generate_key("EdDSA"))
    assert key["crv"] == "Ed25519"
    [usable] = usable_keys({"keys": [key]}, ALL)
    assert usable.algorithms == {"EdDSA"}
    assert usable_keys({"keys": [key]}, ALL - {"EdDSA"}) == []
    assert usable_keys({"keys": [{**key, "alg": "ES256"}]}, ALL) == []


def test_rsa_key_is_not_usable_for_ec_or_eddsa(rsa_key: RSAKey) -> None:
    assert usable_keys({"keys": [public(rsa_key)]}, frozenset({"ES256", "EdDSA"})) == []


# ------------------------------------------------------------------ set shape and members


@pytest.mark.parametrize("keys", [None, {}, {"kid": "x"}, "keys", 1, True], ids=repr)
def test_keys_member_that_is_not_a_list_gives_no_key(keys: Any) -> None:
    assert usable_keys({"keys": keys}, ALL) == []
    assert usable_keys({}, ALL) == []


def test_entries_that_are_not_objects_are_skipped(rsa_key: RSAKey) -> None:
    junk: list[Any] = [1, "RSA", None, [], [public(rsa_key)], True, 1.5]
    keys = usable_keys({"keys": [*junk, public(rsa_key)]}, RSA)
    assert [key.kid for key in keys] == ["rsa"]


@pytest.mark.parametrize("kid", [1, None, ["a"], {"a": 1}, True])
def test_kid_must_be_a_string_when_present(kid: Any, rsa_key: RSAKey) -> None:
    keys = usable_keys({"keys": [public(rsa_key, kid=kid)]}, RSA)
    if kid is None:
        assert [key.kid for key in keys] == [None]
    else:
        assert keys == []


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_private_members_are_not_imported(alg: str) -> None:
    key = generate_key(alg)
    published = key.as_dict(private=True)
    assert "d" in published
    [usable] = usable_keys({"keys": [published]}, ALL)
    assert not usable.jwk.is_private
    exported = usable.jwk.as_dict()
    for member in ("d", "p", "q", "dp", "dq", "qi"):
        assert member not in exported


def test_private_member_does_not_replace_the_public_key(rsa_key: RSAKey) -> None:
    """A published ``d`` of another key must not sneak in: only n and e decide the key."""
    other = generate_key("RS256").as_dict(private=True)
    mixed = {**public(rsa_key), **{name: other[name] for name in ("d", "p", "q", "dp", "dq", "qi")}}
    [usable] = usable_keys({"keys": [mixed]}, RSA)
    assert usable.jwk.as_dict()["n"] == public(rsa_key)["n"]
    assert not usable.jwk.is_private


def test_several_keys_keep_their_order_and_kids() -> None:
    keys = [generate_key(alg, kid=alg) for alg in ("RS256", "ES256", "ES384", "EdDSA")]
    usable = usable_keys({"keys": [public(key) for key in keys]}, ALL)
    assert [(key.kid, set(key.algorithms)) for key in usable] == [
        ("RS256", {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
        ("ES256", {"ES256"}),
        ("ES384", {"ES384"}),
        ("EdDSA", {"EdDSA"}),
    ]


# ------------------------------------------------------------------ checklist item 23, end to end


def _rs256_token(issuer: TestIssuer, private: rsa.RSAPrivateKey, kid: str) -> str:
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(issuer.claims()).encode())
    signature = private.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{b64url(signature)}"


@pytest.mark.anyio
async def test_weak_rsa_key_in_the_jwks_is_ignored_by_the_verifier(
    issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, weak = weak_rsa(1024)
    good_jwks = issuer.jwks()
    monkeypatch.setattr(issuer, "jwks", lambda: {"keys": [*good_jwks["keys"], weak]})
    async with issuer.auth(token_cache_size=0) as auth:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            with pytest.raises(InvalidToken):
                await auth.verify(_rs256_token(issuer, private, "weak-1024"))
        await auth.verify(issuer.token())  # the good key beside it still serves


@pytest.mark.anyio
async def test_bad_ec_key_in_the_jwks_is_ignored_by_the_verifier(clock: FrozenClock) -> None:
    issuer = TestIssuer(algorithm="ES256", clock=clock)
    good = issuer.jwks()["keys"]
    bad = {**good[-1], "y": good[-1]["x"]}
    issuer.jwks = lambda: {"keys": [bad]}  # type: ignore[method-assign]
    async with issuer.auth(token_cache_size=0) as auth:
        with pytest.raises(IdentityProviderUnavailable):  # nothing usable: no keys at all
            await auth.verify(issuer.token())


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"])
async def test_each_family_verifies_end_to_end(alg: str, clock: FrozenClock) -> None:
    issuer = TestIssuer(algorithm=alg, clock=clock)
    async with issuer.auth() as auth:
        principal = await auth.verify(issuer.token())
    assert principal.client_id == "machine-a"
