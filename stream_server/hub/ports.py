"""The ports through which the edges reach the hub: small ``typing.Protocol`` classes.

Only the composition root (stream_server/main.py) knows the concrete ``Hub``; a module that needs
the hub names the port with the few members it uses. The ports that only one module needs live in
that module (``mqtt.inbound.InboundHost``, ``mqtt.topic_sessions.TopicSessionHost``,
``monitoring.status_view.ViewedGateway``); these are the ones several share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from broker.errors import ProtocolError
from broker.wire import Message
from stream_server.config import GatewayConfig
from stream_server.hub.live_sessions import CloseReason, SessionLink, Sessions


class SessionHost(Protocol):
    """Opens sessions, feeds them client messages, closes them."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def sessions(self) -> Sessions: ...

    def open_session(
        self,
        voice: str | None = ...,
        sample_rate: int = ...,
        fmt: str = ...,
        *,
        resumable: bool = ...,
        session_id: str | None = ...,
    ) -> SessionLink: ...

    def close_session(self, link: SessionLink, reason: CloseReason = ...) -> None: ...

    def receive(self, link: SessionLink, msg: Message) -> None: ...

    def refuse(self, link: SessionLink, exc: ProtocolError, path: str = ...) -> None: ...


class TaskHost(Protocol):
    """Runs a task in the hub's TaskGroup (cancelled when the hub stops)."""

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...
