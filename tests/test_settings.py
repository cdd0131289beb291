import ssl
import traceback
from pathlib import Path

import pytest
from pydantic import ValidationError

from fastapi_kc_m2m import KeycloakSettings, SettingsError
from fastapi_kc_m2m.cli import main
from tests.helpers import make_pki

BASE = {"server_url": "http://kc:8080/", "realm": "demo", "audience": "machine-b", "allow_http": True}


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
    monkeypatch.setenv("KC_M2M_ALLOW_HTTP", "true")
    settings = KeycloakSettings()  # type: ignore[call-arg]
    assert settings.allow_http
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
        ({"clock_skew": -1}, "KC_M2M_CLOCK_SKEW"),
        ({"max_token_bytes": 10}, "KC_M2M_MAX_TOKEN_BYTES"),
    ],
)
def test_invalid_settings_say_what_to_fix(overrides: dict[str, object], hint: str) -> None:
    with pytest.raises(SettingsError, match=hint.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        KeycloakSettings(**(BASE | overrides))


def test_audience_is_required_with_a_helpful_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KC_M2M_AUDIENCE", raising=False)
    with pytest.raises(SettingsError, match="set KC_M2M_AUDIENCE"):
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
        ({"introspection": "sometimes"}, "KC_M2M_INTROSPECTION"),
        ({"client_auth_method": "client_secret_jwt"}, "KC_M2M_CLIENT_AUTH_METHOD"),
        ({"client_assertion_alg": "HS256"}, "KC_M2M_CLIENT_ASSERTION_ALG must be one of"),
        ({"client_assertion_alg": "EdDSA"}, "KC_M2M_CLIENT_ASSERTION_ALG must be one of"),
        ({"introspection_endpoints": {"http://elsewhere/realms/x": "http://kc/i"}}, "KC_M2M_INTROSPECTION_ENDPOINTS"),
        ({"introspection_endpoints": {"http://kc:8080/realms/demo": "kc/i"}}, "http(s) URL"),
        ({"introspection_cache_ttl": -1}, "KC_M2M_INTROSPECTION_CACHE_TTL"),
        ({"introspection_timeout": 0}, "KC_M2M_INTROSPECTION_TIMEOUT"),
    ],
)
def test_invalid_introspection_settings_say_what_to_fix(overrides: dict[str, object], hint: str) -> None:
    with pytest.raises(SettingsError, match=hint.replace("(", r"\(").replace(")", r"\)")):
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
    with pytest.raises(SettingsError) as error:
        KeycloakSettings(**BASE, introspection="always", **overrides)
    assert "TOPSECRET" not in str(error.value)
    assert "PRIVATEPART" not in str(error.value)


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("KC_M2M_ALGORITHM", "KC_M2M_ALGORITHMS"),
        ("KC_M2M_ISSUER", "KC_M2M_ISSUERS"),
        ("kc_m2m_clockskew", "KC_M2M_CLOCK_SKEW"),
    ],
)
def test_unknown_variables_name_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, closest: str
) -> None:
    monkeypatch.setenv(variable, "RS256")
    with pytest.raises(SettingsError) as error:
        KeycloakSettings(**BASE)
    assert str(error.value) == f"{variable.upper()} is not a setting: did you mean {closest}?"


def test_unknown_variable_without_a_close_setting_is_to_be_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_XYZZY", "1")
    with pytest.raises(SettingsError, match=r"^KC_M2M_XYZZY is not a setting: unset it$"):
        KeycloakSettings(**BASE)


@pytest.mark.parametrize("server_url", ["http://kc:8080/realms/demo", "http://kc:8080/realms/demo/"])
def test_a_realm_url_as_server_url_is_refused(server_url: str) -> None:
    with pytest.raises(SettingsError, match="KC_M2M_SERVER_URL must be Keycloak's base URL") as error:
        KeycloakSettings(**(BASE | {"server_url": server_url}))
    assert "KC_M2M_ISSUERS" in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("realm", " demo", "KC_M2M_REALM"),
        ("realm", "demo ", "KC_M2M_REALM"),
        ("audience", "machine-b\t", "KC_M2M_AUDIENCE"),
    ],
)
def test_realm_and_audience_with_surrounding_spaces_are_refused(field: str, value: str, variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} must not start or end with spaces"):
        KeycloakSettings(**(BASE | {field: value}))


