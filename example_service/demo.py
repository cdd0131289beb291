"""The demo: Machine B (the orders API) served on loopback, Machine A's clients calling it, and a table
of what was allowed and refused, and why.

Without ``KC_M2M_SERVER_URL`` it needs no Keycloak: a :class:`~fastapi_kc_m2m.testing.TestIssuer` on
loopback plays the realm of ``keycloak/realm.json`` (the same clients, secrets, scope and roles). With
``KC_M2M_SERVER_URL`` set it runs against that Keycloak, the clients configured by the variables listed
in :mod:`example_service.machine_a`; Machine B reads ``KC_M2M_*`` (defaults: realm ``demo``, audience
``machine-b``, introspection secret ``machine-b-secret``).

Run with ``make demo``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi_kc_m2m import ClientCredentialsAuth, KeycloakAuth, KeycloakSettings
from fastapi_kc_m2m.testing import TestIssuer, generate_key, serve_app

from .app import READ_SCOPE, WRITER_ROLE, create_app
from .machine_a import Callers, callers_from_environment, print_table, scenario

MACHINE_B_SECRET = "machine-b-secret"
REPORTING_SECRET = "reporting-secret"
#: Machine B's settings for the demo: introspection on the cancel route, answers never reused, so a
#: revoked token is refused on its next introspected call (the default reuses answers for 30 s).
INTROSPECTION = {"introspection": "per_route", "introspection_cache_ttl": 0}


class DemoRealm(TestIssuer):
    """The test issuer set up as ``keycloak/realm.json``: the optional scope ``orders:read``, and the
    ``writer`` role of ``machine-b`` held by ``machine-a``'s service account."""

    __test__ = False
    service_account_roles: Mapping[str, Mapping[str, list[str]]] = {"machine-a": {"machine-b": [WRITER_ROLE]}}

    def claims(self, *, client_id: str = "machine-a", **shape: Any) -> dict[str, Any]:
        roles = {**self.service_account_roles.get(client_id, {}), **(shape.pop("client_roles", None) or {})}
        return super().claims(client_id=client_id, client_roles=roles, **shape)


@contextlib.contextmanager
def local_realm() -> Iterator[tuple[KeycloakAuth, Callers]]:
    """Machine B's verifier and Machine A's clients, against a :class:`DemoRealm` on loopback."""
    with DemoRealm.serving(realm="demo") as realm:
        realm.optional_scopes.add(READ_SCOPE)
        key = generate_key("RS256")
        realm.register_client("machine-a", public_key=key)
        realm.register_client("reporting", secret=REPORTING_SECRET)
        realm.register_client("machine-b", secret=MACHINE_B_SECRET)
        issuer = {"issuer": realm.issuer}
        callers = Callers(
            issuer=realm.issuer,
            machine_a=ClientCredentialsAuth("machine-a", private_key=key, scope=READ_SCOPE, **issuer),
            reporting=ClientCredentialsAuth("reporting", client_secret=REPORTING_SECRET, scope=READ_SCOPE, **issuer),
            reporting_unscoped=ClientCredentialsAuth("reporting", client_secret=REPORTING_SECRET, **issuer),
            revoke=realm.revoke,
        )
        yield KeycloakAuth(realm.settings(client_secret=MACHINE_B_SECRET, **INTROSPECTION)), callers


@contextlib.contextmanager
def keycloak_realm() -> Iterator[tuple[KeycloakAuth, Callers]]:
    """Machine B's verifier (``KC_M2M_*``, with the demo's defaults) and Machine A's clients, against the
    Keycloak at ``KC_M2M_SERVER_URL``."""
    defaults = {"realm": "demo", "audience": "machine-b", "client_secret": MACHINE_B_SECRET}
    unset = {name: value for name, value in defaults.items() if f"KC_M2M_{name.upper()}" not in os.environ}
    yield KeycloakAuth(KeycloakSettings(**unset, **INTROSPECTION)), callers_from_environment()


def main() -> None:
    against_keycloak = bool(os.environ.get("KC_M2M_SERVER_URL"))
    with keycloak_realm() if against_keycloak else local_realm() as (auth, callers):
        try:
            with serve_app(create_app(auth), lifespan="on") as api_url:
                rows = scenario(api_url, callers)
        finally:
            callers.close()
        where = "Keycloak" if against_keycloak else "test issuer (no Keycloak)"
        print(f"Machine B {api_url}, tokens from {where} {callers.issuer}\n")
        print_table(rows)


if __name__ == "__main__":
    main()
