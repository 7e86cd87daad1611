"""The gateway's MQTT publishes: two bounded queues, each emptied by one named task (an adapter).

Jobs and cancels go on the control queue, so they never wait behind the bulk copies of session
events and audio for MQTT listeners. One with nothing ahead of it is written to the socket where it
is made (``send``; the control task then only awaits its PUBACK): a job no longer waits for a pass
of the loop to wake the control task (issue 20). When a queue is full the publish is dropped and counted
(``sesame_dropped_total{what="mqtt_publish"}``); a dropped or failed job is reported back
(``on_job_unsent``) so that the scheduler fails it over. Cancels that could not be published
(broker down) are sent again on reconnect, so a worker does not spend its time on sentences nobody
is waiting for. A job whose connection closed before its PUBACK is not reported: it is in flight,
and the scheduler sends it again when the link lands (``broker_moved``), without waiting for that
PUBACK's timeout behind it. When the link drops, publishes wait up to ``LINK_WAIT_S`` for it to land on a
broker node again (the next node of a cluster takes a moment), then fail at once. Plain QoS 0
publishes that are waiting together (the copies of session audio and events) go out as one batch
of up to ``BATCH_MAX`` in one write (``broker/publish_batch.py``), in the queue's order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from broker import logs, topics
from broker.errors import BrokerError, PubackLost
from broker.link import MqttLink
from broker.messages import Cancel
from stream_server.monitoring.metrics import Metrics

log = logs.get("sesame.gateway")

MQTT_OUT_QUEUE = 20_000
LINK_WAIT_S = 1.0
BATCH_MAX = 2048  # ~4 MB of 40 ms frames: a starved loop still empties the queue in few passes


@dataclass(frozen=True, slots=True)
class Started:
    """A control publish already written (``MqttOut.send``); the control task awaits its ack."""

    publish: Publish
    done: Awaitable[None]


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    job_id: str | None = None  # a job: its failure is reported
    cancels: tuple[str, ...] = ()  # a cancel: resent on reconnect if it fails
    expiry_s: int | None = None  # MQTT v5 message expiry, counted by the broker
    retain: bool = False  # a session claim (stream_server/core/claims.py)

    @property
    def plain(self) -> bool:
        """A QoS 0 message with nothing to report: it may go out in a batch."""
        return self.qos == 0 and not self.retain and self.expiry_s is None and self.job_id is None


class MqttOut:
    def __init__(
        self,
        link: MqttLink,
        metrics: Metrics,
        on_job_unsent: Callable[[str, str], None],
        queue_size: int = MQTT_OUT_QUEUE,
    ) -> None:
        self.link = link
        self.metrics = metrics
        self.on_job_unsent = on_job_unsent
        self.control: asyncio.Queue[Publish | Started] = asyncio.Queue(queue_size)
        self.bulk: asyncio.Queue[Publish | Started] = asyncio.Queue(queue_size)
        self._taken = False  # the control task holds a publish it has not written yet
        self.unsent_cancels: set[str] = set()
        self._grace_until = 0.0  # loop time until which a publish waits for the link to come back

    def send(self, item: Publish, control: bool = True) -> None:
        """Queue a publish. A job or cancel with nothing of ours ahead of it is written to the
        socket here and now (the order on the wire is the queue's); the control task awaits its
        ack and reports a failure, as for one it writes itself."""
        queue = self.control if control else self.bulk
        work: Publish | Started = item
        if control and queue.empty() and not self._taken and self.link.connected.is_set():
            with contextlib.suppress(BrokerError):  # not written: the control task tries it
                work = Started(item, self._publish(item))
        try:
            queue.put_nowait(work)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("mqtt_publish").inc()
            if item.job_id is not None:
                self.on_job_unsent(item.job_id, "broker_backlog")
            self.unsent_cancels.update(item.cancels)

    def cancel(self, job_ids: tuple[str, ...]) -> None:
        self.send(Publish(topics.CANCEL, Cancel(job_ids=job_ids).to_bytes(), 1, cancels=job_ids))

    def resend_cancels(self) -> None:
        """On (re)connect: the cancels that did not get out."""
        if self.unsent_cancels:
            job_ids, self.unsent_cancels = tuple(sorted(self.unsent_cancels)), set()
            log.info("resending_cancels", jobs=len(job_ids))
            self.cancel(job_ids)

    def link_lost(self) -> None:
        """The link dropped: publishes wait up to LINK_WAIT_S for it to land on a broker node
        again (a cluster node's death is a move, not an outage), then fail at once."""
        self._grace_until = asyncio.get_running_loop().time() + LINK_WAIT_S

    async def run(self, queue: asyncio.Queue[Publish | Started]) -> None:
        loop = asyncio.get_running_loop()
        held: Publish | Started | None = None  # taken from the queue while gathering a batch: next
        while True:
            taken, held = (held if held is not None else await queue.get()), None
            if isinstance(taken, Started):
                await self._finish(taken.publish, taken.done)
                continue
            item, self._taken = taken, queue is self.control
            left = self._grace_until - loop.time()
            if left > 0 and not self.link.connected.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self.link.connected.wait()
            if item.plain:
                batch = [(item.topic, item.payload)]
                while len(batch) < BATCH_MAX and not queue.empty():
                    nxt = queue.get_nowait()
                    if not isinstance(nxt, Publish) or not nxt.plain:
                        held = nxt
                        break
                    batch.append((nxt.topic, nxt.payload))
                self._taken = False
                with contextlib.suppress(BrokerError):  # copies: nothing waits on them
                    await self.link.publish_batch(batch)
                continue
            self._taken = False
            try:
                done = self._publish(item)
            except BrokerError as exc:
                self._failed(item, exc)
                continue
            await self._finish(item, done)

    def _publish(self, item: Publish) -> Awaitable[None]:
        return self.link.publish_now(
            item.topic, item.payload, qos=item.qos, retain=item.retain, expiry_s=item.expiry_s
        )

    async def _finish(self, item: Publish, done: Awaitable[None]) -> None:
        try:
            await done
        except PubackLost:  # a job in flight then is sent again where the link lands (broker_moved)
            self.unsent_cancels.update(item.cancels)
        except BrokerError as exc:
            self._failed(item, exc)

    def _failed(self, item: Publish, exc: BrokerError) -> None:
        self.unsent_cancels.update(item.cancels)
        if item.job_id is not None:
            log.warning("job_publish_failed", job_id=item.job_id, error=str(exc))
            self.on_job_unsent(item.job_id, "broker_unavailable")
