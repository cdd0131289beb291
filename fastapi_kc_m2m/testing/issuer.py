"""A token issuer in Keycloak 26's shape, for tests that need neither Keycloak nor a network.

:class:`TestIssuer` generates its keys, serves discovery and the JWK Set in-process (through an httpx
transport) or on a loopback port, and mints access tokens whose header and claims match what Keycloak
issues for ``grant_type=client_credentials``. Any claim or header can be overridden, and
:meth:`TestIssuer.bad_tokens` hands out ready-made tokens that a resource server must refuse::

    issuer = TestIssuer(audience="orders")
    async with issuer.auth() as auth:
        principal = await auth.verify(issuer.token(scope="orders:read"))

It also introspects its tokens (RFC 7662) for registered clients, and revokes them::

    issuer.register_client("orders", secret="s3cret")
    async with issuer.auth(introspection="always", client_secret="s3cret") as auth:
        token = issuer.token()
        await auth.verify(token)
        issuer.revoke(token)  # refused once the introspection cache time has passed

Registered clients also get tokens from its token endpoint (``grant_type=client_credentials``), as a
calling machine does with :class:`fastapi_kc_m2m.client.ClientCredentialsAuth`. As in Keycloak, a
requested scope must be one of the issuer's ``optional_scopes`` (else ``invalid_scope``), and the
tokens carry the roles the client was registered with::

    issuer = TestIssuer(audience="orders", optional_scopes={"orders:read"})
    issuer.register_client("billing", secret="s3cret", client_roles={"orders": ["writer"]})

A token request carrying a ``DPoP`` proof (RFC 9449 §5) gets a DPoP-bound token in Keycloak 26.7's
shape, the proof checked as Keycloak checks it (:mod:`.dpop`); ``dpop_nonce=True`` or
:meth:`TestIssuer.require_dpop_nonce` demands nonces. ``token(dpop_key=key)`` mints a bound token
directly, and :meth:`TestIssuer.bad_proofs` hands out proofs a resource server must refuse::

    key = generate_key("ES256")
    token = issuer.token(dpop_key=key)
    proofs = issuer.bad_proofs(key, token, "GET", "https://api.test/orders")

``TestIssuer.serving(tls=TLSFiles(cert, key, ca))`` serves over HTTPS requiring a client certificate
signed by ``ca``, advertising ``mtls_endpoint_aliases`` (RFC 8705 §5); a client registered with
``tls_subject`` authenticates by certificate (``tls_client_auth``), and tokens issued over mutual TLS
are bound to the certificate (``cnf["x5t#S256"]``, RFC 8705 §3) as with Keycloak's "OAuth 2.0 Mutual
TLS Certificate Bound Access Tokens"::

    with TestIssuer.serving(tls=TLSFiles("issuer.cert.pem", "issuer.key.pem", "ca.cert.pem")) as issuer:
        issuer.register_client("machine-a", tls_subject="CN=machine-a")
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc.jwk import OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._idp.urls import is_cleartext_over_network
from .._jose.algorithms import EC_CURVES, SUPPORTED_ALGORITHMS
from .._jose.dpop import ProofKey, access_token_hash, make_proof
from .._jose.jws import b64url, parse, signature_is_valid
from .._jose.x5t import certificate_thumbprint
from ..asgi.resource_server import KeycloakResourceServer
from ..server.exchange import TOKEN_EXCHANGE_GRANT
from ..server.observer import Observer
from ..server.store import Store
from ..settings import KeycloakSettings
from .clients import ClientRegistry, RegisteredClient
from .cors import add_cors_headers, preflight
from .dpop import Refusal, TokenEndpointProofs, bound_claims, thumbprint
from .exchange import exchange_grant
from .failures import FailureMode, misshapen
from .keys import SigningKey, generate_key
from .serving import TLSFiles, loopback_socket, serve_app

__all__ = ["OMIT", "TestIssuer"]

#: Pass as a claim or header value to leave that member out of a minted token.
OMIT: Any = object()

_HANG_SECONDS = 3600.0
_SLOW_SECONDS = 10.0


_SHAPE_OPTIONS = frozenset({"client_id", "audience", "scope", "realm_roles", "client_roles", "lifetime"})
#: What a lightweight access token keeps (Keycloak 24+); introspection still answers with every claim.
_LIGHTWEIGHT_CLAIMS = frozenset({"exp", "iat", "jti", "iss", "typ", "azp", "sid", "scope", "cnf", "sub"})


@functools.cache
def _decoy_encryption_key() -> RSAKey:
    """The ``use: enc`` key Keycloak publishes beside its signing keys; one for all issuers (never used)."""
    return RSAKey.generate_key(2048, parameters={"use": "enc", "alg": "RSA-OAEP"}, auto_kid=True)


async def _unique_form(request: Request) -> dict[str, str] | None:
    """The request's form fields, or ``None`` when one is repeated (Keycloak refuses those with 400)."""
    pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    form = dict(pairs)
    return form if len(form) == len(pairs) else None


