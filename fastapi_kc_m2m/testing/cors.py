"""CORS at the test issuer's token endpoint, as Keycloak answers for its clients' web origins (``webOrigins``).

A browser page (Swagger UI's "Authorize", say) on another origin may post to the token endpoint only if
the answer names its origin in ``Access-Control-Allow-Origin`` (Fetch standard, "CORS protocol"); the
preflight ``OPTIONS`` a credentialed request needs first is answered with the methods and headers Keycloak
allows. Only origins among the issuer's ``web_origins`` (``*``: any, as in Keycloak) get those headers;
for others the browser refuses to hand the answer to the page.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["add_cors_headers", "allowed_origin", "preflight"]

#: The request headers Keycloak's preflight answer allows (its ``Cors.DEFAULT_ALLOW_HEADERS``, with auth).
ALLOW_HEADERS = (
    "Origin, Accept, X-Requested-With, Content-Type, Access-Control-Request-Method, "
    "Access-Control-Request-Headers, DPoP, Authorization"
)
#: How long a browser may reuse a preflight answer, in seconds (Keycloak's ``Cors.DEFAULT_MAX_AGE``).
MAX_AGE = "3600"


def allowed_origin(web_origins: Collection[str], request: Request) -> str | None:
    """The request's ``Origin`` if it is among ``web_origins`` (``*``: any), else ``None``."""
    origin = request.headers.get("origin")
    return origin if origin is not None and (origin in web_origins or "*" in web_origins) else None


def add_cors_headers(web_origins: Collection[str], request: Request, response: Response) -> None:
    """Let an allowed origin read ``response``, with credentials (an ``Authorization`` header)."""
    response.headers["Vary"] = "Origin"
    origin = allowed_origin(web_origins, request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"


def preflight(web_origins: Collection[str], request: Request) -> Response:
    """The answer to a CORS preflight ``OPTIONS``: what an allowed origin may send; 200 in any case."""
    response = Response(status_code=200)
    add_cors_headers(web_origins, request, response)
    if allowed_origin(web_origins, request) is not None:
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response
