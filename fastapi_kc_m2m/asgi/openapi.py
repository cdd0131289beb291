"""The OpenAPI description of what the routes require: the OAuth2 client-credentials flow (RFC 6749 §4.4)
with Keycloak's token endpoint and the scopes, and the refusals (RFC 6750 §3.1) of protected routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from ..settings import KeycloakSettings
from .dependencies import SCHEME_NAME, Requirement, route_requirements

__all__ = ["SCHEME_NAME", "document_openapi"]

_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "enum": ["invalid_request", "invalid_token", "insufficient_scope"]},
                "error_description": {"type": "string"},
            },
        }
    }
}
_MARK = "_kc_m2m_documented"
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer challenge (RFC 6750 §3)", "schema": {"type": "string"}}}


def document_openapi(app: FastAPI, settings: KeycloakSettings) -> None:
    """Describe the client-credentials flow in the app's OpenAPI each time it is built (so routes added
    later count): Keycloak's token endpoint, the scopes the routes require (so Swagger UI's "Authorize"
    obtains a real token), and the 401/403 of every protected route."""
    build = app.openapi
    if getattr(build, _MARK, False):
        return  # documented already (install, lifespan and middleware may each ask)

    def openapi() -> dict[str, Any]:
        schema = build()
        _describe(schema, iter_route_contexts(app.routes), settings)
        return schema

    setattr(openapi, _MARK, True)
    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def _describe(schema: dict[str, Any], routes: Iterable[RouteContext], settings: KeycloakSettings) -> None:
    scheme = schema.get("components", {}).get("securitySchemes", {}).get(SCHEME_NAME)
    if scheme is None:
        return
    required: set[str] = set()
    for route in routes:
        for operation in _operations(schema, route):
            scopes = [scope for needed in operation["security"] for scope in needed.get(SCHEME_NAME, ())]
            required.update(scopes)
            _document_refusals(operation, scopes, route_requirements(route))
    flow = scheme["flows"]["clientCredentials"]
    flow["tokenUrl"] = f"{settings.trusted_issuers[0]}/protocol/openid-connect/token"
    flow["scopes"] = {scope: f"scope {scope}" for scope in sorted(required)}


def _operations(schema: dict[str, Any], route: RouteContext) -> list[dict[str, Any]]:
    """The documented operations of ``route`` that require this scheme."""
    if not isinstance(route.original_route, APIRoute):
        return []
    path = schema.get("paths", {}).get(route.path_format, {})
    operations = (path.get(method.lower()) for method in route.methods or ())
    return [op for op in operations if op and any(SCHEME_NAME in needed for needed in op.get("security", ()))]


def _document_refusals(operation: dict[str, Any], scopes: list[str], requirements: Iterable[Requirement]) -> None:
    """A 401 (RFC 6750 §3.1 ``invalid_token``) and, when something is required, a 403 listing it."""
    responses = operation.setdefault("responses", {})
    responses.setdefault("401", _refusal("No valid access token (RFC 6750 §3.1 invalid_token)"))
    needs = [f"scopes {' '.join(scopes)}"] if scopes else []
    needs += [requirement.documented for requirement in requirements if requirement.documented]
    if needs:
        responses.setdefault("403", _refusal(f"The access token lacks {'; '.join(needs)} (insufficient_scope)"))


def _refusal(description: str) -> dict[str, Any]:
    return {"description": description, "headers": _CHALLENGE, "content": _BODY}
