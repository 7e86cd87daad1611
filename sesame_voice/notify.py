"""The supervisor's end of systemd's notify protocol: children say ``READY=1`` to ``up``.

``up`` binds a Unix datagram socket and gives its path to every child as ``NOTIFY_SOCKET`` (the
variable systemd uses, so a child speaks the same protocol under both: see
``broker/sdnotify.py``). Each datagram is ``KEY=value`` lines; a child names itself with
``MAINPID=``. ``wait_ready(pid)`` resolves when that pid has said ``READY=1``: how a rolling
reload knows a new gateway accepts before the old one is drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from broker import logs

log = logs.get("sesame.supervisor")

MAX_DATAGRAM = 4096


def parse(datagram: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in datagram.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


class NotifyListener(asyncio.DatagramProtocol):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.ready: set[int] = set()
        self._waiters: dict[int, asyncio.Event] = {}
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> NotifyListener:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport
        return self

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def datagram_received(self, data: bytes, addr: object) -> None:
        fields = parse(data[:MAX_DATAGRAM])
        try:
            pid = int(fields.get("MAINPID", ""))
        except ValueError:
            return  # without MAINPID we cannot tell who spoke
        if fields.get("READY") == "1":
            self.ready.add(pid)
            waiter = self._waiters.get(pid)
            if waiter is not None:
                waiter.set()

    def forget(self, pid: int) -> None:
        self.ready.discard(pid)
        self._waiters.pop(pid, None)

    async def wait_ready(self, pid: int, timeout_s: float) -> bool:
        if pid in self.ready:
            return True
        event = self._waiters.setdefault(pid, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        return True
