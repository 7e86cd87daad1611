"""The gateway's listening socket: inherited from ``sesame-voice up``, or bound here.

Under ``up`` the socket is made once by the supervisor and inherited by every gateway process it
starts (SESAME_LISTEN_FD names the descriptor): during a rolling reload the old and the new
gateway accept from the same queue, and the old one stops accepting by closing its copy, so no
connection is ever left in a queue that goes away. Started on its own, the gateway binds its port
with SO_REUSEPORT, so that a second gateway can be started on the same port before the first one
drains (on Linux connections are then spread over both; those still queued on a listener that
closes are reset, which is why ``up`` shares one socket instead).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from broker.errors import ConfigError


def listening_socket(host: str, port: int, env: Mapping[str, str]) -> socket.socket:
    raw = env.get("SESAME_LISTEN_FD", "").strip()
    if raw:
        try:
            sock = socket.socket(fileno=int(raw))
        except (ValueError, OSError) as exc:
            raise ConfigError(f"SESAME_LISTEN_FD={raw!r} is not an open socket: {exc}") from exc
        if sock.type != socket.SOCK_STREAM:
            raise ConfigError(f"SESAME_LISTEN_FD={raw!r} is not a stream socket")
        return sock
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP,
    # and without it Nagle + delayed ACK add ~10 ms to every websocket frame (gateway_overhead.py).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(2048)
    return sock
