"""The test issuer as a user's tests set it up: optional scopes, registered roles, serving on loopback,
DPoP-bound tokens (RFC 9449) and proofs a resource server must refuse, mutual TLS (RFC 8705)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from fastapi_kc_m2m._jose.algorithms import SUPPORTED_ALGORITHMS
from fastapi_kc_m2m._jose.dpop import ProofError, ProofKey, access_token_hash, check_proof, jwk_thumbprint, make_proof
from fastapi_kc_m2m._jose.jws import parse
from fastapi_kc_m2m._jose.x5t import certificate_thumbprint
from fastapi_kc_m2m.cli import issue_certificate
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, generate_key
from fastapi_kc_m2m.testing.dpop import Refusal
from tests.helpers import make_pki

pytestmark = pytest.mark.anyio

SECRET = "billing-s3cret"


async def grant(issuer: TestIssuer, *proofs: str, **form: str) -> httpx.Response:
    """A client-credentials request of ``billing`` at the issuer's token endpoint, in-process, with one
    ``DPoP`` header per proof."""
    async with httpx.AsyncClient(transport=issuer.transport) as client:
        return await client.post(
            f"{issuer.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": "billing", "client_secret": SECRET, **form},
            headers=[("DPoP", proof) for proof in proofs],
        )


async def granted_claims(issuer: TestIssuer, **form: str) -> Any:
    """The verified claims of the token the issuer grants ``billing``."""
    response = await grant(issuer, **form)
    assert response.status_code == 200, response.text
    async with issuer.auth() as auth:
        return await auth.verify(response.json()["access_token"])


async def test_a_scope_is_granted_once_it_is_optional() -> None:
    refusing, granting = TestIssuer(), TestIssuer(optional_scopes={"orders:read"})
    for issuer in (refusing, granting):
        issuer.register_client("billing", secret=SECRET)
    refused = await grant(refusing, scope="orders:read")
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_scope"})
    principal = await granted_claims(granting, scope="orders:read openid")
    assert principal.scopes == {"orders:read", "openid", "profile", "email"}


async def test_registered_roles_ride_on_granted_tokens() -> None:
    issuer = TestIssuer()
    issuer.register_client("billing", secret=SECRET, realm_roles=["auditor"], client_roles={"machine-b": ["writer"]})
    principal = await granted_claims(issuer)
    assert principal.client_id == "billing"
    assert "auditor" in principal.realm_roles
    assert principal.roles_of("machine-b") == {"writer"}
    assert principal.roles_of("account") == {"manage-account", "view-profile"}


async def test_a_client_registered_without_roles_gets_none() -> None:
    issuer = TestIssuer()
    issuer.register_client("billing", secret=SECRET)
    principal = await granted_claims(issuer)
    assert principal.roles_of("machine-b") == frozenset()
    assert principal.realm_roles == {"offline_access", "uma_authorization", "default-roles-test"}


async def test_served_issuer_takes_constructor_options() -> None:
    with TestIssuer.serving(optional_scopes={"orders:read"}) as issuer:
        issuer.register_client("billing", secret=SECRET, client_roles={"machine-b": ["writer"]})
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{issuer.issuer}/protocol/openid-connect/token",
                data={"grant_type": "client_credentials", "scope": "orders:read"},
                auth=("billing", SECRET),
            )
        assert response.status_code == 200
        async with issuer.auth() as auth:
            principal = await auth.verify(response.json()["access_token"])
        assert principal.roles_of("machine-b") == {"writer"}


def test_serving_without_uvicorn_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the "testing" extra were not installed
    serving = TestIssuer.serving()
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fastapi_kc_m2m\[testing\]'") as error:
        serving.__enter__()
    assert error.value.name == "uvicorn"
    assert error.value.__cause__ is None


# ------------------------------------------------------------------------- DPoP (RFC 9449)
KEY = generate_key("ES256")
JKT = jwk_thumbprint(KEY.as_dict(private=False))
RESOURCE = "https://api.test/orders"


@pytest.fixture
def dpop_issuer() -> TestIssuer:
    issuer = TestIssuer(clock=FrozenClock(1_800_000_000))  # whole seconds: proofs' iat is an integer
    issuer.register_client("billing", secret=SECRET)
    return issuer


def token_proof(issuer: TestIssuer, key: ProofKey = KEY, **changes: Any) -> str:
    """A proof for the issuer's token endpoint (RFC 9449 §5: POST, no ``ath``), with ``changes``."""
    fields: dict[str, Any] = {"htm": "POST", "htu": issuer.dpop.htu, "iat": issuer.clock()}
    return make_proof(key, **fields | changes)


async def test_a_token_request_with_a_proof_gets_a_token_bound_in_keycloak_26_7_shape(dpop_issuer: TestIssuer) -> None:
    response = await grant(dpop_issuer, token_proof(dpop_issuer))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    payload = parse(response.json()["access_token"]).payload
    assert payload["typ"] == "DPoP"
    assert payload["cnf"] == {"jkt": JKT, "kc-jkt-type": "DPoP"}


