"""Helpers for worker integration tests: a worker as a real subprocess, an MQTT listener.

Waiting is always on something that happens (a log line, an MQTT message) with a timeout that is
a multiple of ``T``; never on sleep.
"""

# ruff: noqa: ASYNC109  (waits take an explicit timeout, a multiple of T)
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from broker import topics
from broker.audio import AudioFrame
from broker.launcher import Mosquitto
from broker.link import MqttLink
from broker.messages import JobAck, JobDone, JobError, decode_worker_message
from broker.settings import MqttUrl
from broker.wire import Message

SESAME_VOICE = str(Path(sys.executable).parent / "sesame-voice")


class WorkerProcess:
    """``sesame-voice worker`` as a child process; its JSON log lines are collected as dicts."""

    def __init__(
        self, broker: Mosquitto, env: Mapping[str, str] | None = None, worker_id: str | None = None
    ) -> None:
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:10]}"
        full_env = {
            **os.environ,
            # Its own broker user, named by its id (the ACL's %u patterns).
            "SESAME_MQTT_URL": broker.url_for(self.worker_id).env_value(),
            "SESAME_WORKER_ID": self.worker_id,
            "SESAME_HEARTBEAT_INTERVAL_MS": "200",
            "LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.logs: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [SESAME_VOICE, "worker"],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"log:{self.worker_id}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": "_raw", "line": line.rstrip()}
            if not isinstance(entry, dict):
                entry = {"event": "_raw", "line": line.rstrip()}
            with self._cond:
                self.logs.append(entry)
                self._cond.notify_all()
        with self._cond:
            self.logs.append({"event": "_exit"})
            self._cond.notify_all()

    def wait_log(self, event: str, timeout: float) -> dict[str, Any]:
        """The first log entry named ``event``; raises if the worker exits or time runs out first."""

        def found() -> dict[str, Any] | None:
            for entry in self.logs:
                if entry.get("event") == event:
                    return entry
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None or self._exited(), timeout):
                raise TimeoutError(f"worker logged no {event!r} within {timeout}s; last: {self.logs[-5:]}")
            entry = found()
            if entry is None:
                raise AssertionError(f"worker exited before logging {event!r}; last: {self.logs[-8:]}")
            return entry

    def _exited(self) -> bool:
        return bool(self.logs) and self.logs[-1].get("event") == "_exit"

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.logs if e.get("event") == event]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


@dataclass
class Received:
    topic: str
    payload: bytes
    at: float  # loop time on arrival


@dataclass
class JobOutcome:
    ack: JobAck | None = None
    frames: list[AudioFrame] = field(default_factory=list)
    end: JobDone | JobError | None = None
    events: list[Message] = field(default_factory=list)


class Listener:
    """An MQTT client that records every message on its subscriptions (QoS 1). Given the broker,
    it connects as the ``gateway`` role (the tests play the gateway); given a URL, as its user."""

    def __init__(self, broker: Mosquitto | MqttUrl, filters: list[str]) -> None:
        url = broker.url_for("gateway") if isinstance(broker, Mosquitto) else broker
        self.url = url
        self.link = MqttLink(
            url,
            f"test-{uuid.uuid4().hex[:10]}",
            subscriptions=[(f, 1) for f in filters],
            on_message=self._on_message,
        )
        self.received: list[Received] = []
        self._changed = asyncio.Event()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        self.received.append(Received(topic, payload, asyncio.get_running_loop().time()))
        self._changed.set()

    async def __aenter__(self) -> Listener:
        await self.link.__aenter__()
        await self.link.wait_connected(5.0)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.link.__aexit__(et, e, tb)

    async def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        await self.link.publish(topic, payload, qos=1, retain=retain)

    async def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float, start: int = 0
    ) -> Received:
        """The first received message (from index ``start``) that satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                for item in self.received[start:]:
                    if predicate(item):
                        return item
                self._changed.clear()
                await self._changed.wait()

    async def heartbeat(
        self, worker_id: str, predicate: Callable[[Any], bool], timeout: float, start: int = 0
    ) -> Any:
        topic = topics.worker_heartbeat(worker_id)

        def match(item: Received) -> bool:
            return item.topic == topic and predicate(decode_worker_message(item.payload))

        return decode_worker_message((await self.wait_for(match, timeout, start)).payload)

    async def job(self, reply_to: str, job_id: str, timeout: float) -> JobOutcome:
        """Everything one job sent, up to its done or job_error."""
        events_topic, audio_topic = topics.job_events(reply_to, job_id), topics.job_audio(reply_to, job_id)

        def terminal(item: Received) -> bool:
            if item.topic != events_topic:
                return False
            return isinstance(decode_worker_message(item.payload), (JobDone, JobError))

        await self.wait_for(terminal, timeout)
        outcome = JobOutcome()
        for item in self.received:
            if item.topic == audio_topic:
                outcome.frames.append(AudioFrame.from_bytes(item.payload))
            elif item.topic == events_topic:
                message = decode_worker_message(item.payload)
                outcome.events.append(message)
                if isinstance(message, JobAck):
                    outcome.ack = message
                elif isinstance(message, (JobDone, JobError)) and outcome.end is None:
                    outcome.end = message
        return outcome
