import pytest
from pydantic import ValidationError

from fastapi_kc_m2m import KeycloakSettings

BASE = {"server_url": "http://kc:8080/", "realm": "demo", "audience": "machine-b"}


def test_issuer_is_derived_from_server_url_and_realm() -> None:
    settings = KeycloakSettings(**BASE)
    assert settings.trusted_issuers == ("http://kc:8080/realms/demo",)


def test_several_issuers_are_trusted_and_deduplicated() -> None:
    settings = KeycloakSettings(**BASE, issuers=("http://kc:8080/realms/other", "http://kc:8080/realms/demo"))
    assert settings.trusted_issuers == ("http://kc:8080/realms/demo", "http://kc:8080/realms/other")


def test_defaults_follow_the_reference() -> None:
    settings = KeycloakSettings(**BASE)
    assert settings.algorithms == ("RS256",)
    assert (settings.clock_skew, settings.max_token_bytes) == (60, 16384)
    assert (settings.jwks_ttl, settings.jwks_refresh_ahead, settings.jwks_refetch_cooldown) == (300, 30, 30)
    assert settings.jwks_max_stale == 3600
    assert (settings.http_connect_timeout, settings.http_timeout, settings.http_max_body) == (2, 5, 65536)
    assert (settings.token_cache_size, settings.token_cache_ttl) == (10000, 300)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_ISSUERS", "http://a/realms/x, http://b/realms/y")
    monkeypatch.setenv("KC_M2M_AUDIENCE", "orders")
    monkeypatch.setenv("KC_M2M_ALGORITHMS", "RS256,ES256")
    monkeypatch.setenv("KC_M2M_ALLOWED_CLIENTS", "machine-a")
    monkeypatch.setenv("KC_M2M_JWKS_URIS", '{"http://a/realms/x": "http://backchannel/certs"}')
    settings = KeycloakSettings()  # type: ignore[call-arg]
    assert settings.trusted_issuers == ("http://a/realms/x", "http://b/realms/y")
    assert settings.algorithms == ("RS256", "ES256")
    assert settings.allowed_clients == ("machine-a",)
    assert settings.jwks_uris == {"http://a/realms/x": "http://backchannel/certs"}


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"audience": ""}, "KC_M2M_AUDIENCE"),
        ({"audience": "account"}, "account console"),
        ({"audience": 'api"x'}, "must not contain quotes"),
        ({"server_url": None, "realm": None}, "no issuer is trusted"),
        ({"realm": None, "issuers": ("http://kc/realms/x",)}, "go together"),
        ({"server_url": "ftp://kc"}, "http(s) URL"),
        ({"issuers": ("kc/realms/x",)}, "http(s) URL"),
        ({"algorithms": ("HS256",)}, "not allowed: ['HS256']"),
        ({"algorithms": ("none",)}, "not allowed: ['none']"),
        ({"algorithms": ()}, "non-empty subset"),
        ({"jwks_uris": {"http://elsewhere/realms/x": "http://kc/certs"}}, "not trusted"),
        ({"jwks_refresh_ahead": 300}, "shorter than KC_M2M_JWKS_TTL"),
        ({"jwks_max_stale": 10}, "at least KC_M2M_JWKS_TTL"),
        ({"clock_skew": -1}, "clock_skew"),
        ({"max_token_bytes": 10}, "max_token_bytes"),
    ],
)
def test_invalid_settings_say_what_to_fix(overrides: dict[str, object], hint: str) -> None:
    with pytest.raises(ValidationError, match=hint.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        KeycloakSettings(**(BASE | overrides))


def test_audience_is_required_with_a_helpful_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KC_M2M_AUDIENCE", raising=False)
    with pytest.raises(ValidationError, match="set KC_M2M_AUDIENCE"):
        KeycloakSettings(server_url="http://kc", realm="demo")  # type: ignore[call-arg]


def test_settings_are_immutable() -> None:
    settings = KeycloakSettings(**BASE)
    with pytest.raises(ValidationError):
        settings.audience = "other"  # type: ignore[misc]
