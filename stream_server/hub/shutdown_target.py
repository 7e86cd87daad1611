"""The hub as a drain target (``drainer.DrainTarget``): its live sessions, and how one is told to
reconnect (a ``reconnect`` message, then the websocket writer closes the socket with 1012)."""

from __future__ import annotations

from broker.ws_protocol import Reconnect
from stream_server.core.session import SessionCore
from stream_server.hub.live_sessions import CloseReason
from stream_server.hub.ports import SessionHost


def busy(core: SessionCore) -> bool:
    """A turn is in flight: sentences not yet finished, or text not yet spoken."""
    return bool(core.queue) or core.pending_chars() > 0


class HubDrainTarget:
    def __init__(self, hub: SessionHost) -> None:
        self.hub = hub

    def live_sessions(self) -> list[tuple[str, bool]]:
        return [(link.session_id, busy(link.core)) for link in self.hub.sessions.all()]

    def tell_reconnect(self, session_id: str) -> None:
        link = self.hub.sessions.get(session_id)
        if link is None:
            return
        link.push(Reconnect(reason=CloseReason.GATEWAY_RELOAD.value))
        self.hub.close_session(link, CloseReason.GATEWAY_RELOAD)
        link.end()
