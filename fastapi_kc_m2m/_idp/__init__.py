"""Talking to Keycloak: bounded HTTP exchanges, OIDC discovery (one parser for both sides), single
flight, and client authentication towards its endpoints (RFC 6749 §2.3.1, RFC 7523).

Used by the resource server (:mod:`..server`) and the calling side (:mod:`..client`) alike, so it never
imports either of them, the settings or a web framework. May import :mod:`.._jose`,
:mod:`..errors`, httpx and joserfc.
"""
