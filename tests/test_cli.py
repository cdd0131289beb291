"""The ``kc-m2m`` console script, run for real in subprocesses against a loopback test issuer."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from joserfc.jwk import ECKey, RSAKey

from fastapi_kc_m2m._idp.client_auth import load_private_key
from fastapi_kc_m2m._jose.jws import parse
from fastapi_kc_m2m.testing import TestIssuer, generate_key, loopback_socket, serve_app
from tests.helpers import Certificate, DPoPPeer, Pki, make_pki

KC_M2M = str(Path(sys.executable).with_name("kc-m2m"))
SECRET = "cli-s3cret"


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("KC_M2M_")}
    return subprocess.run(  # noqa: S603 - our own console script
        [KC_M2M, *args], input=stdin, capture_output=True, text=True, timeout=60, env=clean | (env or {}), check=False
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


@pytest.fixture(scope="module")
def kc() -> Iterator[TestIssuer]:
    with TestIssuer.serving() as issuer:
        issuer.register_client("machine-a", secret=SECRET)
        yield issuer


def test_the_console_script_is_installed() -> None:
    assert os.access(KC_M2M, os.X_OK), "run scripts/bootstrap"
    result = run("--help")
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("keygen", "token", "decode", "verify", "jwks"))


@pytest.mark.parametrize(("kind", "key_type"), [("rsa", rsa.RSAPublicKey), ("ec", ec.EllipticCurvePublicKey)])
def test_keygen_writes_a_private_key_and_prints_the_keycloak_certificate_value(
    tmp_path: Path, kind: str, key_type: type
) -> None:
    result = run("keygen", "--name", "machine-a", "--kind", kind, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    value = result.stdout.strip()
    assert "-----" not in value  # base64 DER, without PEM armour
    certificate = x509.load_der_x509_certificate(base64.b64decode(value, validate=True))
    assert isinstance(certificate.public_key(), key_type)
    assert certificate.subject.rfc4514_string() == "CN=machine-a"
    key_file = tmp_path / "machine-a.key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem_certificate = x509.load_pem_x509_certificate((tmp_path / "machine-a.cert.pem").read_bytes())
    assert pem_certificate == certificate
    algorithm = "RS256" if kind == "rsa" else "ES256"
    key = load_private_key(str(key_file), algorithm=algorithm)
    assert key.as_dict(private=False) | {"kid": None} == {
        **x509_public_jwk(certificate, algorithm),
        "kid": None,
    }


def x509_public_jwk(certificate: x509.Certificate, algorithm: str) -> dict[str, object]:
    pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (RSAKey if algorithm == "RS256" else ECKey).import_key(pem).as_dict(private=False)


def test_keygen_never_overwrites_without_force(tmp_path: Path) -> None:
    assert run("keygen", "--out", str(tmp_path)).returncode == 0
    again = run("keygen", "--out", str(tmp_path))
    assert again.returncode == 2
    assert "exists; use --force" in one_line_error(again)


def test_token_with_a_secret_from_the_environment(kc: TestIssuer) -> None:
    result = run("token", "--issuer", kc.issuer, "--client-id", "machine-a", env={"KC_M2M_CLIENT_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["azp"] == "machine-a"


def test_token_with_a_generated_key_prints_the_json_response(kc: TestIssuer, tmp_path: Path) -> None:
    assert run("keygen", "--name", "keyed", "--kind", "ec", "--out", str(tmp_path)).returncode == 0
    key_file = tmp_path / "keyed.key.pem"
    kc.register_client("keyed", public_key=load_private_key(str(key_file), algorithm="ES256"))
    endpoint = kc.discovery_document()["token_endpoint"]
    args = ("token", "--token-endpoint", endpoint, "--client-id", "keyed", "--key", str(key_file), "--json")
    result = run(*args, "--scope", "openid")
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert (response["token_type"], response["scope"]) == ("Bearer", "openid profile email")


def test_a_refused_token_request_is_one_line_without_the_secret(kc: TestIssuer) -> None:
    result = run("token", "--issuer", kc.issuer, "--client-id", "machine-a", "--client-secret-file", "-", stdin="nope")
    assert result.returncode == 1
    assert "invalid_client" in one_line_error(result)
    assert "nope" not in result.stderr


def test_an_unreachable_keycloak_exits_3() -> None:
    with loopback_socket() as closed:
        issuer = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/x"
        result = run("token", "--issuer", issuer, "--client-id", "a", "--client-secret", "s")
    assert result.returncode == 3
    assert "network_error" in one_line_error(result)


def test_a_wrong_realm_is_blamed_on_discovery_with_its_url(kc: TestIssuer) -> None:
    wrong = kc.issuer.replace("/realms/test", "/realms/nope")
    result = run("token", "--issuer", wrong, "--client-id", "machine-a", "--client-secret", SECRET)
    assert result.returncode == 3
    message = one_line_error(result)
    assert f"discovery at {wrong}/.well-known/openid-configuration answered HTTP 404 after " in message
    assert message.endswith(": is the realm right?")
    assert SECRET not in result.stderr


def test_decode_shows_header_claims_and_readable_times(kc: TestIssuer) -> None:
    result = run("decode", stdin=kc.token(scope="orders:read") + "\n")
    assert result.returncode == 0, result.stderr
    assert '"kid"' in result.stdout
    assert '"scope": "orders:read"' in result.stdout
    assert f"exp: {time.strftime('%Y-%m-%d', time.gmtime(time.time() + 300))}" in result.stdout
    assert "(in 4m 5" in result.stdout  # 300 s tokens, just minted
    assert " ago)" in result.stdout  # iat


def test_decode_json_and_malformed_input() -> None:
    token = TestIssuer().token()
    decoded = json.loads(run("decode", "--json", token).stdout)
    assert decoded["claims"]["azp"] == "machine-a"
    bad = run("decode", "not-a-token")
    assert bad.returncode == 1
    assert "not a JWT" in one_line_error(bad)


def test_verify_tells_valid_and_invalid_by_exit_status(kc: TestIssuer) -> None:
    options = ("verify", "--issuer", kc.issuer, "--audience", kc.audience)
    valid = run(*options, kc.token(scope="orders:read"))
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith("valid: client machine-a")
    for reason, token in (("token expired", kc.bad_tokens()["expired"]), ("audience", kc.token(audience="other"))):
        invalid = run(*options, stdin=token)
        assert invalid.returncode == 1
        assert reason in one_line_error(invalid)


def test_verify_reads_the_middlewares_environment(kc: TestIssuer) -> None:
    env = {"KC_M2M_ISSUERS": kc.issuer, "KC_M2M_AUDIENCE": kc.audience, "KC_M2M_ALLOWED_CLIENTS": "someone-else"}
    refused = run("verify", kc.token(), env=env)
    assert refused.returncode == 1  # a good token, but from a client the settings do not allow
    assert "client" in one_line_error(refused)


def test_verify_configuration_errors_and_outages() -> None:
    token = TestIssuer().token()
    missing = run("verify", "--issuer", "http://kc.test/realms/x", token)
    assert missing.returncode == 2
    assert "KC_M2M_AUDIENCE" in one_line_error(missing)
    with loopback_socket() as closed:
        issuer = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/test"
        down = run("verify", "--issuer", issuer, "--audience", "machine-b", TestIssuer(issuer[:-12]).token())
    assert down.returncode == 3
    assert "unavailable" in one_line_error(down)


def test_jwks_prints_public_keys_only(tmp_path: Path) -> None:
    (tmp_path / "a.key.pem").write_bytes(generate_key("RS256").as_pem(private=True))
    (tmp_path / "b.key.pem").write_bytes(generate_key("ES256").as_pem(private=True))
    result = run("jwks", str(tmp_path / "a.key.pem"), str(tmp_path / "b.key.pem"))
    keys = json.loads(result.stdout)["keys"]
    assert [key["kty"] for key in keys] == ["RSA", "EC"]
    assert all(key["use"] == "sig" and key["kid"] and "d" not in key for key in keys)


# ------------------------------------------------------------------ key material never echoed
def unarmoured(pem: bytes) -> str:
    """A private key's base64 body without its PEM lines: key material a user might paste by mistake."""
    return "".join(pem.decode().splitlines()[1:-1])


