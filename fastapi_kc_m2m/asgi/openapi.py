"""The OpenAPI description of the OAuth2 client-credentials flow (RFC 6749 §4.4) the routes require."""

from __future__ import annotations

from typing import Any

from ..settings import KeycloakSettings

__all__ = ["SCHEME_NAME", "document_openapi"]

#: Name of the security scheme under ``components.securitySchemes``.
SCHEME_NAME = "KeycloakClientCredentials"


def document_openapi(app: Any, settings: KeycloakSettings) -> None:
    """Point the documented client-credentials flow at Keycloak's token endpoint (RFC 6749 §4.4) and list
    the scopes the routes require, so Swagger UI's "Authorize" obtains a real token. No-op for apps
    without OpenAPI or without a protected route."""
    if not getattr(app, "openapi_url", None):
        return
    schema = app.openapi()
    scheme = schema.get("components", {}).get("securitySchemes", {}).get(SCHEME_NAME)
    if scheme is None:
        return
    required = {
        scope
        for operations in schema["paths"].values()
        for operation in operations.values()
        for requirement in operation.get("security", ())
        for scope in requirement.get(SCHEME_NAME, ())
    }
    flow = scheme["flows"]["clientCredentials"]
    flow["tokenUrl"] = f"{settings.trusted_issuers[0]}/protocol/openid-connect/token"
    flow["scopes"] = {scope: f"scope {scope}" for scope in sorted(required)}
