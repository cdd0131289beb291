"""Prometheus metrics (KC_M2M_METRICS=prometheus): counts per outcome and reason, bounded labels, shared
families per registry, and the rate-limited refusal events of the observer hook."""

from __future__ import annotations

import ast
import contextlib
import logging
import pathlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from prometheus_client import REGISTRY, CollectorRegistry
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from fastapi_kc_m2m import (
    AuthError,
    IdentityProviderUnavailable,
    InvalidToken,
    KeycloakAuth,
    KeycloakAuthMiddleware,
    KeycloakSettings,
    LoggingObserver,
    Principal,
    auth_error_handler,
    errors,
    metrics_app,
    require_realm_role,
    require_scope,
)
from fastapi_kc_m2m._jose.dpop import access_token_hash, make_proof
from fastapi_kc_m2m.errors import reason_code
from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.server.metrics import REASONS, MetricsObserver
from fastapi_kc_m2m.testing import TestIssuer, generate_key
from tests.helpers import INTROSPECTION_SECRET, api_client, bearer

pytestmark = pytest.mark.anyio

HTU = "https://api.test/orders"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@contextlib.asynccontextmanager
async def metered(
    issuer: TestIssuer, registry: CollectorRegistry | None, **overrides: Any
) -> AsyncIterator[KeycloakAuth]:
    """A verifier with metrics on ``registry`` (None: the default one), wired to ``issuer``."""
    settings = issuer.settings(metrics="prometheus", **overrides)
    async with KeycloakAuth(settings, transport=issuer.transport, clock=issuer.clock, registry=registry) as auth:
        yield auth


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def series(registry: CollectorRegistry) -> int:
    return sum(len(family.samples) for family in registry.collect())


async def refuse(auth: KeycloakAuth, token: str) -> AuthError:
    with pytest.raises(AuthError) as refused:
        await auth.verify(token)
    return refused.value


async def test_accepted_tokens_count_with_cache_hits_timed_apart(
    issuer: TestIssuer, registry: CollectorRegistry
) -> None:
    async with metered(issuer, registry) as auth:
        token = issuer.token()
        for _ in range(3):
            await auth.verify(token)
    assert value(registry, "kc_m2m_verifications_total", outcome="accepted", reason="ok", client_id="") == 3
    assert value(registry, "kc_m2m_verification_seconds_count", cache="miss") == 1
    assert value(registry, "kc_m2m_verification_seconds_count", cache="hit") == 2
    assert value(registry, "kc_m2m_token_remaining_seconds_count", client_id="") == 1
    assert value(registry, "kc_m2m_token_lifetime_seconds_sum", client_id="") == 300
    assert value(registry, "kc_m2m_jwks_fetches_total", issuer=issuer.issuer, result="ok") == 1
    assert value(registry, "kc_m2m_jwks_keys", issuer=issuer.issuer) == 1
    assert 0 <= value(registry, "kc_m2m_jwks_age_seconds", issuer=issuer.issuer) < 60


async def test_each_refusal_counts_under_its_reason(issuer: TestIssuer, registry: CollectorRegistry) -> None:
    async with metered(issuer, registry) as auth:
        for token in issuer.bad_tokens().values():
            error = await refuse(auth, token)
            reason = error.reason
            assert reason in REASONS
            before = value(registry, "kc_m2m_verifications_total", outcome="refused", reason=reason, client_id="")
            await refuse(auth, token)
            after = value(registry, "kc_m2m_verifications_total", outcome="refused", reason=reason, client_id="")
            assert after == before + 1, reason


async def test_keycloak_down_counts_as_unavailable(issuer: TestIssuer, registry: CollectorRegistry) -> None:
    issuer.fail("jwks", "status")
    async with metered(issuer, registry) as auth:
        assert isinstance(await refuse(auth, issuer.token()), IdentityProviderUnavailable)
    reason = "idp_unavailable"
    assert value(registry, "kc_m2m_verifications_total", outcome="unavailable", reason=reason, client_id="") == 1
    assert value(registry, "kc_m2m_jwks_fetches_total", issuer=issuer.issuer, result="error") == 1


