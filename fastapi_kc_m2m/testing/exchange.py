"""The test issuer's token exchange (RFC 8693 §2), with Keycloak 26.2+ standard token exchange (V2) rules.

Checked in Keycloak's order, each refusal in its shape (RFC 6749 §5.2 code and status):

- the requester is a confidential client that authenticated (else ``invalid_client``, 401) and has
  standard token exchange enabled (``exchange_audiences`` registered; else ``unauthorized_client``);
- ``subject_token`` present, ``subject_token_type`` the access-token type and ``requested_token_type``
  absent or the same (Keycloak issues no refresh token for a client-credentials subject): else
  ``invalid_request``;
- the subject token is one this issuer signed, active and not revoked (else ``invalid_token``), not
  sender-constrained (no proof of its key can come with the request: ``invalid_request``), and names
  the requester in ``aud`` (else ``access_denied``, 403);
- each ``audience`` is a registered client (else ``invalid_client``) among the requester's
  ``exchange_audiences`` (only narrows: else ``invalid_request``); scopes only narrow the subject's
  (else ``invalid_scope``).

The new token keeps the subject's ``sub`` and service-account name, has ``azp`` = the requester, ``aud``
= the audiences, the subject's roles of those audiences, and no ``act`` (impersonation, not delegation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..server.exchange import ACCESS_TOKEN_TYPE
from .clients import RegisteredClient
from .dpop import Refusal

if TYPE_CHECKING:
    from .issuer import TestIssuer

__all__ = ["exchange_grant"]

_INVALID_REQUEST = Refusal("invalid_request", 400)


def exchange_grant(issuer: TestIssuer, requester: str | None, form: Mapping[str, str]) -> dict[str, Any] | Refusal:
    """The token exchange response for the authenticated ``requester`` (``None``: not authenticated),
    or the refusal; one ``audience`` at most (the issuer refuses repeated form fields)."""
    issuer.requests["exchange"] += 1
    if requester is None:
        return Refusal("invalid_client", 401)
    client = issuer.clients.clients[requester]
    refused = _refused_request(client, form)
    if refused is not None:
        return refused
    subject = _subject(issuer, form["subject_token"], requester)
    if isinstance(subject, Refusal):
        return subject
    audiences = [form["audience"]] if "audience" in form else list(client.exchange_audiences or ())
    refused = _refused_audience(issuer, client, audiences)
    if refused is not None:
        return refused
    granted = str(subject.get("scope", "")).split()
    requested = form["scope"].split() if "scope" in form else granted
    if not set(requested) <= set(granted):
        return Refusal("invalid_scope", 400)
    return _issue(issuer, subject, requester, audiences, requested)


def _refused_request(client: RegisteredClient, form: Mapping[str, str]) -> Refusal | None:
    """Standard token exchange enabled for the requester, and the form's token types (§2.1)."""
    if client.exchange_audiences is None:
        return Refusal("unauthorized_client", 400)
    if "subject_token" not in form or form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
        return _INVALID_REQUEST
    if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        return _INVALID_REQUEST
    return None


def _subject(issuer: TestIssuer, token: str, requester: str) -> dict[str, Any] | Refusal:
    """The subject token's claims if Keycloak V2 would exchange it for ``requester``."""
    claims = issuer._issued_claims(token)
    if claims is None or not issuer.introspection_answer(token, requester).get("active"):
        return Refusal("invalid_token", 400)
    if "cnf" in claims:
        return _INVALID_REQUEST
    aud = claims.get("aud")
    if requester not in (aud if isinstance(aud, list) else [aud]):
        return Refusal("access_denied", 403)
    return claims


def _refused_audience(issuer: TestIssuer, client: RegisteredClient, audiences: list[str]) -> Refusal | None:
    """Every audience must exist and be one the requester's own tokens may name (only narrows)."""
    if any(audience not in issuer.clients.clients for audience in audiences):
        return Refusal("invalid_client", 400)
    if not set(audiences) <= set(client.exchange_audiences or ()):
        return _INVALID_REQUEST
    return None


def _issue(
    issuer: TestIssuer, subject: Mapping[str, Any], requester: str, audiences: list[str], scopes: list[str]
) -> dict[str, Any]:
    """RFC 8693 §2.2.1: the new access token, without a refresh token."""
    caller = issuer.clients.clients.get(str(subject.get("azp")), RegisteredClient(str(subject.get("azp"))))
    roles = {name: caller.client_roles[name] for name in audiences if name in caller.client_roles}
    token = issuer.token(
        client_id=requester,
        audience=audiences[0] if len(audiences) == 1 else audiences,
        scope=" ".join(scopes),
        lifetime=issuer.token_lifetime,
        realm_roles=caller.realm_roles,
        client_roles=roles,
        sub=subject.get("sub"),
        preferred_username=subject.get("preferred_username"),
    )
    return {
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": issuer.token_lifetime,
        "refresh_expires_in": 0,
        "not-before-policy": 0,
        "scope": " ".join(scopes),
    }
