"""``uvicorn --workers N`` with a listening socket that keeps ``TCP_NODELAY`` on its connections.

uvicorn's own ``--workers`` binds its socket with ``proto`` 0, so asyncio never sets ``TCP_NODELAY`` on
the accepted connections and every keep-alive response after the first waits ~40 ms for the client's
delayed ACK (Kludex/uvicorn#3149, open): every app then measures the same ~700 requests/s. This binds
the socket as ``IPPROTO_TCP`` and hands it to uvicorn's own supervisor, as ``uvicorn.run`` does::

    python benchmarks/workers.py MODULE:FACTORY PORT WORKERS
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


def main() -> None:
    factory, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = uvicorn.Config(
        factory, factory=True, host="127.0.0.1", port=port, workers=workers, log_level="warning", access_log=False
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.set_inheritable(True)
    Multiprocess(config, sockets=[listener]).run()


if __name__ == "__main__":
    main()