async def test_introspections_count_by_result(issuer: TestIssuer, registry: CollectorRegistry) -> None:
    issuer.register_client(secret=INTROSPECTION_SECRET)
    async with metered(issuer, registry, introspection="always", client_secret=INTROSPECTION_SECRET) as auth:
        await auth.verify(issuer.token())
        revoked = issuer.token(jti="revoked")
        issuer.revoke(revoked)
        await refuse(auth, revoked)
    assert value(registry, "kc_m2m_introspections_total", result="active") == 1
    assert value(registry, "kc_m2m_introspections_total", result="inactive") == 1
    assert value(registry, "kc_m2m_introspection_seconds_count") == 2
    # each request once: the revoked token passed local checks but is counted refused only
    assert (accepted(registry), refused(registry, "inactive")) == (1, 1)


async def test_dpop_proofs_count_by_outcome(issuer: TestIssuer, registry: CollectorRegistry) -> None:
    key = generate_key("ES256")
    token = issuer.token(typ="DPoP", cnf={"jkt": key.thumbprint(), "kc-jkt-type": "DPoP"})
    proof = make_proof(key, htm="GET", htu=HTU, iat=issuer.clock(), ath=access_token_hash(token))
    context = RequestContext(token, "DPoP", "GET", HTU, proof)
    async with metered(issuer, registry) as auth:
        await auth.authenticate(context)
        with pytest.raises(AuthError):
            await auth.authenticate(context)
    assert value(registry, "kc_m2m_dpop_proofs_total", outcome="accepted", reason="ok") == 1
    assert value(registry, "kc_m2m_dpop_proofs_total", outcome="refused", reason="dpop_replayed") == 1


async def test_certificate_binding_outcomes_count(issuer: TestIssuer, registry: CollectorRegistry) -> None:
    token = issuer.token(cnf={"x5t#S256": "A" * 43})
    async with metered(issuer, registry) as auth:
        await refuse(auth, token)
        with pytest.raises(InvalidToken):
            await auth.authenticate(RequestContext(token, client_certificate=b"not the one"))
    assert value(registry, "kc_m2m_certificate_bindings_total", outcome="missing") == 1
    assert value(registry, "kc_m2m_certificate_bindings_total", outcome="mismatch") == 1


async def test_client_ids_label_only_when_allowed_clients_bound_them(
    issuer: TestIssuer, registry: CollectorRegistry
) -> None:
    async with metered(issuer, registry, allowed_clients=("machine-a",)) as auth:
        await auth.verify(issuer.token())
        await refuse(auth, issuer.token(client_id="intruder-1"))
    assert value(registry, "kc_m2m_verifications_total", outcome="accepted", reason="ok", client_id="machine-a") == 1
    refused = {"outcome": "refused", "reason": "client_not_allowed", "client_id": ""}
    assert value(registry, "kc_m2m_verifications_total", **refused) == 1


async def test_labels_stay_bounded_under_ten_thousand_junk_tokens(
    issuer: TestIssuer, registry: CollectorRegistry
) -> None:
    async with metered(issuer, registry) as auth:
        await refuse(auth, "junk")
        await refuse(auth, issuer.token(iss="http://evil.test/realms/x", client_id="evil"))
        baseline = series(registry)
        for i in range(10_000):
            junk = issuer.token(iss=f"http://evil.test/realms/{i}", client_id=f"evil-{i}", kid=f"k{i}")
            await refuse(auth, junk if i % 2 else f"junk.{i}.x")
    assert series(registry) == baseline
    untrusted = {"outcome": "refused", "reason": "untrusted_issuer", "client_id": ""}
    assert value(registry, "kc_m2m_verifications_total", **untrusted) == 5001


def test_every_reason_the_package_raises_is_in_the_closed_set() -> None:
    """Each description given to an AuthError (or a DPoP proof fault), as a literal or a module constant,
    is a known reason code."""
    raising = {name for name in errors.__all__ if name[0].isupper()} | {"ProofError"}
    found = set()
    for path in pathlib.Path("fastapi_kc_m2m").rglob("*.py"):
        module = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in module.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(module):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in raising:
                texts = [
                    arg.value if isinstance(arg, ast.Constant) else constants.get(arg.id)
                    for arg in node.args
                    if isinstance(arg, ast.Constant | ast.Name)
                ]
                found |= {reason_code(text) for text in texts if isinstance(text, str)}
    defaults = {reason_code(c.default_description) for c in vars(errors).values()
                if isinstance(c, type) and issubclass(c, AuthError) and c is not AuthError}  # fmt: skip
    assert len(found) > 40
    assert (found | defaults) - REASONS == set()


