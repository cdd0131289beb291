"""The test issuer's confidential clients and how they authenticate, checked the way Keycloak does.

``client_secret_basic`` and ``client_secret_post`` (RFC 6749 §2.3.1) against a registered secret;
``private_key_jwt`` (RFC 7523 §3) against a registered public key: signature, ``iss`` = ``sub`` = the
client id, ``aud`` one string naming the realm or one of its endpoints, ``exp`` no more than 60 s after
``iat``, and a ``jti`` never seen before; ``tls_client_auth`` (RFC 8705 §2.1, Keycloak's ``client-x509``)
by the subject DN of the TLS client certificate, with only ``client_id`` in the form. Exactly one method
per request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from cryptography import x509
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .._idp.client_auth import ASSERTION_LIFETIME, CLIENT_ASSERTION_TYPE
from .._jose.algorithms import SUPPORTED_ALGORITHMS
from .._jose.jws import parse

_ALGORITHMS = sorted(SUPPORTED_ALGORITHMS)


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A confidential client: a secret (``client-secret``) or a public key (``client-jwt``), the
    roles of its service account (realm roles; client id -> role names), whether its tokens must
    be DPoP-bound (Keycloak's ``dpop.bound.access.tokens``), and the subject DN (RFC 4514) of the TLS
    client certificate authenticating it (``client-x509``'s ``x509.subjectdn``); ``exchange_audiences``:
    with standard token exchange enabled (``standard.token.exchange.enabled``), the clients it may
    exchange tokens for (its audience mappers), else ``None``."""

    client_id: str
    secret: str | None = None
    public_key: RSAKey | ECKey | OKPKey | None = None
    realm_roles: tuple[str, ...] = ()
    client_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dpop_bound: bool = False
    tls_subject: str | None = None
    exchange_audiences: tuple[str, ...] | None = None


class ClientRegistry:
    """Registered clients, and the one who authenticated a request (``None``: ``invalid_client``)."""

    def __init__(self, audiences: Collection[str], clock: Callable[[], float]) -> None:
        self.clients: dict[str, RegisteredClient] = {}
        self._audiences = frozenset(audiences)
        self._clock = clock
        self._used_jtis: set[str] = set()

    def register(self, client: RegisteredClient) -> None:
        """Add or replace a client."""
        self.clients[client.client_id] = client

    def authenticate(
        self, authorization: str | None, form: Mapping[str, str], certificate: x509.Certificate | None = None
    ) -> str | None:
        """The id of the client authenticated by exactly one method, else ``None``; with no secret or
        assertion, by the TLS client ``certificate``."""
        used = [authorization is not None, "client_secret" in form, "client_assertion" in form]
        if not any(used):
            return self._certificate_matches(form.get("client_id", ""), certificate)
        if sum(used) != 1:
            return None
        if authorization is not None:
            return self._basic(authorization)
        if "client_secret" in form:
            return self._secret_matches(form.get("client_id", ""), form["client_secret"])
        return self._assertion(form)

    def _secret_matches(self, client_id: str, secret: str) -> str | None:
        client = self.clients.get(client_id)
        if client is None or client.secret is None or not hmac.compare_digest(client.secret, secret):
            return None
        return client_id

    def _certificate_matches(self, client_id: str, certificate: x509.Certificate | None) -> str | None:
        """RFC 8705 §2.1: the certificate's subject DN is the one registered for ``client_id``."""
        client = self.clients.get(client_id)
        if client is None or client.tls_subject is None or certificate is None:
            return None
        return client_id if certificate.subject.rfc4514_string() == client.tls_subject else None

    def _basic(self, authorization: str) -> str | None:
        """RFC 6749 §2.3.1: ``Basic base64(urlencode(id) ":" urlencode(secret))``."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, colon, secret = decoded.partition(":")
        return self._secret_matches(unquote_plus(client_id), unquote_plus(secret)) if colon else None

    def _assertion(self, form: Mapping[str, str]) -> str | None:
        """RFC 7523 §3, with Keycloak's single audience, 60 s lifetime and single-use ``jti``."""
        assertion = form.get("client_assertion", "")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return None
        client = self.clients.get(_unverified_subject(assertion))
        if client is None or client.public_key is None:
            return None
        try:
            token = jwt.decode(assertion, client.public_key, algorithms=_ALGORITHMS)
        except Exception:  # joserfc raises many types for bad signatures, algorithms and keys
            return None
        kid = token.header.get("kid")
        if kid is not None and kid != client.public_key.kid:
            return None
        return client.client_id if self._claims_valid(token.claims, client.client_id) else None

    def _claims_valid(self, claims: Mapping[str, Any], client_id: str) -> bool:
        now = self._clock()
        exp, iat, jti = claims.get("exp"), claims.get("iat", now), claims.get("jti")
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return False
        if not isinstance(claims.get("aud"), str) or claims["aud"] not in self._audiences:
            return False
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            return False
        if exp <= now or exp - iat > ASSERTION_LIFETIME or not isinstance(jti, str) or jti in self._used_jtis:
            return False
        self._used_jtis.add(jti)
        return True


def _unverified_subject(assertion: str) -> str:
    """The ``sub`` an assertion claims, to find the key that must have signed it."""
    try:
        sub = parse(assertion).payload.get("sub")
    except ValueError:
        return ""
    return sub if isinstance(sub, str) else ""