def _drop_omitted(members: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in members.items() if value is not OMIT}


class TestIssuer:
    """An authorization server in Keycloak's shape: discovery, JWKS, token endpoint and introspection.

    ``requests`` counts the hits on each endpoint (``"discovery"``, ``"jwks"``, ``"introspection"``,
    ``"token"``);
    ``fail()`` makes an endpoint misbehave until ``heal()``. With ``audience_rule=True`` introspection
    behaves as Keycloak 26.6.2+: a token is inactive unless the introspecting client is in its ``aud``.
    The token endpoint grants only scopes among ``optional_scopes``: Keycloak's default optional client
    scopes plus those given (RFC 6749 §3.3; others are refused with ``invalid_scope``). A token request
    with a valid DPoP proof gets a bound token (RFC 9449 §5); with ``dpop_nonce=True`` only once the
    proof carries the issuer's nonce (§8). With ``mtls=True`` discovery advertises
    ``mtls_endpoint_aliases`` (RFC 8705 §5), a token endpoint of its own for mutual-TLS clients.
    Browser pages of the ``web_origins`` (Keycloak's ``webOrigins``, ``*`` for any) may call the token
    endpoint: its answers and CORS preflight carry ``Access-Control-Allow-Origin`` for them (:mod:`.cors`).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        base_url: str = "http://keycloak.test",
        realm: str = "test",
        *,
        audience: str = "machine-b",
        algorithm: str = "RS256",
        clock: Callable[[], float] = time.time,
        audience_rule: bool = False,
        optional_scopes: Iterable[str] = (),
        dpop_nonce: bool = False,
        mtls: bool = False,
        web_origins: Iterable[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.mtls = mtls
        self.realm = realm
        self.issuer = f"{self.base_url}/realms/{realm}"
        self.audience = audience
        self.algorithm = algorithm
        self.clock = clock
        self.signing_key = generate_key(algorithm)
        self.published: list[SigningKey] = [self.signing_key]
        self.encryption_key = _decoy_encryption_key()
        self.requests: Counter[str] = Counter()
        self.failures: dict[str, FailureMode] = {}
        self.audience_rule = audience_rule
        self.revoked: set[bytes] = set()
        #: Client-credentials grants: token lifetime, scopes a client may request beyond the default
        #: ``profile email``, and clients without a service account (``unauthorized_client``).
        self.token_lifetime = 300
        self.optional_scopes = {"openid", "address", "phone", "offline_access", "microprofile-jwt", *optional_scopes}
        self.no_service_account: set[str] = set()
        #: Origins whose browser pages may call the token endpoint (CORS, Keycloak's ``webOrigins``).
        self.web_origins = {origin.rstrip("/") for origin in web_origins}
        endpoints = self.discovery_document()
        self.clients = ClientRegistry(
            (self.issuer, endpoints["token_endpoint"], endpoints["introspection_endpoint"], self._mtls_token_endpoint),
            clock,
        )
        self.dpop = TokenEndpointProofs(endpoints["token_endpoint"], clock, nonce=dpop_nonce)
        self._full_claims: dict[str, dict[str, Any]] = {}  # of lightweight tokens, by jti
        self._stopping = threading.Event()
        self.app = Starlette(
            routes=[
                Route(f"/realms/{realm}/.well-known/openid-configuration", self._discovery),
                Route(f"/realms/{realm}/protocol/openid-connect/certs", self._jwks),
                Route(f"/realms/{realm}/protocol/openid-connect/token/introspect", self._introspect, methods=["POST"]),
                Route(f"/realms/{realm}/protocol/openid-connect/token", self._token, methods=["POST"]),
                Route(f"/realms/{realm}/protocol/openid-connect/token", self._preflight, methods=["OPTIONS"]),
                Route(f"/realms/{realm}/protocol/openid-connect/mtls/token", self._token, methods=["POST"]),
            ]
        )

    # ----------------------------------------------------------------- serving
    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport to this issuer's endpoints, for ``KeycloakResourceServer(transport=...)``."""
        return httpx.ASGITransport(app=self.app)

    def settings(self, **overrides: Any) -> KeycloakSettings:
        """Settings that trust this issuer and require its audience; keywords override any field. Its
        in-process default ``http://keycloak.test`` is allowed over http (``KC_M2M_ALLOW_HTTP``)."""
        values: dict[str, Any] = {"issuers": (self.issuer,), "audience": self.audience, "algorithms": (self.algorithm,)}
        if is_cleartext_over_network(self.issuer):
            values["allow_http"] = True
        return KeycloakSettings(**(values | overrides))

    def auth(
        self, *, store: Store | None = None, observer: Observer | None = None, **overrides: Any
    ) -> KeycloakResourceServer:
        """A :class:`KeycloakResourceServer` wired to this issuer in-process, sharing its clock;
        keywords other than ``store`` and ``observer`` override settings."""
        return KeycloakResourceServer(
            self.settings(**overrides), transport=self.transport, clock=self.clock, store=store, observer=observer
        )

    @classmethod
    @contextlib.contextmanager
    def serving(cls, realm: str = "test", *, tls: TLSFiles | None = None, **options: Any) -> Iterator[TestIssuer]:
        """Run a new issuer on ``http://127.0.0.1:<free port>`` with uvicorn (``pip install
        fastapi_kc_m2m[testing]``) in a thread; ``options`` go to the constructor. With ``tls``, on
        ``https://`` requiring client certificates, with ``mtls=True``."""
        with loopback_socket() as sock:
            scheme = "http" if tls is None else "https"
            issuer = cls(f"{scheme}://127.0.0.1:{sock.getsockname()[1]}", realm, mtls=tls is not None, **options)
            with serve_app(issuer.app, sock, tls=tls):
                try:
                    yield issuer
                finally:
                    issuer._stopping.set()  # end requests hanging in "timeout" mode, or shutdown waits for them

    def add_realm(self, realm: str, **options: Any) -> TestIssuer:
        """Another realm on this server URL, as in a multi-tenant Keycloak: a new issuer (own keys, clients,
        counts) whose endpoints this issuer's app, :attr:`transport` and server serve too. ``options`` go
        to the constructor; clock, audience and algorithm default to this issuer's."""
        defaults: dict[str, Any] = {"clock": self.clock, "audience": self.audience, "algorithm": self.algorithm}
        sibling = type(self)(self.base_url, realm, **(defaults | options))
        self.app.router.routes.extend(sibling.app.routes)
        return sibling

    def fail(self, endpoint: Literal["discovery", "jwks", "introspection", "token"], mode: FailureMode) -> None:
        """Make ``endpoint`` misbehave in the given way until :meth:`heal`."""
        self.failures[endpoint] = mode

    def heal(self) -> None:
        """Let every endpoint answer normally again."""
        self.failures.clear()

    async def _answer(self, endpoint: str, document: Mapping[str, Any]) -> Response:
        self.requests[endpoint] += 1
        mode = self.failures.get(endpoint)
        if mode == "timeout":
            await self._hang(_HANG_SECONDS)
        if mode == "slow":
            await self._hang(_SLOW_SECONDS)
        if mode == "status":
            return JSONResponse({"error": "unknown_error"}, status_code=500)
        if mode == "html":
            return Response("<html><body>Service Unavailable</body></html>", media_type="text/html")
        return JSONResponse(misshapen(document, mode))

    async def _hang(self, seconds: float) -> None:
        """Wait ``seconds``, or until the loopback server stops (so it can shut down)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping.is_set():  # set from the test's thread: no asyncio.Event can carry it
                return
            await asyncio.sleep(0.05)

    async def _discovery(self, request: Request) -> Response:
        return await self._answer("discovery", self.discovery_document())

    async def _jwks(self, request: Request) -> Response:
        return await self._answer("jwks", self.jwks())

    async def _introspect(self, request: Request) -> Response:
        """RFC 7662 §2: authenticate the client (401 ``invalid_client``), then answer for ``token``."""
        form = await _unique_form(request)
        if form is None:
            self.requests["introspection"] += 1
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        client_id = self.clients.authenticate(request.headers.get("authorization"), form)
        if client_id is None:
            self.requests["introspection"] += 1
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return await self._answer("introspection", self.introspection_answer(form.get("token", ""), client_id))

    def require_dpop_nonce(self) -> str:
        """Demand a nonce in token requests' DPoP proofs from now on (RFC 9449 §8); returns it."""
        return self.dpop.require_nonce()

    async def _preflight(self, request: Request) -> Response:
        """The token endpoint's answer to a CORS preflight (Fetch standard, "CORS-preflight request")."""
        return preflight(self.web_origins, request)

    async def _token(self, request: Request) -> Response:
        """The token endpoint (RFC 6749 §3.2), readable by pages of the web origins (CORS)."""
        response = await self._token_answer(request)
        add_cors_headers(self.web_origins, request, response)
        return response

    async def _token_answer(self, request: Request) -> Response:
        """The token endpoint's answer for the client-credentials grant; errors as RFC 6749 §5.2,
        a nonce demanded in ``DPoP-Nonce`` (RFC 9449 §8)."""
        form = await _unique_form(request)
        certificate = _client_certificate(request)
        authorization = request.headers.get("authorization")
        if form is not None and form.get("grant_type") == TOKEN_EXCHANGE_GRANT:  # RFC 8693 §2.1
            outcome = exchange_grant(self, self.clients.authenticate(authorization, form, certificate), form)
        else:
            outcome = self._grant(authorization, form, request.headers.getlist("dpop"), certificate)
        if isinstance(outcome, Refusal):
            self.requests["token"] += 1
            headers = {"Cache-Control": "no-store"} | ({} if outcome.nonce is None else {"DPoP-Nonce": outcome.nonce})
            return JSONResponse({"error": outcome.error}, status_code=outcome.status, headers=headers)
        return await self._answer("token", outcome)

    def _grant(
        self,
        authorization: str | None,
        form: Mapping[str, str] | None,
        proofs: Sequence[str],
        certificate: x509.Certificate | None = None,
    ) -> dict[str, Any] | Refusal:
        """RFC 6749 §4.4.2-3: the token response, or the refusal, checked in Keycloak's order."""
        if form is None or "grant_type" not in form:
            return Refusal("invalid_request", 400)
        if form["grant_type"] != "client_credentials":
            return Refusal("unsupported_grant_type", 400)
        client_id = self._service_account(authorization, form, certificate)
        if isinstance(client_id, Refusal):
            return client_id
        jkt = self._binding(client_id, proofs)
        if isinstance(jkt, Refusal):
            return jkt
        requested = form.get("scope", "").split()
        if not set(requested) <= self.optional_scopes:
            return Refusal("invalid_scope", 400)
        x5t = None if certificate is None else certificate_thumbprint(certificate.public_bytes(Encoding.DER))
        return self.token_response(client_id, requested, jkt=jkt, x5t=x5t)

    def _service_account(
        self, authorization: str | None, form: Mapping[str, str], certificate: x509.Certificate | None
    ) -> str | Refusal:
        """The authenticated client (RFC 6749 §2.3, RFC 8705 §2), if it has a service account (Keycloak's rule)."""
        client_id = self.clients.authenticate(authorization, form, certificate)
        if client_id is None:
            return Refusal("invalid_client", 401)
        return Refusal("unauthorized_client", 400) if client_id in self.no_service_account else client_id

    def _binding(self, client_id: str, proofs: Sequence[str]) -> str | Refusal | None:
        """The thumbprint to bind the token to (RFC 9449 §5), ``None`` for a Bearer token, or the refusal;
        a client requiring bound tokens must send a proof (Keycloak: "DPoP proof is missing")."""
        jkt = self.dpop.check(proofs)
        if jkt is None and self.clients.clients[client_id].dpop_bound:
            return Refusal("invalid_request", 400)
        return jkt

    def token_response(
        self, client_id: str, scopes: Sequence[str] = (), *, jkt: str | None = None, x5t: str | None = None
    ) -> dict[str, Any]:
        """Keycloak's answer to a client-credentials grant (RFC 6749 §5.1): a new token for ``client_id``
        (its ``azp``) with the requested ``scopes`` before the default ``profile email``, and the roles
        the client was registered with; bound to the key of thumbprint ``jkt`` if given (RFC 9449 §5),
        and to the TLS client certificate of thumbprint ``x5t`` (``cnf["x5t#S256"]``, RFC 8705 §3.1)."""
        scope = " ".join(dict.fromkeys([*scopes, "profile", "email"]))
        client = self.clients.clients.get(client_id, RegisteredClient(client_id))
        token = self.token(
            client_id=client_id,
            scope=scope,
            lifetime=self.token_lifetime,
            realm_roles=client.realm_roles,
            client_roles=client.client_roles,
            **_bindings(jkt, x5t),
        )
        return {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer" if jkt is None else "DPoP",
            "not-before-policy": 0,
            "scope": scope,
        }

    def discovery_document(self) -> dict[str, Any]:
        """The OpenID Provider Metadata Keycloak publishes, reduced to what resource servers read."""
        endpoints = f"{self.issuer}/protocol/openid-connect"
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{endpoints}/certs",
            "token_endpoint": f"{endpoints}/token",
            "introspection_endpoint": f"{endpoints}/token/introspect",
            "revocation_endpoint": f"{endpoints}/revoke",
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "dpop_signing_alg_values_supported": sorted(SUPPORTED_ALGORITHMS),  # RFC 9449 §5.1
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
                "tls_client_auth",
            ],
        } | ({"mtls_endpoint_aliases": {"token_endpoint": self._mtls_token_endpoint}} if self.mtls else {})

    @property
    def _mtls_token_endpoint(self) -> str:
        """The token endpoint for mutual-TLS clients (RFC 8705 §5), apart from the other to tell which is used."""
        return f"{self.issuer}/protocol/openid-connect/mtls/token"

    def jwks(self) -> dict[str, Any]:
        """The published JWK Set: every signing key (with ``use`` and ``alg``) plus an encryption key."""
        signing = [{**key.as_dict(private=False), "use": "sig", "alg": self._alg_of(key)} for key in self.published]
        return {"keys": [self.encryption_key.as_dict(private=False), *signing]}

    # ----------------------------------------------------------------- introspection
    def register_client(
        self,
        client_id: str | None = None,
        *,
        secret: str | None = None,
        public_key: SigningKey | None = None,
        realm_roles: Sequence[str] = (),
        client_roles: Mapping[str, Sequence[str]] | None = None,
        dpop_bound: bool = False,
        tls_subject: str | None = None,
        exchange_audiences: Sequence[str] | None = None,
    ) -> None:
        """Register a confidential client (default id: the audience) that may introspect and get tokens:
        with a ``secret`` (``client_secret_basic``/``client_secret_post``) or a ``public_key``
        (``private_key_jwt``). Its service account holds ``realm_roles`` and ``client_roles`` (client id
        -> role names): the token endpoint's tokens for it carry them. ``dpop_bound`` is Keycloak's
        "Require DPoP bound tokens" (``dpop.bound.access.tokens``): token requests without a proof are
        refused with ``invalid_request``. ``tls_subject`` (RFC 4514, e.g. ``CN=machine-a``) lets it
        authenticate by a TLS client certificate with that subject (``tls_client_auth``, RFC 8705 §2.1).
        ``exchange_audiences`` enables standard token exchange for it (RFC 8693, :mod:`.exchange`) towards
        those clients."""
        roles = {client: tuple(names) for client, names in (client_roles or {}).items()}
        audiences = None if exchange_audiences is None else tuple(exchange_audiences)
        self.clients.register(
            RegisteredClient(
                client_id or self.audience,
                secret,
                public_key,
                tuple(realm_roles),
                roles,
                dpop_bound,
                tls_subject,
                audiences,
            )
        )

    def revoke(self, token: str) -> None:
        """Revoke ``token`` (Keycloak's ``/revoke``): introspection calls it inactive from now on."""
        self.revoked.add(hashlib.sha256(token.encode()).digest())

    def introspection_answer(self, token: str, client_id: str) -> dict[str, Any]:
        """What Keycloak answers ``client_id`` for ``token``: the claims (``cnf`` included) plus
        ``client_id``, ``username``, ``token_type`` (``DPoP`` for a bound token) and ``active: true``, or
        exactly ``{"active": false}``."""
        claims = self._issued_claims(token)
        if claims is None or not self._active(token, claims, client_id):
            return {"active": False}
        full = self._full_claims.get(str(claims.get("jti")), claims)
        cnf = full.get("cnf")
        token_type = "DPoP" if isinstance(cnf, dict) and "jkt" in cnf else "Bearer"
        extra = {"client_id": full.get("azp"), "username": full.get("preferred_username"), "token_type": token_type}
        return {**full, **extra, "active": True}

    def _active(self, token: str, claims: Mapping[str, Any], client_id: str) -> bool:
        """Not revoked, not expired (no skew), and with ``audience_rule`` naming ``client_id`` in ``aud``."""
        exp, aud = claims.get("exp"), claims.get("aud")
        if hashlib.sha256(token.encode()).digest() in self.revoked:
            return False
        if not isinstance(exp, int | float) or exp <= self.clock():
            return False
        return not self.audience_rule or client_id in (aud if isinstance(aud, list) else [aud])

    def _issued_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed with a published key, else ``None``."""
        try:
            header, claims, signing_input, signature = parse(token)
            key = next((key for key in self.published if key.kid == header.get("kid")), None)
            alg = header.get("alg")
            if key is None or alg != self._alg_of(key):
                return None
            if not signature_is_valid(signing_input, signature, alg, key):
                return None
        except ValueError:
            return None
        return claims if claims.get("iss") == self.issuer else None

    # ----------------------------------------------------------------- keys
    def rotate(self, algorithm: str | None = None) -> SigningKey:
        """Sign with a new key from now on, keeping the old ones published (Keycloak's rotation)."""
        self.signing_key = generate_key(algorithm or self.algorithm)
        self.published.append(self.signing_key)
        return self.signing_key

    def retire(self, key: SigningKey) -> None:
        """Stop publishing ``key``."""
        self.published = [k for k in self.published if k.kid != key.kid]

    def _alg_of(self, key: SigningKey) -> str:
        if isinstance(key, RSAKey):
            return self.algorithm if self.algorithm.startswith(("RS", "PS")) else "RS256"
        if isinstance(key, OKPKey):
            return "EdDSA"
        return next(alg for alg, curve in EC_CURVES.items() if curve == key.curve_name)

    # ----------------------------------------------------------------- tokens
    def claims(
        self,
        *,
        client_id: str = "machine-a",
        audience: str | list[str] | None = None,
        scope: str = "profile email",
        realm_roles: Sequence[str] = (),
        client_roles: Mapping[str, Sequence[str]] | None = None,
        lifetime: int = 300,
    ) -> dict[str, Any]:
        """Claims of a Keycloak 26 client-credentials access token, in Keycloak's issuance order."""
        now = int(self.clock())
        resource_access = {"account": {"roles": ["manage-account", "view-profile"]}} | {
            client: {"roles": list(roles)} for client, roles in (client_roles or {}).items()
        }
        return {
            "exp": now + lifetime,
            "iat": now,
            "jti": f"trrtcc:{uuid.uuid4()}",
            "iss": self.issuer,
            "aud": self.audience if audience is None else audience,
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.issuer}/{client_id}")),
            "typ": "Bearer",
            "azp": client_id,
            "acr": "1",
            "allowed-origins": ["/*"],
            "realm_access": {
                "roles": ["offline_access", "uma_authorization", f"default-roles-{self.realm}", *realm_roles]
            },
            "resource_access": resource_access,
            "scope": scope,
            "clientHost": "127.0.0.1",
            "email_verified": False,
            "preferred_username": f"service-account-{client_id}",
            "clientAddress": "127.0.0.1",
            "client_id": client_id,
        }

    def token(
        self,
        *,
        header: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
        lightweight: bool = False,
        dpop_key: ProofKey | None = None,
        **claims: Any,
    ) -> str:
        """Mint a signed access token.

        Keywords of :meth:`claims` (``client_id``, ``audience``, ``scope``, ``realm_roles``,
        ``client_roles``, ``lifetime``) shape it; any other keyword sets that claim (``OMIT`` removes it).
        A ``lightweight`` token (Keycloak 24+) keeps only ``exp, iat, jti, iss, typ, azp, sid, scope, cnf,
        sub``; introspection answers with all the others. With ``dpop_key`` it is bound to that key as
        Keycloak 26.7 binds (``typ`` ``DPoP``, ``cnf.jkt``; RFC 9449 §6.1) unless claims say otherwise.
        """
        if dpop_key is not None:
            claims = bound_claims(thumbprint(dpop_key)) | claims
        shape = {name: claims.pop(name) for name in _SHAPE_OPTIONS & claims.keys()}
        full = _drop_omitted(self.claims(**shape) | claims)
        if not lightweight:
            return self.sign(full, header=header, key=key)
        if "jti" not in claims:
            full["jti"] = f"trltcc:{uuid.uuid4()}"
        self._full_claims[str(full.get("jti"))] = full
        kept = {name: value for name, value in full.items() if name in _LIGHTWEIGHT_CLAIMS}
        return self.sign(kept, header=header, key=key)

    def sign(
        self,
        payload: Mapping[str, Any] | bytes,
        *,
        header: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
    ) -> str:
        """Sign ``payload`` (a mapping, or raw bytes for malformed JSON) with Keycloak's header layout."""
        key = key or self.signing_key
        members = _drop_omitted({"alg": self._alg_of(key), "typ": "JWT", "kid": key.kid} | dict(header or {}))
        # Keycloak writes spaces around some colons; parsers must not care.
        header_b64 = b64url(json.dumps(members, separators=(",", " : ")).encode())
        body = payload if isinstance(payload, bytes) else json.dumps(dict(payload)).encode()
        signing_input = f"{header_b64}.{b64url(body)}"
        alg = members.get("alg")
        signature = b""
        if isinstance(alg, str) and alg in JWSRegistry.algorithms and alg != "none":
            signature = JWSRegistry.algorithms[alg].sign(signing_input.encode(), key)
        return f"{signing_input}.{b64url(signature)}"

    def bad_tokens(self) -> dict[str, str]:
        """Tokens a resource server for this issuer's audience must refuse, by the reason they fail."""
        now = int(self.clock())
        attacker = generate_key(self.algorithm)
        good = self.token()
        header_b64, payload_b64, signature_b64 = good.split(".")
        tampered_payload = parse(good).payload
        tampered_payload["scope"] = "admin"
        return {
            "expired": self.token(exp=now - 3600, iat=now - 3900),
            "not_yet_valid": self.token(nbf=now + 3600),
            "no_expiry": self.token(exp=OMIT),
            "wrong_audience": self.token(audience="account"),
            "no_audience": self.token(aud=OMIT),
            "wrong_issuer": self.token(iss=f"{self.base_url}/realms/other"),
            "unknown_key": self.token(key=attacker),
            "tampered": f"{header_b64}.{b64url(json.dumps(tampered_payload).encode())}.{signature_b64}",
            "alg_none": f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload_b64}.",
            "hs256_with_public_key": _hs256(
                {"alg": "HS256", "typ": "JWT"}, payload_b64, self.signing_key.as_pem(private=False)
            ),
            "embedded_jwk": self.token(key=attacker, header={"jwk": attacker.as_dict(private=False)}),
            "id_token": self.token(typ="ID"),
            "refresh_token": self.token(typ="Refresh"),
        }

    def bad_proofs(self, key: ProofKey, token: str, htm: str, htu: str, *, nonce: str | None = None) -> dict[str, str]:
        """DPoP proofs a resource server must refuse for a ``htm`` request to ``htu`` with ``token`` bound
        to ``key`` (RFC 9449 §4.3, §7.1), by the reason they fail; each is otherwise valid (and carries
        ``nonce`` if given)."""
        now = self.clock()
        fields: dict[str, Any] = {"htm": htm, "htu": htu, "iat": now, "ath": access_token_hash(token), "nonce": nonce}
        good = make_proof(key, **fields)
        header, claims, _, _ = parse(good)
        header_b64, payload_b64, signature_b64 = good.split(".")

        def resigned(header_changes: dict[str, Any], claim_changes: dict[str, Any]) -> str:
            payload = _drop_omitted(claims | claim_changes)
            return self.sign(payload, header={"kid": OMIT, **header, **header_changes}, key=key)

        forged_payload = b64url(json.dumps(claims | {"jti": f"forged-{claims['jti']}"}).encode())
        return {
            "wrong_typ": resigned({"typ": "JWT"}, {}),
            "alg_none": resigned({"alg": "none"}, {}),
            "hs256": _hs256({**header, "alg": "HS256"}, payload_b64, json.dumps(header["jwk"]).encode()),
            "private_key_in_jwk": resigned({"jwk": key.as_dict(private=True)}, {}),
            "bad_signature": f"{header_b64}.{forged_payload}.{signature_b64}",
            "wrong_htm": make_proof(key, **fields | {"htm": "POST" if htm != "POST" else "GET"}),
            "wrong_htu": make_proof(key, **fields | {"htu": f"{htu.rstrip('/')}/elsewhere"}),
            "stale_iat": make_proof(key, **fields | {"iat": now - 3600}),
            "future_iat": make_proof(key, **fields | {"iat": now + 3600}),
            "wrong_ath": make_proof(key, **fields | {"ath": access_token_hash(f"{token}x")}),
            "missing_ath": make_proof(key, **fields | {"ath": None}),
            "missing_jti": resigned({}, {"jti": OMIT}),
            "other_key": make_proof(generate_key(header["alg"]), **fields | {"algorithm": header["alg"]}),
        }


def _bindings(jkt: str | None, x5t: str | None) -> dict[str, Any]:
    """The claims binding a token to a DPoP key (RFC 9449 §6.1) and/or a TLS client certificate (RFC 8705 §3.1)."""
    claims = {} if jkt is None else bound_claims(jkt)
    if x5t is not None:
        claims["cnf"] = {**claims.get("cnf", {}), "x5t#S256": x5t}
    return claims


def _client_certificate(request: Request) -> x509.Certificate | None:
    """The TLS client certificate of the ASGI TLS extension (``client_cert_chain``, PEM, leaf first)."""
    chain = (request.scope.get("extensions") or {}).get("tls", {}).get("client_cert_chain")
    return x509.load_pem_x509_certificate(chain[0].encode()) if chain else None


def _hs256(header: Mapping[str, Any], payload_b64: str, secret: bytes) -> str:
    """A JWS whose header says HS256, MACed with public key material as the secret (algorithm confusion)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{payload_b64}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