def test_reason_codes_are_short_words_apart_from_the_descriptions() -> None:
    codes = {InvalidToken(description).reason for description in errors.REASON_CODES}
    assert codes == REASONS
    assert all(re.fullmatch(r"[a-z][a-z_]{1,29}", code) for code in codes), codes
    assert InvalidToken("token expired").reason == "expired"
    assert InvalidToken("something new").reason == errors.OTHER_REASON
    assert errors.OTHER_REASON not in REASONS


async def test_two_instances_share_the_default_registry(issuer: TestIssuer) -> None:
    before = value(REGISTRY, "kc_m2m_verifications_total", outcome="accepted", reason="ok", client_id="")
    async with metered(issuer, None) as first, metered(issuer, None) as second:
        await first.verify(issuer.token())
        await second.verify(issuer.token(jti="other"))
    after = value(REGISTRY, "kc_m2m_verifications_total", outcome="accepted", reason="ok", client_id="")
    assert after == before + 2


async def test_metrics_app_is_authenticated_unless_excluded(issuer: TestIssuer, registry: CollectorRegistry) -> None:
    async with metered(issuer, registry) as auth:
        await auth.verify(issuer.token())
        for exclude, status in (((), 401), (("/metrics/",), 200)):
            app = FastAPI()
            app.mount("/metrics", metrics_app(registry))
            protected = KeycloakAuthMiddleware(app, auth, exclude_paths=exclude)
            async with api_client(protected) as client:
                response = await client.get("/metrics/")
            assert response.status_code == status
        async with api_client(KeycloakAuthMiddleware(app, auth)) as client:
            scraped = await client.get("/metrics/", headers=bearer(issuer.token()))
    assert 'kc_m2m_verifications_total{client_id="",outcome="accepted",reason="ok"}' in scraped.text


# ------------------------------------------------------------------ refusal events


async def test_a_refusal_event_names_path_and_method_never_the_token(
    issuer: TestIssuer, auth: KeycloakAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fastapi_kc_m2m")
    app = FastAPI()
    token = issuer.token(aud="account")
    async with api_client(KeycloakAuthMiddleware(app, auth)) as client:
        assert (await client.post("/orders/7", headers=bearer(token))).status_code == 401
    [record] = [r for r in caplog.records if r.getMessage().startswith("refused: ")]
    fields = {name: getattr(record, name) for name in ("reason", "issuer", "client_id", "path", "method")}
    assert fields == {
        "reason": "wrong_audience",
        "issuer": issuer.issuer,
        "client_id": "machine-a",
        "path": "/orders/7",
        "method": "POST",
    }
    assert token.split(".")[1] not in caplog.text


def test_refusal_events_are_rate_limited_and_count_what_they_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_kc_m2m")
    observer = LoggingObserver(refusal_level=logging.INFO, refusal_rate=100.0, refusal_burst=5)
    started = time.monotonic()
    for _ in range(1000):
        observer.token_refused(InvalidToken("token expired"))
    elapsed = time.monotonic() - started
    assert 5 <= len(caplog.records) <= 5 + 100 * elapsed + 1
    logged = len(caplog.records)
    time.sleep(0.05)
    observer.token_refused(InvalidToken("token expired"))
    assert caplog.records[-1].suppressed == 1000 - logged  # type: ignore[attr-defined]


# ------------------------------------------------------------------ refusals of the ASGI layer


def refused(registry: CollectorRegistry, reason: str) -> float:
    """Requests refused for ``reason``: 400/401 in the verifications, a scope or role in the route refusals."""
    if reason in ("insufficient_scope", "missing_role"):
        return value(registry, "kc_m2m_route_refusals_total", outcome="refused", reason=reason)
    return value(registry, "kc_m2m_verifications_total", outcome="refused", reason=reason, client_id="")


def accepted(registry: CollectorRegistry) -> float:
    return value(registry, "kc_m2m_verifications_total", outcome="accepted", reason="ok", client_id="")


def guarded_app(auth: KeycloakAuth, *, middleware: bool) -> FastAPI:
    """Routes needing a scope and a role, behind the middleware or by dependencies alone."""
    app = FastAPI()

    @app.get("/scoped", dependencies=[require_scope("orders:admin")])
    async def scoped() -> None: ...

    @app.get("/role", dependencies=[require_realm_role("admin")])
    async def role() -> None: ...

    @app.get("/open")
    async def open_route(caller: Principal) -> str:
        return caller.client_id

    if middleware:
        app.add_middleware(KeycloakAuthMiddleware, auth=auth)
    else:
        auth.install(app)  # the exception handler and app.state
    return app


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "dependencies-only"])
@pytest.mark.parametrize(
    ("path", "headers", "reason", "status"),
    [
        ("/open", [], "missing_token", 401),
        ("/open", [("Authorization", "Bearer")], "malformed_credentials", 400),
        ("/open", [("Authorization", "Bearer a"), ("Authorization", "Bearer b")], "several_headers", 400),
        ("/scoped", "token", "insufficient_scope", 403),
        ("/role", "token", "missing_role", 403),
    ],
)
async def test_asgi_layer_refusals_are_counted_once(
    issuer: TestIssuer, registry: CollectorRegistry, middleware: bool, path: str, headers: Any, reason: str,
    status: int, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="fastapi_kc_m2m")
    headers = list(bearer(issuer.token()).items()) if headers == "token" else headers
    async with metered(issuer, registry) as auth, api_client(guarded_app(auth, middleware=middleware)) as client:
        assert (await client.get(path, headers=headers)).status_code == status
    assert refused(registry, reason) == 1
    assert accepted(registry) == (1 if status == 403 else 0)  # a 403's token was verified, once
    [record] = [r for r in caplog.records if r.getMessage().startswith("refused: ")]
    assert (record.reason, record.path, record.method) == (reason, path, "GET")  # type: ignore[attr-defined]