def test_every_problem_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_CLOCK_SKEW", "-1")
    monkeypatch.setenv("KC_M2M_JWKS_URIS", "{not json")
    monkeypatch.setenv("KC_M2M_CLOCKSKEW", "5")
    with pytest.raises(SettingsError) as error:
        KeycloakSettings(**BASE)
    assert error.value.problems == (
        "KC_M2M_CLOCKSKEW is not a setting: did you mean KC_M2M_CLOCK_SKEW?",
        'KC_M2M_JWKS_URIS must be a JSON object: {"<issuer>": "<URL>", ...}',
        "fix KC_M2M_CLOCK_SKEW (Seconds of leeway for exp, nbf and iat): Input should be greater than or equal to 0",
    )
    assert str(error.value) == "\n".join(error.value.problems)
    assert isinstance(error.value, ValueError)
    assert error.value.__cause__ is None
    assert error.value.__suppress_context__


def test_the_traceback_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_CLOCK_SKEW", "soon")
    with pytest.raises(SettingsError) as error:
        KeycloakSettings(**BASE)
    printed = "".join(traceback.format_exception(error.value))
    assert "EnvSettingsSource" not in printed
    assert "clock_skew" not in printed.replace("KC_M2M_CLOCK_SKEW", "")
    assert printed.count("\n") < 15


def test_a_bad_json_variable_names_the_variable_not_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_INTROSPECTION_ENDPOINTS", '{"http://kc:8080/realms/demo": 5}')
    with pytest.raises(SettingsError, match=r"^fix KC_M2M_INTROSPECTION_ENDPOINTS .*: Input should be a valid string$"):
        KeycloakSettings(**BASE)


def test_unknown_variable_values_and_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_CLIENT_SECRETS", "TOPSECRET")
    monkeypatch.setenv("KC_M2M_JWKS_URIS", "TOPSECRET")
    with pytest.raises(SettingsError) as error:
        KeycloakSettings(**BASE)
    assert "KC_M2M_CLIENT_SECRETS is not a setting: did you mean KC_M2M_CLIENT_SECRET?" in str(error.value)
    assert "TOPSECRET" not in str(error.value)


def test_the_cli_prints_one_configuration_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KC_M2M_CLOCKSKEW", "5")
    monkeypatch.setenv("KC_M2M_CLOCK_SKEW", "-1")
    status = main(["verify", "--issuer", "http://kc.test/realms/x", "--audience", "machine-b", "token"])
    assert status == 2
    assert capsys.readouterr().err == (
        "kc-m2m verify: configuration: KC_M2M_CLOCKSKEW is not a setting: did you mean KC_M2M_CLOCK_SKEW?\n"
    )


def test_a_url_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(SettingsError) as error:
        KeycloakSettings(issuers=("https://admin:hunter2@kc.example/realms/x",), audience="orders")
    assert "user name or password" in str(error.value)
    assert "hunter2" not in str(error.value)


# ------------------------------------------------------------------ client certificate source (RFC 8705 §3)
CERT_SOURCE = {"client_cert_header": "ssl-client-cert", "client_cert_format": "pem-urlencoded"}


def test_certificate_source_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_CLIENT_CERT_HEADER", "x-forwarded-client-cert")
    monkeypatch.setenv("KC_M2M_CLIENT_CERT_FORMAT", "xfcc")
    monkeypatch.setenv("KC_M2M_TRUSTED_PROXIES", "10.0.0.7, 172.16.0.0/12,::1")
    settings = KeycloakSettings(**BASE)
    assert [str(network) for network in settings.trusted_proxies] == ["10.0.0.7/32", "172.16.0.0/12", "::1/128"]
    assert (settings.client_cert_header, settings.client_cert_format) == ("x-forwarded-client-cert", "xfcc")


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        (CERT_SOURCE, "go together"),
        ({"client_cert_format": "rfc9440", "trusted_proxies": "10.0.0.1"}, "go together"),
        ({"trusted_proxies": "10.0.0.1"}, "go together"),
        (CERT_SOURCE | {"client_cert_header": "SSL-Client-Cert", "trusted_proxies": "10.0.0.1"}, "lower-case"),
        (CERT_SOURCE | {"client_cert_header": "ssl client cert", "trusted_proxies": "10.0.0.1"}, "lower-case"),
        (CERT_SOURCE | {"trusted_proxies": "proxy.internal"}, "KC_M2M_TRUSTED_PROXIES must list"),
        (CERT_SOURCE | {"client_cert_format": "pem", "trusted_proxies": "10.0.0.1"}, "KC_M2M_CLIENT_CERT_FORMAT"),
    ],
)
def test_invalid_certificate_source_says_what_to_fix(overrides: dict[str, object], hint: str) -> None:
    with pytest.raises(SettingsError, match=hint):
        KeycloakSettings(**(BASE | overrides))


