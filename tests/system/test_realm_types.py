"""keycloak/realm.template.json against Keycloak's own TypeScript ``RealmRepresentation`` (npm
``@keycloak/keycloak-admin-client`` 26.4, in keycloak/types/, installed by ``scripts/bootstrap --with-node``).

The realm is written out as an object literal typed ``RealmRepresentation`` and compiled with
``tsc --noEmit --strict``: excess-property checks refuse a key Keycloak does not know, at the top and in
nested clients, protocol mappers and users, and a value of the wrong type. The template's placeholders
(``${MACHINE_A_CERTIFICATE}``, ...) sit inside JSON strings, so it is JSON as it stands."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "keycloak" / "realm.template.json"
MODULES = ROOT / "keycloak" / "types" / "node_modules"
DEFINITION = MODULES / "@keycloak" / "keycloak-admin-client" / "lib" / "defs" / "realmRepresentation.js"
TSC = MODULES / "typescript" / "bin" / "tsc"
_ERROR = re.compile(r"^(?P<file>[^(]+)\(\d+,\d+\): error (?P<message>TS\d+: .*)$")


def _client(realm: dict[str, Any], client_id: str) -> dict[str, Any]:
    return next(c for c in realm["clients"] if c["clientId"] == client_id)


def _rename(key: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(place: dict[str, Any]) -> None:
        place[new] = place.pop(key)

    return change


Place = Callable[[dict[str, Any]], dict[str, Any]]
Change = Callable[[dict[str, Any]], None]

#: Mistakes tsc must refuse: where in the realm, the change there, and what the one error says.
MISTAKES: dict[str, tuple[Place, Change, str]] = {
    "client key": (
        lambda realm: _client(realm, "machine-a"),
        _rename("serviceAccountsEnabled", "serviceAccountEnabled"),
        "'\"serviceAccountEnabled\"' does not exist in type 'ClientRepresentation'",
    ),
    "top-level key": (
        lambda realm: realm,
        _rename("sslRequired", "sslRequire"),
        "'\"sslRequire\"' does not exist in type 'RealmRepresentation'",
    ),
    "protocol mapper key": (
        lambda realm: _client(realm, "shipping")["protocolMappers"][0],
        _rename("protocolMapper", "protocolMaper"),
        "'\"protocolMaper\"' does not exist in type 'ProtocolMapperRepresentation'",
    ),
    "user key": (
        lambda realm: realm["users"][0],
        _rename("serviceAccountClientId", "serviceAccountClientID"),
        "'\"serviceAccountClientID\"' does not exist in type 'UserRepresentation'",
    ),
    "value type": (
        lambda realm: _client(realm, "reporting"),
        lambda client: client.update(enabled="true"),
        "Type 'string' is not assignable to type 'boolean | undefined'",
    ),
}


def type_errors(realms: dict[str, Any], directory: Path) -> dict[str, list[str]]:
    """Compile each realm as ``const realm: RealmRepresentation = <literal>`` in one tsc run; its errors by name."""
    node = shutil.which("node")
    if node is None or not TSC.exists():
        raise RuntimeError("node or keycloak/types/node_modules is missing: run scripts/bootstrap --with-node")
    files = {}
    for name, realm in realms.items():
        source = directory / f"{re.sub(r'[^A-Za-z]+', '-', name)}.ts"
        literal = json.dumps(realm, indent=2)
        source.write_text(f"import type RealmRepresentation from {json.dumps(str(DEFINITION))};\n"
                          f"export const realm: RealmRepresentation = {literal};\n")  # fmt: skip
        files[source.name] = name
    command = [node, str(TSC), "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext"]
    result = subprocess.run(  # noqa: S603 - the pinned tsc on files written here
        [*command, *files], cwd=directory, capture_output=True, text=True, check=False, timeout=120
    )
    errors: dict[str, list[str]] = {name: [] for name in realms}
    for line in result.stdout.splitlines():
        match = _ERROR.match(line)
        assert match is not None, result.stdout  # nothing but type errors, each in one of the files
        errors[files[Path(match["file"]).name]].append(match["message"])
    return errors


@pytest.fixture(scope="module")
def errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    template = json.loads(TEMPLATE.read_text())
    realms = {"template": template}
    for mistake, (where, change, _) in MISTAKES.items():
        realm = copy.deepcopy(template)
        change(where(realm))
        realms[mistake] = realm
    return type_errors(realms, tmp_path_factory.mktemp("realm-types"))


def test_the_realm_file_is_a_realm_representation(errors: dict[str, list[str]]) -> None:
    assert errors["template"] == []


@pytest.mark.parametrize("mistake", MISTAKES)
def test_an_unknown_key_or_a_wrong_type_fails(errors: dict[str, list[str]], mistake: str) -> None:
    (message,) = errors[mistake]
    assert MISTAKES[mistake][2] in message
