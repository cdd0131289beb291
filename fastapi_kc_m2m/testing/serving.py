"""Serving an ASGI app for real on a free loopback port, with uvicorn in a thread (the ``testing`` extra);
over HTTPS requiring client certificates with :class:`TLSFiles`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TLSFiles", "loopback_socket", "serve_app"]


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """PEM files for mutual TLS: the server's certificate and key, and the CA its clients' certificates
    must chain to (RFC 8446 §4.3.2, §4.4.2)."""

    certfile: str | os.PathLike[str]
    keyfile: str | os.PathLike[str]
    ca_certs: str | os.PathLike[str]


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1, for :func:`serve_app`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_app(
    app: ASGIApp,
    sock: socket.socket | None = None,
    *,
    lifespan: Literal["auto", "on", "off"] = "off",
    tls: TLSFiles | None = None,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on ``sock`` (default: a free loopback port); yield its base URL.
    With ``tls``, over HTTPS requiring a client certificate, which the app finds in the ASGI TLS extension
    (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, leaf first)."""
    try:
        import uvicorn  # noqa: PLC0415 - only the "testing" extra installs it
    except ModuleNotFoundError:
        message = "serving on loopback needs uvicorn: pip install 'fastapi_kc_m2m[testing]'"
        raise ModuleNotFoundError(message, name="uvicorn") from None

    sock = sock or loopback_socket()
    options: dict[str, Any] = {} if tls is None else _tls_options(tls)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        yield f"{'http' if tls is None else 'https'}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _tls_options(tls: TLSFiles) -> dict[str, Any]:
    """uvicorn's options for mutual TLS, with :func:`_peer_certificate_protocol` as its HTTP/1.1 protocol."""
    return {
        "ssl_certfile": tls.certfile,
        "ssl_keyfile": tls.keyfile,
        "ssl_ca_certs": tls.ca_certs,
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "http": _peer_certificate_protocol(),
    }


def _peer_certificate_protocol() -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, filling the ASGI TLS extension's ``client_cert_chain`` with the peer's
    certificate, which uvicorn itself does not yet; one protocol object serves one connection."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415 - the "testing" extra

    class PeerCertificateProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
            der = None if tls is None else tls.getpeercert(binary_form=True)
            if der is not None:
                self.app = _with_client_certificate(self.app, ssl.DER_cert_to_PEM_cert(der))

    return PeerCertificateProtocol


def _with_client_certificate(app: ASGIApp, pem: str) -> ASGIApp:
    """``app`` seeing ``pem`` as the connection's client certificate (ASGI TLS extension)."""

    async def with_certificate(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": {"client_cert_chain": [pem]}}
        await app(scope, receive, send)

    return with_certificate