# ------------------------------------------------------------------ http:// only to loopback unless allowed
CLEAR = {"audience": "machine-b"}


@pytest.mark.parametrize(
    "urls",
    [
        {"server_url": "http://keycloak:8080", "realm": "demo"},
        {"issuers": ("https://kc/realms/a", "http://10.0.0.5/realms/b")},
        {"issuers": ("https://kc/realms/a",), "jwks_uris": {"https://kc/realms/a": "http://kc-internal/certs"}},
        {"issuers": ("https://kc/realms/a",), "introspection_endpoints": {"https://kc/realms/a": "http://kc/i"}},
    ],
)
def test_http_to_another_host_is_refused_unless_allowed(urls: dict[str, object]) -> None:
    with pytest.raises(SettingsError, match="KC_M2M_ALLOW_HTTP=true"):
        KeycloakSettings(**(CLEAR | urls))
    assert KeycloakSettings(**(CLEAR | urls), allow_http=True).allow_http


@pytest.mark.parametrize(
    "server_url", ["http://127.0.0.1:8080", "http://127.9.9.9", "http://[::1]:8080", "http://localhost", "https://kc"]
)
def test_loopback_and_https_need_no_allowance(server_url: str) -> None:
    assert not KeycloakSettings(**CLEAR, server_url=server_url, realm="demo").allow_http


# ------------------------------------------------------------------ a private CA for Keycloak's HTTPS
def test_a_ca_file_is_the_trust_for_keycloaks_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = make_pki(tmp_path)
    monkeypatch.setenv("KC_M2M_CA_FILE", str(pki.ca))
    context = KeycloakSettings(**BASE).tls_verify
    assert isinstance(context, ssl.SSLContext)
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "ca"),),)]
    assert KeycloakSettings(**BASE, ca_file=None).tls_verify is True


@pytest.mark.parametrize("content", [None, b"", b"-----BEGIN CERTIFICATE-----\nhunter2\n-----END CERTIFICATE-----\n"])
def test_an_unusable_ca_file_is_refused_without_echoing_it(tmp_path: Path, content: bytes | None) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    with pytest.raises(SettingsError, match="KC_M2M_CA_FILE must name a readable PEM file") as error:
        KeycloakSettings(**BASE, ca_file=str(ca_file))
    assert "hunter2" not in str(error.value)


# ------------------------------------------------------------------ many realms (KC_M2M_REALMS)
MULTI = {"server_url": "http://kc:8080", "realms": ("tenant-*",), "audience": "machine-b", "allow_http": True}


def test_realms_audiences_and_bounds_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KC_M2M_SERVER_URL", "http://kc:8080/")
    monkeypatch.setenv("KC_M2M_REALMS", "tenant-*, ops, lab-?")
    monkeypatch.setenv("KC_M2M_AUDIENCES", '{"ops": "ops-api", "tenant-*": "tenant-api"}')
    monkeypatch.setenv("KC_M2M_MAX_REALMS", "50")
    monkeypatch.setenv("KC_M2M_REALM_NEGATIVE_TTL", "120")
    monkeypatch.setenv("KC_M2M_REALM_LOOKUPS_PER_MINUTE", "5")
    settings = KeycloakSettings(audience="machine-b", allow_http=True)
    assert settings.realms == ("tenant-*", "ops", "lab-?")
    assert settings.trusted_issuers == ("http://kc:8080/realms/ops",)  # names are fixed issuers, patterns not
    assert (settings.max_realms, settings.realm_negative_ttl, settings.realm_lookups_per_minute) == (50, 120, 5)
    assert not settings.issuers_bounded
    assert settings.audience_for("http://kc:8080/realms/ops") == "ops-api"
    assert settings.audience_for("http://kc:8080/realms/tenant-1") == "tenant-api"
    assert settings.audience_for("http://kc:8080/realms/lab-1") == "machine-b"


