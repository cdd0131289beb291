"""Authenticate this service as a confidential Keycloak client towards Keycloak's endpoints.

Three methods, as Keycloak's discovery names them:

- ``client_secret_basic``: HTTP Basic with the form-urlencoded client id and secret (RFC 6749 §2.3.1);
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body (RFC 6749 §2.3.1);
- ``private_key_jwt``: a signed client assertion (RFC 7523 §2.2 and §3, RFC 7521 §4.2);
- ``tls_client_auth`` / ``self_signed_tls_client_auth``: the TLS client certificate, with only
  ``client_id`` in the form (RFC 8705 §2; Keycloak's ``client-x509``).

Introspection uses it for the resource server's own client; a calling machine can use the same classes
for its token requests::

    auth = client_authentication("private_key_jwt", "machine-a", private_key=load_private_key("key.pem"))
    response = await client.send(auth.request(client, token_url, {"grant_type": "client_credentials"},
                                              audience=issuer))
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from .._jose.algorithms import ASSERTION_ALGORITHMS, EC_CURVES, MIN_RSA_BITS, key_type

__all__ = [
    "ASSERTION_LIFETIME",
    "CLIENT_ASSERTION_TYPE",
    "CertificateAuthMethod",
    "ClientAuthMethod",
    "ClientAuthentication",
    "ClientSecretBasic",
    "ClientSecretPost",
    "PrivateKey",
    "PrivateKeyJWT",
    "TLSClientAuth",
    "client_authentication",
    "key_material",
    "load_private_key",
]

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
#: RFC 8705 §2.1 (PKI) and §2.2 (self-signed): the client is authenticated by its TLS certificate.
CertificateAuthMethod = Literal["tls_client_auth", "self_signed_tls_client_auth"]
PrivateKey = RSAKey | ECKey

#: RFC 7523 §2.2: the ``client_assertion_type`` of a JWT client assertion.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Seconds an assertion stays valid; Keycloak refuses longer-lived ones by default.
ASSERTION_LIFETIME = 60

_KEY_CLASSES: dict[str, type[PrivateKey]] = {"RSA": RSAKey, "EC": ECKey}
# A key file's name longer than this is not repeated in errors: it may be key material given by mistake.
_MAX_SHOWN_NAME = 64


class ClientAuthentication(ABC):
    """A client's credentials, added to form POSTs to the authorization server."""

    def __init__(self, client_id: str) -> None:
        if not client_id:
            raise ValueError("a client id is required")
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r})"  # never the secret or the key

    @abstractmethod
    def credentials(self, audience: str) -> tuple[dict[str, str], dict[str, str]]:
        """The ``(headers, form fields)`` authenticating one request to ``audience``."""

    def request(self, client: httpx.AsyncClient, url: str, form: Mapping[str, str], *, audience: str) -> httpx.Request:
        """A POST of ``form`` to ``url`` carrying the credentials; ``audience`` is the authorization
        server's issuer identifier (used by ``private_key_jwt`` only)."""
        headers, fields = self.credentials(audience)
        return client.build_request("POST", url, data={**form, **fields}, headers=headers)


class ClientSecretBasic(ClientAuthentication):
    """``client_secret_basic``: RFC 6749 §2.3.1 — id and secret form-urlencoded, then HTTP Basic (RFC 7617)."""

    def __init__(self, client_id: str, secret: str) -> None:
        super().__init__(client_id)
        if not secret:
            raise ValueError("a client secret is required")
        pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
        self._authorization = "Basic " + base64.b64encode(pair).decode("ascii")

    def credentials(self, audience: str) -> tuple[dict[str, str], dict[str, str]]:
        return {"Authorization": self._authorization}, {}


class ClientSecretPost(ClientAuthentication):
    """``client_secret_post``: RFC 6749 §2.3.1 — ``client_id`` and ``client_secret`` in the form body."""

    def __init__(self, client_id: str, secret: str) -> None:
        super().__init__(client_id)
        if not secret:
            raise ValueError("a client secret is required")
        self._secret = secret

    def credentials(self, audience: str) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {"client_id": self.client_id, "client_secret": self._secret}


class TLSClientAuth(ClientAuthentication):
    """``tls_client_auth`` / ``self_signed_tls_client_auth`` (RFC 8705 §2): the mutual-TLS handshake
    authenticates the client; the form carries only ``client_id`` (§2, RFC 6749 §2.3.1 not used)."""

    def __init__(self, client_id: str, method: CertificateAuthMethod = "tls_client_auth") -> None:
        super().__init__(client_id)
        self.method = method

    def credentials(self, audience: str) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {"client_id": self.client_id}