def test_token_and_jwks_take_pem_text_and_never_echo_key_material(kc: TestIssuer) -> None:
    key = generate_key("ES256")
    pem = key.as_pem(private=True)
    kc.register_client("pem-text", public_key=key)
    endpoint = kc.discovery_document()["token_endpoint"]
    token = run("token", "--token-endpoint", endpoint, "--client-id", "pem-text", "--key", pem.decode())
    assert token.returncode == 0, token.stderr
    assert json.loads(run("jwks", pem.decode()).stdout)["keys"][0]["kid"] == key.thumbprint()
    body = unarmoured(pem)
    for args in (("token", "--token-endpoint", endpoint, "--client-id", "pem-text", "--key", body), ("jwks", body)):
        refused = run(*args)
        assert refused.returncode == 2
        assert "cannot read the key file: " in one_line_error(refused)
        assert body[:32] not in refused.stderr
        assert body[-16:] not in refused.stderr


def test_a_missing_key_file_is_named_by_its_file_name_only(tmp_path: Path) -> None:
    missing = run("jwks", str(tmp_path / "absent.key.pem"))
    assert (
        one_line_error(missing) == "kc-m2m jwks: cannot read the key file 'absent.key.pem': No such file or directory"
    )


def test_jwks_of_a_certificate_says_it_is_not_a_private_key(tmp_path: Path) -> None:
    assert run("keygen", "--name", "m", "--out", str(tmp_path)).returncode == 0
    result = run("jwks", str(tmp_path / "m.cert.pem"))
    assert result.returncode == 2
    assert "a certificate is not a private key" in one_line_error(result)


