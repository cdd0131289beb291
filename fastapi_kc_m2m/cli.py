"""``kc-m2m``: keys, tokens and token checks for machine-to-machine calls through Keycloak.

Exit status: 0 success, 1 refused (an invalid token, a token request the server refused), 2 usage or
configuration error, 3 Keycloak unreachable or answering nonsense. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import ipaddress
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import ECKey, RSAKey

from ._idp.client_auth import CertificateAuthMethod, ClientAuthMethod
from ._idp.http import trust_context
from ._jose.algorithms import EC_CURVES
from ._jose.jws import parse
from ._jose.x5t import certificate_thumbprint
from ._version import __version__
from .client import ClientCredentialsAuth, ClientCredentialsError, key_id, load_signing_key, public_jwks
from .errors import AuthError, IdentityProviderUnavailable
from .server.verifier import TokenVerifier
from .settings import KeycloakSettings, SettingsError

__all__ = ["main"]

EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
_CURVES = tuple(EC_CURVES.values())
_TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
_SECRET_ENV = "KC_M2M_CLIENT_SECRET"
_DEFAULT_BITS, _DEFAULT_CURVE = 2048, "P-256"
_SHOWN = 200  # characters of an unverified claim that verify -v shows at most

_EPILOG = {
    "keygen": """examples:
  kc-m2m keygen --name machine-a            # RSA 2048: machine-a.key.pem, machine-a.cert.pem
  kc-m2m keygen --name machine-a --kind ec  # EC P-256
  CERT=$(kc-m2m keygen --name machine-a)    # stdout: the value of jwt.credential.certificate

In Keycloak: client -> Credentials -> Client Authenticator "Signed JWT", then Keys -> Import
(certificate PEM), or set the client attribute jwt.credential.certificate to the printed value.""",
    "ca": """examples:
  kc-m2m ca --name example-ca --out certs     # certs/example-ca.key.pem (0600), certs/example-ca.cert.pem

The CA signs the server and client certificates of "kc-m2m cert"; give its certificate to the TLS servers
(nginx ssl_client_certificate, Keycloak's truststore) that must accept the clients.""",
    "cert": """examples:
  kc-m2m cert --ca ca.cert.pem --ca-key ca.key.pem --name machine-a            # client (EKU clientAuth)
  kc-m2m cert --ca ca.cert.pem --ca-key ca.key.pem --name api --server --dns localhost --ip 127.0.0.1

stdout: the subject DN, for Keycloak's client authenticator "X509 Certificate" (x509.subjectdn);
stderr: the certificate's x5t#S256, which certificate-bound tokens carry in cnf (RFC 8705 §3.1).""",
    "token": """examples:
  KC_M2M_CLIENT_SECRET=... kc-m2m token --issuer https://kc.example/realms/prod --client-id machine-a
  kc-m2m token --issuer https://kc.example/realms/prod --client-id machine-a --key machine-a.key.pem
  kc-m2m token ... --scope "orders:read" --json     # the whole token response
  kc-m2m token ... --dpop                           # a DPoP-bound token; stderr: the key's thumbprint
  kc-m2m token --issuer https://kc.example/realms/prod --client-id machine-a \
      --cert machine-a.cert.pem --cert-key machine-a.key.pem --ca-file ca.cert.pem   # tls_client_auth

With --cert the token request runs over mutual TLS (RFC 8705): the certificate alone authenticates the
client (Keycloak's "X509 Certificate" authenticator), or a secret or --key does and the token is still
bound to the certificate (cnf.x5t#S256). --ca-file trusts a private CA for Keycloak's HTTPS.

With --dpop the key is made for this run and forgotten: the token can be inspected (kc-m2m decode
shows its cnf.jkt) but not presented, since every request needs a proof from that key (RFC 9449).""",
    "decode": """examples:
  kc-m2m decode eyJhbGciOi...
  kc-m2m token ... | kc-m2m decode                  # reads the token from stdin

The signature is NOT checked: use "kc-m2m verify" to know whether a token is valid.""",
    "verify": """examples:
  kc-m2m verify --issuer https://kc.example/realms/prod --audience orders eyJhbGciOi...
  KC_M2M_SERVER_URL=https://kc.example KC_M2M_REALM=prod KC_M2M_AUDIENCE=orders kc-m2m verify < token.txt

Settings come from the same KC_M2M_* variables the middleware reads; options override them.
Exit status: 0 valid, 1 invalid (the reason is printed), 2 configuration error, 3 Keycloak unreachable.""",
}


