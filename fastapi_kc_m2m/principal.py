"""The verified calling machine: an immutable, typed view of a Keycloak access token's claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from ._jose.claims import calling_client

__all__ = ["Actor", "ServicePrincipal"]

_EMPTY = frozenset({""})
#: Nested ``act`` claims read at most this deep; a longer chain is cut there.
_MAX_ACTORS = 16


class Actor(NamedTuple):
    """One party of an ``act`` or ``may_act`` claim (RFC 8693 §4.1, §4.4): its ``sub``, ``client_id``
    and ``iss``, each ``None`` when absent or not a string."""

    subject: str | None
    client_id: str | None
    issuer: str | None

    @classmethod
    def from_claim(cls, value: Mapping[str, Any]) -> Actor:
        return cls(_string(value.get("sub")), _string(value.get("client_id")), _string(value.get("iss")))


def _actors(value: Any) -> tuple[Actor, ...]:
    """RFC 8693 §4.1: the current actor first, then each prior one from the nested ``act`` members."""
    chain: list[Actor] = []
    while isinstance(value, dict) and len(chain) < _MAX_ACTORS:
        chain.append(Actor.from_claim(value))
        value = value.get("act")
    return tuple(chain)


def _strings(value: Any) -> frozenset[str]:
    """A list of strings as a set; anything else, even one non-string member, is malformed: nothing."""
    if isinstance(value, list):
        strings = [item for item in value if type(item) is str]
        if len(strings) == len(value):
            return frozenset(strings)
    return frozenset()


def _scopes(value: Any) -> frozenset[str]:
    """RFC 6749 §3.3 / RFC 8693 §4.2: a string of scopes separated by %x20 only (tabs, newlines and no-break
    spaces stay inside a scope); a list of strings is tolerated."""
    if isinstance(value, str):
        scopes = frozenset(value.split(" "))
        return scopes - _EMPTY if "" in scopes else scopes
    return _strings(value)


def _roles(access: Any) -> frozenset[str]:
    return _strings(access.get("roles")) if isinstance(access, dict) else frozenset()


def _client_roles(resource_access: Any) -> Mapping[str, frozenset[str]]:
    if not isinstance(resource_access, dict):
        return MappingProxyType({})
    return MappingProxyType({client: _roles(access) for client, access in resource_access.items()})


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _audiences(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    """Who called: the client behind a verified token, its scopes and roles.

    Malformed role or scope claims read as empty, so authorization refuses (403) rather than fails.
    Views used on every request (client, issuer, scopes, expiry) are fields; the others are computed from
    ``claims`` when asked for, keeping verification of a new token cheap.
    """

    client_id: str
    issuer: str
    scopes: frozenset[str]
    expires_at: float
    claims: Mapping[str, Any] = field(repr=False)
    #: The realm name when ``issuer`` is ``<server_url>/realms/<name>`` of the settings, else None.
    realm: str | None = None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, realm: str | None = None) -> ServicePrincipal:
        """Build from verified claims; ``iss`` and ``exp`` must already have been checked, ``realm``
        derived from ``iss`` by the verifier (:meth:`~.settings.KeycloakSettings.realm_of`).

        ``claims`` is wrapped read-only, not copied: hand over a dict nobody else changes.
        """
        return cls(
            client_id=calling_client(claims) or "",
            issuer=claims["iss"],
            scopes=_scopes(claims.get("scope")),
            expires_at=claims["exp"],
            claims=MappingProxyType(claims) if isinstance(claims, dict) else claims,
            realm=realm,
        )

    @property
    def subject(self) -> str | None:
        """The service-account user's id (``sub``)."""
        return _string(self.claims.get("sub"))

    @property
    def audiences(self) -> tuple[str, ...]:
        """The audiences (``aud``), as a tuple even when the claim is one string."""
        return _audiences(self.claims.get("aud"))

    @property
    def act(self) -> tuple[Actor, ...]:
        """The delegation chain (RFC 8693 §4.1; Keycloak 26.8's experimental delegation): who acts for the
        subject, current actor first; empty without ``act``. Informational: no check of this package
        uses it (§4.1: only the current actor counts for access control, and only if you decide so)."""
        return _actors(self.claims.get("act"))

    @property
    def may_act(self) -> Actor | None:
        """Who may act for the subject (RFC 8693 §4.4), if the token says; informational like :attr:`act`."""
        value = self.claims.get("may_act")
        return Actor.from_claim(value) if isinstance(value, dict) else None

    @property
    def token_id(self) -> str | None:
        """The token's id (``jti``), an opaque string (Keycloak prefixes it, e.g. ``trrtcc:``)."""
        return _string(self.claims.get("jti"))

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
