"""Pure JOSE: strict JSON, compact JWS, JWK filtering, the one algorithm table and the claim rules.

No I/O and no framework. May import only :mod:`fastapi_kc_m2m.errors`, joserfc and cryptography.
Malformed input raises :class:`ValueError` here; the callers decide what that means (an invalid token
for the verifier, a failed fetch for an answer from Keycloak).
"""