class CliError(Exception):
    """A failure to report as one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------- keygen
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
#: An extension to add and whether it is critical (RFC 5280 §4.2).
Extension = tuple[x509.ExtensionType, bool]


def issue_certificate(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    common_name: str,
    *,
    signer: PrivateKey,
    issuer: x509.Name | None = None,
    days: int,
    ca: bool = False,
    extensions: Sequence[Extension] = (),
) -> x509.Certificate:
    """An X.509 v3 certificate (RFC 5280) for ``public_key`` named ``CN=common_name``, signed by ``signer``
    as ``issuer`` (default: itself, self-signed), valid from 5 minutes ago; BasicConstraints ``ca``
    (§4.2.1.9), the key identifiers (§4.2.1.1-2) and ``extensions``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def self_signed_certificate(private: PrivateKey, common_name: str, *, days: int) -> x509.Certificate:
    """A self-signed end-entity certificate (RFC 5280) for ``private``, valid from 5 minutes ago."""
    return issue_certificate(private.public_key(), common_name, signer=private, days=days)


def _new_key(args: argparse.Namespace) -> PrivateKey:
    """A new key of ``--kind``: RSA of ``--bits``, or EC on ``--curve``."""
    if args.kind == "rsa":
        if args.curve is not None:
            raise CliError("--curve is for EC keys (--kind ec); RSA keys take --bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=args.bits or _DEFAULT_BITS)
    if args.bits is not None:
        raise CliError("--bits is for RSA keys (--kind rsa); EC keys take --curve")
    # A generated key always has its private half; joserfc types it optional.
    return cast(ec.EllipticCurvePrivateKey, ECKey.generate_key(args.curve or _DEFAULT_CURVE).private_key)


def _write_pair(args: argparse.Namespace, private: PrivateKey, certificate: x509.Certificate) -> bytes:
    """Write ``NAME.key.pem`` (PKCS#8, mode 0600) and ``NAME.cert.pem`` into ``--out``; return the key's PEM."""
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path, cert_path = args.out / f"{args.name}.key.pem", args.out / f"{args.name}.cert.pem"
    _write(key_path, pem, 0o600, args.force)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644, args.force)
    _note(f"wrote {key_path} (private: keep it secret) and {cert_path}")
    return pem


