"""A deadline on request headers: uvicorn's h11 protocol with a timer from the moment a connection
opens (or its previous response ended) until a request's headers are complete.

uvicorn has none: a client trickling a header byte every few seconds keeps a connection and its
memory forever (its keep-alive timer is cancelled by any byte that arrives). Here the connection is
closed when ``SESAME_HEADER_TIMEOUT`` passes without complete headers. Bodies have their own
deadline (``guard.py``); websockets, once upgraded, belong to their own protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlinedH11(H11Protocol):
    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._cycle_armed: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._cycle_armed:
            self._disarm()  # a request's headers are complete (a new cycle began)

    def on_response_complete(self) -> None:
        finished = self.cycle
        super().on_response_complete()
        if self.cycle is finished:  # else a pipelined request's headers were already read
            self._arm()  # the next request on this connection has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        self._cycle_armed = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.get_protocol() is self and self.cycle is self._cycle_armed:
            self.transport.close()


def deadlined_h11(header_timeout_s: float) -> type[DeadlinedH11]:
    """The protocol class for ``uvicorn.Config(http=...)``, with this deadline."""
    return type("DeadlinedH11", (DeadlinedH11,), {"header_timeout_s": header_timeout_s})
