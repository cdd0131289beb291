"""docker-compose.yml against the Compose Specification's JSON schema, and the realm file against the
realm-import pitfalls. No container engine runs here: the compose file itself is not run."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509

from tests.helpers import NGINX_MTLS_TEMPLATE, nginx_mtls_variables

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TEMPLATE = ROOT / "keycloak" / "realm.template.json"
ISSUER = "https://localhost:8443/realms/demo"
CA_FILE = "/keys/ca.cert.pem"


def compose_errors(document: Any) -> list[str]:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    return [error.message for error in validator.iter_errors(document)]


@pytest.fixture
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture
def realm() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def client(realm: dict[str, Any], client_id: str) -> dict[str, Any]:
    return next(c for c in realm["clients"] if c["clientId"] == client_id)


# ----------------------------------------------------------------- compose file
def test_compose_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_the_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    compose["services"]["orders"]["depends_on"]["keycloak"]["condition"] = "healthy"
    compose["services"]["keycloak"]["healthcheck"]["retries"] = "many"
    assert len(compose_errors(compose)) >= 2


def test_startup_order_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    keycloak = services["keycloak"]
    assert keycloak["image"] == "quay.io/keycloak/keycloak:26.4"
    assert keycloak["command"] == ["start-dev", "--import-realm"]
    assert keycloak["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert keycloak["environment"]["KC_HEALTH_ENABLED"] == "true"
    assert "/dev/tcp/127.0.0.1/9000" in keycloak["healthcheck"]["test"][-1]
    assert "/health/ready" in keycloak["healthcheck"]["test"][-1]
    assert services["orders"]["depends_on"]["keycloak"]["condition"] == "service_healthy"
    assert services["machine-a"]["depends_on"] == {
        "orders": {"condition": "service_healthy"},
        "nginx": {"condition": "service_healthy"},
        "keycloak-scope": {"condition": "service_completed_successfully"},
    }
    assert services["nginx"]["depends_on"] == {"orders": {"condition": "service_healthy"}}


def test_one_issuer_for_host_and_containers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    hostname = services["keycloak"]["environment"]["KC_HOSTNAME"]
    assert f"{hostname}/realms/demo" == ISSUER
    orders = services["orders"]["environment"]
    assert orders["KC_M2M_ISSUERS"] == ISSUER
    assert set(json.loads(orders["KC_M2M_JWKS_URIS"])) == {ISSUER}
    assert set(json.loads(orders["KC_M2M_INTROSPECTION_ENDPOINTS"])) == {ISSUER}
    caller = services["machine-a"]["environment"]
    assert f"{caller['KC_M2M_SERVER_URL']}/realms/{caller['KC_M2M_REALM']}" == ISSUER


def test_keycloak_serves_https_with_the_init_steps_certificate(compose: dict[str, Any]) -> None:
    keycloak = compose["services"]["keycloak"]
    env = keycloak["environment"]
    assert env["KC_HTTP_ENABLED"] == "false"
    assert (env["KC_HTTPS_CERTIFICATE_FILE"], env["KC_HTTPS_CERTIFICATE_KEY_FILE"]) == (
        "/keys/keycloak.cert.pem",
        "/keys/keycloak.key.pem",
    )
    assert env["KC_HTTPS_CLIENT_AUTH"] == "request"  # client-x509, without refusing the other callers
    assert env["KC_TRUSTSTORE_PATHS"] == CA_FILE
    assert env["KC_HTTP_MANAGEMENT_SCHEME"] == "http"  # the plain /dev/tcp healthcheck, port 9000 unpublished
    assert keycloak["ports"] == ["8443:8443"]
    assert "keys:/keys:ro" in keycloak["volumes"]


def test_every_call_between_services_is_https(compose: dict[str, Any]) -> None:
    """No service is told a plain-HTTP URL, and none needs KC_M2M_ALLOW_HTTP; the demo CA is trusted."""
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        assert "KC_M2M_ALLOW_HTTP" not in env, name
        assert not [value for value in env.values() if "http://" in str(value)], name
    assert compose["services"]["orders"]["environment"]["KC_M2M_CA_FILE"] == CA_FILE  # the setting made for it
    assert compose["services"]["machine-a"]["environment"]["SSL_CERT_FILE"] == CA_FILE
    assert compose["services"]["keycloak-scope"]["environment"]["CA_FILE"] == CA_FILE


def test_nginx_runs_the_drills_config_in_front_of_orders(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nginx, orders = services["nginx"], services["orders"]["environment"]
    assert f"./{NGINX_MTLS_TEMPLATE.relative_to(ROOT)}:/etc/nginx/templates/nginx.conf.template:ro" in nginx["volumes"]
    env = nginx["environment"]
    assert (env["NGINX_ENVSUBST_OUTPUT_DIR"], env["NGINX_ENVSUBST_FILTER"]) == ("/etc/nginx", "^MTLS_")
    assert {name for name in env if name.startswith("MTLS_")} == nginx_mtls_variables()
    assert nginx["command"] == ["nginx"]  # the template says "daemon off" itself
    assert env["MTLS_UPSTREAM"] == "orders:8000"
    assert env["MTLS_CLIENT_CA"] == CA_FILE
    assert "ports" not in services["orders"]  # the only way in is through nginx
    assert services["machine-a"]["environment"]["DEMO_API_URL"] == "https://nginx"
    assert (orders["KC_M2M_CLIENT_CERT_HEADER"], orders["KC_M2M_CLIENT_CERT_FORMAT"]) == (
        "ssl-client-cert",
        "pem-urlencoded",
    )


def test_orders_trusts_the_certificate_header_from_nginx_alone(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    address = nginx["networks"]["default"]["ipv4_address"]
    (subnet,) = compose["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet["subnet"])
    assert nginx["environment"]["MTLS_PROXY_ADDRESS"] == address
    assert compose["services"]["orders"]["environment"]["KC_M2M_TRUSTED_PROXIES"] == address


def test_the_realm_volume_is_what_keycloak_imports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "realm:/realm" in services["init"]["volumes"]
    assert "realm:/opt/keycloak/data/import:ro" in services["keycloak"]["volumes"]


# ----------------------------------------------------------------- init step
SHELL = shutil.which("sh")


@pytest.mark.skipif(SHELL is None, reason="needs a POSIX shell")
def test_init_step_writes_key_and_realm_with_its_certificate(tmp_path: Path) -> None:
    assert SHELL is not None
    keys, realm_dir = tmp_path / "keys", tmp_path / "realm"
    keys.mkdir()
    realm_dir.mkdir()
    env = {**os.environ, "KEYS_DIR": str(keys), "REALM_DIR": str(realm_dir)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # kc-m2m of this environment
    for _ in range(2):  # a second run keeps the key
        subprocess.run([SHELL, str(ROOT / "keycloak" / "init.sh")], env=env, check=True, capture_output=True)  # noqa: S603
    imported = json.loads((realm_dir / "demo-realm.json").read_text())
    certificate = client(imported, "machine-a")["attributes"]["jwt.credential.certificate"]
    pem = x509.load_pem_x509_certificate((keys / "machine-a.cert.pem").read_bytes())
    assert x509.load_der_x509_certificate(base64.b64decode(certificate)) == pem
    assert (keys / "machine-a.key.pem").stat().st_mode & 0o077 == 0
    shipping = x509.load_pem_x509_certificate((keys / "shipping.cert.pem").read_bytes())
    assert client(imported, "shipping")["attributes"]["x509.subjectdn"] == shipping.subject.rfc4514_string()
    _assert_signed_by_the_ca(keys)


def _assert_signed_by_the_ca(keys: Path) -> None:
    """Keycloak's and nginx's server certificates name their hosts; all three leaves chain to the CA."""
    ca = x509.load_pem_x509_certificate((keys / "ca.cert.pem").read_bytes())
    for name, hosts in (("keycloak", ["keycloak", "localhost"]), ("nginx", ["nginx", "localhost"]), ("shipping", [])):
        leaf = x509.load_pem_x509_certificate((keys / f"{name}.cert.pem").read_bytes())
        leaf.verify_directly_issued_by(ca)
        assert (keys / f"{name}.key.pem").stat().st_mode & 0o077 == 0
        if hosts:
            names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == hosts


@pytest.mark.skipif(SHELL is None, reason="needs a POSIX shell")
def test_the_files_the_services_read_are_the_init_steps(compose: dict[str, Any], tmp_path: Path) -> None:
    """Each /keys/... path in the compose file is one init.sh writes (its kc-m2m commands, run here)."""
    assert SHELL is not None
    env = {**os.environ, "KEYS_DIR": str(tmp_path), "REALM_DIR": str(tmp_path)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    subprocess.run([SHELL, str(ROOT / "keycloak" / "init.sh")], env=env, check=True, capture_output=True)  # noqa: S603
    named = {
        str(value).removeprefix("/keys/")
        for service in compose["services"].values()
        for value in service.get("environment", {}).values()
        if str(value).startswith("/keys/")
    }
    assert len(named) >= 8
    assert not [name for name in named if not (tmp_path / name).is_file()]


# ----------------------------------------------------------------- realm pitfalls
def test_no_client_scopes_array_replacing_the_built_ins(realm: dict[str, Any]) -> None:
    assert "clientScopes" not in realm


def test_plain_http_allowed_from_private_addresses_only(realm: dict[str, Any]) -> None:
    assert realm["sslRequired"] == "external"


def test_machine_a_authenticates_with_a_signed_jwt(realm: dict[str, Any]) -> None:
    machine_a = client(realm, "machine-a")
    assert machine_a["clientAuthenticatorType"] == "client-jwt"
    assert machine_a["attributes"]["jwt.credential.certificate"] == "${MACHINE_A_CERTIFICATE}"
    assert "secret" not in machine_a


def test_shipping_authenticates_by_certificate_and_gets_bound_tokens(realm: dict[str, Any]) -> None:
    shipping = client(realm, "shipping")
    assert (shipping["publicClient"], shipping["clientAuthenticatorType"]) == (False, "client-x509")
    assert shipping["attributes"] == {
        "x509.subjectdn": "${SHIPPING_SUBJECT_DN}",
        "x509.allow.regex.pattern.comparison": "false",  # the exact DN, not a pattern
        "tls.client.certificate.bound.access.tokens": "true",
    }
    assert "secret" not in shipping


def test_add_scope_covers_every_caller(realm: dict[str, Any]) -> None:
    script = (ROOT / "keycloak" / "add-scope.sh").read_text()
    callers = {c["clientId"] for c in realm["clients"] if c["serviceAccountsEnabled"]}
    assert f"for client in {' '.join(sorted(callers))}; do" in script


def test_secret_caller_and_resource_server_are_confidential(realm: dict[str, Any]) -> None:
    for client_id in ("reporting", "machine-b"):
        confidential = client(realm, client_id)
        assert confidential["publicClient"] is False
        assert confidential["clientAuthenticatorType"] == "client-secret"
        assert confidential["secret"]
    assert client(realm, "machine-b")["serviceAccountsEnabled"] is False


def test_callers_tokens_carry_the_api_audience(realm: dict[str, Any]) -> None:
    for client_id in ("machine-a", "reporting", "shipping"):
        caller = client(realm, client_id)
        assert caller["serviceAccountsEnabled"] is True
        mapper = next(m for m in caller["protocolMappers"] if m["protocolMapper"] == "oidc-audience-mapper")
        assert mapper["protocol"] == "openid-connect"
        assert mapper["config"] == {
            "included.client.audience": "machine-b",
            "access.token.claim": "true",
            "introspection.token.claim": "true",
            "lightweight.claim": "true",
            "id.token.claim": "false",
        }


def test_service_account_users_are_enabled_and_hold_the_api_roles(realm: dict[str, Any]) -> None:
    users = {user["username"]: user for user in realm["users"]}
    api_roles = {role["name"] for role in realm["roles"]["client"]["machine-b"]}
    assert api_roles == {"writer"}
    for client_id in ("machine-a", "reporting", "shipping"):
        user = users[f"service-account-{client_id}"]
        assert user["enabled"] is True
        assert user["serviceAccountClientId"] == client_id
        assert set(user.get("clientRoles", {}).get("machine-b", [])) <= api_roles
    assert users["service-account-machine-a"]["clientRoles"] == {"machine-b": ["writer"]}


def test_demo_realm_matches_the_realm_file(realm: dict[str, Any]) -> None:
    from example_service import demo  # noqa: PLC0415

    secrets = {c["clientId"]: c.get("secret") for c in realm["clients"]}
    assert secrets["machine-b"] == demo.MACHINE_B_SECRET
    assert secrets["reporting"] == demo.REPORTING_SECRET
    users = {user["serviceAccountClientId"]: user.get("clientRoles", {}) for user in realm["users"]}
    assert {client_id: roles for client_id, roles in users.items() if roles} == demo.SERVICE_ACCOUNT_ROLES
