"""systemd's service notification protocol (sd_notify(3)): one datagram to ``$NOTIFY_SOCKET``.

The worker says ``READY=1`` when it is ready, ``WATCHDOG=1`` from its heartbeat loop (so a frozen
event loop stops the pings and systemd's ``WatchdogSec`` kills and restarts it), ``STATUS=...`` on
state changes and ``STOPPING=1`` when it drains. Without ``$NOTIFY_SOCKET`` (not under systemd, or
``Type=simple``) every call does nothing. The protocol is a few lines, so no library is pulled in
for it (the PyPI ones are either unmaintained, ``sdnotify`` 0.3.2 from 2017, or need libsystemd).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        # An address starting with '@' is in the abstract namespace: a leading NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines; False when not under systemd or the socket is gone."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # MAINPID names the sender: `sesame-voice up` listens on one socket for all children.
            message = "\n".join((*fields, f"MAINPID={os.getpid()}"))
            self._sock.sendto(message.encode(), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
