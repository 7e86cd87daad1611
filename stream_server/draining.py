"""The hub as a drain target (``drainer.DrainTarget``): its websocket sessions, and how one is told
to reconnect (a ``reconnect`` message, then the writer closes the socket with 1012)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .protocol import Reconnect
from .session import SessionCore

if TYPE_CHECKING:
    from .hub import Hub

RELOAD = "gateway_reload"  # the close reason the websocket writer answers with code 1012


def busy(core: SessionCore) -> bool:
    """A turn is in flight: sentences not yet finished, or text not yet spoken."""
    return bool(core.queue) or core.pending_chars() > 0


class HubDrainTarget:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def live_sessions(self) -> list[tuple[str, bool]]:
        return [(sid, busy(link.core)) for sid, link in list(self.hub.sessions.items())]

    def tell_reconnect(self, session_id: str) -> None:
        link = self.hub.sessions.get(session_id)
        if link is None:
            return
        with contextlib.suppress(Exception):
            link.out.put_nowait(Reconnect(reason=RELOAD).to_json())
        link.close_reason = RELOAD
        self.hub.close_session(link, RELOAD)
        with contextlib.suppress(Exception):
            link.out.put_nowait(None)
