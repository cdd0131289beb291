"""The web layer: bearer extraction, the ASGI middleware, FastAPI dependencies, the one place refusals
become responses, request state, OpenAPI, and :class:`~.resource_server.KeycloakResourceServer`
(the verifier plus its app lifespan).

May import :mod:`..server` and everything below it, Starlette and FastAPI; never :mod:`..client`.
"""
