"""Property-based fuzzing of a protected app at the ASGI level: the ``Authorization`` header and the token.

A FastAPI app behind :class:`KeycloakAuthMiddleware` (one route for any caller, one requiring a scope)
is called directly with an ASGI scope, its key cache warm, its clock frozen. Whatever the header holds
— arbitrary bytes, odd schemes, edited, spliced or re-encoded genuine tokens, several headers — no
exception may escape, the status is 400 or 401, and 200 or 403 only for the exact genuine tokens. Every
refusal carries a well-formed RFC 6750 challenge that agrees with its body, and no part of the token.

The profile (tests/conftest.py) sets the number of examples: ``quick`` in every run, ``fuzz`` on demand::

    HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import event, given
from hypothesis import strategies as st

from fastapi_kc_m2m import KeycloakAuthMiddleware, Principal, require_scope
from fastapi_kc_m2m.testing import FrozenClock, TestIssuer, b64url

SCOPE = "orders:read"
REALM = "machine-b"
PATHS = ("/open", "/scoped")
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TOKEN_CHARACTERS = B64URL + ".=+/~ \t,"
CHALLENGE = re.compile(  # Bearer (RFC 6750 §3) or DPoP (RFC 9449 §7.1), both when no credentials came
    rf'(?:Bearer realm="{REALM}"|DPoP)'
    r'(?:,? error="(?P<error>invalid_request|invalid_token|insufficient_scope|invalid_dpop_proof)"'
    r', error_description="(?P<description>[\x20\x21\x23-\x5b\x5d-\x7e]+)"'
    r'(?:, scope="(?P<scope>[^"\\]+)")?)?'
    r'(?:, (?:DPoP )?algs="[A-Za-z0-9 ]+")?'
)
ERROR_OF_STATUS = {
    400: {"invalid_request"},
    401: {None, "invalid_token", "invalid_dpop_proof"},
    403: {"insufficient_scope"},
}
LEAKABLE = re.compile(rb"[A-Za-z0-9_-]{16,}")  # runs of token characters long enough to be recognisable

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Target:
    """The protected app, its warm verifier and genuine tokens, driven on one event loop."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.issuer = TestIssuer(clock=FrozenClock())
        self.auth = self.issuer.auth()
        self.scoped = self.issuer.token(scope=f"{SCOPE} profile email")
        self.plain = self.issuer.token()
        #: The status each genuine token gets on each route; any other token must be refused.
        self.expected = {
            "/open": {self.scoped: 200, self.plain: 200},
            "/scoped": {self.scoped: 200, self.plain: 403},
        }
        self.app = FastAPI()
        self.app.add_middleware(KeycloakAuthMiddleware, auth=self.auth)

        @self.app.get("/open")
        async def anyone(caller: Principal) -> dict[str, str]:
            return {"client": caller.client_id}

        @self.app.get("/scoped", dependencies=[require_scope(SCOPE)])
        async def scoped(caller: Principal) -> dict[str, str]:
            return {"client": caller.client_id}

    def call(self, path: str, headers: Headers) -> Response:
        return self.runner.run(self._call(path, headers))

    async def _call(self, path: str, headers: Headers) -> Response:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"api.test"), *headers],
            "client": ("127.0.0.1", 40000),
            "server": ("api.test", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)  # an escaping exception fails the test
        start = next(message for message in sent if message["type"] == "http.response.start")
        body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
        return Response(start["status"], dict(start["headers"]), body)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with asyncio.Runner() as runner:
        built = Target(runner)
        assert runner.run(built.auth.prefetch())  # warm: no fuzz example may ever see a 503
        yield built
        runner.run(built.auth.aclose())


# ---------------------------------------------------------------------------- the property


def presented_token(value: bytes) -> str | None:
    """The token a Bearer credential carries (scheme case-insensitive, any number of spaces), else None."""
    scheme, _, token = value.partition(b" ")
    return token.lstrip(b" ").decode("latin-1") if scheme.lower() == b"bearer" else None


