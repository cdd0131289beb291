"""The demo: Machine B (the orders API) served on loopback, Machine A's clients calling it, and a table
of what was allowed and refused, and why, then a summary of the counters (the ``kc_m2m_*`` Prometheus
families of Machine B and Machine A, in a registry of the run's own).

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
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypedDict

from joserfc.jwk import RSAKey
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from fastapi_kc_m2m import ClientCredentialsAuth, IntrospectionPolicy, KeycloakAuth, KeycloakSettings
from fastapi_kc_m2m.testing import TestIssuer, serve_app

from .app import READ_SCOPE, WRITER_ROLE, create_app
from .machine_a import Callers, callers_from_environment, print_table, scenario

MACHINE_B_SECRET = "machine-b-secret"
REPORTING_SECRET = "reporting-secret"


class Introspection(TypedDict):
    """Machine B's introspection settings (see :class:`~fastapi_kc_m2m.KeycloakSettings`)."""

    introspection: IntrospectionPolicy
    introspection_cache_ttl: float


#: Machine B's settings for the demo: introspection on the cancel route, answers never reused, so a
#: revoked token is refused on its next introspected call (the default reuses answers for 30 s).
INTROSPECTION: Introspection = {"introspection": "per_route", "introspection_cache_ttl": 0}

#: The client roles each caller's service account holds, as in ``keycloak/realm.json``.
SERVICE_ACCOUNT_ROLES: dict[str, dict[str, list[str]]] = {"machine-a": {"machine-b": [WRITER_ROLE]}}


@contextlib.contextmanager
def local_realm(counters: CollectorRegistry) -> Iterator[tuple[KeycloakAuth, Callers]]:
    """Machine B's verifier and Machine A's clients, against a test issuer on loopback set up as
    ``keycloak/realm.json``: the optional scope ``orders:read``, and the ``writer`` role of ``machine-b``
    held by ``machine-a``'s service account; both count in ``counters``."""
    counted: dict[str, Any] = {"metrics": True, "registry": counters}
    with TestIssuer.serving(realm="demo", optional_scopes={READ_SCOPE}) as realm:
        key = RSAKey.generate_key(2048, auto_kid=True)  # machine-a's private_key_jwt key (kid: RFC 7638)
        realm.register_client("machine-a", public_key=key, client_roles=SERVICE_ACCOUNT_ROLES["machine-a"])
        realm.register_client("reporting", secret=REPORTING_SECRET)
        realm.register_client("machine-b", secret=MACHINE_B_SECRET)
        issuer = realm.issuer
        callers = Callers(
            issuer=issuer,
            machine_a=ClientCredentialsAuth("machine-a", issuer=issuer, private_key=key, scope=READ_SCOPE, **counted),
            reporting=ClientCredentialsAuth(
                "reporting", issuer=issuer, client_secret=REPORTING_SECRET, scope=READ_SCOPE, **counted
            ),
            reporting_unscoped=ClientCredentialsAuth(
                "reporting", issuer=issuer, client_secret=REPORTING_SECRET, **counted
            ),
            revoke=realm.revoke,
        )
        settings = realm.settings(client_secret=MACHINE_B_SECRET, metrics="prometheus", **INTROSPECTION)
        yield KeycloakAuth(settings, registry=counters), callers


@contextlib.contextmanager
def keycloak_realm(counters: CollectorRegistry) -> Iterator[tuple[KeycloakAuth, Callers]]:
    """Machine B's verifier (``KC_M2M_*``, with the demo's defaults), counting in ``counters``, and
    Machine A's clients, against the Keycloak at ``KC_M2M_SERVER_URL``."""
    env = os.environ
    settings = KeycloakSettings(
        realm=env.get("KC_M2M_REALM", "demo"),
        audience=env.get("KC_M2M_AUDIENCE", "machine-b"),
        client_secret=SecretStr(env.get("KC_M2M_CLIENT_SECRET", MACHINE_B_SECRET)),
        metrics="prometheus",
        **INTROSPECTION,
    )
    yield KeycloakAuth(settings, registry=counters), callers_from_environment()


def counted(registry: CollectorRegistry, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The samples of counter ``name`` summed by ``labels`` (the others added up)."""
    totals: Counter[tuple[str, ...]] = Counter()
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                totals[tuple(sample.labels[label] for label in labels)] += int(sample.value)
    return totals


#: The summary's lines: a counter, the two labels it is summed by, and how a line reads.
_SUMMARY = (
    ("kc_m2m_verifications_total", ("outcome", "reason"), "  {0} ({1}): {count}"),
    ("kc_m2m_route_refusals_total", ("outcome", "reason"), "  {0} by the route ({1}): {count}"),
    ("kc_m2m_client_token_requests_total", ("client_id", "result"), "  Machine A token requests, {0} ({1}): {count}"),
    ("kc_m2m_client_token_renewals_total", ("client_id", "reason"), "  Machine A renewals, {0} ({1}): {count}"),
)


def print_summary(registry: CollectorRegistry) -> None:
    """Machine B's verifications and route refusals by outcome and reason, and Machine A's token requests
    and renewals by client."""
    print("\ncounters:")
    for name, labels, line in _SUMMARY:
        for values, count in sorted(counted(registry, name, *labels).items()):
            print(line.format(*values, count=count))


def main() -> None:
    against_keycloak = bool(os.environ.get("KC_M2M_SERVER_URL"))
    counters = CollectorRegistry()
    with (keycloak_realm if against_keycloak else local_realm)(counters) as (auth, callers):
        try:
            with serve_app(create_app(auth), lifespan="on") as api_url:
                rows = scenario(api_url, callers)
        finally:
            callers.close()
        where = "Keycloak" if against_keycloak else "test issuer (no Keycloak)"
        print(f"Machine B {api_url}, tokens from {where} {callers.issuer}\n")
        print_table(rows)
        print_summary(counters)


if __name__ == "__main__":
    main()
