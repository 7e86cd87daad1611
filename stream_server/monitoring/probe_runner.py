"""Runs the probes the probe core asks for: real syntheses, reported back by ``on_result``.

- The primary (``workers``): a ``Job`` of ``PROBE_TEXT`` published to an idle ready worker over the
  runner's own MQTT link (client id ``{gateway}-monitor``); events and audio come back on
  ``sesame/v1/replies/{gateway}-probe/{job}/...``. Its latency runs from publish to the last chunk.
  A cancelled probe is cancelled on the worker too (broadcast ``cancel``).
- An in-process tier: ``engine.synthesize`` in a task of its own.

Neither has a timer: the probe core times a probe out on the monitor's deadline task and says
``CancelProbe``, which cancels the task (or the primary's job on its worker).

A reply that arrives after its probe timed out or gave way is ignored (the core took its sample).
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from broker import logs, topics
from broker.audio import AudioFrame
from broker.errors import BrokerError, EngineError, ProtocolError, error_code
from broker.link import MqttLink
from broker.messages import Cancel, Job, JobDone, JobError, worker_messages
from broker.settings import MqttNodes
from stream_server.monitoring.probes import PROBE_TEXT
from synth_worker.engine import CancelToken, Engine, SynthesisRequest

log = logs.get("sesame.monitor")

# (probe_id, ok, latency_s, reason)
ResultCallback = Callable[[str, bool, float | None, str], None]
Spawn = Callable[[object, str], asyncio.Task[None]]


@dataclass(slots=True)
class _PrimaryProbe:
    probe_id: str
    job_id: str
    worker_id: str
    started: float
    chunks: int = 0
    done: JobDone | None = None


class ProbeRunner:
    def __init__(
        self,
        *,
        mqtt_url: MqttNodes,
        gateway_id: str,
        engines: Mapping[str, Engine],
        voice: str,
        timeout_s: float,
        on_result: ResultCallback,
        spawn: Spawn,
    ) -> None:
        self.engines = engines
        self.voice = voice
        self.timeout_s = timeout_s
        self.on_result = on_result
        self.spawn = spawn
        self.probe_gateway = f"{gateway_id}-probe"
        self.reply_root = topics.reply_root(self.probe_gateway)
        self.primary: _PrimaryProbe | None = None
        self._local: dict[str, asyncio.Task[None]] = {}
        self.link = MqttLink(
            mqtt_url,
            f"{gateway_id}-monitor",
            subscriptions=[(f"{self.reply_root}/#", 1)],
            on_message=self._on_mqtt,
        )

    async def prepare(self) -> None:
        """Import what the in-process engines import lazily (scipy's resampler) off the event loop,
        before the first probe: on the loop it would stall every session for seconds."""
        if self.engines:
            await asyncio.to_thread(importlib.import_module, "scipy.signal")

    # ---- the primary --------------------------------------------------------------------------

    def start_primary(self, probe_id: str, worker_id: str, now: float) -> None:
        job_id = f"{probe_id}-{secrets.token_urlsafe(12)}"  # unguessable, as the gateway's
        self.primary = _PrimaryProbe(probe_id, job_id, worker_id, time.perf_counter())
        job = Job(
            job_id,
            "probe",
            0,
            PROBE_TEXT,
            self.voice,
            topics.reply_to(self.probe_gateway, worker_id),
            expires_at=now + self.timeout_s,
        )
        self.spawn(self._publish(topics.worker_jobs(worker_id), job.to_bytes()), f"probe-job:{job_id}")

    def primary_worker(self) -> str | None:
        return None if self.primary is None else self.primary.worker_id

    async def _publish(self, topic: str, payload: bytes) -> None:
        try:
            await self.link.publish(topic, payload, qos=1)
        except BrokerError as exc:
            log.warning("probe_publish_failed", topic=topic, error=str(exc))

    async def _on_mqtt(self, topic: str, payload: bytes) -> None:
        probe = self.primary
        try:
            parsed = topics.parse(topic)  # only reply topics are subscribed
            if (
                probe is None
                or not isinstance(parsed, topics.ReplyTopic)
                or (parsed.job_id, parsed.worker_id) != (probe.job_id, probe.worker_id)
            ):
                return  # a late reply of a probe that timed out or gave way, or not its worker's
            if parsed.kind == "audio":
                AudioFrame.from_bytes(payload)
                probe.chunks += 1
            else:
                match worker_messages.decode(payload):
                    case JobDone() as done:
                        probe.done = done
                    case JobError(code=code):
                        self._primary_result(probe, False, code)
                        return
            if probe.done is not None and probe.chunks >= probe.done.chunks:
                self._primary_result(probe, probe.chunks > 0, "probe_ok" if probe.chunks else "no_audio")
        except ProtocolError as exc:
            log.warning("bad_probe_reply", topic=topic, code=exc.code)

    def _primary_result(self, probe: _PrimaryProbe, ok: bool, reason: str) -> None:
        self.primary = None
        self.on_result(probe.probe_id, ok, time.perf_counter() - probe.started, reason)

    # ---- in-process tiers ---------------------------------------------------------------------

    def start_local(self, probe_id: str, path: str) -> None:
        engine = self.engines.get(path)
        if engine is None:
            self.on_result(probe_id, False, None, "not_configured")
            return
        self._local[probe_id] = self.spawn(self._run_local(probe_id, engine), f"probe:{path}")

    async def _run_local(self, probe_id: str, engine: Engine) -> None:
        start = time.perf_counter()
        ok, reason, token = False, "no_audio", CancelToken()
        try:
            async for _ in engine.synthesize(SynthesisRequest(PROBE_TEXT, self.voice), token):
                ok, reason = True, "probe_ok"
        except asyncio.CancelledError:
            token.cancel()
            raise
        except EngineError as exc:
            ok, reason = False, error_code(exc)
        except Exception as exc:  # an engine bug is a failed probe, not a dead monitor
            log.exception("probe_crashed", engine=engine.name)
            ok, reason = False, error_code(exc)
        finally:
            self._local.pop(probe_id, None)
        self.on_result(probe_id, ok, time.perf_counter() - start, reason)

    # ---- both ---------------------------------------------------------------------------------

    def cancel(self, probe_id: str) -> None:
        probe = self.primary
        if probe is not None and probe.probe_id == probe_id:
            self.primary = None
            cancel = Cancel(job_ids=(probe.job_id,)).to_bytes()
            self.spawn(self._publish(topics.CANCEL, cancel), "probe-cancel")
        elif (task := self._local.pop(probe_id, None)) is not None:
            task.cancel()