async def test_dpop_and_certificate_header_problems_are_counted(
    issuer: TestIssuer, registry: CollectorRegistry
) -> None:
    token = issuer.token()
    dpop = {"Authorization": f"DPoP {token}", "DPoP": "a, b"}
    certificate = {**bearer(token), "ssl-client-cert": "not a certificate"}
    overrides = {"dpop": "allowed", "client_cert_header": "ssl-client-cert", "client_cert_format": "pem-urlencoded",
                 "trusted_proxies": ("127.0.0.1/32",)}  # fmt: skip
    async with (
        metered(issuer, registry, **overrides) as auth,
        api_client(KeycloakAuthMiddleware(FastAPI(), auth)) as client,
    ):
        assert (await client.get("/", headers=dpop)).status_code == 400
        assert (await client.get("/", headers=certificate)).status_code == 400
    assert refused(registry, "dpop_several_proofs") == 1
    assert refused(registry, "malformed_certificate") == 1


async def test_a_verifier_refusal_through_the_middleware_counts_once(
    issuer: TestIssuer, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fastapi_kc_m2m")
    expired = issuer.token(exp=issuer.clock() - 60)
    for middleware in (True, False):
        async with metered(issuer, registry) as auth, api_client(guarded_app(auth, middleware=middleware)) as client:
            assert (await client.get("/open", headers=bearer(expired))).status_code == 401
    assert refused(registry, "expired") == 2
    assert len([r for r in caplog.records if r.getMessage().startswith("refused: ")]) == 2


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "dependencies-only"])
async def test_websocket_refusals_are_counted(
    issuer: TestIssuer, registry: CollectorRegistry, serve: Any, middleware: bool
) -> None:
    auth = issuer.auth(observer=MetricsObserver(issuer.settings(), registry=registry))
    app = FastAPI(lifespan=auth.lifespan)
    if middleware:
        app.add_middleware(KeycloakAuthMiddleware, auth=auth)
    else:
        app.add_exception_handler(AuthError, auth_error_handler)

    @app.websocket("/ws", dependencies=[require_scope("orders:admin")])
    async def admin(websocket: WebSocket) -> None: ...

    with serve(app) as host:
        for headers in ({}, bearer(issuer.token())):
            with pytest.raises(InvalidStatus):
                async with connect(f"ws://{host}/ws", additional_headers=headers):
                    pass
    assert (refused(registry, "missing_token"), refused(registry, "insufficient_scope")) == (1, 1)


def test_realms_matched_by_a_pattern_share_one_issuer_label(registry: CollectorRegistry) -> None:
    """KC_M2M_REALMS patterns make issuers an unbounded set: only fixed realms get their own series."""
    settings = KeycloakSettings(server_url="https://kc.test", realms=("ops", "tenant-*"), audience="machine-b")
    observer = MetricsObserver(settings, registry=registry)
    for issuer in ("https://kc.test/realms/ops", *(f"https://kc.test/realms/tenant-{i}" for i in range(50))):
        observer.key_set_failed(issuer, "status 500", serving=False)
    assert value(registry, "kc_m2m_jwks_fetches_total", issuer="https://kc.test/realms/ops", result="error") == 1
    assert value(registry, "kc_m2m_jwks_fetches_total", issuer="", result="error") == 50
