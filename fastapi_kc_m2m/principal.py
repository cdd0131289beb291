"""The verified calling machine: an immutable, typed view of a Keycloak access token's claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ServicePrincipal"]


def _strings(value: Any) -> frozenset[str]:
    """A list of strings as a set; anything else, even one non-string member, is malformed: nothing."""
    if isinstance(value, list):
        strings = [item for item in value if type(item) is str]
        if len(strings) == len(value):
            return frozenset(strings)
    return frozenset()


def _scopes(value: Any) -> frozenset[str]:
    """RFC 6749 §3.3 / RFC 8693 §4.2: a space-separated string; a list of strings is tolerated."""
    if isinstance(value, str):
        return frozenset(value.split())
    return _strings(value)


def _roles(access: Any) -> frozenset[str]:
    return _strings(access.get("roles")) if isinstance(access, dict) else frozenset()


def _client_roles(resource_access: Any) -> Mapping[str, frozenset[str]]:
    if not isinstance(resource_access, dict):
        return MappingProxyType({})
    return MappingProxyType({client: _roles(access) for client, access in resource_access.items()})


def _audiences(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    """Who called: the client behind a verified token, its scopes and roles.

    Malformed role or scope claims read as empty, so authorization refuses (403) rather than fails.
    Role views are computed from ``claims`` when asked for, keeping verification cheap.
    """

    client_id: str
    subject: str | None
    issuer: str
    audiences: tuple[str, ...]
    scopes: frozenset[str]
    expires_at: float
    token_id: str | None
    claims: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> ServicePrincipal:
        """Build from verified claims; ``iss`` and ``exp`` must already have been checked.

        ``claims`` is wrapped read-only, not copied: hand over a dict nobody else changes.
        """
        get = claims.get
        client_id, sub, jti = get("azp"), get("sub"), get("jti")
        if not isinstance(client_id, str):
            client_id = get("client_id")
        return cls(
            client_id=client_id if isinstance(client_id, str) else "",
            subject=sub if isinstance(sub, str) else None,
            issuer=claims["iss"],
            audiences=_audiences(get("aud")),
            scopes=_scopes(get("scope")),
            expires_at=claims["exp"],
            token_id=jti if isinstance(jti, str) else None,
            claims=MappingProxyType(claims) if isinstance(claims, dict) else claims,
        )

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every scope is granted; comparison is exact and case-sensitive (RFC 6749 §3.3)."""
        return self.scopes.issuperset(scopes)

    @property
    def realm_roles(self) -> frozenset[str]:
        """Realm roles (``realm_access.roles``)."""
        return _roles(self.claims.get("realm_access"))

    @property
    def client_roles(self) -> Mapping[str, frozenset[str]]:
        """Client roles per client id (``resource_access.<client>.roles``)."""
        return _client_roles(self.claims.get("resource_access"))

    def roles_of(self, client: str) -> frozenset[str]:
        """Client roles held for ``client``: those of the resource server, never the caller's ``azp``."""
        resource_access = self.claims.get("resource_access")
        return _roles(resource_access.get(client)) if isinstance(resource_access, dict) else frozenset()
