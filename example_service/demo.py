"""Demo without Keycloak: a Keycloak-shaped test issuer on loopback, and the verifier judging its tokens.

Run with ``make demo``. Prints one row per token: who it claims to be, what it carries, and the verdict
with its reason, exactly as a resource server would answer (RFC 6750 error codes).
"""

from __future__ import annotations

import asyncio

from fastapi_kc_m2m import AuthError, KeycloakAuth
from fastapi_kc_m2m.testing import TestIssuer


async def judge(auth: KeycloakAuth, token: str) -> tuple[str, str, str, str]:
    """Verify ``token`` and describe the outcome as (client, scopes, status, why)."""
    try:
        principal = await auth.verify(token)
    except AuthError as refusal:
        return "-", "-", f"{refusal.status_code} {refusal.error or ''}".strip(), refusal.description
    return principal.client_id, " ".join(sorted(principal.scopes)), "200", "accepted"


async def run(issuer: TestIssuer) -> None:
    cases = {
        "valid token for machine-b": issuer.token(scope="orders:read orders:write"),
        "valid token, other caller": issuer.token(client_id="reporting", scope="orders:read"),
        **{name.replace("_", " "): token for name, token in issuer.bad_tokens().items()},
    }
    async with KeycloakAuth(issuer.settings()) as auth:
        rows = [(case, *await judge(auth, token)) for case, token in cases.items()]
    headings = ("token", "client", "scopes", "status", "why")
    widths = [max(len(str(row[i])) for row in [headings, *rows]) for i in range(len(headings))]
    for row in [headings, tuple("-" * width for width in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    served = issuer.requests
    print(f"\nissuer {issuer.issuer}: discovery served {served['discovery']}x, key set {served['jwks']}x")


def main() -> None:
    with TestIssuer.serving(realm="demo") as issuer:
        asyncio.run(run(issuer))


if __name__ == "__main__":
    main()