# ------------------------------------------------------------------ keygen never writes through a symlink
def test_keygen_force_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.write_text("someone else's file")
    elsewhere.chmod(0o644)
    key_file = out / "m.key.pem"
    key_file.symlink_to(elsewhere)
    refused = run("keygen", "--name", "m", "--out", str(out))
    assert refused.returncode == 2
    assert "exists; use --force" in one_line_error(refused)
    forced = run("keygen", "--name", "m", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert elsewhere.read_text() == "someone else's file"
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
    assert not key_file.is_symlink()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_private_key(str(key_file)).is_private
    assert sorted(path.name for path in out.iterdir()) == ["m.cert.pem", "m.key.pem"]  # no temporary file left


# ------------------------------------------------------------------ options
def test_version_is_the_package_metadata() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kc-m2m {version('fastapi_kc_m2m')}"


@pytest.mark.parametrize(
    ("options", "message"),
    [(("--kind", "ec", "--bits", "4096"), "--bits is for RSA keys"), (("--curve", "P-384"), "--curve is for EC keys")],
)
def test_keygen_refuses_an_option_of_the_other_key_kind(tmp_path: Path, options: tuple[str, ...], message: str) -> None:
    result = run("keygen", "--out", str(tmp_path), *options)
    assert result.returncode == 2
    assert message in one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_verify_timeout_bounds_each_request_to_keycloak(kc: TestIssuer) -> None:
    kc.fail("jwks", "timeout")
    try:
        started = time.monotonic()
        result = run("verify", "--issuer", kc.issuer, "--audience", kc.audience, "--timeout", "0.5", kc.token())
        elapsed = time.monotonic() - started
    finally:
        kc.heal()
    assert result.returncode == 3, result.stderr
    assert elapsed < 4.5  # the default is 5 s per request


def test_verbose_verify_shows_the_mismatching_values(kc: TestIssuer) -> None:
    stranger = TestIssuer("http://other.test")
    token = stranger.token(audience="another-api")
    result = run("-v", "verify", "--issuer", kc.issuer, "--audience", kc.audience, token)
    assert result.returncode == 1
    assert f"token iss 'http://other.test/realms/test', trusted issuers ['{kc.issuer}']" in result.stderr
    assert f"token aud 'another-api', audience '{kc.audience}'" in result.stderr
    quiet = run("verify", "--issuer", kc.issuer, "--audience", kc.audience, token)
    assert "other.test" not in quiet.stderr  # only -v shows the unverified token's claims


def test_verbose_verify_judges_a_realm_token_by_kc_m2m_realms(kc: TestIssuer) -> None:
    tenant = kc.add_realm("tenant-cli", audience="tenant-api")
    env = {"KC_M2M_SERVER_URL": kc.base_url, "KC_M2M_REALMS": "tenant-*", "KC_M2M_AUDIENCE": kc.audience,
           "KC_M2M_AUDIENCES": '{"tenant-*": "tenant-api"}'}  # fmt: skip
    assert run("verify", tenant.token(), env=env).returncode == 0
    result = run("-v", "verify", tenant.token(audience=kc.audience), env=env)
    assert result.returncode == 1
    assert "token iss" not in result.stderr  # the realm is trusted by its pattern
    assert f"token aud '{kc.audience}', audience 'tenant-api'" in result.stderr


def test_token_dpop_prints_a_bound_token_and_the_key_thumbprint() -> None:
    peer = DPoPPeer()  # demands a nonce first (RFC 9449 §8)
    with serve_app(peer.app) as base_url:
        result = run("token", "--token-endpoint", f"{base_url}/token", "--client-id", "machine-a", "--dpop",
                     env={"KC_M2M_CLIENT_SECRET": SECRET})  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stderr == f"DPoP-bound to the key with thumbprint (cnf.jkt): {peer.bound[token]}\n"
    assert peer.asked["token"] == 1


def test_token_dpop_refuses_a_bearer_answer_in_one_line() -> None:
    peer = DPoPPeer(token_type="Bearer")
    with serve_app(peer.app) as base_url:
        result = run("token", "--token-endpoint", f"{base_url}/token", "--client-id", "machine-a", "--dpop",
                     "--client-secret", SECRET)  # fmt: skip
    assert result.returncode == 3
    assert one_line_error(result).endswith(": the token is not DPoP-bound")


# ------------------------------------------------------------------ token --cert: mutual TLS (RFC 8705)
@pytest.fixture(scope="module")
def mtls_kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestIssuer, Pki]]:
    """The issuer over HTTPS requiring client certificates of a per-run CA; machine-a by certificate."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    with TestIssuer.serving(tls=pki.server_files) as issuer:
        issuer.register_client("machine-a", tls_subject="CN=machine-a")
        issuer.register_client("billing", secret=SECRET)
        yield issuer, pki


def mtls_token(
    mtls_kc: tuple[TestIssuer, Pki], client_id: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kc-m2m token`` as ``client_id`` presenting the run's ``machine-a`` certificate."""
    issuer, pki = mtls_kc
    cert, key = pki.client
    return run("token", "--issuer", issuer.issuer, "--client-id", client_id, "--cert", str(cert),
               "--cert-key", str(key), *extra, env=env)  # fmt: skip


