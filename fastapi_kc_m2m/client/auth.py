"""Machine A: call a Keycloak-protected API with client-credentials tokens (RFC 6749 §4.4), through httpx.

One object for ``httpx.Client`` and ``httpx.AsyncClient`` alike::

    auth = ClientCredentialsAuth("machine-a", issuer="https://kc.example/realms/prod", client_secret=secret)
    with httpx.Client(auth=auth) as client:          # or: async with httpx.AsyncClient(auth=auth)
        client.get("https://orders.example/orders")

    auth = ClientCredentialsAuth("machine-a", issuer=issuer, private_key="machine-a.key.pem")  # RFC 7523
    auth = ClientCredentialsAuth("machine-a", issuer=issuer, client_secret=secret, dpop=True)  # RFC 9449
    auth = ClientCredentialsAuth("machine-a", issuer=issuer, client_cert=("a.cert.pem", "a.key.pem"))  # RFC 8705

- The token endpoint is ``token_endpoint``, else the issuer's discovery document (OpenID Connect
  Discovery 1.0 §4) names it; the client authenticates as :mod:`.._idp.client_auth` does (RFC 6749 §2.3.1,
  RFC 7523 §2.2 and §3).
- With ``client_cert``, token requests run over mutual TLS (RFC 8705): the certificate alone authenticates
  the client (``tls_client_auth``, §2) unless a secret or key is given too, and discovery's
  ``mtls_endpoint_aliases.token_endpoint`` (§5) is used when advertised.
- The token is cached and refreshed ahead of expiry, ``min(30 s, 10 % of its lifetime)`` before it;
  concurrent requests share one refresh (a thread lock for sync clients, an asyncio lock for async ones).
- A 401 from the API (RFC 6750 §3.1) refreshes the token once and retries once, when the request body
  can be sent again; a token fetched for a 401 is not refreshed for another 401 within
  :data:`RETRY_401_AFTER` seconds, so an API refusing the client costs no token request per call.
- Each exchange with Keycloak (discovery, token request) is streamed, capped at ``max_response_bytes``
  and must finish within ``timeout`` seconds in all, for sync and async clients alike.
- With ``dpop``, tokens are DPoP-bound (RFC 9449): every token request and every API request carries a
  fresh proof (:mod:`.dpop`), the API sees ``Authorization: DPoP``, a ``Bearer`` answer is refused, and
  a server asking for a nonce (§8, §9) is asked once more with it.
- Failures raise :class:`ClientCredentialsError` with the RFC 6749 §5.2 error code, the step that failed,
  its URL and how long it took; neither it, ``repr()`` nor the logs show a secret, an assertion or a token.

One generator (:meth:`ClientCredentialsAuth._flow`) holds that logic for both kinds of client; the sync
and async drivers only take their lock and send the token request through their own HTTP client. The
caller's client sends the API requests only, so its event hooks, history and redirects never see the
credentials or the token endpoint's answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import httpx

from .._idp.client_auth import (
    CertificateAuthMethod,
    ClientAuthentication,
    ClientAuthMethod,
    PrivateKey,
    PrivateKeyJWT,
    TLSClientAuth,
    client_authentication,
    key_material,
    load_private_key,
)
from .._idp.discovery import discovery_url, endpoint_of, mtls_endpoint_of
from .._idp.http import FetchError, HttpLimits, Unreachable, json_answer, read_answer, read_answer_sync
from .._idp.oauth import error_code, renew_at
from .._idp.urls import check_http_url
from .._jose.algorithms import EC_CURVES
from .._jose.dpop import ProofKey
from .dpop import DPoPKey
from .telemetry import ClientTelemetry

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "AccessToken",
    "ClientCert",
    "ClientCredentialsAuth",
    "ClientCredentialsError",
    "KeySource",
    "load_signing_key",
]

logger = logging.getLogger("fastapi_kc_m2m")

#: Where ``expires_in`` is missing (RFC 6749 §5.1 only recommends it), the token is reused this long.
DEFAULT_LIFETIME = 60.0
#: Refresh this long before expiry at most; short-lived tokens refresh at 90 % of their life.
#: A token fetched because the API answered 401 is not refreshed for another 401 until this old (seconds).
RETRY_401_AFTER = 5.0
#: Default cap on the bytes of a discovery document or token response.
MAX_RESPONSE_BYTES = 64 * 1024
# Algorithms tried, in order, when a key is given without one: RS256 for RSA, else by the EC curve.
_DEFAULT_ALGORITHMS = ("RS256", *EC_CURVES)
_CERTIFICATE_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")
# RFC 6750 §2.1 b64token: what may follow "Bearer " in a header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

_DESCRIPTIONS = {
    "invalid_client": "the client's credentials were refused (client id, secret, key or authenticator)",
    "unauthorized_client": "the client may not use the client-credentials grant (enable its service account)",
    "invalid_scope": "a requested scope is unknown or not assigned to the client",
    "invalid_request": "the token request was malformed",
    "unsupported_grant_type": "the token endpoint does not offer the client-credentials grant",
    "network_error": "Keycloak could not be reached in time",
    "invalid_response": "Keycloak's answer was unusable",
    "invalid_dpop_proof": "the token endpoint refused the DPoP proof (is the client's clock right?)",
}


class ClientCredentialsError(Exception):
    """No token could be had: ``error`` is the RFC 6749 §5.2 code, or ``network_error`` /
    ``invalid_response``; ``status_code`` the token endpoint's HTTP status, if it answered.

    The message is a fixed phrase plus the error code, the step that failed (discovery or token request),
    its URL and how long it took, and at most an exception's class name: never a credential, a form, a
    header, a token or the server's own text.
    """

    def __init__(self, error: str, *, status_code: int | None = None, detail: str | None = None) -> None:
        self.error = error
        self.status_code = status_code
        self.description = _DESCRIPTIONS.get(error, "the token endpoint refused the request")
        status = f", HTTP {status_code}" if status_code is not None else ""
        reason = f": {detail}" if detail else ""
        super().__init__(f"{error} ({self.description}{status}){reason}")

    @classmethod
    def from_response(
        cls, response: httpx.Response, body: Mapping[str, Any] | None, where: str
    ) -> ClientCredentialsError:
        """The error of a non-200 token response (RFC 6749 §5.2); a code outside its syntax is not repeated.
        ``where`` tells the step, its URL and its duration."""
        code = error_code(body)
        if code is not None:
            return cls(code, status_code=response.status_code, detail=where)
        return cls("invalid_response", status_code=response.status_code, detail=f"{where}: no OAuth error code")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token from the token endpoint (RFC 6749 §5.1); ``repr()`` shows neither it nor the response."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    scope: str | None
    response: Mapping[str, Any] = field(repr=False)


class _Step(enum.Enum):
    """What the flow asks of its driver besides sending requests: enter or leave the refresh section."""

    ACQUIRE = enum.auto()
    RELEASE = enum.auto()


#: A private key as given: a PEM file's path, PEM bytes or text, a private JWK or its JSON text, or a joserfc key.
KeySource = str | bytes | os.PathLike[str] | Mapping[str, Any] | PrivateKey
#: A client certificate as httpx's ``cert=`` takes it: the PEM files of the certificate (chain) and its key.
ClientCert = tuple[str | os.PathLike[str], str | os.PathLike[str]]

# Yields requests (inside the refresh section: to the token endpoint) and lock steps; receives responses.
_Flow = Generator[httpx.Request | _Step, httpx.Response, None]
# Sends an API request (once more for a DPoP nonce) and returns the last answer.
_Sending = Generator[httpx.Request, httpx.Response, httpx.Response]


class ClientCredentialsAuth(httpx.Auth):
    """An ``httpx.Auth`` getting, caching and refreshing a client-credentials token (RFC 6749 §4.4).

    Give ``issuer`` (the realm URL; discovery finds the token endpoint) or ``token_endpoint``, or both.
    Credentials: ``client_secret`` (``client_secret_basic`` unless ``method="client_secret_post"``) or
    ``private_key`` for ``private_key_jwt`` (a PEM file's path, PEM bytes or text, a private JWK or its JSON, or
    a joserfc key), signed with ``algorithm`` (default: RS256 for RSA keys, ES256/384/512 by curve) and
    ``key_id`` as the ``kid`` header (default: the JWK's ``kid``, none for PEM). The assertion's ``aud``
    is the issuer, else the token endpoint (both accepted by Keycloak).

    ``dpop=True`` binds the tokens to a new ES256 key of this object's own, ``dpop=key`` to a given
    private joserfc EC, RSA or OKP key, which must not be the ``private_key`` (RFC 9449 §11.11); the
    key's thumbprint (the tokens' ``cnf.jkt``) is :attr:`jkt`.

    ``client_cert=(cert_path, key_path)`` presents that certificate in the TLS handshakes with Keycloak
    (RFC 8705): alone, it authenticates the client (``method`` ``tls_client_auth``, the default, or
    ``self_signed_tls_client_auth``); with a secret or key, those authenticate it and the token is still
    bound to the certificate. The certificate is added to ``verify`` when that is an ``ssl.SSLContext``.

    Each exchange with Keycloak (discovery, token request) must finish within ``timeout`` seconds in all
    and answer at most ``max_response_bytes``; ``verify`` configures TLS. Call :meth:`close` (sync use) or
    :meth:`aclose` (async use) when done.

    ``metrics=True`` (``[prometheus]`` extra) counts token requests, their duration and renewals in
    ``registry`` (default: prometheus_client's); ``tracing=True`` (``[otel]`` extra) wraps each token
    request in an OpenTelemetry span; see :mod:`.telemetry`.
    """

    def __init__(
        self,
        client_id: str,
        *,
        issuer: str | None = None,
        token_endpoint: str | None = None,
        client_secret: str | None = None,
        private_key: KeySource | None = None,
        method: ClientAuthMethod | CertificateAuthMethod | None = None,
        algorithm: str | None = None,
        key_id: str | None = None,
        scope: str | Sequence[str] | None = None,
        timeout: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
        dpop: bool | ProofKey = False,
        client_cert: ClientCert | None = None,
        metrics: bool = False,
        registry: CollectorRegistry | None = None,
        tracing: bool = False,
    ) -> None:
        if issuer is None and token_endpoint is None:
            raise ValueError("give issuer (the realm URL) or token_endpoint")
        self.issuer = None if issuer is None else check_http_url(issuer.rstrip("/"), "issuer")
        self.token_endpoint = None if token_endpoint is None else check_http_url(token_endpoint, "token_endpoint")
        self.scope = scope if scope is None or isinstance(scope, str) else " ".join(scope)
        self._credentials = _client_authentication(
            client_id,
            client_secret,
            private_key,
            method=method,
            algorithm=algorithm,
            key_id=key_id,
            clock=clock,
            certificate=client_cert is not None,
        )
        if timeout <= 0 or max_response_bytes <= 0:
            raise ValueError("timeout and max_response_bytes must be positive")
        self._dpop = _dpop_key(dpop, self._credentials, clock)
        self._clock = clock
        self._timeout = timeout
        self._limits = HttpLimits(max_response_bytes, timeout)
        self._mtls = client_cert is not None
        self._verify = verify if client_cert is None else _tls_context(verify, client_cert)
        self._token: AccessToken | None = None
        self._fetched_for_401: tuple[AccessToken, float] | None = None  # the token and when
        self._thread_lock = threading.Lock()
        self._async_lock = asyncio.Lock()
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._telemetry = ClientTelemetry(
            client_id, _DESCRIPTIONS.keys(), metrics=metrics, registry=registry, tracing=tracing
        )

    def __repr__(self) -> str:
        where = self.token_endpoint or self.issuer
        return f"{type(self).__name__}({self._credentials!r}, endpoint={where!r}, scope={self.scope!r})"

    # ----------------------------------------------------------------- public
    @property
    def client_id(self) -> str:
        """The client the tokens are issued to (their ``azp``)."""
        return self._credentials.client_id

    @property
    def jkt(self) -> str | None:
        """The RFC 7638 thumbprint of the DPoP key, the tokens' ``cnf.jkt``; ``None`` without DPoP."""
        return None if self._dpop is None else self._dpop.jkt

    def get_token(self) -> AccessToken:
        """A token that is not due for refresh, fetched now if needed (for use outside httpx)."""
        got: list[AccessToken] = []
        for _ in self._drive(self._keep(got)):  # the flow sends no API request: nothing is yielded
            pass
        return got[0]

    async def aget_token(self) -> AccessToken:
        """:meth:`get_token` for async code."""
        got: list[AccessToken] = []
        async for _ in self._adrive(self._keep(got)):
            pass
        return got[0]

    def close(self) -> None:
        """Close the HTTP client sync requests used for the token endpoint."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the HTTP client async requests used for the token endpoint."""
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    # ----------------------------------------------------------------- httpx hooks
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        return self._drive(self._flow(request))

    def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return self._adrive(self._flow(request))

    # ----------------------------------------------------------------- the flow, shared by both drivers
    def _flow(self, request: httpx.Request) -> _Flow:
        """Send ``request`` with a token; after a 401 (RFC 6750 §3.1), refresh once and retry once, unless
        the token was itself fetched for a 401 less than :data:`RETRY_401_AFTER` seconds ago."""
        replayable = isinstance(request.stream, httpx.ByteStream)  # a streamed body cannot be sent again
        token = yield from self._fresh_token(stale=None)
        response = yield from self._send(request, token, replayable)
        if response.status_code != httpx.codes.UNAUTHORIZED or not replayable or self._fetched_for_401_recently(token):
            return
        token = yield from self._fresh_token(stale=token)
        yield from self._send(request, token, replayable)

    def _send(self, request: httpx.Request, token: AccessToken, replayable: bool) -> _Sending:
        """Send ``request`` with ``token``: as Bearer (RFC 6750 §2.1), or with DPoP a new proof (RFC 9449
        §7.1), sent once more with the nonce the API asks for (§9) if the body can be sent again."""
        if self._dpop is None:
            request.headers["Authorization"] = f"Bearer {token.value}"
            return (yield request)
        self._dpop.sign(request, token.value)
        response = yield request
        if self._dpop.note(response) and replayable:
            self._dpop.sign(request, token.value)
            response = yield request
            self._dpop.note(response)
        return response

    def _keep(self, got: list[AccessToken]) -> _Flow:
        got.append((yield from self._fresh_token(stale=None)))

    def _fresh_token(self, stale: AccessToken | None) -> Generator[httpx.Request | _Step, httpx.Response, AccessToken]:
        """The cached token unless due for refresh or ``stale`` (refused by the API); else a new one,
        fetched by one caller while the others wait for it and then use it."""
        token = self._usable(stale)
        if token is not None:
            return token
        yield _Step.ACQUIRE
        token = self._usable(stale)  # another caller may have refreshed it meanwhile
        if token is None:
            if self._token is not None:
                self._telemetry.renewed(self._renewal(stale))
            token = yield from self._fetch()
            if stale is not None:
                self._fetched_for_401 = (token, self._clock())
        yield _Step.RELEASE
        return token

    def _fetched_for_401_recently(self, token: AccessToken) -> bool:
        """Whether ``token`` answered a 401 less than :data:`RETRY_401_AFTER` seconds ago: another 401
        means the API refuses this client's tokens, and a new one would not help."""
        if self._fetched_for_401 is None:
            return False
        fetched, at = self._fetched_for_401
        return token is fetched and self._clock() - at < RETRY_401_AFTER

    def _renewal(self, stale: AccessToken | None) -> str:
        """Why the cached token is replaced: the API refused it (``401``), it ``expired``, or ``early``."""
        if stale is not None:
            return "401"
        return "expired" if self._clock() >= cast(AccessToken, self._token).expires_at else "early"

    def _usable(self, stale: AccessToken | None) -> AccessToken | None:
        token = self._token
        if token is None or token is stale or self._clock() >= token.refresh_at:
            return None
        return token

    def _fetch(self) -> Generator[httpx.Request, httpx.Response, AccessToken]:
        """RFC 6749 §4.4.2: ``grant_type=client_credentials`` (and ``scope``), client authentication added;
        with DPoP a proof (RFC 9449 §5), and once more with the nonce the endpoint asks for (§8)."""
        with self._telemetry.token_request(self.token_endpoint or str(self.issuer)):
            endpoint = self.token_endpoint or (yield from self._discover())
            started = self._clock()
            response, where = yield from _ask("token request", self._token_request(endpoint))
            if self._dpop is not None and self._dpop.note(response, token_endpoint=True):
                response, where = yield from _ask("token request", self._token_request(endpoint))
                self._dpop.note(response, token_endpoint=True)
            self._token = _access_token(response, started, where, dpop=self._dpop is not None)
        logger.debug("fetched a token for client %s from %s", self.client_id, endpoint)
        return self._token

    def _token_request(self, endpoint: str) -> httpx.Request:
        """A token request with new credentials (a client assertion is single-use) and, with DPoP, a proof."""
        form = {"grant_type": "client_credentials"} | ({"scope": self.scope} if self.scope else {})
        headers, fields = self._credentials.credentials(self.issuer or endpoint)
        request = httpx.Request("POST", endpoint, data=form | fields, headers=headers | {"Accept": "application/json"})
        if self._dpop is not None:
            self._dpop.sign(request)
        return request

    def _discover(self) -> Generator[httpx.Request, httpx.Response, str]:
        """The ``token_endpoint`` of the issuer's discovery document, whose ``issuer`` must be ours (§4.3);
        with a client certificate its mutual-TLS alias if advertised (RFC 8705 §5)."""
        issuer = str(self.issuer)  # set whenever token_endpoint is not
        response, where = yield from _ask("discovery", httpx.Request("GET", discovery_url(issuer)))
        if response.status_code != httpx.codes.OK:
            hint = ": is the realm right?" if response.status_code == httpx.codes.NOT_FOUND else ""
            raise ClientCredentialsError("invalid_response", status_code=response.status_code, detail=where + hint)
        try:
            lookup = mtls_endpoint_of if self._mtls else endpoint_of
            self.token_endpoint = lookup(json_answer(response.content), issuer, "token_endpoint")
        except FetchError as exc:
            raise ClientCredentialsError("invalid_response", status_code=200, detail=f"{where}: {exc}") from None
        return self.token_endpoint

    # ----------------------------------------------------------------- drivers
    def _drive(self, flow: _Flow) -> Generator[httpx.Request, httpx.Response, None]:
        """Run ``flow`` for a sync client: a thread lock, token requests sent by our own client."""
        locked = False
        try:
            step = next(flow)
            while True:
                if step is _Step.ACQUIRE:
                    self._thread_lock.acquire()
                    locked = True
                    step = next(flow)
                elif step is _Step.RELEASE:
                    self._thread_lock.release()
                    locked = False
                    step = next(flow)
                elif locked:
                    step = self._exchange(flow, step)
                else:
                    step = flow.send((yield step))
        except StopIteration:
            return
        finally:
            if locked:
                self._thread_lock.release()
            flow.close()

    async def _adrive(self, flow: _Flow) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Run ``flow`` for an async client: an asyncio lock, token requests sent by our own client."""
        locked = False
        try:
            step = next(flow)
            while True:
                if step is _Step.ACQUIRE:
                    await self._async_lock.acquire()
                    locked = True
                    step = next(flow)
                elif step is _Step.RELEASE:
                    self._async_lock.release()
                    locked = False
                    step = next(flow)
                elif locked:
                    step = await self._aexchange(flow, step)
                else:
                    step = flow.send((yield step))
        except StopIteration:
            return
        finally:
            if locked:
                self._async_lock.release()
            flow.close()

    def _exchange(self, flow: _Flow, request: httpx.Request) -> httpx.Request | _Step:
        """Send a request to Keycloak, bounded by ``self._limits``; the answer, or the failure, goes to ``flow``."""
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, verify=self._verify, follow_redirects=False)
        try:
            response = read_answer_sync(self._client, request, self._limits)
        except FetchError as exc:
            return flow.throw(exc)
        return flow.send(response)

    async def _aexchange(self, flow: _Flow, request: httpx.Request) -> httpx.Request | _Step:
        """:meth:`_exchange` for async clients."""
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(timeout=self._timeout, verify=self._verify, follow_redirects=False)
        try:
            response = await read_answer(self._async_client, request, self._limits)
        except FetchError as exc:
            return flow.throw(exc)
        return flow.send(response)


def _client_authentication(
    client_id: str,
    secret: str | None,
    key: KeySource | None,
    *,
    method: ClientAuthMethod | CertificateAuthMethod | None,
    algorithm: str | None,
    key_id: str | None,
    clock: Callable[[], float],
    certificate: bool,
) -> ClientAuthentication:
    """The client authentication for exactly one credential: a secret, a key for ``private_key_jwt``, or
    with ``certificate`` and neither, the TLS client certificate (RFC 8705 §2)."""
    if method in _CERTIFICATE_METHODS and (secret is not None or key is not None or not certificate):
        raise ValueError(f"{method} needs client_cert alone, without client_secret or private_key")
    if certificate and secret is None and key is None:
        return TLSClientAuth(client_id, cast(CertificateAuthMethod, method or "tls_client_auth"))
    if (secret is None) == (key is None):
        raise ValueError("give exactly one of client_secret and private_key, or client_cert alone")
    if key is None:
        if method == "private_key_jwt":
            raise ValueError("private_key_jwt needs private_key, not client_secret")
        return client_authentication(cast(ClientAuthMethod, method or "client_secret_basic"), client_id, secret=secret)
    if method not in (None, "private_key_jwt"):
        raise ValueError(f"{method} needs client_secret, not private_key")
    loaded, algorithm = load_signing_key(key, algorithm)
    return PrivateKeyJWT(client_id, loaded, algorithm=algorithm, key_id=key_id, clock=clock)


def _tls_context(verify: ssl.SSLContext | bool, client_cert: ClientCert) -> ssl.SSLContext:
    """``verify`` as an SSL context presenting ``client_cert`` (RFC 8705 §2; RFC 8446 §4.4.2)."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
    try:
        context.load_cert_chain(*client_cert)
    except ssl.SSLError:  # never repeat what the files hold
        raise ValueError("client_cert: not a PEM certificate and its matching private key") from None
    return context


def _dpop_key(dpop: bool | ProofKey, credentials: ClientAuthentication, clock: Callable[[], float]) -> DPoPKey | None:
    """The DPoP key asked for, never the client-authentication key (RFC 9449 §11.11)."""
    if dpop is False:
        return None
    key = DPoPKey.generate(clock) if dpop is True else DPoPKey(dpop, clock)
    if isinstance(credentials, PrivateKeyJWT) and credentials.thumbprint == key.jkt:
        raise ValueError("dpop: use another key than private_key (RFC 9449 §11.11)")
    return key


def load_signing_key(source: KeySource, algorithm: str | None = None) -> tuple[PrivateKey, str]:
    """A private key for client assertions and its algorithm: ``algorithm`` if given, else RS256 for an
    RSA key and ES256/ES384/ES512 by an EC key's curve. ``source`` is a PEM file's path, PEM bytes or text, a
    private JWK (or its JSON) or a joserfc key; a ``ValueError`` says why it is unusable, an ``OSError``
    that the file cannot be read, neither repeating ``source``."""
    material = source if isinstance(source, PrivateKey) else key_material(source)  # read once, errors kept
    for candidate in (algorithm,) if algorithm else _DEFAULT_ALGORITHMS:
        try:
            key = material if isinstance(material, PrivateKey) else load_private_key(material, algorithm=candidate)
            PrivateKeyJWT("check", key, algorithm=candidate)  # refuses keys that do not fit the algorithm
        except ValueError as exc:
            if algorithm:
                raise ValueError(f"private_key: {exc}") from None
            continue
        return key, candidate
    raise ValueError("private_key: not an RSA (2048+ bits) or EC (P-256/384/521) private key")


def _ask(what: str, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, tuple[httpx.Response, str]]:
    """Have the driver send ``request`` to Keycloak; return its answer and where it came from: the step,
    its URL (without userinfo; the form and headers are never shown) and how long it took."""
    url = request.url.copy_with(userinfo=b"")
    started = time.monotonic()
    try:
        response = yield request
    except FetchError as exc:  # thrown in by the driver: unreachable, too slow, too large
        code = "network_error" if isinstance(exc, Unreachable) else "invalid_response"
        detail = f"{what} at {url} failed after {time.monotonic() - started:.2f} s: {exc}"
        raise ClientCredentialsError(code, detail=detail) from None
    elapsed = time.monotonic() - started
    return response, f"{what} at {url} answered HTTP {response.status_code} after {elapsed:.2f} s"


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    """The response's strict JSON object (RFC 8259), else ``None``."""
    try:
        return json_answer(response.content)
    except FetchError:
        return None


def _access_token(response: httpx.Response, started: float, where: str, *, dpop: bool = False) -> AccessToken:
    """RFC 6749 §5.1: a Bearer token (RFC 6750), or with ``dpop`` a DPoP one (RFC 9449 §5), and its
    lifetime, counted from when it was asked for; ``where`` (step, URL, duration) starts any error's detail."""
    body = _json_body(response)
    if response.status_code != httpx.codes.OK:
        raise ClientCredentialsError.from_response(response, body, where)
    if body is None:
        raise ClientCredentialsError("invalid_response", status_code=200, detail=f"{where}: not a JSON object")
    value, token_type, lifetime = body.get("access_token"), body.get("token_type"), body.get("expires_in")
    if not isinstance(value, str) or not _B64TOKEN.fullmatch(value):
        raise ClientCredentialsError("invalid_response", status_code=200, detail=f"{where}: no usable access_token")
    if not isinstance(token_type, str) or token_type.lower() != ("dpop" if dpop else "bearer"):  # RFC 6749 §7.1
        refusal = "the token is not DPoP-bound" if dpop else "token_type is not Bearer"
        raise ClientCredentialsError("invalid_response", status_code=200, detail=f"{where}: {refusal}")
    if lifetime is None:
        lifetime = DEFAULT_LIFETIME
    if type(lifetime) not in (int, float) or lifetime <= 0:
        detail = f"{where}: expires_in is not a positive number"
        raise ClientCredentialsError("invalid_response", status_code=200, detail=detail)
    scope = body.get("scope")
    return AccessToken(
        value=value,
        expires_at=started + lifetime,
        refresh_at=renew_at(started + lifetime, lifetime),
        scope=scope if isinstance(scope, str) else None,
        response=body,
    )
