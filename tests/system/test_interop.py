"""Interop: the package against an independent authorization server, panva's oidc-provider (a certified
OpenID provider) set up in Keycloak's shape by ``interop/server.mjs``: Keycloak's issuer and endpoint
paths, JWT access tokens with Keycloak's claims, a published ``use: "enc"`` key, clients authenticating
with ``client_secret_basic`` and ``private_key_jwt``, DPoP-bound tokens (RFC 9449) in Keycloak 26.7's
shape, with and without server nonces, and over HTTPS with mutual TLS (RFC 8705): a client authenticating
by certificate (``tls_client_auth``) gets certificate-bound tokens, presented to Machine B through a real
nginx terminating mutual TLS. Machine A is ``ClientCredentialsAuth``; Machine B a FastAPI app behind
``KeycloakAuthMiddleware`` served by uvicorn on loopback.

Set-up: ``scripts/bootstrap`` runs ``npm ci --prefix interop``; without it these tests fail, never skip.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import RSAKey

from fastapi_kc_m2m import (
    ClientCredentialsAuth,
    ClientCredentialsError,
    KeycloakAuth,
    KeycloakAuthMiddleware,
    KeycloakSettings,
    Principal,
    require_active_token,
    require_client_role,
    require_scope,
)
from fastapi_kc_m2m._jose.dpop import ProofKey, access_token_hash, jwk_thumbprint, make_proof
from fastapi_kc_m2m._jose.jws import parse
from fastapi_kc_m2m.testing import generate_key, serve_app
from tests.helpers import NGINX_PROXY_ADDRESS, Pki, bearer, make_pki, nginx_mtls

pytestmark = pytest.mark.anyio

INTEROP = Path(__file__).resolve().parents[2] / "interop"
REALM = "interop"
API = "machine-b"
READ = "orders:read"


class AuthServer:
    """``node interop/server.mjs`` on a fixed loopback port (the issuer names it), restartable; with
    ``tls``, over HTTPS with that PKI's server certificate, asking for client certificates of its CA."""

    def __init__(self, state: Path, client_keys: dict[str, RSAKey], *flags: str, tls: Pki | None = None) -> None:
        self.state = state
        self.flags = flags if tls is None else (*flags, "--tls", str(tls.ca.parent))
        self.tls = tls
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server_url = f"{'http' if tls is None else 'https'}://127.0.0.1:{self.port}"
        self.issuer = f"{self.server_url}/realms/{REALM}"
        self.keys = client_keys
        public = {client: {"keys": [key.as_dict(private=False)]} for client, key in client_keys.items()}
        (state / "client-keys.json").write_text(json.dumps(public))
        self._process: subprocess.Popen[bytes] | None = None
        self.nonces_demanded = 0  # DPoP nonces the token endpoint asked for (RFC 9449 §8)

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/protocol/openid-connect/{name}"

    def start(self, *, rotate: bool = False) -> None:
        command = ["node", str(INTEROP / "server.mjs"), "--port", str(self.port), "--state", str(self.state)]
        command.extend(self.flags)
        if rotate:
            command.append("--rotate")
        with (self.state / "server.log").open("ab") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 - our own harness
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                discovery = f"{self.issuer}/.well-known/openid-configuration"
                if httpx.get(discovery, verify=self.verify()).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"interop server did not start:\n{(self.state / 'server.log').read_text()}")

    def verify(self) -> ssl.SSLContext | bool:
        """A new TLS set-up trusting the server: the PKI's CA (each ``client_cert=`` adds to its own)."""
        return True if self.tls is None else self.tls.context()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    @asynccontextmanager
    async def machine_a(self, client_id: str, scope: str | None = READ) -> AsyncIterator[ClientCredentialsAuth]:
        """Machine A's auth for one of the realm's callers (secret ``<id>-secret`` unless it has a key)."""
        key = self.keys.get(client_id)
        secret = None if key else f"{client_id}-secret"
        auth = ClientCredentialsAuth(client_id, issuer=self.issuer, private_key=key, client_secret=secret, scope=scope)
        try:
            yield auth
        finally:
            await auth.aclose()

    async def token(self, client_id: str) -> str:
        """A fresh access token of ``client_id`` with the scope ``orders:read``."""
        async with self.machine_a(client_id) as auth:
            return (await auth.aget_token()).value

    def dpop_token(self, key: ProofKey, client_id: str = "reporting") -> httpx.Response:
        """The token endpoint's answer to ``client_id`` asking with a proof of ``key`` made by
        :func:`make_proof` (RFC 9449 §5), retried once with the nonce if one is demanded (§8)."""
        nonce = None
        for _ in range(2):
            proof = make_proof(key, htm="POST", htu=self.endpoint("token"), iat=time.time(), nonce=nonce)
            response = httpx.post(
                self.endpoint("token"),
                data={"grant_type": "client_credentials", "scope": READ},
                auth=(client_id, f"{client_id}-secret"),
                headers={"DPoP": proof},
            )
            if response.status_code != 400 or response.json().get("error") != "use_dpop_nonce":
                break
            nonce = response.headers["dpop-nonce"]
            self.nonces_demanded += 1
        return response

    def settings(self, **overrides: Any) -> KeycloakSettings:
        trust = {} if self.tls is None else {"ca_file": str(self.tls.ca)}
        return KeycloakSettings(server_url=self.server_url, realm=REALM, audience=API, **(trust | overrides))

    def revoke(self, token: str, client_id: str) -> None:
        """Revoke ``token`` at ``/revoke`` as Keycloak takes it: the JWT itself, by its own client."""
        response = httpx.post(self.endpoint("revoke"), data={"token": token}, auth=(client_id, f"{client_id}-secret"))
        assert response.status_code == 200, response.text


