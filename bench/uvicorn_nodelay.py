"""``uvicorn`` with TCP_NODELAY on every connection, also with ``--workers N`` (``python -m bench.uvicorn_nodelay``).

uvicorn's multiprocess supervisor binds the listening socket itself and leaves
its ``proto`` at 0; accepted connections inherit it and asyncio then skips
``TCP_NODELAY`` (it checks ``proto == IPPROTO_TCP``), so with ``--workers 2``
every keep-alive response after the first waits ~40 ms for the client's
delayed ACK (uvicorn issue #3149, Linux). Re-wrapping the bound socket lets
the kernel report its real protocol. Single-process uvicorn (``meingym-tasks
web``) is not affected. Everything else is ``uvicorn``'s own command line.
"""

from __future__ import annotations

import socket
import sys

import uvicorn.config
from uvicorn.main import main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    fixed = socket.socket(fileno=sock.detach())  # family, type and proto (6) read back from the kernel
    fixed.set_inheritable(True)
    return fixed


uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
