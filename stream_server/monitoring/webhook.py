"""The webhook sender: POSTs each alert notice as JSON with a Slack-compatible ``text`` to
SESAME_ALERT_WEBHOOK. ``send`` never blocks; what to post when (order, retries with jittered
backoff, a bounded queue) is ``DeliveryCore``'s (delivery.py), woken by the monitor's one deadline
task through ``next_deadline()``/``handle_timer(now)``; ``wake`` tells that task a deadline moved.
Each post runs in a task of the sender's own TaskGroup, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Literal

import httpx

from broker import logs
from stream_server.monitoring.alerts import Alert
from stream_server.monitoring.delivery import (
    Delivered,
    DeliveryAction,
    DeliveryCore,
    Dropped,
    GaveUp,
    Post,
    Retrying,
)

log = logs.get("sesame.alerts")

Outcome = Literal["delivered", "retried", "failed", "dropped"]


class WebhookSender:
    """Delivers notices to one webhook URL; ``send`` never blocks."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float],
        wake: Callable[[], None],
        source: str = "sesame-voice",
        timeout_s: float = 5.0,
        core: DeliveryCore | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.url = url
        self.source = source
        self.timeout_s = timeout_s
        self.clock = clock
        self._wake = wake
        self.core = core or DeliveryCore()
        self._on_outcome = on_outcome or (lambda _o: None)
        self._client: httpx.AsyncClient | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._posting: asyncio.Task[None] | None = None  # its own, so stopping needs no TaskGroup privates
        self.delivered: list[Alert] = []  # bounded record of what went out (the status page lists it)

    async def __aenter__(self) -> WebhookSender:
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None and self._client is not None
        if self._posting is not None:
            self._posting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tg.__aexit__(None, None, None)
        self._tg = None
        await self._client.aclose()

    def send(self, alert: Alert) -> None:
        self._carry_out(self.core.send(alert, self.clock()))
        self._wake()

    def next_deadline(self) -> float | None:
        return self.core.next_deadline() if self._tg is not None else None

    def handle_timer(self, now: float) -> None:
        if self._tg is not None:
            self._carry_out(self.core.handle_timer(now))

    def _carry_out(self, actions: list[DeliveryAction]) -> None:
        for action in actions:
            match action:
                case Post(alert=alert):
                    assert self._tg is not None
                    self._posting = self._tg.create_task(self._post(alert), name="alert-webhook")
                case Delivered(alert=alert, attempt=attempt):
                    self._on_outcome("delivered")
                    self.delivered = [*self.delivered[-49:], alert]
                    log.info("alert_delivered", key=alert.key, state=alert.state, attempt=attempt)
                case Retrying(alert=alert, attempt=attempt, error=error, in_s=in_s):
                    self._on_outcome("retried")
                    log.warning(
                        "alert_retry", key=alert.key, attempt=attempt, error=error, in_s=round(in_s, 2)
                    )
                case GaveUp(alert=alert, error=error):
                    self._on_outcome("failed")
                    log.error("alert_not_delivered", key=alert.key, state=alert.state, error=error)
                case Dropped(alert=alert):
                    self._on_outcome("dropped")
                    log.warning("alert_dropped", key=alert.key, reason="queue_full")

    async def _post(self, alert: Alert) -> None:
        error = await self._request(alert.payload(self.source))
        self._posting = None
        self._carry_out(self.core.posted(error, self.clock()))
        self._wake()

    async def _request(self, body: dict[str, object]) -> str | None:
        """None when delivered, else a short error code."""
        assert self._client is not None
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"http_{response.status_code}"
