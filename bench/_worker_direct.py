"""A worker driven straight over MQTT, as the gateway drives it, without the gateway (gateway_overhead.py).

``WorkerDirect`` is an MQTT client of the same broker, through the same ``broker.link.MqttLink``
(aiomqtt, MQTT v5, TCP_NODELAY) the gateway uses, under the gateway's broker user. It speaks the
worker's job protocol with the real topics and payloads: a ``Job`` published at QoS 1 with the
gateway's message expiry on ``sesame/v1/workers/{id}/jobs``, the replies read on its own reply root
(``sesame/v1/replies/{bench id}/{worker}/{job}/audio|events``, subscribed at QoS 1 as the gateway
subscribes). ``first_audio`` times from just before the job is encoded to the arrival of its first
audio frame (before decoding), then waits for the job's ``done``: the serving path's two MQTT hops
and the worker, with nothing of the gateway.
"""

from __future__ import annotations

import asyncio
import time

from broker import topics
from broker.link import MqttLink
from broker.messages import Job, JobDone, JobError, worker_messages
from broker.settings import MqttUrl
from stream_server.core.failover import FailoverConfig

BENCH_ID = "bench-direct"  # the reply root's "gateway id": no gateway reads it


class WorkerDirect:
    def __init__(self, url: MqttUrl, worker_id: str, voice: str, sample_rate: int = 24_000) -> None:
        self.worker_id, self.voice, self.sample_rate = worker_id, voice, sample_rate
        self.reply_to = topics.reply_to(BENCH_ID, worker_id)
        self.link = MqttLink(url, BENCH_ID, subscriptions=[(topics.all_replies(BENCH_ID), 1)])
        self.link.on_message_now = self._on_message  # as the gateway reads (broker/read_now.py)
        self._expiry_s = max(1, round(FailoverConfig().timeout_s))  # as the gateway's SendJob
        self._n = 0
        self._first: asyncio.Future[float] | None = None
        self._end: asyncio.Future[None] | None = None
        self._job_id = ""

    async def __aenter__(self) -> WorkerDirect:
        await self.link.__aenter__()
        await self.link.wait_connected(30.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.__aexit__(None, None, None)

    async def first_audio(self, text: str) -> float:
        """Seconds from the job made to its first audio frame read; returns once the job is done."""
        loop = asyncio.get_running_loop()
        self._n += 1
        self._job_id = f"{BENCH_ID}.{self._n}"
        self._first, self._end = loop.create_future(), loop.create_future()
        start = time.monotonic()
        job = Job(
            self._job_id, BENCH_ID, self._n, text, self.voice, self.reply_to, self.sample_rate, need_in_s=0.0
        )
        await self.link.publish(
            topics.worker_jobs(self.worker_id), job.to_bytes(), qos=1, expiry_s=self._expiry_s
        )
        async with asyncio.timeout(30.0):
            await self._end
        if not self._first.done():
            raise RuntimeError(f"no audio for {text!r}")
        return self._first.result() - start

    def _on_message(self, topic: str, payload: bytes) -> None:
        if not topic.startswith(f"{self.reply_to}/{self._job_id}/"):
            return  # a late reply of an earlier job
        if topic.endswith("/audio"):
            if self._first is not None and not self._first.done():
                self._first.set_result(time.monotonic())
            return
        message = worker_messages.decode(payload)
        if self._end is None or self._end.done():
            return
        if isinstance(message, JobDone):
            self._end.set_result(None)
        elif isinstance(message, JobError):
            self._end.set_exception(RuntimeError(f"worker error: {message.code}: {message.message}"))