async def test_a_client_requiring_dpop_bound_tokens_needs_a_proof(clock: FrozenClock) -> None:
    issuer = TestIssuer(clock=clock)
    issuer.register_client("billing", secret=SECRET, dpop_bound=True)
    refused = await grant(issuer)
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_request"})
    assert (await grant(issuer, token_proof(issuer))).json()["token_type"] == "DPoP"
    assert issuer.discovery_document()["dpop_signing_alg_values_supported"] == sorted(SUPPORTED_ALGORITHMS)


async def test_a_token_request_without_a_proof_stays_bearer(dpop_issuer: TestIssuer) -> None:
    dpop_issuer.require_dpop_nonce()  # nonces are for proofs only
    response = await grant(dpop_issuer)
    assert response.json()["token_type"] == "Bearer"
    payload = parse(response.json()["access_token"]).payload
    assert (payload["typ"], "cnf" in payload) == ("Bearer", False)


@pytest.mark.parametrize(
    "changes",
    [
        {"htm": "GET"},
        {"htu": RESOURCE},
        {"iat_offset": -26},
        {"iat_offset": 16},
        {"algorithm": "ES384"},
    ],
    ids=["wrong_htm", "wrong_htu", "older_than_25s", "more_than_15s_ahead", "alg_not_fitting_key"],
)
async def test_an_invalid_proof_is_refused_with_invalid_dpop_proof(
    dpop_issuer: TestIssuer, changes: dict[str, Any]
) -> None:
    offset = changes.pop("iat_offset", 0)
    response = await grant(dpop_issuer, token_proof(dpop_issuer, iat=dpop_issuer.clock() + offset, **changes))
    assert (response.status_code, response.json()) == (400, {"error": "invalid_dpop_proof"})
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("offset", [-25, 15])
async def test_keycloaks_window_edges_are_accepted(dpop_issuer: TestIssuer, offset: int) -> None:
    response = await grant(dpop_issuer, token_proof(dpop_issuer, iat=dpop_issuer.clock() + offset))
    assert response.status_code == 200, response.text


async def test_a_replayed_proof_is_refused(dpop_issuer: TestIssuer) -> None:
    proof = token_proof(dpop_issuer)
    assert (await grant(dpop_issuer, proof)).status_code == 200
    replayed = await grant(dpop_issuer, proof)
    assert (replayed.status_code, replayed.json()) == (400, {"error": "invalid_dpop_proof"})
    assert (await grant(dpop_issuer, token_proof(dpop_issuer))).status_code == 200  # a fresh jti is fine


async def test_an_invalid_proof_does_not_burn_its_jti(dpop_issuer: TestIssuer) -> None:
    assert (await grant(dpop_issuer, token_proof(dpop_issuer, htm="GET", jti="j-1"))).status_code == 400
    assert (await grant(dpop_issuer, token_proof(dpop_issuer, jti="j-1"))).status_code == 200


async def test_two_proofs_are_refused(dpop_issuer: TestIssuer) -> None:
    response = await grant(dpop_issuer, token_proof(dpop_issuer), token_proof(dpop_issuer))
    assert (response.status_code, response.json()) == (400, {"error": "invalid_dpop_proof"})


@pytest.mark.parametrize("demand", ["constructor", "method"])
async def test_nonces_are_demanded_until_a_proof_carries_one(clock: FrozenClock, demand: str) -> None:
    issuer = TestIssuer(clock=clock, dpop_nonce=demand == "constructor")
    issuer.register_client("billing", secret=SECRET)
    if demand == "method":
        issuer.require_dpop_nonce()
    for nonce in (None, "stale-nonce"):
        asked = await grant(issuer, token_proof(issuer, nonce=nonce))
        assert (asked.status_code, asked.json()) == (400, {"error": "use_dpop_nonce"})
        assert asked.headers["dpop-nonce"] == issuer.dpop.nonce
    response = await grant(issuer, token_proof(issuer, nonce=asked.headers["dpop-nonce"]))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"


async def test_token_with_dpop_key_is_bound_to_it(issuer: TestIssuer) -> None:
    payload = parse(issuer.token(dpop_key=KEY, scope="orders:read")).payload
    assert (payload["typ"], payload["cnf"], payload["scope"]) == (
        "DPoP",
        {"jkt": JKT, "kc-jkt-type": "DPoP"},
        "orders:read",
    )
    assert parse(issuer.token(dpop_key=KEY, cnf={"jkt": JKT})).payload["cnf"] == {"jkt": JKT}  # Keycloak 26.4


@pytest.mark.parametrize("lightweight", [False, True])
def test_introspection_of_a_bound_token_keeps_cnf_and_says_dpop(issuer: TestIssuer, lightweight: bool) -> None:
    bound = issuer.introspection_answer(issuer.token(dpop_key=KEY, lightweight=lightweight), "machine-b")
    assert (bound["active"], bound["token_type"], bound["cnf"]["jkt"]) == (True, "DPoP", JKT)
    assert issuer.introspection_answer(issuer.token(), "machine-b")["token_type"] == "Bearer"