class PrivateKeyJWT(ClientAuthentication):
    """``private_key_jwt``: a fresh JWT client assertion per request (RFC 7523 §3, RFC 7521 §4.2).

    Claims: ``iss`` = ``sub`` = the client id, ``aud`` = one string (the issuer identifier; Keycloak also
    accepts its token or introspection endpoint URL), a unique ``jti``, ``iat`` and ``exp`` =
    ``iat`` + :data:`ASSERTION_LIFETIME`. The header names ``key_id``, else the JWK's ``kid``; a key
    without one (a PEM file) is sent without ``kid``, which Keycloak's certificate set-up matches by
    algorithm.
    """

    def __init__(
        self,
        client_id: str,
        key: PrivateKey,
        *,
        algorithm: str = "RS256",
        key_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client_id)
        _check_key(key, algorithm)
        self._key = key
        self._header: dict[str, Any] = {"alg": algorithm, "typ": "JWT"}
        kid = key_id or key.kid
        if kid:
            self._header["kid"] = kid
        self._clock = clock

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 thumbprint of the signing key, to keep it apart from a DPoP key (RFC 9449 §11.11)."""
        return self._key.thumbprint()

    def assertion(self, audience: str) -> str:
        """A signed, single-use client assertion for ``audience`` (RFC 7523 §3)."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        return jwt.encode(self._header, claims, self._key, algorithms=[self._header["alg"]])

    def credentials(self, audience: str) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": self.assertion(audience)}


def client_authentication(
    method: ClientAuthMethod,
    client_id: str,
    *,
    secret: str | None = None,
    private_key: PrivateKey | None = None,
    algorithm: str = "RS256",
    key_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> ClientAuthentication:
    """The credentials for ``method``: a secret for the ``client_secret_*`` methods, a key for JWTs."""
    if method == "private_key_jwt":
        if private_key is None:
            raise ValueError("private_key_jwt needs a private key")
        return PrivateKeyJWT(client_id, private_key, algorithm=algorithm, key_id=key_id, clock=clock)
    if secret is None:
        raise ValueError(f"{method} needs a client secret")
    secret_method = ClientSecretBasic if method == "client_secret_basic" else ClientSecretPost
    return secret_method(client_id, secret)


def load_private_key(
    source: str | bytes | os.PathLike[str] | Mapping[str, Any], *, algorithm: str = "RS256"
) -> PrivateKey:
    """A private key for ``algorithm`` from PEM bytes or text, a PEM file's path, a JWK or a JWK's JSON text.

    Refuses public keys, keys of another type or curve, and RSA keys under 2048 bits (RFC 7518 §3.3).
    """
    if algorithm not in ASSERTION_ALGORITHMS:
        raise ValueError(f"unsupported assertion algorithm {algorithm!r}")
    key_class = _KEY_CLASSES[key_type(algorithm)]
    data = key_material(source)
    try:
        key = key_class.import_key(data)
    except Exception:  # joserfc and cryptography raise many types; never echo key material
        raise ValueError(f"not a {key_class.key_type} private key usable with {algorithm}") from None
    _check_key(key, algorithm)
    return key


def key_material(source: str | bytes | os.PathLike[str] | Mapping[str, Any]) -> bytes | dict[str, Any]:
    """What a key is imported from: a JWK, PEM bytes, PEM text (a str starting with ``-----BEGIN``, RFC 7468),
    JWK JSON text, else a file's contents. Errors never repeat ``source``, which may be key material."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        return dict(json.loads(source))
    elif isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        data = source.encode()
    else:
        data = _read_key_file(os.fspath(source))
    if b"-----BEGIN CERTIFICATE" in data and b"PRIVATE KEY-----" not in data:
        raise ValueError("a certificate is not a private key: give the private key (e.g. NAME.key.pem)")
    return data


def _read_key_file(path: str) -> bytes:
    """The file's bytes; an error names at most the file's name, and only when it looks like one: short,
    with a dot, which base64 (RFC 4648 §4, §5) and hex key material never have."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        name = Path(path).name
        shown = f" {name!r}" if "." in name and len(name) <= _MAX_SHOWN_NAME and name.isprintable() else ""
        raise type(exc)(f"cannot read the key file{shown}: {exc.strerror}") from None


def _check_key(key: PrivateKey, algorithm: str) -> None:
    key_class = _KEY_CLASSES[key_type(algorithm)] if algorithm in ASSERTION_ALGORITHMS else None
    if key_class is None or not isinstance(key, key_class):
        raise ValueError(f"the key does not fit {algorithm}")
    if not key.is_private:
        raise ValueError("a private key is required to sign client assertions")
    if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits")
    if not isinstance(key, RSAKey) and key.curve_name != EC_CURVES.get(algorithm):
        raise ValueError(f"the key's curve does not fit {algorithm}")
