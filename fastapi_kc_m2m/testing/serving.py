"""Serving an ASGI app for real on a free loopback port, with uvicorn in a thread (the ``testing`` extra)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Literal

from starlette.types import ASGIApp

__all__ = ["loopback_socket", "serve_app"]


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1, for :func:`serve_app`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_app(
    app: ASGIApp, sock: socket.socket | None = None, *, lifespan: Literal["auto", "on", "off"] = "off"
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on ``sock`` (default: a free loopback port); yield its base URL."""
    try:
        import uvicorn  # noqa: PLC0415 - only the "testing" extra installs it
    except ModuleNotFoundError:
        message = "serving on loopback needs uvicorn: pip install 'fastapi_kc_m2m[testing]'"
        raise ModuleNotFoundError(message, name="uvicorn") from None

    sock = sock or loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
