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


def test_introspection_defaults() -> None:
    settings = KeycloakSettings(**BASE)
    assert (settings.introspection, settings.lightweight_tokens, settings.introspects) == ("off", False, False)
    assert (settings.client_auth_method, settings.client_assertion_alg) == ("client_secret_basic", "RS256")
    assert (settings.introspection_cache_ttl, settings.introspection_cache_size) == (30, 10000)
    assert settings.introspection_timeout == 3
    assert settings.introspecting_client_id == "machine-b"
    assert KeycloakSettings(**BASE, client_id="gateway").introspecting_client_id == "gateway"


def test_introspection_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_INTROSPECTION", "per_route")
    monkeypatch.setenv("KC_M2M_CLIENT_AUTH_METHOD", "client_secret_post")
    monkeypatch.setenv("KC_M2M_CLIENT_SECRET", "from-env")
    monkeypatch.setenv("KC_M2M_INTROSPECTION_ENDPOINTS", '{"http://kc:8080/realms/demo": "http://back/introspect"}')
    monkeypatch.setenv("KC_M2M_LIGHTWEIGHT_TOKENS", "true")
    settings = KeycloakSettings(**BASE)
    assert settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)
    assert settings.introspection_endpoints == {"http://kc:8080/realms/demo": "http://back/introspect"}
    assert settings.introspects
    assert settings.lightweight_tokens


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        (
            {"introspection": "always"},
            "KC_M2M_INTROSPECTION with KC_M2M_CLIENT_AUTH_METHOD=client_secret_basic needs KC_M2M_CLIENT_SECRET",
        ),
        ({"introspection": "per_route", "client_secret": ""}, "needs KC_M2M_CLIENT_SECRET"),
        ({"lightweight_tokens": True}, "KC_M2M_LIGHTWEIGHT_TOKENS with"),
        ({"introspection": "always", "client_auth_method": "private_key_jwt"}, "needs KC_M2M_CLIENT_PRIVATE_KEY"),
        (
            {"introspection": "always", "client_secret": "s", "client_private_key": "/k.pem"},
            "uses KC_M2M_CLIENT_SECRET only",
        ),
        (
            {
                "introspection": "always",
                "client_auth_method": "private_key_jwt",
                "client_private_key": "/k.pem",
                "client_secret": "s",
            },
            "uses KC_M2M_CLIENT_PRIVATE_KEY only",
        ),
        ({"introspection": "sometimes"}, "introspection"),
        ({"client_auth_method": "client_secret_jwt"}, "client_auth_method"),
        ({"client_assertion_alg": "HS256"}, "KC_M2M_CLIENT_ASSERTION_ALG must be one of"),
        ({"client_assertion_alg": "EdDSA"}, "KC_M2M_CLIENT_ASSERTION_ALG must be one of"),
        ({"introspection_endpoints": {"http://elsewhere/realms/x": "http://kc/i"}}, "KC_M2M_INTROSPECTION_ENDPOINTS"),
        ({"introspection_endpoints": {"http://kc:8080/realms/demo": "kc/i"}}, "http(s) URL"),
        ({"introspection_cache_ttl": -1}, "introspection_cache_ttl"),
        ({"introspection_timeout": 0}, "introspection_timeout"),
    ],
)
def test_invalid_introspection_settings_say_what_to_fix(overrides: dict[str, object], hint: str) -> None:
    with pytest.raises(ValidationError, match=hint.replace("(", r"\(").replace(")", r"\)")):
        KeycloakSettings(**(BASE | overrides))


def test_policy_off_needs_no_credentials() -> None:
    assert not KeycloakSettings(**BASE, introspection="off").introspects


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_secret": "TOPSECRET", "client_private_key": '{"d": "PRIVATEPART"}'},
        {
            "client_auth_method": "private_key_jwt",
            "client_private_key": '{"d": "PRIVATEPART"}',
            "client_secret": "TOPSECRET",
        },
        {"client_secret": "TOPSECRET", "introspection_cache_size": -1},
    ],
)
def test_validation_errors_never_echo_credentials(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as error:
        KeycloakSettings(**BASE, introspection="always", **overrides)
    assert "TOPSECRET" not in str(error.value)
    assert "PRIVATEPART" not in str(error.value)
