"""Client authentication (RFC 6749 §2.3.1, RFC 7523 §3): key loading, assertions, the three methods,
and the test issuer's checks of them — which the introspection tests rely on."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fastapi_kc_m2m._idp.client_auth import (
    CLIENT_ASSERTION_TYPE,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJWT,
    client_authentication,
    load_private_key,
)
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, b64url, generate_key

ISSUER = "http://kc.test/realms/demo"
URL = f"{ISSUER}/protocol/openid-connect/token/introspect"


def sent(auth: Any, audience: str = ISSUER) -> tuple[httpx.Headers, dict[str, str]]:
    request = auth.request(httpx.AsyncClient(), URL, {"token": "t"}, audience=audience)
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return request.headers, dict(parse_qsl(request.content.decode()))


def claims_of(assertion: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))


def header_of(assertion: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(assertion.split(".", maxsplit=1)[0] + "=="))


# ------------------------------------------------------------------ the secret methods
def test_client_secret_basic_form_urlencodes_before_base64() -> None:
    headers, form = sent(ClientSecretBasic("my client:1", "p@ss wörd+/:"))
    scheme, encoded = headers["authorization"].split(" ")
    raw_id, raw_secret = base64.b64decode(encoded).decode().split(":")
    assert scheme == "Basic"
    assert (raw_id, raw_secret) == ("my+client%3A1", "p%40ss+w%C3%B6rd%2B%2F%3A")  # RFC 6749 §2.3.1
    assert (unquote_plus(raw_id), unquote_plus(raw_secret)) == ("my client:1", "p@ss wörd+/:")
    assert form == {"token": "t"}  # no credential in the body


def test_client_secret_post_puts_both_in_the_body() -> None:
    headers, form = sent(ClientSecretPost("machine-b", "s3cret"))
    assert "authorization" not in headers
    assert form == {"token": "t", "client_id": "machine-b", "client_secret": "s3cret"}


def test_secrets_never_appear_in_repr() -> None:
    for auth in (ClientSecretBasic("b", "top-secret"), ClientSecretPost("b", "top-secret")):
        assert "top-secret" not in repr(auth)
        assert repr(auth).endswith("(client_id='b')")


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("client_secret_basic", {}, "needs a client secret"),
        ("client_secret_post", {"secret": ""}, "a client secret is required"),
        ("private_key_jwt", {"secret": "s"}, "needs a private key"),
    ],
)
def test_the_factory_demands_the_credential_of_its_method(method: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client_authentication(method, "machine-b", **options)


def test_the_factory_builds_each_method() -> None:
    key = generate_key("ES256")
    assert isinstance(client_authentication("client_secret_basic", "b", secret="s"), ClientSecretBasic)
    assert isinstance(client_authentication("client_secret_post", "b", secret="s"), ClientSecretPost)
    signer = client_authentication("private_key_jwt", "b", private_key=key, algorithm="ES256")
    assert isinstance(signer, PrivateKeyJWT)


# ------------------------------------------------------------------ private_key_jwt (RFC 7523 §3)
@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "ES384"])
def test_assertion_claims_and_signature(algorithm: str) -> None:
    clock = FrozenClock(1_800_000_000)
    key = generate_key(algorithm)
    auth = PrivateKeyJWT("machine-b", key, algorithm=algorithm, clock=clock)
    headers, form = sent(auth)
    assert "authorization" not in headers
    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assertion = form["client_assertion"]
    token = jwt.decode(assertion, key, algorithms=[algorithm])  # signed with the key, by that algorithm
    assert token.header == {"alg": algorithm, "typ": "JWT", "kid": key.kid}
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "machine-b"
    assert claims["aud"] == ISSUER  # one string, not a list
    assert claims["iat"] == 1_800_000_000
    assert claims["exp"] == 1_800_000_060
    uuid.UUID(claims["jti"])
    assert set(claims) == {"iss", "sub", "aud", "jti", "iat", "exp"}


def test_every_assertion_has_a_new_jti() -> None:
    auth = PrivateKeyJWT("machine-b", generate_key("ES256"), algorithm="ES256")
    jtis = {claims_of(auth.assertion(ISSUER))["jti"] for _ in range(50)}
    assert len(jtis) == 50


def test_kid_comes_from_the_setting_then_the_jwk_and_is_left_out_without_one() -> None:
    key = generate_key("RS256")
    assert header_of(PrivateKeyJWT("b", key, key_id="chosen").assertion(ISSUER))["kid"] == "chosen"
    assert header_of(PrivateKeyJWT("b", key).assertion(ISSUER))["kid"] == key.kid
    pem_key = load_private_key(key.as_pem(private=True))
    assert "kid" not in header_of(PrivateKeyJWT("b", pem_key).assertion(ISSUER))


def test_the_key_is_never_in_repr() -> None:
    key = generate_key("RS256")
    assert repr(PrivateKeyJWT("b", key)) == "PrivateKeyJWT(client_id='b')"


# ------------------------------------------------------------------ loading keys
def test_key_from_pem_file_pem_bytes_jwk_and_jwk_json(tmp_path: Path) -> None:
    key = generate_key("RS256")
    pem_file = tmp_path / "client.pem"
    pem_file.write_bytes(key.as_pem(private=True))
    jwk = key.as_dict(private=True)
    for source in (str(pem_file), pem_file, key.as_pem(private=True), jwk, json.dumps(jwk)):
        loaded = load_private_key(source)
        assert loaded.is_private
        assert loaded.thumbprint() == key.thumbprint()
    assert load_private_key(json.dumps(jwk)).kid == key.kid


def test_ec_keys_load_for_their_algorithms() -> None:
    assert isinstance(load_private_key(generate_key("ES256").as_pem(private=True), algorithm="ES256"), ECKey)
    assert load_private_key(generate_key("ES512").as_dict(private=True), algorithm="ES512").is_private


def weak_rsa_pem() -> bytes:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused, as it must be
    return weak.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("source", "algorithm", "message"),
    [
        (lambda: generate_key("RS256").as_pem(private=False), "RS256", "private key is required"),
        (lambda: generate_key("RS256").as_dict(private=False), "RS256", "private key is required"),
        (lambda: generate_key("ES256").as_pem(private=True), "RS256", "not a RSA private key"),
        (lambda: generate_key("RS256").as_dict(private=True), "ES256", "not a EC private key"),
        (lambda: generate_key("ES384").as_pem(private=True), "ES256", "curve does not fit ES256"),
        (weak_rsa_pem, "RS256", "at least 2048 bits"),
        (lambda: b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "RS256", "not a RSA"),
        (lambda: '{"kty": "RSA"', "RS256", "Expecting"),
        (lambda: generate_key("RS256").as_pem(private=True), "HS256", "unsupported assertion algorithm"),
        (lambda: generate_key("EdDSA").as_pem(private=True), "EdDSA", "unsupported assertion algorithm"),
    ],
)
@pytest.mark.filterwarnings("ignore:Key size should be:joserfc.errors.SecurityWarning")
def test_unusable_keys_are_refused(source: Any, algorithm: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_private_key(source(), algorithm=algorithm)


def test_a_key_object_must_fit_the_algorithm() -> None:
    with pytest.raises(ValueError, match="does not fit ES256"):
        PrivateKeyJWT("b", generate_key("RS256"), algorithm="ES256")
    with pytest.raises(ValueError, match="private key is required"):
        PrivateKeyJWT("b", RSAKey.import_key(generate_key("RS256").as_dict(private=False)))


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_private_key(tmp_path / "absent.pem")


def test_pem_text_is_key_material_not_a_path() -> None:
    key = generate_key("ES256")
    loaded = load_private_key(key.as_pem(private=True).decode(), algorithm="ES256")
    assert loaded.thumbprint() == key.thumbprint()


def unarmoured_key(algorithm: str) -> str:
    """A private key's base64 body without its PEM lines: key material, not a path."""
    return "".join(generate_key(algorithm).as_pem(private=True).decode().splitlines()[1:-1])


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])  # long, and short enough to pass for a path
def test_errors_never_repeat_what_may_be_key_material(tmp_path: Path, algorithm: str) -> None:
    body = unarmoured_key(algorithm)
    with pytest.raises(OSError, match=r"^cannot read the key file: ") as unread:
        load_private_key(body)
    broken = f"-----BEGIN PRIVATE KEY-----\n{body[:300]}\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ValueError, match="not a RSA private key") as refused:
        load_private_key(broken)
    with pytest.raises(FileNotFoundError, match=r"^cannot read the key file 'absent\.pem': No such file") as missing:
        load_private_key(str(tmp_path / "absent.pem"))
    messages = " ".join(str(raised.value) for raised in (unread, refused, missing))
    assert body[:32] not in messages
    assert body[-16:] not in messages
    assert str(tmp_path) not in messages  # the file's name at most


