"""Talking to Keycloak: bounded HTTP exchanges, OIDC discovery (one parser for both sides), single
flight, client authentication towards its endpoints (RFC 6749 §2.3.1, RFC 7523), reading token
answers (RFC 6749 §5), and the telemetry both sides share (metric families per registry, spans).

Used by the resource server (:mod:`..server`) and the calling side (:mod:`..client`) alike, so it never
imports either of them, the settings or a web framework. May import :mod:`.._jose`,
:mod:`..errors`, httpx and joserfc, and lazily the optional prometheus_client and opentelemetry-api.
"""