def _keygen(args: argparse.Namespace) -> int:
    """A private key (PKCS#8 PEM, mode 0600), a self-signed certificate, and the certificate as Keycloak's
    ``jwt.credential.certificate`` wants it: base64 DER without PEM armour."""
    private = _new_key(args)
    certificate = self_signed_certificate(private, args.name, days=args.days)
    pem = _write_pair(args, private, certificate)
    imported = (RSAKey if args.kind == "rsa" else ECKey).import_key(pem)
    _note(f"kid (RFC 7638 thumbprint, for a JWKS URL set-up): {key_id(imported)}")
    _note("jwt.credential.certificate (stdout):")
    print(base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii"))
    return 0


# ----------------------------------------------------------------- ca and cert
def _ca(args: argparse.Namespace) -> int:
    """A CA key and its self-signed certificate (RFC 5280 §4.2.1.9 ``cA``, §4.2.1.3 ``keyCertSign``)."""
    private = _new_key(args)
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # keyCertSign, cRLSign
    certificate = issue_certificate(
        private.public_key(), args.name, signer=private, days=args.days, ca=True, extensions=[(usage, True)]
    )
    _write_pair(args, private, certificate)
    return 0


def _cert(args: argparse.Namespace) -> int:
    """A client (EKU ``clientAuth``) or ``--server`` (``serverAuth``) certificate signed by ``--ca``, with
    the names of ``--dns`` and ``--ip`` (RFC 5280 §4.2.1.6, §4.2.1.12); prints its subject DN."""
    ca_certificate, ca_key = _load_ca(args.ca, args.ca_key)
    names = [*map(x509.DNSName, args.dns), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in args.ip)]
    if args.server and not names:
        raise CliError("a server certificate needs its host names: --dns and/or --ip")
    private = _new_key(args)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if args.server else ExtendedKeyUsageOID.CLIENT_AUTH
    encipher = isinstance(private, rsa.RSAPrivateKey)  # RSA key exchange in TLS 1.2
    usage = x509.KeyUsage(True, False, encipher, False, False, False, False, False, False)
    extensions: list[Extension] = [(usage, True), (x509.ExtendedKeyUsage([purpose]), False)]
    if names:
        extensions.append((x509.SubjectAlternativeName(names), False))
    certificate = issue_certificate(
        private.public_key(),
        args.name,
        signer=ca_key,
        issuer=ca_certificate.subject,
        days=args.days,
        extensions=extensions,
    )
    _write_pair(args, private, certificate)
    thumbprint = certificate_thumbprint(certificate.public_bytes(serialization.Encoding.DER))
    _note(f"x5t#S256 (cnf of tokens bound to it, RFC 8705 §3.1): {thumbprint}")
    print(certificate.subject.rfc4514_string())
    return 0


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, PrivateKey]:
    """The CA certificate and its key, which must match, from PEM files."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        raise CliError("--ca: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):  # never echo what the file holds
        raise CliError("--ca-key: not an unencrypted PEM private key") from None
    if not isinstance(key, PrivateKey) or key.public_key() != certificate.public_key():
        raise CliError("--ca-key is not the key of the --ca certificate")
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise CliError("--ca is not a CA certificate (kc-m2m ca makes one)")
    return certificate, key


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``data`` to ``path`` as a file of our own with ``mode``, never through a symlink: without
    ``force`` nothing may be there; with it, a new file in the same directory replaces what is there
    (a symlink itself, not its target)."""
    if not force:
        _create(path, data, mode)
        return
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _create(temporary, data, mode)
    try:
        os.replace(temporary, path)
    except OSError:
        temporary.unlink()
        raise