def check(target: Target, path: str, headers: Headers) -> Response:
    response = target.call(path, headers)
    values = [value for name, value in headers if name == b"authorization"]
    genuine = target.expected[path].get(presented_token(values[0])) if len(values) == 1 else None
    if genuine is not None:
        assert response.status == genuine
    else:
        assert response.status in (400, 401)
    if len(values) > 1:
        assert response.status == 400
    if response.status == 200:
        assert json.loads(response.body) == {"client": "machine-a"}
        return response

    challenge = CHALLENGE.fullmatch(response.headers[b"www-authenticate"].decode("latin-1"))
    assert challenge is not None, response.headers[b"www-authenticate"]
    error, description = challenge["error"], challenge["description"]
    assert error in ERROR_OF_STATUS[response.status]
    assert (challenge["scope"] == SCOPE) == (error == "insufficient_scope")
    body = json.loads(response.body)
    if error is None:  # no credentials, or another scheme: no error information (RFC 6750 §3.1)
        assert body == {}
        return response
    assert body == {"error": error, "error_description": description}
    # The body is now known to hold only the error code and the description: the description must not
    # carry any recognisable part of what was sent.
    for value in values:
        for run in LEAKABLE.findall(value):
            assert run.decode() not in body["error_description"]
    return response


def fuzz(target: Target, path: str, headers: Headers) -> None:
    """:func:`check`, recording the outcome for ``--hypothesis-show-statistics`` (how far examples got)."""
    response = check(target, path, headers)
    event(f"{response.status} {json.loads(response.body).get('error_description', '')}")


def bearer(token: str) -> Headers:
    return [(b"authorization", f"Bearer {token}".encode("latin-1"))]


# ---------------------------------------------------------------------------- strategies

latin1_text = st.text(st.characters(max_codepoint=0xFF)).map(lambda text: text.encode("latin-1"))
schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Token", "DPoP", "JWT", "", "Bearer:"])
separators = st.sampled_from([" ", "  ", "\t", "", ",", " ,", ": ", "\u00a0"])
token_text = st.text(st.sampled_from(TOKEN_CHARACTERS)) | st.text(st.characters(max_codepoint=0xFF))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
DELETE = object()


def header_values(target: Target) -> dict[str, st.SearchStrategy[Any]]:
    kid = target.issuer.signing_key.kid
    return {
        "alg": st.sampled_from(["RS256", "RS384", "PS256", "ES256", "HS256", "none", "rs256", "EdDSA"]),
        "kid": st.sampled_from([kid, kid + "x", "", "..", "a" * 300, "x5c"]),
        "typ": st.sampled_from(["JWT", "at+jwt", "application/at+jwt", "ID", "jwt", ""]),
        "crit": st.just(["exp"]),
        "jku": st.just("http://attacker.test/jwks"),
        "jwk": st.just({"kty": "oct", "k": "c2VjcmV0"}),
        "b64": st.just(False),
        "cty": st.just("JWT"),
    }


