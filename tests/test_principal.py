from typing import Any

import pytest

from fastapi_kc_m2m import Actor, ServicePrincipal
from fastapi_kc_m2m.testing import TestIssuer


def principal(**claims: Any) -> ServicePrincipal:
    return ServicePrincipal.from_claims(TestIssuer().claims() | claims)


def test_fields_come_from_keycloak_claims() -> None:
    issuer = TestIssuer(realm="shop")
    claims = issuer.claims(scope="orders:read email", realm_roles=("auditor",), client_roles={"machine-b": ["writer"]})
    p = ServicePrincipal.from_claims(claims)
    assert p.client_id == "machine-a"
    assert p.subject == claims["sub"]
    assert p.issuer == issuer.issuer
    assert p.audiences == ("machine-b",)
    assert p.scopes == {"orders:read", "email"}
    assert "auditor" in p.realm_roles
    assert p.roles_of("machine-b") == {"writer"}
    assert p.client_roles["account"] == {"manage-account", "view-profile"}
    assert p.expires_at == claims["exp"]
    assert p.token_id is not None
    assert p.token_id.startswith("trrtcc:")
    assert p.claims["preferred_username"] == "service-account-machine-a"


def test_client_id_falls_back_to_client_id_claim_when_azp_is_absent() -> None:
    claims = TestIssuer().claims(client_id="caller")
    del claims["azp"]
    assert ServicePrincipal.from_claims(claims).client_id == "caller"


def test_audience_list_is_kept_in_order() -> None:
    assert principal(aud=["machine-b", "account"]).audiences == ("machine-b", "account")


def test_scopes_are_exact_and_case_sensitive() -> None:
    p = principal(scope="read orders:write")
    assert p.has_scopes("read")
    assert p.has_scopes("read", "orders:write")
    assert not p.has_scopes("read:all")
    assert not p.has_scopes("READ")
    assert not p.has_scopes("read", "admin")


def test_scope_claim_as_list_of_strings_is_tolerated() -> None:
    assert principal(scope=["a", "b"]).scopes == {"a", "b"}


@pytest.mark.parametrize(
    "claims",
    [
        {"realm_access": "admin", "resource_access": ["machine-b"]},
        {"realm_access": {"roles": "admin"}, "resource_access": {"machine-b": {"roles": {"writer": True}}}},
        {"realm_access": None, "resource_access": {"machine-b": None}},
        {"scope": 42},
    ],
)
def test_malformed_role_and_scope_claims_grant_nothing(claims: dict[str, Any]) -> None:
    p = principal(**claims)
    if "scope" in claims:
        assert p.scopes == frozenset()
    else:
        assert p.realm_roles == frozenset()
        assert p.roles_of("machine-b") == frozenset()


def test_a_role_list_with_a_non_string_member_grants_nothing() -> None:
    p = principal(realm_access={"roles": ["reader", 7, {"x": 1}]}, scope=["a", 1])
    assert p.realm_roles == frozenset()
    assert p.scopes == frozenset()


def test_roles_of_another_client_do_not_count() -> None:
    p = principal(resource_access={"machine-a": {"roles": ["writer"]}})
    assert p.roles_of("machine-b") == frozenset()


def test_principal_is_immutable() -> None:
    p = principal()
    with pytest.raises(AttributeError):
        p.client_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.claims["azp"] = "other"  # type: ignore[index]


@pytest.mark.parametrize("separator", ["\t", "\u00a0", "\n", "\r", "\u2003"])
def test_scopes_are_separated_by_space_only(separator: str) -> None:
    """RFC 6749 §3.3: scope-token *( SP scope-token ); other white space is part of a (useless) scope."""
    p = principal(scope=f"profile{separator}orders:read email")
    assert p.scopes == {f"profile{separator}orders:read", "email"}
    assert not p.has_scopes("orders:read")


def test_runs_of_spaces_make_no_empty_scope() -> None:
    assert principal(scope="  profile   orders:read ").scopes == {"profile", "orders:read"}


@pytest.mark.parametrize("azp", ["", None, 7])
def test_client_id_claim_names_the_caller_when_azp_is_unusable(azp: Any) -> None:
    assert principal(azp=azp, client_id="caller").client_id == "caller"


# ------------------------------------------------------------------ RFC 8693 §4.1, §4.4: act and may_act
def test_act_is_the_delegation_chain_current_actor_first() -> None:
    act = {"sub": "svc-b", "client_id": "machine-b", "act": {"sub": "svc-c", "iss": "https://kc/realms/x"}}
    assert principal(act=act).act == (
        Actor("svc-b", "machine-b", None),
        Actor("svc-c", None, "https://kc/realms/x"),
    )


@pytest.mark.parametrize("act", [None, "machine-b", ["machine-b"], 7])
def test_act_that_is_no_object_is_no_chain(act: Any) -> None:
    claims = {} if act is None else {"act": act}
    assert principal(**claims).act == ()


def test_act_members_that_are_not_strings_read_as_none() -> None:
    assert principal(act={"sub": 5, "client_id": ["x"], "act": "end"}).act == (Actor(None, None, None),)


def test_a_long_act_chain_is_cut() -> None:
    act: dict[str, Any] = {"sub": "last"}
    for depth in range(40):
        act = {"sub": f"actor-{depth}", "act": act}
    assert len(principal(act=act).act) == 16


def test_may_act_names_who_may_act() -> None:
    assert principal(may_act={"client_id": "machine-b", "sub": "svc-b"}).may_act == Actor("svc-b", "machine-b", None)
    assert principal(may_act="machine-b").may_act is None
    assert principal().may_act is None


def test_act_stays_off_the_repr() -> None:
    assert "svc-b" not in repr(principal(act={"sub": "svc-b"}))


def test_realm_is_what_the_verifier_derived_and_none_by_default() -> None:
    claims = TestIssuer().claims()
    assert ServicePrincipal.from_claims(claims).realm is None
    principal = ServicePrincipal.from_claims(claims, realm="test")
    assert principal.realm == "test"
    assert principal.issuer == claims["iss"]
