"""The gateway's MQTT publishes: two bounded queues, each emptied by one named task (an adapter).

Jobs and cancels go on the control queue, so they never wait behind the bulk copies of session
events and audio for MQTT listeners. One with nothing queued ahead of it is written to the socket
where it is made (``send``), and its PUBACK settles it through a callback: a job waits for no pass
of the loop, no task wakes for it, and jobs made in one pass (two sessions' first sentences) all
leave at once, not each after the PUBACK of the one before (issue 20). When a queue is full the
publish is dropped and counted (``sesame_dropped_total{what="mqtt_publish"}``); a dropped or failed
job is reported back (``on_job_unsent``) so that the scheduler fails it over. Cancels that could not
be published (broker down) are sent again on reconnect, so a worker does not spend its time on
sentences nobody is waiting for. A job whose connection closed before its PUBACK is not reported: it
is in flight, and the scheduler sends it again when the link lands (``broker_moved``). When the link
drops, publishes wait up to ``LINK_WAIT_S`` for it to land on a broker node again (the next node of
a cluster takes a moment), then fail at once. Plain QoS 0 publishes that are waiting together (the
copies of session audio and events) go out as one batch of up to ``BATCH_MAX`` in one write
(``broker/publish_batch.py``), in the queue's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
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
        self.control: asyncio.Queue[Publish] = asyncio.Queue(queue_size)
        self.bulk: asyncio.Queue[Publish] = asyncio.Queue(queue_size)
        self._taken = False  # the control task holds a publish it has not written yet
        self.unsent_cancels: set[str] = set()
        self._grace_until = 0.0  # loop time until which a publish waits for the link to come back

    def send(self, item: Publish, control: bool = True) -> None:
        """Queue a publish. A job or cancel with nothing of ours queued ahead of it is written to
        the socket here and now (the order on the wire is the queue's); a failure of its ack is
        reported as for one the control task writes."""
        queue = self.control if control else self.bulk
        if control and queue.empty() and not self._taken and self.link.connected.is_set():
            try:
                done = self._publish(item)
            except BrokerError:
                pass  # not written: the control task tries it
            else:
                done.add_done_callback(functools.partial(self._settled, item))
                return
        try:
            queue.put_nowait(item)
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

    async def run(self, queue: asyncio.Queue[Publish]) -> None:
        loop = asyncio.get_running_loop()
        held: Publish | None = None  # taken from the queue while gathering a batch: next
        while True:
            item, held = (held if held is not None else await queue.get()), None
            self._taken = queue is self.control
            left = self._grace_until - loop.time()
            if left > 0 and not self.link.connected.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self.link.connected.wait()
            if item.plain:
                batch = [(item.topic, item.payload)]
                while len(batch) < BATCH_MAX and not queue.empty():
                    nxt = queue.get_nowait()
                    if not nxt.plain:
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

    def _publish(self, item: Publish) -> asyncio.Future[None]:
        return self.link.publish_now(
            item.topic, item.payload, qos=item.qos, retain=item.retain, expiry_s=item.expiry_s
        )

    async def _finish(self, item: Publish, done: asyncio.Future[None]) -> None:
        with contextlib.suppress(BrokerError):
            await done
        self._settled(item, done)

    def _settled(self, item: Publish, done: asyncio.Future[None]) -> None:
        """A control publish's ack came, or its failure: a job in flight when its connection closed
        (``PubackLost``) is sent again where the link lands (``broker_moved``); any other failure
        fails it over."""
        if done.cancelled() or (exc := done.exception()) is None:
            return
        if isinstance(exc, PubackLost):
            self.unsent_cancels.update(item.cancels)
        elif isinstance(exc, BrokerError):
            self._failed(item, exc)

    def _failed(self, item: Publish, exc: BrokerError) -> None:
        self.unsent_cancels.update(item.cancels)
        if item.job_id is not None:
            log.warning("job_publish_failed", job_id=item.job_id, error=str(exc))
            self.on_job_unsent(item.job_id, "broker_unavailable")