def claim_values(target: Target) -> dict[str, st.SearchStrategy[Any]]:
    now = int(target.issuer.clock())
    issuer = target.issuer.issuer
    times = st.sampled_from([now + 300, now - 3600, now + 3600, 0, -1, 2**53, 10**400, 1e308]) | st.integers()
    return {
        "exp": times,
        "nbf": times,
        "iat": times,
        "aud": st.sampled_from([REALM, [REALM, "account"], "account", [], [REALM, 1], REALM.upper()]),
        "iss": st.sampled_from([issuer, issuer + "/", issuer.upper(), "http://attacker.test/realms/test"]),
        "azp": st.text(max_size=10),
        "typ": st.sampled_from(["Bearer", "bearer", "ID", "Refresh", "Logout", ""]),
        "scope": st.sampled_from([SCOPE, f"{SCOPE} admin", "ORDERS:READ", ""]) | st.lists(st.text(max_size=10)),
        "cnf": st.just({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        "realm_access": json_values,
    }


def decoded(segment: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return parsed


@st.composite
def reencoded(draw: st.DrawFn, target: Target) -> str:
    """A genuine token whose header and payload JSON are changed and re-encoded as valid base64url,
    with its signature kept, dropped, replaced or taken from the other genuine token."""
    token = draw(st.sampled_from([target.scoped, target.plain]))
    header_b64, payload_b64, signature = token.split(".")
    segments = []
    for members, known in ((decoded(header_b64), header_values(target)), (decoded(payload_b64), claim_values(target))):
        names = st.sampled_from(sorted(known)) | st.text(max_size=8)
        for name in draw(st.lists(names, min_size=1, max_size=4)):
            value = draw(st.just(DELETE) | known.get(name, json_values) | json_values)
            if value is DELETE:
                members.pop(name, None)
            else:
                members[name] = value
        separators_ = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", " : ")]))
        segments.append(b64url(json.dumps(members, separators=separators_).encode()))
    other = target.plain if token == target.scoped else target.scoped
    signature = draw(
        st.sampled_from([signature, "", other.rsplit(".", 1)[1], b64url(b"\0" * 256)])
        | st.binary(max_size=300).map(b64url)
    )
    return ".".join([*segments, signature])


@st.composite
def edited(draw: st.DrawFn, target: Target) -> str:
    """A genuine token with a few characters flipped, inserted or deleted."""
    characters = list(draw(st.sampled_from([target.scoped, target.plain])))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "flip", "insert", "delete"]))
        at = draw(st.integers(0, len(characters) - (operation != "insert")))
        if operation == "delete":
            del characters[at]
            continue
        character = draw(
            st.sampled_from(B64URL) | st.sampled_from(TOKEN_CHARACTERS) | st.characters(max_codepoint=0xFF)
        )
        if operation == "flip":
            characters[at] = character
        else:
            characters.insert(at, character)
    return "".join(characters)


def spliced(target: Target) -> st.SearchStrategy[str]:
    """Segments of the genuine tokens rearranged: swapped, repeated, dropped, mixed between tokens."""
    pool = [*target.scoped.split("."), *target.plain.split("."), ""]
    return st.lists(st.sampled_from(pool), min_size=1, max_size=5).map(".".join)


# ---------------------------------------------------------------------------- the tests


@given(path=st.sampled_from(PATHS), value=st.binary(max_size=200) | latin1_text)
def test_arbitrary_header_bytes(target: Target, path: str, value: bytes) -> None:
    fuzz(target, path, [(b"authorization", value)])


@given(path=st.sampled_from(PATHS), scheme=schemes, separator=separators, token=token_text)
def test_schemes_and_arbitrary_tokens(target: Target, path: str, scheme: str, separator: str, token: str) -> None:
    fuzz(target, path, [(b"authorization", f"{scheme}{separator}{token}".encode("latin-1"))])


@given(data=st.data(), path=st.sampled_from(PATHS))
def test_edited_genuine_tokens(target: Target, data: st.DataObject, path: str) -> None:
    fuzz(target, path, bearer(data.draw(edited(target))))


@given(data=st.data(), path=st.sampled_from(PATHS))
def test_spliced_genuine_tokens(target: Target, data: st.DataObject, path: str) -> None:
    fuzz(target, path, bearer(data.draw(spliced(target))))


@given(data=st.data(), path=st.sampled_from(PATHS))
def test_reencoded_header_and_claims(target: Target, data: st.DataObject, path: str) -> None:
    fuzz(target, path, bearer(data.draw(reencoded(target))))


@given(data=st.data(), path=st.sampled_from(PATHS), scheme=schemes, separator=separators)
def test_several_and_misplaced_headers(
    target: Target, data: st.DataObject, path: str, scheme: str, separator: str
) -> None:
    genuine = st.sampled_from([target.scoped, target.plain])
    value = st.builds(lambda token: f"{scheme}{separator}{token}".encode("latin-1"), genuine | token_text)
    names = st.sampled_from([b"authorization", b"x-authorization", b"proxy-authorization", b"cookie"])
    headers = data.draw(st.lists(st.tuples(names, value | latin1_text), max_size=4))
    fuzz(target, path, headers)


def test_the_genuine_tokens_pass(target: Target) -> None:
    """The property's positive half, outside any strategy: each genuine token gets its expected status."""
    for path, expected in target.expected.items():
        for token, status in expected.items():
            assert check(target, path, bearer(token)).status == status
