"""Machine A's DPoP (RFC 9449): proofs at the token endpoint and the API, nonces, and the key's rules,
against :class:`tests.helpers.DPoPPeer`, a DPoP token endpoint and API checking every proof."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, RSAKey

from fastapi_kc_m2m._jose.dpop import access_token_hash, jwk_thumbprint
from fastapi_kc_m2m.client import ClientCredentialsAuth, ClientCredentialsError
from fastapi_kc_m2m.client.dpop import DPoPKey
from fastapi_kc_m2m.testing import generate_key, serve_app
from tests.helpers import API_URL, DPoPPeer, proof_claims

pytestmark = pytest.mark.anyio

SECRET = "s3cret-do-not-leak"


@pytest.fixture
def peer() -> DPoPPeer:
    return DPoPPeer()


@pytest.fixture
def served(peer: DPoPPeer) -> Iterator[str]:
    """The peer on loopback: the auth's own client reaches the token endpoint there."""
    with serve_app(peer.app) as base_url:
        yield base_url


def dpop_auth(served: str, **options: Any) -> ClientCredentialsAuth:
    options = {"client_secret": SECRET, "dpop": True} | options
    return ClientCredentialsAuth("machine-a", token_endpoint=f"{served}/token", **options)


def assert_proofs_and_nonce_dances(peer: DPoPPeer, auth: ClientCredentialsAuth, token_url: str, api_url: str) -> None:
    """One 400 nonce demand at the token endpoint (§8), one 401 at the API (§9); every proof fresh."""
    assert peer.asked == {"token": 1, "api": 1}
    [at_token] = peer.accepted["token"]
    assert (at_token["htm"], at_token["htu"], at_token["nonce"]) == ("POST", token_url, "token-nonce-1")
    assert "ath" not in at_token
    [token] = peer.bound
    assert peer.bound[token] == auth.jkt
    at_api = peer.accepted["api"]
    assert [claims["htu"] for claims in at_api] == [api_url] * 3  # without the query
    assert {claims["ath"] for claims in at_api} == {access_token_hash(token)}
    assert {claims["nonce"] for claims in at_api} == {"api-nonce-1"}
    assert len({claims["jti"] for claims in [at_token, *at_api]}) == 4
    assert {presented for presented, _ in peer.presented} == {token}  # Authorization: DPoP <token>


async def test_async_requests_carry_proofs_through_both_nonce_dances(peer: DPoPPeer, served: str) -> None:
    auth = dpop_auth(served)
    transport = httpx.ASGITransport(app=peer.app)
    async with httpx.AsyncClient(auth=auth, transport=transport, base_url=API_URL) as client:
        statuses = [(await client.get("/orders?page=2")).status_code for _ in range(3)]
    await auth.aclose()
    assert statuses == [200] * 3
    assert_proofs_and_nonce_dances(peer, auth, f"{served}/token", f"{API_URL}/orders")


def test_sync_requests_carry_proofs_through_both_nonce_dances(peer: DPoPPeer, served: str) -> None:
    auth = dpop_auth(served)
    with httpx.Client(auth=auth, base_url=served) as client:
        statuses = [client.post("/orders?page=2", json={"n": n}).status_code for n in range(3)]
    auth.close()
    assert statuses == [200] * 3
    assert_proofs_and_nonce_dances(peer, auth, f"{served}/token", f"{served}/orders")


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", None])
def test_a_token_that_is_not_dpop_bound_is_refused(peer: DPoPPeer, served: str, token_type: Any) -> None:
    peer.token_type = token_type
    auth = dpop_auth(served)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()
    auth.close()
    assert raised.value.error == "invalid_response"
    assert str(raised.value).endswith(": the token is not DPoP-bound")


def test_the_token_type_is_matched_without_case(peer: DPoPPeer, served: str) -> None:
    peer.token_type = "dpop"
    auth = dpop_auth(served)
    assert peer.bound[auth.get_token().value] == auth.jkt
    auth.close()


async def test_a_401_retry_presents_the_new_token_with_a_new_proof() -> None:
    peer = DPoPPeer(nonces=False)
    with serve_app(peer.app) as base_url:
        auth = dpop_auth(base_url)
        peer.refused.add((await auth.aget_token()).value)  # e.g. revoked
        async with httpx.AsyncClient(auth=auth, transport=httpx.ASGITransport(app=peer.app)) as client:
            response = await client.post(f"{API_URL}/orders", json={"order": 1})
        await auth.aclose()
    assert response.status_code == 200
    (first, first_proof), (second, second_proof) = peer.presented
    assert first != second
    assert proof_claims(first_proof)["jti"] != proof_claims(second_proof)["jti"]
    assert proof_claims(second_proof)["ath"] == access_token_hash(second)
    assert len(peer.accepted["token"]) == 2  # the refresh had its own proof


async def test_concurrent_requests_share_one_token_and_each_has_its_own_proof() -> None:
    peer = DPoPPeer(nonces=False)
    with serve_app(peer.app) as base_url:
        auth = dpop_auth(base_url)
        async with httpx.AsyncClient(auth=auth, transport=httpx.ASGITransport(app=peer.app)) as client:
            responses = await asyncio.gather(*(client.get(f"{API_URL}/orders") for _ in range(20)))
        await auth.aclose()
    assert {response.status_code for response in responses} == {200}
    assert (len(peer.bound), len(peer.accepted["api"])) == (1, 20)  # a replayed jti would have been refused
    assert len({proof for _, proof in peer.presented}) == 20