@pytest.mark.parametrize("credential", [(), ("--method", "tls_client_auth")], ids=["default", "explicit"])
def test_token_cert_alone_authenticates_and_binds_the_token(
    mtls_kc: tuple[TestIssuer, Pki], credential: tuple[str, ...]
) -> None:
    result = mtls_token(mtls_kc, "machine-a", "--ca-file", str(mtls_kc[1].ca), *credential)
    assert result.returncode == 0, result.stderr
    claims = parse(result.stdout.strip()).payload
    assert (claims["azp"], claims["cnf"]) == ("machine-a", {"x5t#S256": mtls_kc[1].client.x5t})


def test_token_cert_with_a_secret_gets_a_bound_token(mtls_kc: tuple[TestIssuer, Pki]) -> None:
    result = mtls_token(mtls_kc, "billing", "--ca-file", str(mtls_kc[1].ca), env={"KC_M2M_CLIENT_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout.strip()).payload["cnf"] == {"x5t#S256": mtls_kc[1].client.x5t}


def test_token_without_the_ca_file_does_not_trust_the_private_ca(mtls_kc: tuple[TestIssuer, Pki]) -> None:
    result = mtls_token(mtls_kc, "machine-a")
    assert result.returncode == 3
    assert "no token" in one_line_error(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cert", "c.pem"), "--cert and --cert-key go together"),
        (("--cert-key", "k.pem"), "--cert and --cert-key go together"),
        (("--ca-file", "/nonexistent/ca.pem"), "--ca-file must name a readable PEM file of CA certificates"),
    ],
)
def test_token_certificate_options_are_checked_in_one_line(args: tuple[str, ...], message: str) -> None:
    result = run("token", "--token-endpoint", "https://127.0.0.1:9/token", "--client-id", "m", *args,
                 env={"KC_M2M_CLIENT_SECRET": SECRET})  # fmt: skip
    assert result.returncode == 2
    assert message in one_line_error(result)


def test_decode_explains_a_dpop_binding(kc: TestIssuer) -> None:
    jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    result = run("decode", kc.token(cnf={"jkt": jkt}, typ="DPoP"))
    assert result.returncode == 0, result.stderr
    assert f'"jkt": "{jkt}"' in result.stdout
    assert f"cnf.jkt: bound to the DPoP key with thumbprint '{jkt}' (RFC 9449 §6.1)" in result.stdout.splitlines()
    assert "cnf.jkt" not in run("decode", kc.token()).stdout


# ------------------------------------------------------------------ ca and cert: a small CA for mutual TLS
def test_ca_and_cert_make_a_chain_that_a_real_handshake_accepts(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca)
    server_context.load_cert_chain(*pki.server)
    server_context.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", 0)) as listener:
        seen: list[dict[str, Any]] = []

        def accept() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                seen.append(dict(tls.getpeercert() or {}))
                tls.sendall(b"ok")

        thread = threading.Thread(target=accept)
        thread.start()
        client_context = pki.context(pki.client)  # verifies hostname 127.0.0.1 against the server's SAN
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(timeout=10)
    assert seen[0]["subject"] == ((("commonName", "machine-a"),),)


def test_ca_is_a_ca_and_cert_has_the_right_purposes_and_names(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server.pem)
    client = x509.load_pem_x509_certificate(pki.client.pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    server_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert server_names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in server_names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert client.issuer == server.issuer == ca.subject
    for key in (tmp_path / "ca.key.pem", pki.server.key, pki.client.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_cert_prints_the_subject_dn_and_the_thumbprint(tmp_path: Path) -> None:
    assert run("ca", "--out", str(tmp_path)).returncode == 0
    ca = ("--ca", str(tmp_path / "ca.cert.pem"), "--ca-key", str(tmp_path / "ca.key.pem"))
    result = run("cert", *ca, "--name", "machine-a", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "CN=machine-a\n"  # Keycloak's x509.subjectdn
    written = Certificate(tmp_path / "machine-a.cert.pem", tmp_path / "machine-a.key.pem")
    assert f"x5t#S256 (cnf of tokens bound to it, RFC 8705 §3.1): {written.x5t}" in result.stderr


def test_cert_force_replaces_a_symlinked_key_instead_of_following_it(tmp_path: Path) -> None:
    assert run("ca", "--out", str(tmp_path)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("someone else's file")
    key_file = tmp_path / "m.key.pem"
    key_file.symlink_to(elsewhere)
    ca = ("--ca", str(tmp_path / "ca.cert.pem"), "--ca-key", str(tmp_path / "ca.key.pem"))
    refused = run("cert", *ca, "--name", "m", "--out", str(tmp_path))
    assert refused.returncode == 2
    assert "exists; use --force" in one_line_error(refused)
    assert run("cert", *ca, "--name", "m", "--out", str(tmp_path), "--force").returncode == 0
    assert elsewhere.read_text() == "someone else's file"
    assert not key_file.is_symlink()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        ("server", "a server certificate needs its host names: --dns and/or --ip"),
        ("other-key", "--ca-key is not the key of the --ca certificate"),
        ("not-a-ca", "--ca is not a CA certificate (kc-m2m ca makes one)"),
        ("cert-as-key", "--ca-key: not an unencrypted PEM private key"),
    ],
)
def test_cert_refuses_what_cannot_make_a_usable_chain(tmp_path: Path, swap: str, message: str) -> None:
    assert run("ca", "--out", str(tmp_path)).returncode == 0
    assert run("keygen", "--name", "self", "--out", str(tmp_path)).returncode == 0
    ca_cert, ca_key = tmp_path / "ca.cert.pem", tmp_path / "ca.key.pem"
    extra: tuple[str, ...] = ()
    if swap == "server":
        extra = ("--server",)
    elif swap == "other-key":
        ca_key = tmp_path / "self.key.pem"
    elif swap == "not-a-ca":
        ca_cert, ca_key = tmp_path / "self.cert.pem", tmp_path / "self.key.pem"
    else:
        ca_key = ca_cert
    result = run("cert", "--ca", str(ca_cert), "--ca-key", str(ca_key), "--out", str(tmp_path), *extra)
    assert result.returncode == 2
    assert one_line_error(result) == f"kc-m2m cert: {message}"
    assert not (tmp_path / "client.key.pem").exists()