def test_a_certificate_is_not_a_private_key() -> None:
    certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match="a certificate is not a private key"):
        load_private_key(certificate)


# ------------------------------------------------------------------ the test issuer checks them as Keycloak does
@pytest.fixture
def client_key() -> ECKey:
    key = generate_key("ES256")
    assert isinstance(key, ECKey)
    return key


@pytest.fixture
def registry_issuer(clock: FrozenClock, client_key: ECKey) -> TestIssuer:
    issuer = TestIssuer(clock=clock)
    issuer.register_client("basic-client", secret="s3 cr:et")
    issuer.register_client("jwt-client", public_key=client_key)
    return issuer


def authenticate(issuer: TestIssuer, auth: Any, audience: str | None = None) -> str | None:
    headers, form = sent(auth, audience or issuer.issuer)
    return issuer.clients.authenticate(headers.get("authorization"), form)


def test_issuer_accepts_each_method_with_the_right_credentials(
    registry_issuer: TestIssuer, clock: FrozenClock, client_key: ECKey
) -> None:
    key = client_key
    assert authenticate(registry_issuer, ClientSecretBasic("basic-client", "s3 cr:et")) == "basic-client"
    assert authenticate(registry_issuer, ClientSecretPost("basic-client", "s3 cr:et")) == "basic-client"
    signer = PrivateKeyJWT("jwt-client", key, algorithm="ES256", clock=clock)
    assert authenticate(registry_issuer, signer) == "jwt-client"
    endpoint = registry_issuer.discovery_document()["introspection_endpoint"]
    assert authenticate(registry_issuer, signer, endpoint) == "jwt-client"