def _create(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively (never following a symlink) with exactly ``mode``, and write ``data``."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise CliError(f"{path} exists; use --force to overwrite it") from None
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(descriptor, mode)  # whatever the umask
        file.write(data)


# ----------------------------------------------------------------- jwks
def _jwks(args: argparse.Namespace) -> int:
    """Print the public JWK Set of the given keys (RFC 7517 §5), for a static ``jwks.url``."""
    keys = [load_signing_key(path)[0] for path in args.keys]
    print(json.dumps(public_jwks(*keys), indent=2))
    return 0


# ----------------------------------------------------------------- token
def _token(args: argparse.Namespace) -> int:
    """RFC 6749 §4.4: a client-credentials token, printed alone or as the whole JSON response; with
    ``--dpop`` bound to a new key (RFC 9449 §5), whose thumbprint goes to stderr; with ``--cert`` over
    mutual TLS (RFC 8705 §2), the token bound to the certificate."""
    secret = _secret(args)
    if (args.cert is None) != (args.cert_key is None):
        raise CliError("--cert and --cert-key go together: the client certificate and its private key")
    auth = ClientCredentialsAuth(
        args.client_id,
        issuer=args.issuer,
        token_endpoint=args.token_endpoint,
        client_secret=secret,
        private_key=args.key,
        method=args.method,
        algorithm=args.alg,
        key_id=args.kid,
        scope=args.scope,
        timeout=args.timeout,
        dpop=args.dpop,
        verify=True if args.ca_file is None else trust_context(args.ca_file, "--ca-file"),
        client_cert=None if args.cert is None else (args.cert, args.cert_key),
    )
    try:
        token = auth.get_token()
    finally:
        auth.close()
    if auth.jkt is not None:
        _note(f"DPoP-bound to the key with thumbprint (cnf.jkt): {auth.jkt}")
    print(json.dumps(dict(token.response), indent=2) if args.json else token.value)
    return 0


def _secret(args: argparse.Namespace) -> str | None:
    """The secret from ``--client-secret-file`` (``-``: stdin), ``--client-secret`` or the environment."""
    if args.client_secret_file is not None:
        text = sys.stdin.read() if args.client_secret_file == "-" else Path(args.client_secret_file).read_text()
        return text.strip()
    if args.client_secret is not None:
        return str(args.client_secret)
    return None if args.key is not None else os.environ.get(_SECRET_ENV)


# ----------------------------------------------------------------- decode
def _decode(args: argparse.Namespace) -> int:
    """Header and claims of a JWS, without checking anything; times as UTC dates and relative to now."""
    try:
        header, claims, _, _ = parse(_read_token(args.token))
    except ValueError:
        raise CliError("not a JWT: expected three base64url parts holding JSON objects", EXIT_REFUSED) from None
    if args.json:
        print(json.dumps({"header": header, "claims": claims}, indent=2))
        return 0
    print(f"header:\n{json.dumps(header, indent=2)}\nclaims:\n{json.dumps(claims, indent=2)}")
    now = datetime.datetime.now(datetime.UTC)
    for name in _TIME_CLAIMS:
        value = claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            print(f"{name}: {_human_time(value, now)}")
    confirmation = claims.get("cnf")
    if isinstance(confirmation, dict) and isinstance(confirmation.get("jkt"), str):
        print(f"cnf.jkt: bound to the DPoP key with thumbprint {_shown(confirmation['jkt'])} (RFC 9449 §6.1)")
    return 0


def _human_time(timestamp: float, now: datetime.datetime) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp} (not a usable date)"
    seconds = int((moment - now).total_seconds())
    minutes, rest = divmod(abs(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    span = f"{hours}h {minutes:02d}m {rest:02d}s" if hours else f"{minutes}m {rest:02d}s"
    relative = f"in {span}" if seconds > 0 else f"{span} ago"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({relative})"


def _read_token(given: str | None) -> str:
    """The token argument, else stdin (keeps the token out of the process list)."""
    token = (sys.stdin.read() if given in (None, "-") else given) or ""
    token = token.strip().removeprefix("Bearer ").strip()
    if not token:
        raise CliError("no token given (pass it as an argument or on stdin)")
    return token


# ----------------------------------------------------------------- verify
def _verify(args: argparse.Namespace) -> int:
    """Verify a token as the middleware would, with ``KC_M2M_*`` settings and the options given."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("issuers", args.issuer),
            ("server_url", args.server_url),
            ("realm", args.realm),
            ("audience", args.audience),
            ("algorithms", args.algorithm),
            ("allowed_clients", args.allowed_client),
            ("http_timeout", args.timeout),
            ("introspection_timeout", args.timeout),
        )
        if value
    }
    settings = KeycloakSettings(**overrides)
    token = _read_token(args.token)
    try:
        principal = asyncio.run(_verify_with(settings, token))
    except IdentityProviderUnavailable as exc:
        raise CliError(f"unavailable: {exc.description} (kc-m2m -v verify ... tells why)", EXIT_UNAVAILABLE) from None
    except AuthError as exc:
        if args.verbose:
            for mismatch in _mismatches(settings, token):
                _note(f"kc-m2m verify: {mismatch}")
        raise CliError(f"invalid: {exc.description}", EXIT_REFUSED) from None
    scopes = " ".join(sorted(principal.scopes)) or "-"
    print(f"valid: client {principal.client_id}, issuer {principal.issuer}, scopes {scopes}")
    return 0


def _mismatches(settings: KeycloakSettings, token: str) -> list[str]:
    """How the token's UNVERIFIED header and claims differ from the settings (``iss``, ``aud``, ``alg``,
    ``exp``; RFC 7519 §4.1), for ``verify -v`` only: values are shown escaped and shortened."""
    try:
        header, claims, _, _ = parse(token)
    except ValueError:
        return []
    found = []
    issuer, audience, algorithm, expiry = claims.get("iss"), claims.get("aud"), header.get("alg"), claims.get("exp")
    realm_issuer = isinstance(issuer, str) and settings.realm_matches(issuer)
    if issuer not in settings.trusted_issuers and not realm_issuer:
        found.append(f"token iss {_shown(issuer)}, trusted issuers {_shown(list(settings.trusted_issuers))}")
    expected = settings.audience_for(issuer) if isinstance(issuer, str) else settings.audience
    if expected not in (audience if isinstance(audience, list) else [audience]):
        found.append(f"token aud {_shown(audience)}, audience {_shown(expected)}")
    if algorithm not in settings.algorithms:
        found.append(f"token alg {_shown(algorithm)}, allowed {_shown(list(settings.algorithms))}")
    now = int(time.time())
    if not isinstance(expiry, int | float) or isinstance(expiry, bool) or expiry <= now:
        found.append(f"token exp {_shown(expiry)}, now {now}")
    return found


def _shown(value: Any) -> str:
    """``repr`` (escaping control characters), cut to :data:`_SHOWN` characters."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


async def _verify_with(settings: KeycloakSettings, token: str) -> Any:
    async with TokenVerifier(settings) as verifier:
        return await verifier.verify(token)


# ----------------------------------------------------------------- the parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kc-m2m", description="Keys, tokens and token checks for machine-to-machine calls through Keycloak."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (key fetches, failures)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=text, description=text, epilog=_EPILOG.get(name), formatter_class=_Formatter
        )
        sub.set_defaults(run=run)
        return sub

    keygen = command("keygen", _keygen, "Create a key pair and self-signed certificate for private_key_jwt.")
    _key_options(keygen, "client", 365)

    _key_options(
        command("ca", _ca, "Create a small certificate authority: a key and a self-signed CA certificate."), "ca", 3650
    )
    _cert_options(command("cert", _cert, "Create a client or server TLS certificate signed by a kc-m2m ca."))
    jwks = command("jwks", _jwks, "Print the public JWK Set of private keys, for Keycloak's jwks.url.")
    jwks.add_argument("keys", nargs="+", metavar="KEY", help="PEM file or JWK of a private key (current, next)")

    token = command("token", _token, "Get an access token with the client-credentials grant.")
    where = token.add_mutually_exclusive_group(required=True)
    where.add_argument("--issuer", help="realm URL, e.g. https://kc.example/realms/prod (discovery)")
    where.add_argument("--token-endpoint", help="token endpoint URL, skipping discovery")
    token.add_argument("--client-id", required=True, help="the calling client's id")
    credential = token.add_mutually_exclusive_group()
    credential.add_argument("--client-secret", help=f"secret (visible to other users in ps; prefer ${_SECRET_ENV})")
    credential.add_argument("--client-secret-file", metavar="FILE", help="read the secret from FILE ('-': stdin)")
    credential.add_argument("--key", metavar="KEY", help="private key (PEM file or JWK) for private_key_jwt")
    token.add_argument("--method", choices=(*get_args(ClientAuthMethod), *get_args(CertificateAuthMethod)))
    token.add_argument("--alg", help="assertion algorithm (RS256, PS256, ES256, ...; default from the key)")
    token.add_argument("--kid", help="kid header of the assertion")
    token.add_argument("--scope", help="space-separated scopes to request")
    token.add_argument(
        "--timeout", type=float, default=10.0, help="seconds each exchange with Keycloak may take in all (%(default)s)"
    )
    token.add_argument("--json", action="store_true", help="print the whole token response")
    token.add_argument("--dpop", action="store_true", help="get a DPoP-bound token for a new ES256 key (RFC 9449)")
    token.add_argument("--cert", metavar="FILE", help="client certificate (PEM) for mutual TLS (RFC 8705)")
    token.add_argument("--cert-key", metavar="FILE", help="the private key (PEM) of --cert")
    token.add_argument("--ca-file", metavar="FILE", help="CA certificates (PEM) Keycloak's HTTPS must chain to")

    decode = command("decode", _decode, "Show a token's header and claims WITHOUT verifying it.")
    decode.add_argument("token", nargs="?", help="the token; default: read from stdin")
    decode.add_argument("--json", action="store_true", help="print {header, claims} as JSON")

    verify = command("verify", _verify, "Verify a token as the middleware would; the exit status tells.")
    verify.add_argument("token", nargs="?", help="the token; default: read from stdin")
    verify.add_argument("--issuer", action="append", help="trusted issuer (repeatable); or KC_M2M_ISSUERS")
    verify.add_argument("--server-url", help="Keycloak base URL (with --realm); or KC_M2M_SERVER_URL")
    verify.add_argument("--realm", help="realm on --server-url; or KC_M2M_REALM")
    verify.add_argument("--audience", help="this API's client id, required in aud; or KC_M2M_AUDIENCE")
    verify.add_argument("--algorithm", action="append", help="accepted algorithm (repeatable); default RS256")
    verify.add_argument("--allowed-client", action="append", help="allowed azp (repeatable); default any")
    verify.add_argument(
        "--timeout", type=float, help="seconds each request to Keycloak may take (keys, introspection); default 5"
    )
    return parser


