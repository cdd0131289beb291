"""LoggingObserver.token_refused: one DEBUG line per refusal, with the reason code, the issuer when
trusted and the calling client when known, never the token (RFC 6750 §5.3: tokens stay secret)."""

from __future__ import annotations

import logging

import pytest

from fastapi_kc_m2m import AuthError, KeycloakAuth
from fastapi_kc_m2m.testing import TestIssuer

pytestmark = pytest.mark.anyio

UNTRUSTED = "http://keycloak.test/realms/other"


async def refusal_lines(auth: KeycloakAuth, token: str, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records logged while ``auth`` refuses ``token``; none of them may hold any part of it."""
    caplog.clear()
    with pytest.raises(AuthError):
        await auth.verify(token)
    for part in (token, *token.split(".")):
        assert not part or part not in caplog.text
    return [record for record in caplog.records if record.getMessage().startswith("refused: ")]


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="fastapi_kc_m2m")
    return caplog


async def test_each_refusal_is_one_debug_line_without_the_token(
    issuer: TestIssuer, auth: KeycloakAuth, debug_log: pytest.LogCaptureFixture
) -> None:
    assert await auth.prefetch()
    tokens = {**issuer.bad_tokens(), "garbage": "not-a-jwt", "untrusted": issuer.token(iss=UNTRUSTED)}
    for name, token in tokens.items():
        [record] = await refusal_lines(auth, token, debug_log)
        assert record.levelno == logging.DEBUG, name
        assert UNTRUSTED not in record.getMessage(), name


async def test_the_line_names_reason_trusted_issuer_and_client(
    issuer: TestIssuer, auth: KeycloakAuth, debug_log: pytest.LogCaptureFixture
) -> None:
    now = int(issuer.clock())
    [expired] = await refusal_lines(auth, issuer.token(exp=now - 3600, iat=now - 3900), debug_log)
    assert expired.getMessage() == f"refused: expired, issuer {issuer.issuer}, client machine-a"
    [untrusted] = await refusal_lines(auth, issuer.token(iss=UNTRUSTED, client_id="machine-x"), debug_log)
    assert untrusted.getMessage() == "refused: untrusted_issuer, issuer None, client machine-x"
    [malformed] = await refusal_lines(auth, "junk.junk.junk", debug_log)
    assert malformed.getMessage() == "refused: malformed_token, issuer None, client None"
