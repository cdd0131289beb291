"""A fixed-input, in-process run of ``TokenVerifier.verify`` over new tokens, for instruction counts.

``--write FILE`` mints tokens once (TestIssuer, RS256, valid for ten years) and stores them with the
public JWK Set; each later run verifies the first ``--count`` of them, each seen for the first time,
with the JWK Set served from memory (no network). The same file before and after a change gives
comparable counts: run it under callgrind with ``--count 0`` and ``--count N``; ``(Ir(N) - Ir(0)) / N``
is what one new token costs (start-up, imports and the key set fetch cancel out)::

    .venv/bin/python benchmarks/callgrind_verify.py --write /tmp/tokens.json --count 1000
    for n in 0 1000; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
            .venv/bin/python benchmarks/callgrind_verify.py /tmp/tokens.json --count $n
    done
    callgrind_annotate --inclusive=yes /tmp/cg.1000 | head -40

Without valgrind it prints the wall time per token, the figure ``verify.py`` measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from fastapi_kc_m2m import KeycloakResourceServer, KeycloakSettings
from fastapi_kc_m2m.testing import TestIssuer

TEN_YEARS = 10 * 365 * 24 * 3600
JWKS_URI = "http://127.0.0.1:1/certs"  # answered from memory by the transport below


def write(path: Path, count: int) -> None:
    """``count`` new tokens of one TestIssuer and its public JWK Set, as JSON at ``path``."""
    issuer = TestIssuer()
    tokens = [issuer.token(lifetime=TEN_YEARS) for _ in range(count)]
    document = {"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks(), "tokens": tokens}
    path.write_text(json.dumps(document))


async def verify(document: dict[str, Any], count: int) -> float:
    """Verifies the first ``count`` tokens of ``document``; the seconds this took."""
    jwks = json.dumps(document["jwks"]).encode()
    headers = {"content-type": "application/json"}
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers=headers, stream=httpx.ByteStream(jwks)))
    settings = KeycloakSettings(
        issuers=[document["issuer"]],
        audience=document["audience"],
        jwks_uris={document["issuer"]: JWKS_URI},
        allow_http=True,  # the issuer's http:// URL is never contacted: the transport answers from memory
    )
    tokens = document["tokens"][:count]
    async with KeycloakResourceServer(settings, transport=transport) as verifier:
        start = time.perf_counter()
        for token in tokens:
            await verifier.verify(token)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, nargs="?", help="tokens written by --write")
    parser.add_argument("--write", type=Path, help="mint the fixed input into this file and stop")
    parser.add_argument("--count", type=int, default=1000, help="tokens to mint, or to verify")
    options = parser.parse_args()
    if options.write is not None:
        write(options.write, max(options.count, 1))
        return
    if options.file is None:
        parser.error("give the file written by --write")
    document = json.loads(options.file.read_text())
    if options.count > len(document["tokens"]):
        parser.error(f"the file holds {len(document['tokens'])} tokens")
    seconds = asyncio.run(verify(document, options.count))
    if options.count:
        print(f"{options.count} new tokens verified, {seconds / options.count * 1e6:.1f} us each (wall time)")


if __name__ == "__main__":
    main()