def _key_options(sub: argparse.ArgumentParser, name: str, days: int) -> None:
    """The options of commands writing a new key and its certificate."""
    sub.add_argument("--name", default=name, help="client id or host: file names and certificate CN (%(default)s)")
    sub.add_argument("--kind", choices=("rsa", "ec"), default="rsa", help="key type (%(default)s)")
    sub.add_argument("--bits", type=int, choices=(2048, 3072, 4096), help=f"RSA key size ({_DEFAULT_BITS})")
    sub.add_argument("--curve", choices=_CURVES, help=f"EC curve ({_DEFAULT_CURVE})")
    sub.add_argument("--days", type=int, default=days, help="certificate validity in days (%(default)s)")
    sub.add_argument("--out", type=Path, default=Path(), help="directory for the files (default: current)")
    sub.add_argument("--force", action="store_true", help="overwrite existing files")


def _cert_options(cert: argparse.ArgumentParser) -> None:
    """``kc-m2m cert``'s options."""
    _key_options(cert, "client", 365)
    cert.add_argument("--ca", type=Path, required=True, help="the CA certificate (PEM)")
    cert.add_argument("--ca-key", type=Path, required=True, help="the CA's private key (PEM)")
    cert.add_argument("--server", action="store_true", help="a server certificate (serverAuth) instead of a client's")
    cert.add_argument("--dns", action="append", default=[], help="DNS name in subjectAltName (repeatable)")
    cert.add_argument("--ip", action="append", default=[], help="IP address in subjectAltName (repeatable)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their line breaks."""


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kc-m2m``; return the exit status. Every error becomes one line on stderr."""
    args = _parser().parse_args(argv)
    logging.basicConfig(format="kc-m2m: %(message)s", level=logging.INFO if args.verbose else logging.CRITICAL)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every failure, even an unforeseen one: one line, never a traceback
        message, status = _failure(exc)
        _note(f"kc-m2m {args.command}: {message.splitlines()[0]}")
    return status


def _failure(exc: Exception) -> tuple[str, int]:
    """The one-line message and exit status of a failure."""
    if isinstance(exc, CliError):
        return str(exc), exc.status
    if isinstance(exc, ClientCredentialsError):
        unavailable = exc.error in ("network_error", "invalid_response")
        return f"no token: {exc}", EXIT_UNAVAILABLE if unavailable else EXIT_REFUSED  # exc names the step
    if isinstance(exc, SettingsError):  # one line per problem; main prints the first
        return f"configuration: {exc}", EXIT_USAGE
    if isinstance(exc, ValueError | OSError) and str(exc):
        return str(exc), EXIT_USAGE
    return f"unexpected {type(exc).__name__}", EXIT_USAGE