BAD_PROOFS = {
    "wrong_typ": "not a DPoP proof",
    "alg_none": "malformed proof|proof algorithm not allowed",  # an empty signature: malformed already
    "hs256": "proof algorithm not allowed",
    "private_key_in_jwk": "proof key must be a public JWK|malformed proof",  # RSA: the header is too large already
    "bad_signature": "invalid proof signature",
    "wrong_htm": "proof htm mismatch",
    "wrong_htu": "proof htu mismatch",
    "stale_iat": "proof iat outside the window",
    "future_iat": "proof iat outside the window",
    "wrong_ath": "proof ath mismatch",
    "missing_ath": "proof ath mismatch",
    "missing_jti": "proof jti missing",
}


def resource_check(issuer: TestIssuer, proof: str, token: str) -> str:
    """What a resource server with the default DPoP settings learns from ``proof``: the key's thumbprint."""
    return check_proof(
        proof,
        algorithms=SUPPORTED_ALGORITHMS,
        htm="GET",
        htu=RESOURCE,
        now=issuer.clock(),
        max_age=60,
        max_ahead=15,
        ath=access_token_hash(token),
    ).jkt


@pytest.mark.parametrize("algorithm", ["ES256", "PS256", "EdDSA"])
def test_bad_proofs_fail_each_for_its_reason(issuer: TestIssuer, algorithm: str) -> None:
    key = KEY if algorithm == "ES256" else generate_key(algorithm)
    token = issuer.token(dpop_key=key)
    proofs = issuer.bad_proofs(key, token, "GET", RESOURCE, nonce="n-1")
    assert proofs.keys() == BAD_PROOFS.keys() | {"other_key"}
    for reason, phrase in BAD_PROOFS.items():
        with pytest.raises(ProofError, match=f"^({phrase})$"):
            resource_check(issuer, proofs[reason], token)
    # a proof valid in itself, by a key the token is not bound to (RFC 9449 §6.1)
    assert resource_check(issuer, proofs["other_key"], token) != parse(token).payload["cnf"]["jkt"]
    assert parse(proofs["other_key"]).header["alg"] == parse(proofs["wrong_htm"]).header["alg"]
    assert parse(proofs["wrong_htm"]).payload["nonce"] == "n-1"
    good = make_proof(key, htm="GET", htu=RESOURCE, iat=issuer.clock(), ath=parse(proofs["wrong_htm"]).payload["ath"])
    assert resource_check(issuer, good, token) == parse(token).payload["cnf"]["jkt"]


# ------------------------------------------------------------------ mutual TLS (RFC 8705)
def test_only_an_issuer_served_with_tls_advertises_mtls_aliases(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with TestIssuer.serving() as plain:
        assert "mtls_endpoint_aliases" not in plain.discovery_document()
    with TestIssuer.serving(tls=pki.server_files) as issuer:
        answer = httpx.get(f"{issuer.issuer}/.well-known/openid-configuration", verify=pki.context(pki.client))
    assert issuer.issuer.startswith("https://127.0.0.1:")
    assert answer.json()["mtls_endpoint_aliases"] == {
        "token_endpoint": f"{issuer.issuer}/protocol/openid-connect/mtls/token"
    }


def test_a_certificate_authenticates_only_the_client_of_its_subject(issuer: TestIssuer) -> None:
    issuer.register_client("machine-a", tls_subject="CN=machine-a")
    issuer.register_client("machine-z", tls_subject="CN=machine-z")
    certificate = make_certificate("machine-a")
    form = {"grant_type": "client_credentials", "client_id": "machine-a"}
    own = issuer._grant(None, form, (), certificate)
    assert isinstance(own, dict)
    assert parse(own["access_token"]).payload["azp"] == "machine-a"
    assert issuer._grant(None, form | {"client_id": "machine-z"}, (), certificate) == Refusal("invalid_client", 401)
    assert issuer._grant(None, form, (), None) == Refusal("invalid_client", 401)  # no certificate, no credential


def test_a_dpop_token_over_mutual_tls_is_bound_to_both(issuer: TestIssuer) -> None:
    issuer.register_client("billing", secret="s")
    certificate = make_certificate("billing")
    form = {"grant_type": "client_credentials", "client_id": "billing", "client_secret": "s"}
    answer = issuer._grant(None, form, [token_proof(issuer)], certificate)
    assert isinstance(answer, dict)
    cnf = parse(answer["access_token"]).payload["cnf"]
    assert cnf["jkt"] == JKT
    assert cnf["x5t#S256"] == certificate_thumbprint(certificate.public_bytes(Encoding.DER))


def make_certificate(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return issue_certificate(key.public_key(), name, signer=key, days=1)