def test_realm_defaults_and_bounded_issuers() -> None:
    settings = KeycloakSettings(**BASE)
    assert (settings.realms, settings.audiences, settings.max_realms) == ((), {}, 1000)
    assert (settings.realm_negative_ttl, settings.realm_lookups_per_minute) == (300, 60)
    assert settings.issuers_bounded
    assert KeycloakSettings(**(MULTI | {"realms": ("a", "b")})).issuers_bounded


def test_an_exact_name_in_audiences_wins_over_an_earlier_pattern() -> None:
    settings = KeycloakSettings(**MULTI, audiences={"tenant-*": "any", "tenant-vip": "vip"})
    assert settings.audience_for("http://kc:8080/realms/tenant-vip") == "vip"
    assert settings.audience_for("http://kc:8080/realms/tenant-x") == "any"
    assert settings.audience_for("http://elsewhere/realms/tenant-x") == "machine-b"


@pytest.mark.parametrize(
    ("issuer", "realm"),
    [
        ("http://kc:8080/realms/tenant-a", "tenant-a"),
        ("http://kc:8080/realms/t.a_b-9", "t.a_b-9"),
        ("http://kc:8080/realms/a/realms/tenant-a", None),
        ("http://kc:8080/realms/tenant-a/", None),
        ("http://kc:8080/realms/tenant%2Fa", None),
        ("http://kc:8080/realms/tenant..a", None),
        ("http://kc:8080/realms/.", None),  # a dot segment: /realms/./.well-known would ask /realms/.well-known
        ("http://kc:8080/realms/t\u0435nant", None),  # Cyrillic e
        ("http://kc:8080/realms/", None),
        ("https://kc:8080/realms/tenant-a", None),
        ("http://kc:8080/auth/realms/tenant-a", None),
    ],
)
def test_realm_of_is_the_exact_issuer_of_a_strict_name(issuer: str, realm: str | None) -> None:
    assert KeycloakSettings(**MULTI).realm_of(issuer) == realm


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"realm": "demo"}, "KC_M2M_REALM and KC_M2M_REALMS exclude each other"),
        ({"server_url": None}, "KC_M2M_REALMS needs KC_M2M_SERVER_URL"),
        ({"realms": ("tenant/*",)}, "each of KC_M2M_REALMS must be a realm name or glob pattern"),
        ({"realms": ("ten%2F*",)}, "each of KC_M2M_REALMS"),
        ({"realms": ("a..*",)}, "each of KC_M2M_REALMS"),
        ({"realms": ("t\u0435nant-*",)}, "each of KC_M2M_REALMS"),
        ({"realms": ("tenant-[ab]",)}, "each of KC_M2M_REALMS"),
        ({"audiences": {"a/b": "x"}}, "each key of KC_M2M_AUDIENCES"),
        ({"audiences": {"tenant-*": "account"}}, "each audience of KC_M2M_AUDIENCES must be this API's client id"),
        ({"audiences": {"tenant-*": 'a"b'}}, "each audience of KC_M2M_AUDIENCES must not contain quotes"),
        ({"audiences": "[1]"}, "KC_M2M_AUDIENCES must be a JSON object"),
        ({"max_realms": 0}, "KC_M2M_MAX_REALMS"),
        ({"realm_lookups_per_minute": 0}, "KC_M2M_REALM_LOOKUPS_PER_MINUTE"),
        ({"server_url": "http://kc.example", "allow_http": False}, "http://kc.example"),
    ],
)
def test_invalid_realm_settings_say_what_to_fix(overrides: dict[str, object], hint: str) -> None:
    with pytest.raises(SettingsError, match=hint.replace("[", r"\[")) as error:
        KeycloakSettings(**(MULTI | overrides))
    assert "\u0435" not in str(error.value)  # the input is never echoed
