"""Machine A: callers of the orders API, and the calls the demo makes with them.

Keycloak clients call Machine B through :class:`~fastapi_kc_m2m.ClientCredentialsAuth`:

- ``machine-a`` authenticates with a signed JWT (``private_key_jwt``, the key from ``kc-m2m keygen``),
  asks for the optional scope ``orders:read`` and holds ``machine-b``'s client role ``writer``;
- ``reporting`` authenticates with a client secret and holds no role of ``machine-b``: it may read
  when it asks for ``orders:read``, and is refused (403) when it does not, or when it writes;
- ``shipping`` (when ``DEMO_CERT_CLIENT_CERT`` is set) authenticates by its TLS client certificate
  (RFC 8705 §2, Keycloak's ``client-x509``); its tokens are bound to that certificate (§3), so its
  ``httpx.Client`` presents the same certificate to the API (docker-compose.yml: to nginx, which requires
  a client certificate of every caller, so all of Machine A's calls present it).

Run alone (the ``machine-a`` service of docker-compose.yml) it reads these variables:

=============================  ===========================================  ==============================
variable                       meaning                                      default
=============================  ===========================================  ==============================
``DEMO_API_URL``               Machine B's base URL                         ``http://127.0.0.1:8000``
``KC_M2M_SERVER_URL``          Keycloak's public URL (the tokens' ``iss``)  required
``KC_M2M_REALM``               the realm                                    ``demo``
``DEMO_TOKEN_ENDPOINT``        token endpoint, when the public URL is not   from discovery
                               reachable from where the caller runs
``DEMO_MACHINE_A_ID``          the signed-JWT client                        ``machine-a``
``DEMO_MACHINE_A_KEY``         its private key (PEM file)                   ``keys/machine-a.key.pem``
``DEMO_SECRET_CLIENT_ID``      the client-secret client                     ``reporting``
``DEMO_SECRET_CLIENT_SECRET``  its secret                                   ``reporting-secret``
``DEMO_CERT_CLIENT_ID``        the certificate (client-x509) client         ``shipping``
``DEMO_CERT_CLIENT_CERT``      its certificate (PEM file)                   none: no such caller
``DEMO_CERT_CLIENT_KEY``       its private key (PEM file)                   required with the certificate
``SSL_CERT_FILE``              CA certificates to trust (OpenSSL, httpx)    the system's
=============================  ===========================================  ==============================
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from fastapi_kc_m2m import ClientCredentialsAuth
from fastapi_kc_m2m._idp.client_auth import client_authentication
from fastapi_kc_m2m.client import load_signing_key
from fastapi_kc_m2m.testing import TestIssuer

from .app import READ_SCOPE

_CHALLENGE_PARAMETER = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class CertificateCaller:
    """A client authenticating by its TLS certificate (RFC 8705 §2.1, Keycloak's ``client-x509``), and
    the TLS context presenting that certificate to the API, as its bound tokens require (§3)."""

    auth: ClientCredentialsAuth
    tls: ssl.SSLContext

    @classmethod
    def from_files(
        cls, client_id: str, cert: str, key: str, *, issuer: str, token_endpoint: str | None = None
    ) -> CertificateCaller:
        """The caller with the PEM files ``cert`` and ``key``, trusting the default CAs (``SSL_CERT_FILE``);
        ``ClientCredentialsAuth`` adds the certificate to ``tls``, the context then shared with the API calls."""
        tls = ssl.create_default_context()
        auth = ClientCredentialsAuth(
            client_id, issuer=issuer, token_endpoint=token_endpoint, client_cert=(cert, key), verify=tls,
            scope=READ_SCOPE,
        )  # fmt: skip
        return cls(auth, tls)


@dataclass(frozen=True)
class Callers:
    """Machine A's clients, how to revoke a token of ``machine_a`` at the issuer, and the certificate
    caller, whose TLS context then serves all calls to the API."""

    issuer: str
    machine_a: ClientCredentialsAuth
    reporting: ClientCredentialsAuth
    reporting_unscoped: ClientCredentialsAuth
    revoke: Callable[[str], None]
    shipping: CertificateCaller | None = None

    @property
    def api_tls(self) -> ssl.SSLContext | bool:
        """TLS for the calls to the API: presenting the certificate caller's certificate, if any."""
        return True if self.shipping is None else self.shipping.tls

    def close(self) -> None:
        certificate = [] if self.shipping is None else [self.shipping.auth]
        for auth in (self.machine_a, self.reporting, self.reporting_unscoped, *certificate):
            auth.close()


@dataclass(frozen=True)
class Outcome:
    """One row of the table: the call, the token's client and scopes, the status, and why."""

    call: str
    client: str
    scopes: str
    status: int
    why: str


def why(response: httpx.Response) -> str:
    """The reason Machine B gave, read from its RFC 6750 challenge."""
    if response.is_success:
        return "allowed"
    challenge = dict(_CHALLENGE_PARAMETER.findall(response.headers.get("www-authenticate", "")))
    if "error" not in challenge:
        return "no token" if response.status_code == httpx.codes.UNAUTHORIZED else response.reason_phrase
    reason = f"{challenge['error']}: {challenge.get('error_description', '')}"
    return f"{reason} ({challenge['scope']})" if challenge.get("scope") else reason


def _scopes(scope: str | None) -> str:
    return " ".join(name for name in (scope or "").split() if name not in ("profile", "email")) or "-"


class _Session:
    """Makes the calls and records their outcomes."""

    def __init__(self, api_url: str, tls: ssl.SSLContext | bool = True) -> None:
        self.api_url = api_url.rstrip("/")
        self.tls = tls
        self.rows: list[Outcome] = []

    def as_client(
        self, auth: ClientCredentialsAuth, method: str, path: str, note: str = "", **request: Any
    ) -> httpx.Response:
        """A call through ``auth``; the row shows the token the call ended with."""
        with httpx.Client(auth=auth, base_url=self.api_url, verify=self.tls) as client:
            response = client.request(method, path, **request)
        token = auth.get_token()
        self._record(f"{method} {path}", auth.client_id, _scopes(token.scope), response, note)
        return response

    def with_token(
        self, method: str, path: str, token: str | None, *, client: str = "-", scopes: str = "-", note: str = ""
    ) -> httpx.Response:
        """A call with a given token (or none), as an attacker or a client holding an old token would."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = httpx.request(method, f"{self.api_url}{path}", headers=headers, verify=self.tls)
        self._record(f"{method} {path}", client, scopes, response, note)
        return response

    def _record(self, call: str, client: str, scopes: str, response: httpx.Response, note: str) -> None:
        reason = why(response)
        self.rows.append(Outcome(call, client, scopes, response.status_code, f"{reason}; {note}" if note else reason))


def scenario(api_url: str, callers: Callers) -> list[Outcome]:
    """Allowed and refused calls: public route, no token, forged token, scope, role, and revocation."""
    session = _Session(api_url, callers.api_tls)
    base_url, _, realm = callers.issuer.rpartition("/realms/")
    forged = TestIssuer(base_url, realm).token(client_id=callers.machine_a.client_id, scope=READ_SCOPE)
    session.with_token("GET", "/health", None, note="public route")
    session.with_token("GET", "/orders", None)
    session.with_token("GET", "/orders", forged, client=f"{callers.machine_a.client_id} (forged)", scopes=READ_SCOPE)
    session.as_client(callers.machine_a, "GET", "/orders", "scope orders:read")
    order = session.as_client(callers.machine_a, "POST", "/orders", "client role writer", json={"item": "bolts"})
    session.as_client(callers.reporting, "GET", "/orders", "client secret")
    session.as_client(callers.reporting_unscoped, "GET", "/orders", "asked for no scope")
    session.as_client(callers.reporting, "POST", "/orders", "no writer role", json={"item": "nuts"})
    cancel = f"/orders/{order.json()['id']}/cancel"
    session.as_client(callers.machine_a, "POST", cancel, "introspection: active")
    revoked = callers.machine_a.get_token()
    callers.revoke(revoked.value)
    held = {"client": callers.machine_a.client_id, "scopes": _scopes(revoked.scope)}
    session.with_token("GET", "/orders", revoked.value, **held, note="revoked, but local check only")
    session.with_token("POST", cancel, revoked.value, **held, note="revoked; introspected")
    session.as_client(callers.machine_a, "POST", cancel, "new token after the 401")
    return session.rows


def certificate_scenario(api_url: str, caller: CertificateCaller) -> list[Outcome]:
    """A read by the certificate caller: its token bound to the certificate it presents (RFC 8705 §3)."""
    session = _Session(api_url, caller.tls)
    session.as_client(caller.auth, "GET", "/orders", "client-x509; token bound to its certificate")
    return session.rows


def print_table(rows: Iterable[Outcome], file: Any = None) -> None:
    """The outcomes as an aligned plain-text table."""
    headings = ("call", "token's client", "scopes", "status", "why")
    cells = [headings] + [(row.call, row.client, row.scopes, str(row.status), row.why) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headings))]
    for line in [cells[0], tuple("-" * width for width in widths), *cells[1:]]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(), file=file)


def callers_from_environment(environ: dict[str, str] | None = None) -> Callers:
    """Machine A's clients for a real Keycloak, set up as in ``keycloak/realm.json`` (see module docs)."""
    env = dict(os.environ if environ is None else environ)
    issuer = f"{env['KC_M2M_SERVER_URL'].rstrip('/')}/realms/{env.get('KC_M2M_REALM', 'demo')}"
    token_endpoint = env.get("DEMO_TOKEN_ENDPOINT") or None
    machine_a_id = env.get("DEMO_MACHINE_A_ID", "machine-a")
    key, algorithm = load_signing_key(env.get("DEMO_MACHINE_A_KEY", "keys/machine-a.key.pem"))
    secret_id = env.get("DEMO_SECRET_CLIENT_ID", "reporting")
    secret = env.get("DEMO_SECRET_CLIENT_SECRET", "reporting-secret")
    assertion = client_authentication("private_key_jwt", machine_a_id, private_key=key, algorithm=algorithm)

    def revoke(token: str) -> None:
        """RFC 7009 at Keycloak's revocation endpoint, authenticated as the token's own client."""
        endpoint = (token_endpoint or f"{issuer}/protocol/openid-connect/token").removesuffix("/token") + "/revoke"
        headers, fields = assertion.credentials(issuer)
        form = {"token": token, "token_type_hint": "access_token", **fields}
        httpx.post(endpoint, data=form, headers=headers).raise_for_status()

    return Callers(
        issuer=issuer,
        machine_a=ClientCredentialsAuth(
            machine_a_id,
            issuer=issuer,
            token_endpoint=token_endpoint,
            private_key=key,
            algorithm=algorithm,
            scope=READ_SCOPE,
        ),
        reporting=ClientCredentialsAuth(
            secret_id, issuer=issuer, token_endpoint=token_endpoint, client_secret=secret, scope=READ_SCOPE
        ),
        reporting_unscoped=ClientCredentialsAuth(
            secret_id, issuer=issuer, token_endpoint=token_endpoint, client_secret=secret
        ),
        revoke=revoke,
        shipping=_certificate_caller(env, issuer, token_endpoint),
    )


def _certificate_caller(env: dict[str, str], issuer: str, token_endpoint: str | None) -> CertificateCaller | None:
    """The certificate caller of ``DEMO_CERT_CLIENT_*``, if its certificate is given."""
    cert_file = env.get("DEMO_CERT_CLIENT_CERT")
    if not cert_file:
        return None
    client_id = env.get("DEMO_CERT_CLIENT_ID", "shipping")
    return CertificateCaller.from_files(
        client_id, cert_file, env["DEMO_CERT_CLIENT_KEY"], issuer=issuer, token_endpoint=token_endpoint
    )


def main() -> None:
    callers = callers_from_environment()
    api_url = os.environ.get("DEMO_API_URL", "http://127.0.0.1:8000")
    try:
        rows = scenario(api_url, callers)
        if callers.shipping is not None:
            rows += certificate_scenario(api_url, callers.shipping)
        print_table(rows)
    finally:
        callers.close()


if __name__ == "__main__":
    main()