def run_server(state: Path, *flags: str, tls: Pki | None = None) -> Iterator[AuthServer]:
    if shutil.which("node") is None or not (INTEROP / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the interop suite needs Node.js and interop/node_modules: run scripts/bootstrap")
    keys = {client: RSAKey.generate_key(2048, auto_kid=True) for client in ("machine-a", f"{API}-signed")}
    auth_server = AuthServer(state, keys, *flags, tls=tls)
    auth_server.start()
    yield auth_server
    auth_server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AuthServer]:
    yield from run_server(tmp_path)


@pytest.fixture(params=[False, True], ids=["no_nonce", "nonce"])
def dpop_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthServer]:
    """The realm, demanding DPoP nonces (RFC 9449 §8) or not."""
    yield from run_server(tmp_path, *(["--dpop-nonce"] if request.param else []))


@asynccontextmanager
async def machine_b(settings: KeycloakSettings) -> AsyncIterator[str]:
    """Machine B served on loopback; yields its base URL."""
    auth = KeycloakAuth(settings)
    app = FastAPI(lifespan=auth.lifespan)
    app.add_middleware(KeycloakAuthMiddleware, auth=auth)

    @app.get("/orders", dependencies=[require_scope(READ)])
    async def orders(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    @app.post("/orders", status_code=201, dependencies=[require_client_role("writer")])
    async def create(caller: Principal) -> dict[str, str]:
        return {"client": caller.client_id}

    if settings.introspects:  # a route needing introspection while it is off fails at start-up

        @app.post("/refunds", dependencies=[require_active_token()])
        async def refund(caller: Principal) -> dict[str, str]:
            return {"client": caller.client_id}

    with serve_app(app, lifespan="on") as url:
        yield url


def kid_of(token: str) -> str:
    header = token.split(".", maxsplit=1)[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


@pytest.mark.parametrize("client_id", ["machine-a", "reporting"], ids=["private_key_jwt", "client_secret_basic"])
async def test_machine_a_tokens_are_accepted(server: AuthServer, client_id: str) -> None:
    async with (
        machine_b(server.settings()) as url,
        server.machine_a(client_id) as machine_a,
        httpx.AsyncClient(auth=machine_a) as client,
    ):
        response = await client.get(f"{url}/orders")
        assert response.status_code == 200, response.text
        assert response.json() == {"client": client_id}
        # machine-a holds machine-b's client role `writer`; reporting does not
        write = await client.post(f"{url}/orders")
        assert write.status_code == (201 if client_id == "machine-a" else 403), write.text


async def test_a_token_without_the_audience_is_refused(server: AuthServer) -> None:
    async with (
        machine_b(server.settings()) as url,
        server.machine_a("stranger") as machine_a,
        httpx.AsyncClient(auth=machine_a) as client,
    ):
        response = await client.get(f"{url}/orders")  # aud is only "account": no audience mapper
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_missing_scope_and_role_are_refused(server: AuthServer) -> None:
    async with (
        machine_b(server.settings()) as url,
        server.machine_a("reporting", scope=None) as machine_a,
        httpx.AsyncClient(auth=machine_a) as client,
    ):
        read = await client.get(f"{url}/orders")
        write = await client.post(f"{url}/orders")
    for response in (read, write):
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("method", ["client_secret_basic", "private_key_jwt"])
async def test_introspection(server: AuthServer, method: str) -> None:
    if method == "private_key_jwt":
        key = json.dumps(server.keys[f"{API}-signed"].as_dict(private=True))
        credentials: dict[str, Any] = {"client_id": f"{API}-signed", "client_private_key": key}
    else:
        credentials = {"client_secret": f"{API}-secret"}
    settings = server.settings(
        introspection="per_route", client_auth_method=method, introspection_cache_ttl=0, **credentials
    )
    token = await server.token("reporting")
    async with machine_b(settings) as url, httpx.AsyncClient(headers=bearer(token)) as client:
        assert (await client.post(f"{url}/refunds")).status_code == 200
        server.revoke(token, "reporting")
        refused = await client.post(f"{url}/refunds")
        assert refused.status_code == 401
        assert (await client.get(f"{url}/orders")).status_code == 200  # local check only: still valid


async def test_revocation_takes_effect_within_the_cache_time(server: AuthServer) -> None:
    cache_ttl = 2.0
    settings = server.settings(introspection="always", client_secret=f"{API}-secret", introspection_cache_ttl=cache_ttl)
    async with (
        machine_b(settings) as url,
        server.machine_a("reporting") as machine_a,
        httpx.AsyncClient() as plain,
        httpx.AsyncClient(auth=machine_a) as client,
    ):
        token = (await machine_a.aget_token()).value
        assert (await plain.get(f"{url}/orders", headers=bearer(token))).status_code == 200
        server.revoke(token, "reporting")
        revoked_at = time.monotonic()
        statuses = []
        while time.monotonic() - revoked_at < cache_ttl + 1:
            statuses.append((await plain.get(f"{url}/orders", headers=bearer(token))).status_code)
            if statuses[-1] == 401:
                break
            await anyio.sleep(0.1)
        assert statuses[-1] == 401, statuses
        assert set(statuses) <= {200, 401}, statuses
        # Machine A gets the 401, fetches a new token and retries once
        assert (await client.get(f"{url}/orders")).status_code == 200


async def test_signing_key_rotation_fails_no_request(server: AuthServer) -> None:
    settings = server.settings(token_cache_size=0)  # every request looks its key up
    async with machine_b(settings) as url, httpx.AsyncClient() as client:
        tokens = [await server.token("machine-a")]
        statuses: dict[str, list[int]] = {"old": [], "new": []}
        done = anyio.Event()

        async def traffic() -> None:  # old token throughout, the new one as soon as it exists
            while not done.is_set():
                for age, token in zip(statuses, tokens, strict=False):
                    statuses[age].append((await client.get(f"{url}/orders", headers=bearer(token))).status_code)
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as group:
            group.start_soon(traffic)
            await anyio.to_thread.run_sync(server.stop)
            await anyio.to_thread.run_sync(lambda: server.start(rotate=True))  # new key first, old one kept
            tokens.append(await server.token("machine-a"))
            await anyio.sleep(0.5)
            done.set()
        assert kid_of(tokens[0]) != kid_of(tokens[1])
        assert statuses["old"], "no traffic"
        assert statuses["new"], "no traffic"
        assert {*statuses["old"], *statuses["new"]} == {200}, statuses


async def test_warm_cache_outlives_the_server_until_max_stale(server: AuthServer) -> None:
    ttl, max_stale = 1.0, 4.0
    settings = server.settings(
        jwks_ttl=ttl, jwks_refresh_ahead=0.5, jwks_max_stale=max_stale, jwks_retry_interval=0.5, token_cache_size=0
    )
    token = await server.token("machine-a")
    started = time.monotonic()  # the last good key fetch is between this and the stop
    async with machine_b(settings) as url, httpx.AsyncClient(headers=bearer(token)) as client:
        assert (await client.get(f"{url}/orders")).status_code == 200
        server.stop()
        stopped_at = last_success = time.monotonic()
        while (response := await client.get(f"{url}/orders")).status_code == 200:
            last_success = time.monotonic()
            assert last_success - stopped_at < max_stale + 1, "keys served past max-stale"
            await anyio.sleep(0.1)
        refused_at = time.monotonic()
    assert response.status_code == 503, response.text
    assert "retry-after" in response.headers
    assert last_success - stopped_at > ttl  # served stale keys past their TTL
    assert refused_at - started >= max_stale  # not before max-stale
    assert refused_at - stopped_at <= max_stale + 0.5  # and not much after


# ------------------------------------------------------------------------- DPoP (RFC 9449)
@pytest.mark.parametrize("algorithm", ["ES256", "PS256", "EdDSA"])
def test_oidc_provider_accepts_our_proofs_and_binds_the_token_to_our_key(
    dpop_server: AuthServer, algorithm: str
) -> None:
    key = generate_key(algorithm)
    response = dpop_server.dpop_token(key)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    payload = parse(response.json()["access_token"]).payload
    assert payload["typ"] == "DPoP"  # Keycloak's payload typ of a bound token
    assert payload["cnf"] == {"jkt": jwk_thumbprint(key.as_dict(private=False)), "kc-jkt-type": "DPoP"}
    assert dpop_server.nonces_demanded == (1 if "--dpop-nonce" in dpop_server.flags else 0)


def test_the_token_endpoint_refuses_bad_and_replayed_proofs(server: AuthServer) -> None:
    key, htu = generate_key("ES256"), server.endpoint("token")
    proofs = {
        "wrong_htu": make_proof(key, htm="POST", htu=f"{server.issuer}/elsewhere", iat=time.time()),
        "stale": make_proof(key, htm="POST", htu=htu, iat=time.time() - 600),
        "good": make_proof(key, htm="POST", htu=htu, iat=time.time()),
    }
    statuses = {}
    for reason, proof in [*proofs.items(), ("replayed", proofs["good"])]:
        response = httpx.post(
            htu,
            data={"grant_type": "client_credentials"},
            auth=("reporting", "reporting-secret"),
            headers={"DPoP": proof},
        )
        statuses[reason] = (response.status_code, response.json().get("error"))
    assert statuses["good"] == (200, None)
    # Keycloak answers invalid_dpop_proof or invalid_request; oidc-provider calls a replay invalid_grant
    accepted = {(400, "invalid_dpop_proof"), (400, "invalid_request"), (400, "invalid_grant")}
    assert {statuses[reason] for reason in ("wrong_htu", "stale", "replayed")} <= accepted, statuses


def test_introspection_keeps_the_binding(server: AuthServer) -> None:
    key = generate_key("ES256")
    token = server.dpop_token(key).json()["access_token"]
    response = httpx.post(server.endpoint("token/introspect"), data={"token": token}, auth=(API, f"{API}-secret"))
    answer = response.json()
    assert (answer["active"], answer["token_type"], answer["typ"]) == (True, "DPoP", "DPoP"), answer
    assert answer["cnf"]["jkt"] == jwk_thumbprint(key.as_dict(private=False))


async def test_machine_b_accepts_a_bound_token_and_refuses_stolen_downgraded_and_replayed(
    dpop_server: AuthServer,
) -> None:
    key, thief = generate_key("ES256"), generate_key("ES256")
    token = dpop_server.dpop_token(key).json()["access_token"]
    async with machine_b(dpop_server.settings(dpop="allowed")) as url, httpx.AsyncClient() as client:

        async def call(proof_key: ProofKey, proof: str | None = None, scheme: str = "DPoP") -> httpx.Response:
            proof = proof or make_proof(
                proof_key, htm="GET", htu=f"{url}/orders", iat=time.time(), ath=access_token_hash(token)
            )
            return await client.get(f"{url}/orders", headers={"Authorization": f"{scheme} {token}", "DPoP": proof})

        proof = make_proof(key, htm="GET", htu=f"{url}/orders", iat=time.time(), ath=access_token_hash(token))
        accepted = await call(key, proof)
        assert accepted.status_code == 200, accepted.text
        assert (await call(key, proof)).status_code == 401  # replayed
        assert (await call(thief)).status_code == 401  # stolen: a proof of another key
        assert (await client.get(f"{url}/orders", headers=bearer(token))).status_code == 401  # downgraded


async def test_machine_a_with_dpop_calls_machine_b(dpop_server: AuthServer) -> None:
    machine_a = ClientCredentialsAuth(
        "reporting", issuer=dpop_server.issuer, client_secret="reporting-secret", scope=READ, dpop=True
    )
    async with machine_b(dpop_server.settings(dpop="required")) as url, httpx.AsyncClient(auth=machine_a) as client:
        response = await client.get(f"{url}/orders")
        token = (await machine_a.aget_token()).value
    await machine_a.aclose()
    assert response.status_code == 200, response.text
    assert parse(token).payload["cnf"]["kc-jkt-type"] == "DPoP"


# ------------------------------------------------------------------------- mutual TLS (RFC 8705)
@pytest.fixture
def mtls_server(tmp_path: Path) -> Iterator[AuthServer]:
    """The realm over HTTPS with a per-run PKI; machine-a-x509 authenticates by the ``machine-a`` certificate."""
    (tmp_path / "pki").mkdir()
    yield from run_server(tmp_path, tls=make_pki(tmp_path / "pki"))


@asynccontextmanager
async def machine_b_behind_nginx(server: AuthServer, directory: Path) -> AsyncIterator[tuple[str, str]]:
    """Machine B trusting the certificate header from nginx only, and nginx in front of it doing mutual
    TLS; yields (nginx's URL, Machine B's own URL)."""
    assert server.tls is not None
    settings = server.settings(
        client_cert_header="ssl-client-cert", client_cert_format="pem-urlencoded", trusted_proxies=NGINX_PROXY_ADDRESS
    )
    async with machine_b(settings) as api:
        with nginx_mtls(directory, server.tls, api) as proxy:
            yield proxy, api


def machine_a_x509(server: AuthServer) -> ClientCredentialsAuth:
    """machine-a-x509's auth: the ``machine-a`` certificate is its only credential (``tls_client_auth``)."""
    assert server.tls is not None
    return ClientCredentialsAuth(
        "machine-a-x509", issuer=server.issuer, client_cert=server.tls.client, verify=server.verify(), scope=READ
    )


async def test_a_certificate_bound_token_passes_nginx_with_its_certificate_only(
    mtls_server: AuthServer, tmp_path: Path
) -> None:
    pki = mtls_server.tls
    assert pki is not None
    machine_a = machine_a_x509(mtls_server)
    async with (
        machine_b_behind_nginx(mtls_server, tmp_path) as (proxy, api),
        httpx.AsyncClient(auth=machine_a, verify=pki.context(pki.client)) as client,
        httpx.AsyncClient(verify=pki.context(pki.other_client)) as thief,
    ):
        read, write = await client.get(f"{proxy}/orders"), await client.post(f"{proxy}/orders")
        token = (await machine_a.aget_token()).value
        stolen = await thief.get(f"{proxy}/orders", headers=bearer(token))
        forged = {"ssl-client-cert": quote(pki.client.pem.decode(), safe="")}
        direct = await client.get(f"{api}/orders", headers=bearer(token) | forged)  # not through nginx
    await machine_a.aclose()
    assert (read.status_code, read.json()) == (200, {"client": "machine-a-x509"}), read.text
    assert write.status_code == 201, write.text  # the client role reaches Machine B too
    assert parse(token).payload["cnf"] == {"x5t#S256": pki.client.x5t}
    assert machine_a.token_endpoint == mtls_server.endpoint("token")  # mtls_endpoint_aliases (RFC 8705 §5)
    for refused in (stolen, direct):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer realm="machine-b", error="invalid_token"')


async def test_oidc_provider_refuses_another_certificate_of_the_ca(mtls_server: AuthServer) -> None:
    pki = mtls_server.tls
    assert pki is not None
    machine_a = ClientCredentialsAuth(
        "machine-a-x509", issuer=mtls_server.issuer, client_cert=pki.other_client, verify=mtls_server.verify()
    )
    with pytest.raises(ClientCredentialsError) as refused:
        await machine_a.aget_token()
    await machine_a.aclose()
    assert refused.value.error == "invalid_client"
