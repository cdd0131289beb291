"""DPoP (RFC 9449) requests, measured side by side in one run.

In process: raw ``cryptography`` ES256 verification (the floor a proof costs) against
``TokenVerifier.authenticate`` of a cached DPoP-bound token with a fresh ES256 proof per request (every
check of §4.3 and §7.1, nonce off, replay store in memory), and a repeated Bearer token for reference.
Target: DPoP request <= raw ES256 + 15 us. Best of interleaved rounds.

End to end: ``e2e.py``'s FastAPI app served by uvicorn (1 worker), unprotected and behind the middleware
(DPoP allowed, its default); the load generator is Python (a fresh proof per request cannot come from wrk), its proofs
minted before each round, so both apps pay the same client cost. Target: DPoP / unprotected >= 0.70.

    .venv/bin/python benchmarks/dpop.py [--seconds 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fastapi_kc_m2m import RequestContext, TokenVerifier
from fastapi_kc_m2m._jose.dpop import access_token_hash, make_proof
from fastapi_kc_m2m.testing import TestIssuer, generate_key
from fastapi_kc_m2m.testing.dpop import thumbprint

ROUNDS = 7
PER_ROUND = 400
PATH = "/orders"
URL = f"http://api.test{PATH}"


async def in_process() -> None:
    issuer = TestIssuer()
    key = generate_key("ES256")
    token = issuer.token(dpop_key=key)
    bearer = issuer.token()
    public = key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    sample = make_proof(key, htm="GET", htu=URL, iat=time.time(), ath=access_token_hash(token))
    head, body, _ = sample.split(".")
    message = f"{head}.{body}".encode()
    signature = key.private_key.sign(message, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
    async with TokenVerifier(issuer.settings(), transport=issuer.transport) as verifier:
        await verifier.verify(bearer)
        ath = access_token_hash(token)
        results: dict[str, list[float]] = {"raw": [], "dpop": [], "bearer": []}
        for _ in range(ROUNDS):
            proofs = [make_proof(key, htm="GET", htu=URL, iat=time.time(), ath=ath) for _ in range(PER_ROUND)]
            contexts = [RequestContext(token, "DPoP", "GET", URL, proof) for proof in proofs]
            start = time.perf_counter()
            for _ in range(PER_ROUND):
                public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            results["raw"].append((time.perf_counter() - start) / PER_ROUND * 1e6)
            start = time.perf_counter()
            for context in contexts:
                await verifier.authenticate(context)
            results["dpop"].append((time.perf_counter() - start) / PER_ROUND * 1e6)
            start = time.perf_counter()
            for _ in range(PER_ROUND):
                await verifier.verify(bearer)
            results["bearer"].append((time.perf_counter() - start) / PER_ROUND * 1e6)
    raw, dpop, repeated = (min(results[name]) for name in ("raw", "dpop", "bearer"))
    print(f"best of {ROUNDS} interleaved rounds of {PER_ROUND}")
    print(f"raw cryptography ES256 verify                 {raw:8.2f} us")
    print(f"DPoP request (cached bound token, new proof)  {dpop:8.2f} us   raw + {dpop - raw:.2f} us (target <= +15)")
    print(f"Bearer request (repeated token, reference)    {repeated:8.2f} us")


def end_to_end(options: argparse.Namespace) -> None:
    from e2e import keep_alive_load, own_app, start_server  # noqa: PLC0415 - the sibling benchmark's app and load

    key = generate_key("ES256")
    with TestIssuer.serving() as issuer:
        token = issuer.token(lifetime=3600, cnf={"jkt": thumbprint(key)}, typ="DPoP")
        settings = {"KC_M2M_ISSUERS": issuer.issuer, "KC_M2M_AUDIENCE": issuer.audience}
        servers = {False: start_server(own_app(), 1), True: start_server(own_app(settings), 1)}
        rates: dict[bool, list[float]] = {False: [], True: []}
        budget = int(options.seconds * 6000)  # more requests than any round can send
        try:
            for rnd in range(options.rounds + 1):  # the first round warms up
                for protected, (_, port) in servers.items():
                    requests = prepared(port, token, key, budget if protected else 0)
                    rate = keep_alive_load(port, iter(requests), options.seconds if rnd else 1.0, options.connections)
                    if rnd:
                        rates[protected].append(rate)
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait()
    plain, dpop = (statistics.median(rates[key]) for key in (False, True))
    ratio = statistics.median(p / u for p, u in zip(rates[True], rates[False], strict=True))
    shape = f"{options.connections} connections, {options.rounds} x {options.seconds:g} s"
    print(f"uvicorn 1 worker, Python load generator, {shape}")
    print(f"unprotected: {plain:8.0f} requests/s   (rounds: {', '.join(f'{r:.0f}' for r in rates[False])})")
    print(f"DPoP:        {dpop:8.0f} requests/s   (rounds: {', '.join(f'{r:.0f}' for r in rates[True])})")
    print(f"ratio DPoP/unprotected: {ratio:.2f} (median of the per-round ratios; target >= 0.70)")


def prepared(port: int, token: str, key: object, count: int) -> list[bytes]:
    """Requests for one round: with a fresh proof each (DPoP), or plain ones."""
    host = f"127.0.0.1:{port}"
    if not count:
        return [f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()] * 200_000
    ath, now, htu = access_token_hash(token), time.time(), f"http://{host}{PATH}"
    proofs = (make_proof(key, htm="GET", htu=htu, iat=now, ath=ath) for _ in range(count))  # type: ignore[arg-type]
    return [
        f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: DPoP {token}\r\nDPoP: {proof}\r\n\r\n".encode()
        for proof in proofs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one end-to-end measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating end-to-end pairs")
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    asyncio.run(in_process())
    end_to_end(options)


if __name__ == "__main__":
    main()
