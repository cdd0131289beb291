"""DPoP at the verifier (RFC 9449 §6-§11): token shapes, modes, scheme and binding rules, the proof on
every request (cached token or not), server nonces and replay, at the ``authenticate`` boundary."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fastapi_kc_m2m import InvalidToken, KeycloakAuth
from fastapi_kc_m2m._jose import dpop
from fastapi_kc_m2m._jose.dpop import ProofKey, access_token_hash, make_proof
from fastapi_kc_m2m.errors import InvalidDPoPProof, UseDPoPNonce
from fastapi_kc_m2m.server.context import RequestContext
from fastapi_kc_m2m.server.dpop import replay_key
from fastapi_kc_m2m.server.observer import Observer
from fastapi_kc_m2m.server.store import MemoryStore, StoreValue
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, generate_key

pytestmark = pytest.mark.anyio

HTU = "https://api.example/orders"
SECRET = "s" * 32


@pytest.fixture
def key() -> ProofKey:
    return generate_key("ES256")


def bound(issuer: TestIssuer, key: ProofKey, **claims: Any) -> str:
    """A token as Keycloak 26.7 binds it: payload ``typ: DPoP`` and ``cnf`` with ``kc-jkt-type``."""
    return issuer.token(**({"typ": "DPoP", "cnf": {"jkt": key.thumbprint(), "kc-jkt-type": "DPoP"}} | claims))


def presented(token: str, key: ProofKey, now: float, **proof: Any) -> RequestContext:
    """``GET HTU`` with ``Authorization: DPoP token`` and a fresh proof made with ``key``."""
    made = make_proof(key, htm="GET", htu=HTU, iat=now, ath=access_token_hash(token), **proof)
    return RequestContext(token, "DPoP", "GET", HTU, made)


@pytest.fixture
async def nonced(issuer: TestIssuer) -> AsyncIterator[KeycloakAuth]:
    async with issuer.auth(dpop_nonce=True, dpop_nonce_secret=SECRET, dpop_nonce_lifetime=60) as verifier:
        yield verifier


class Recorder(Observer):
    def __init__(self) -> None:
        self.proofs: list[tuple[str, str]] = []

    def dpop_proof(self, outcome: str, reason: str) -> None:
        self.proofs.append((outcome, reason))


class RecordingStore(MemoryStore):
    def __init__(self, clock: FrozenClock) -> None:
        super().__init__(100, clock)
        self.claimed: list[tuple[bytes, StoreValue, float]] = []

    async def put_if_absent(self, key: bytes, value: StoreValue, ttl: float) -> bool:
        self.claimed.append((key, value, ttl))
        return await super().put_if_absent(key, value, ttl)


# ------------------------------------------------------------------ Keycloak's token shapes
async def test_keycloak_26_4_shape_typ_dpop_with_cnf_jkt(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    token = issuer.token(typ="DPoP", cnf={"jkt": key.thumbprint()})
    verification = await auth.authenticate(presented(token, key, issuer.clock()))
    assert verification.jkt == key.thumbprint()


async def test_keycloak_26_7_shape_ignores_unknown_cnf_members(
    issuer: TestIssuer, auth: KeycloakAuth, key: Any
) -> None:
    token = bound(issuer, key, cnf={"jkt": key.thumbprint(), "kc-jkt-type": "DPoP", "x-future": [1]})
    assert (await auth.authenticate(presented(token, key, issuer.clock()))).jkt == key.thumbprint()


async def test_typ_bearer_with_cnf_jkt_is_still_bound(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    token = bound(issuer, key, typ="Bearer")
    assert (await auth.authenticate(presented(token, key, issuer.clock()))).jkt == key.thumbprint()
    with pytest.raises(InvalidToken, match="presented as Bearer"):
        await auth.verify(token)


@pytest.mark.parametrize("scheme", ["Bearer", "DPoP"])
async def test_typ_dpop_counts_only_with_cnf_jkt(issuer: TestIssuer, auth: KeycloakAuth, key: Any, scheme: str) -> None:
    token = issuer.token(typ="DPoP")
    context = presented(token, key, issuer.clock())._replace(scheme=scheme)
    with pytest.raises(InvalidToken, match="not an access token"):
        await auth.authenticate(context)


@pytest.mark.parametrize("cnf", [{"jkt": 5}, {"jkt": ""}, "jkt", None])
async def test_a_cnf_without_a_checkable_jkt_is_refused(issuer: TestIssuer, auth: KeycloakAuth, cnf: Any) -> None:
    with pytest.raises(InvalidToken, match="sender-constrained tokens are not supported"):
        await auth.verify(issuer.token(cnf=cnf))


# ------------------------------------------------------------------ modes
async def test_off_refuses_every_bound_token(issuer: TestIssuer, key: Any) -> None:
    token = bound(issuer, key)
    async with issuer.auth(dpop="off") as auth:
        with pytest.raises(InvalidToken, match="sender-constrained tokens are not supported"):
            await auth.authenticate(presented(token, key, issuer.clock()))
        with pytest.raises(InvalidToken, match="not DPoP-bound"):
            await auth.authenticate(presented(issuer.token(), key, issuer.clock()))
        assert (await auth.verify(issuer.token())).client_id == "machine-a"


async def test_allowed_takes_bearer_tokens_and_bound_tokens_with_proofs(
    issuer: TestIssuer, auth: KeycloakAuth, key: Any
) -> None:
    assert (await auth.authenticate(RequestContext(issuer.token()))).jkt is None
    assert (await auth.authenticate(presented(bound(issuer, key), key, issuer.clock()))).jkt == key.thumbprint()


async def test_required_refuses_plain_bearer_tokens(issuer: TestIssuer, key: Any) -> None:
    async with issuer.auth(dpop="required") as auth:
        with pytest.raises(InvalidToken, match="a DPoP-bound token is required"):
            await auth.verify(issuer.token())
        assert (await auth.authenticate(presented(bound(issuer, key), key, issuer.clock()))).jkt == key.thumbprint()


# ------------------------------------------------------------------ scheme and binding
async def test_a_bound_token_presented_as_bearer_is_refused(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    with pytest.raises(InvalidToken, match="DPoP-bound token presented as Bearer"):
        await auth.verify(bound(issuer, key))


async def test_an_unbound_token_with_the_dpop_scheme_is_refused(
    issuer: TestIssuer, auth: KeycloakAuth, key: Any
) -> None:
    with pytest.raises(InvalidToken, match="token is not DPoP-bound"):
        await auth.authenticate(presented(issuer.token(), key, issuer.clock()))


@pytest.mark.parametrize("missing", ["proof", "method", "public_url"])
async def test_the_dpop_scheme_needs_a_proof_and_the_request(
    issuer: TestIssuer, auth: KeycloakAuth, key: Any, missing: str
) -> None:
    context = presented(bound(issuer, key), key, issuer.clock())._replace(**{missing: None})
    with pytest.raises(InvalidDPoPProof, match="DPoP proof missing"):
        await auth.authenticate(context)


async def test_a_proof_made_with_another_key_is_refused(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    stolen = bound(issuer, key)
    with pytest.raises(InvalidDPoPProof, match="DPoP proof key does not match the token"):
        await auth.authenticate(presented(stolen, generate_key("ES256"), issuer.clock()))


async def test_a_non_ascii_jkt_is_refused_not_crashed_on(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    with pytest.raises(InvalidDPoPProof, match="does not match"):
        await auth.authenticate(presented(bound(issuer, key, cnf={"jkt": "é"}), key, issuer.clock()))


async def test_the_proof_is_checked_against_the_request(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    context = presented(bound(issuer, key), key, issuer.clock())
    with pytest.raises(InvalidDPoPProof, match="proof htm mismatch"):
        await auth.authenticate(context._replace(method="POST"))
    with pytest.raises(InvalidDPoPProof, match="proof htu mismatch"):
        await auth.authenticate(context._replace(public_url="https://api.example/other"))
    with pytest.raises(InvalidDPoPProof, match="proof ath mismatch"):
        await auth.authenticate(presented(bound(issuer, key), key, issuer.clock())._replace(proof=context.proof))


async def test_the_proof_window_and_algorithms_come_from_settings(issuer: TestIssuer, key: Any) -> None:
    token = bound(issuer, key)
    async with issuer.auth(dpop_max_age=10, dpop_max_ahead=0, dpop_algorithms=("ES256",)) as auth:
        with pytest.raises(InvalidDPoPProof, match="outside the window"):
            await auth.authenticate(presented(token, key, issuer.clock() - 11))
        with pytest.raises(InvalidDPoPProof, match="outside the window"):
            await auth.authenticate(presented(token, key, issuer.clock() + 1))
        rsa = generate_key("PS256")
        with pytest.raises(InvalidDPoPProof, match="proof algorithm not allowed"):
            await auth.authenticate(presented(bound(issuer, rsa), rsa, issuer.clock()))


async def test_a_cached_token_still_needs_a_fresh_valid_proof(
    issuer: TestIssuer, clock: FrozenClock, auth: KeycloakAuth, key: Any
) -> None:
    token = bound(issuer, key)
    first = presented(token, key, clock())
    await auth.authenticate(first)
    with pytest.raises(InvalidDPoPProof, match="DPoP proof missing"):
        await auth.authenticate(first._replace(proof=None))
    with pytest.raises(InvalidDPoPProof, match="outside the window"):
        await auth.authenticate(presented(token, key, clock() - 61))
    with pytest.raises(InvalidDPoPProof, match="does not match"):
        await auth.authenticate(presented(token, generate_key("ES256"), clock()))
    assert (await auth.authenticate(presented(token, key, clock()))).jkt == key.thumbprint()


# ------------------------------------------------------------------ replay (§11.1)
async def test_a_proof_is_accepted_once(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    context = presented(bound(issuer, key), key, issuer.clock())
    await auth.authenticate(context)
    with pytest.raises(InvalidDPoPProof, match="DPoP proof replayed"):
        await auth.authenticate(context)


async def test_a_refused_proof_does_not_use_up_its_jti(issuer: TestIssuer, key: Any) -> None:
    token = bound(issuer, key)
    async with issuer.auth(dpop_nonce=True, dpop_nonce_secret=SECRET) as auth:
        now, nonce = issuer.clock(), auth.dpop_nonce()
        with pytest.raises(InvalidDPoPProof, match="does not match"):
            await auth.authenticate(presented(token, generate_key("ES256"), now, jti="j-1", nonce=nonce))
        with pytest.raises(UseDPoPNonce):
            await auth.authenticate(presented(token, key, now, jti="j-1"))
        await auth.authenticate(presented(token, key, now, jti="j-1", nonce=nonce))


async def test_the_replay_store_keeps_a_digest_for_the_proofs_lifetime(
    issuer: TestIssuer, clock: FrozenClock, key: Any
) -> None:
    store = RecordingStore(clock)
    async with issuer.auth(store=store, dpop_max_age=30, dpop_max_ahead=5) as auth:
        await auth.authenticate(presented(bound(issuer, key), key, clock() - 10, jti="j-1"))
    iat = int(clock() - 10)  # proofs carry whole seconds
    assert store.claimed == [(replay_key("j-1", HTU), {}, pytest.approx(iat + 30 - clock() + 5))]
    assert len(replay_key("j-1", HTU)) == 32


async def test_jtis_are_scoped_to_the_htu(issuer: TestIssuer, auth: KeycloakAuth, key: Any) -> None:
    token, now = bound(issuer, key), issuer.clock()
    await auth.authenticate(presented(token, key, now, jti="j-1"))
    other = make_proof(key, htm="GET", htu=HTU + "/1", iat=now, ath=access_token_hash(token), jti="j-1")
    await auth.authenticate(RequestContext(token, "DPoP", "GET", HTU + "/1", other))


# ------------------------------------------------------------------ nonces (§8, §9)
async def test_a_proof_without_the_nonce_is_answered_with_one(
    issuer: TestIssuer, nonced: KeycloakAuth, key: Any
) -> None:
    with pytest.raises(UseDPoPNonce) as refused:
        await nonced.authenticate(presented(bound(issuer, key), key, issuer.clock()))
    assert refused.value.nonce == nonced.dpop_nonce()
    await nonced.authenticate(presented(bound(issuer, key), key, issuer.clock(), nonce=refused.value.nonce))


async def test_nonces_are_a_mac_over_the_time_slot(issuer: TestIssuer, nonced: KeycloakAuth) -> None:
    nonce = nonced.dpop_nonce()
    assert nonce is not None
    raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    assert (len(raw), int.from_bytes(raw[:8], "big")) == (40, int(issuer.clock() // 60))
    async with issuer.auth(dpop_nonce=True, dpop_nonce_secret="t" * 32) as other_secret:
        assert other_secret.dpop_nonce() != nonce


@pytest.mark.parametrize(("slots", "accepted"), [(0, True), (1, True), (2, False)])
async def test_the_current_and_previous_slots_nonces_count(
    issuer: TestIssuer, clock: FrozenClock, nonced: KeycloakAuth, key: Any, slots: int, accepted: bool
) -> None:
    nonce = nonced.dpop_nonce()
    clock.advance(60 * slots)
    context = presented(bound(issuer, key), key, clock(), nonce=nonce)
    if accepted:
        await nonced.authenticate(context)
    else:
        with pytest.raises(UseDPoPNonce) as refused:
            await nonced.authenticate(context)
        assert refused.value.nonce == nonced.dpop_nonce() != nonce


@pytest.mark.parametrize("nonce", ["forged", "é", "A" * 54])
async def test_a_forged_nonce_is_refused(issuer: TestIssuer, nonced: KeycloakAuth, key: Any, nonce: str) -> None:
    with pytest.raises(UseDPoPNonce):
        await nonced.authenticate(presented(bound(issuer, key), key, issuer.clock(), nonce=nonce))


async def test_without_nonces_there_is_no_nonce(auth: KeycloakAuth) -> None:
    assert auth.dpop_nonce() is None


# ------------------------------------------------------------------ proof keys, observer
async def test_a_clients_steady_key_is_imported_once(
    issuer: TestIssuer, auth: KeycloakAuth, key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[object] = []
    real = dpop.verification_key
    monkeypatch.setattr(dpop, "verification_key", lambda jwk, allowed: imported.append(jwk) or real(jwk, allowed))
    token = bound(issuer, key)
    for _ in range(3):
        await auth.authenticate(presented(token, key, issuer.clock()))
    assert len(imported) == 1


async def test_the_observer_hears_each_proofs_outcome(issuer: TestIssuer, key: Any) -> None:
    recorder = Recorder()
    context = presented(bound(issuer, key), key, issuer.clock())
    async with issuer.auth(observer=recorder) as auth:
        await auth.authenticate(context)
        with pytest.raises(InvalidDPoPProof):
            await auth.authenticate(context)
        await auth.verify(issuer.token())
    assert recorder.proofs == [("accepted", "valid proof"), ("refused", "DPoP proof replayed")]


async def test_proof_outcomes_are_logged_at_debug_without_the_proof(
    issuer: TestIssuer, auth: KeycloakAuth, key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    context = presented(bound(issuer, key), key, issuer.clock())
    with caplog.at_level(logging.DEBUG, logger="fastapi_kc_m2m"):
        await auth.authenticate(context)
    assert "DPoP proof accepted: valid proof" in caplog.messages
    assert context.proof is not None
    assert all(part not in caplog.text for part in context.proof.split(".") + context.token.split("."))