def test_a_given_key_binds_the_tokens(peer: DPoPPeer, served: str) -> None:
    key = generate_key("PS256")
    auth = dpop_auth(served, dpop=key)
    token = auth.get_token()
    auth.close()
    assert peer.bound[token.value] == auth.jkt == jwk_thumbprint(key.as_dict(private=False))
    assert str(key.as_dict(private=True)["d"]) not in repr(auth) + repr(auth._dpop)


def test_without_dpop_no_proof_is_sent_and_no_jkt_is_known(peer: DPoPPeer, served: str) -> None:
    peer.token_type = "Bearer"
    auth = dpop_auth(served, dpop=False)
    with pytest.raises(ClientCredentialsError) as raised:
        auth.get_token()  # the peer wants a proof
    auth.close()
    assert (raised.value.error, auth.jkt) == ("invalid_dpop_proof", None)
    assert raised.value.description == "the token endpoint refused the DPoP proof (is the client's clock right?)"


@pytest.mark.parametrize("form", ["key", "pem", "jwk"])
def test_the_dpop_key_must_not_be_the_client_assertion_key(form: str) -> None:
    key = generate_key("ES256")
    given = {"key": key, "pem": key.as_pem(private=True), "jwk": key.as_dict(private=True)}[form]
    with pytest.raises(ValueError, match=r"another key than private_key \(RFC 9449 §11.11\)"):
        ClientCredentialsAuth("machine-a", issuer="http://kc/realms/x", private_key=given, dpop=key)


def _weak_rsa() -> RSAKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused on purpose
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's warning, turned into an error by pytest
        return RSAKey.import_key(private)


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        (lambda: ECKey.import_key(generate_key("ES256").as_dict(private=False)), "give a private"),
        (_weak_rsa, "give a private"),
        (lambda: ECKey.generate_key("secp256k1"), "cannot sign DPoP proofs"),
        (lambda: None, "give True or a joserfc EC, RSA or OKP private key"),
        (lambda: "key.pem", "give True or a joserfc EC, RSA or OKP private key"),
    ],
)
def test_unusable_dpop_keys_fail_at_construction(make_key: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentialsAuth("machine-a", issuer="http://kc/realms/x", client_secret=SECRET, dpop=make_key())


def answer(status: int, url: str, nonce: str | None, **options: Any) -> httpx.Response:
    headers = options.pop("headers", {}) | ({"DPoP-Nonce": nonce} if nonce is not None else {})
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", url), **options)


def nonce_sent(key: DPoPKey, url: str) -> str | None:
    request = httpx.Request("GET", url)
    key.sign(request)
    return proof_claims(request.headers["DPoP"]).get("nonce")


def test_nonces_are_kept_per_origin_and_refreshed_from_any_answer() -> None:
    key = DPoPKey.generate(lambda: 0.0)
    assert key.note(answer(200, "https://a.example/x", "n-1")) is False  # kept, but nothing to retry
    assert nonce_sent(key, "https://a.example:443/y") == "n-1"
    assert [
        nonce_sent(key, url) for url in ("http://a.example/y", "https://a.example:8443/", "https://b.example/")
    ] == [None] * 3
    key.note(answer(204, "https://a.example/z", "n-2"))
    key.note(answer(200, "https://a.example/z", 'not"a nonce'))
    assert nonce_sent(key, "https://a.example/") == "n-2"


def test_the_proof_names_the_url_without_userinfo_query_or_fragment() -> None:
    request = httpx.Request("PUT", "https://user:pw@a.example:8443/orders/7?page=2#top")
    DPoPKey.generate(lambda: 1000.0).sign(request, "at-1")
    claims = proof_claims(request.headers["DPoP"])
    assert (claims["htm"], claims["htu"], claims["iat"]) == ("PUT", "https://a.example:8443/orders/7", 1000)
    assert (claims["ath"], request.headers["Authorization"]) == (access_token_hash("at-1"), "DPoP at-1")


LONG = "DPoP " + " " * 2048 + 'error="use_dpop_nonce"'  # past what is searched


@pytest.mark.parametrize(
    ("response", "token_endpoint", "retry"),
    [
        (answer(401, "https://a/", "n", headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"'}), False, True),
        (
            answer(
                401,
                "https://a/",
                "n",
                headers={"WWW-Authenticate": 'Bearer, DPoP algs="ES256", error="use_dpop_nonce"'},
            ),
            False,
            True,
        ),
        (answer(401, "https://a/", None, headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"'}), False, False),
        (answer(401, "https://a/", "n", headers={"WWW-Authenticate": 'DPoP error="invalid_token"'}), False, False),
        (answer(401, "https://a/", "n", headers={"WWW-Authenticate": LONG}), False, False),
        (answer(401, "https://a/", "n", headers={"WWW-Authenticate": 'Bearer error="use_dpop_nonce"'}), False, False),
        (answer(400, "https://a/", "n", json={"error": "use_dpop_nonce"}), True, True),
        (answer(400, "https://a/", "n", json={"error": "use_dpop_nonce"}), False, False),
        (answer(400, "https://a/", None, json={"error": "use_dpop_nonce"}), True, False),
        (answer(400, "https://a/", "n", json={"error": "invalid_dpop_proof"}), True, False),
        (answer(400, "https://a/", "n", content=b"<html>"), True, False),
    ],
)
def test_only_a_nonce_challenge_with_a_nonce_asks_for_a_retry(
    response: httpx.Response, token_endpoint: bool, retry: bool
) -> None:
    assert DPoPKey.generate(lambda: 0.0).note(response, token_endpoint=token_endpoint) is retry