@pytest.mark.parametrize(
    "auth",
    [
        lambda key, clock: ClientSecretBasic("basic-client", "wrong"),
        lambda key, clock: ClientSecretPost("basic-client", "wrong"),
        lambda key, clock: ClientSecretBasic("unknown", "s3 cr:et"),
        lambda key, clock: ClientSecretPost("jwt-client", "anything"),  # a key client has no secret
        lambda key, clock: PrivateKeyJWT("jwt-client", generate_key("ES256"), algorithm="ES256", clock=clock),
        lambda key, clock: PrivateKeyJWT("basic-client", key, algorithm="ES256", clock=clock),
        lambda key, clock: PrivateKeyJWT("jwt-client", key, algorithm="ES256", key_id="other", clock=clock),
    ],
)
def test_issuer_refuses_wrong_credentials(
    registry_issuer: TestIssuer, clock: FrozenClock, client_key: ECKey, auth: Any
) -> None:
    assert authenticate(registry_issuer, auth(client_key, clock)) is None


def signed_assertion(issuer: TestIssuer, key: ECKey, **changes: Any) -> dict[str, str]:
    now = int(issuer.clock())
    claims = {"iss": "jwt-client", "sub": "jwt-client", "aud": issuer.issuer, "jti": str(uuid.uuid4())}
    claims |= {"iat": now, "exp": now + 60} | changes
    claims = {name: value for name, value in claims.items() if value is not None}
    assertion = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key, algorithms=["ES256"])
    return {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "other"},
        {"sub": "other"},
        {"aud": "http://elsewhere/realms/test"},
        {"aud": ["http://keycloak.test/realms/test"]},  # Keycloak wants one string
        {"exp": None},
        {"exp": "soon"},
        {"jti": None},
        {"iat": 0},  # lifetime far over 60 s
    ],
)
def test_issuer_checks_the_assertion_claims(
    registry_issuer: TestIssuer, client_key: ECKey, changes: dict[str, Any]
) -> None:
    clients = registry_issuer.clients
    assert clients.authenticate(None, signed_assertion(registry_issuer, client_key)) == "jwt-client"
    assert clients.authenticate(None, signed_assertion(registry_issuer, client_key, **changes)) is None


def test_issuer_refuses_expired_and_replayed_assertions(
    registry_issuer: TestIssuer, clock: FrozenClock, client_key: ECKey
) -> None:
    form = signed_assertion(registry_issuer, client_key)
    assert registry_issuer.clients.authenticate(None, form) == "jwt-client"
    assert registry_issuer.clients.authenticate(None, form) is None  # jti single-use
    late = signed_assertion(registry_issuer, client_key)
    clock.advance(61)
    assert registry_issuer.clients.authenticate(None, late) is None


def test_issuer_refuses_malformed_and_mixed_authentication(registry_issuer: TestIssuer, client_key: ECKey) -> None:
    clients = registry_issuer.clients
    assert clients.authenticate(None, {"client_id": "basic-client"}) is None  # public client: no credential
    both = {"client_id": "basic-client", "client_secret": "s3 cr:et"}
    basic = "Basic " + base64.b64encode(b"basic-client:s3+cr%3Aet").decode()
    assert clients.authenticate(basic, {}) == "basic-client"
    assert clients.authenticate(basic, both) is None  # two methods at once
    assert clients.authenticate("Basic !!!", {}) is None
    assert clients.authenticate("Bearer x", {}) is None
    assert clients.authenticate("Basic " + base64.b64encode(b"no-colon").decode(), {}) is None
    unsigned = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": "e30.e30."}
    assert clients.authenticate(None, unsigned) is None
    wrong_type = signed_assertion(registry_issuer, client_key) | {"client_assertion_type": "urn:other"}
    assert clients.authenticate(None, wrong_type) is None
    payload = json.dumps({"iss": "jwt-client", "sub": "jwt-client", "aud": registry_issuer.issuer, "jti": "x"})
    alg_none = f"{b64url(json.dumps({'alg': 'none'}).encode())}.{b64url(payload.encode())}."
    assert (
        clients.authenticate(None, {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": alg_none})
        is None
    )
