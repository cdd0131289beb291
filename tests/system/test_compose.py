"""docker-compose.yml against the Compose Specification's JSON schema, and the realm file against the
realm-import pitfalls. No container engine runs here: the compose file itself is not run."""

from __future__ import annotations

import base64
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

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TEMPLATE = ROOT / "keycloak" / "realm.template.json"
ISSUER = "http://localhost:8080/realms/demo"


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
        "keycloak-scope": {"condition": "service_completed_successfully"},
    }


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


def test_secret_caller_and_resource_server_are_confidential(realm: dict[str, Any]) -> None:
    for client_id in ("reporting", "machine-b"):
        confidential = client(realm, client_id)
        assert confidential["publicClient"] is False
        assert confidential["clientAuthenticatorType"] == "client-secret"
        assert confidential["secret"]
    assert client(realm, "machine-b")["serviceAccountsEnabled"] is False


def test_callers_tokens_carry_the_api_audience(realm: dict[str, Any]) -> None:
    for client_id in ("machine-a", "reporting"):
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
    for client_id in ("machine-a", "reporting"):
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
