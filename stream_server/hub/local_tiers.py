"""Running the in-process fallback tiers (elevenlabs, edge-tts, piper, espeak-ng) and their probes.

The scheduler decides (``RunLocal``, ``CancelJob``, ``ProbeTier``); this module runs the engine as a
named task in the hub's TaskGroup and reports what happened as typed events (``LocalStarted``,
``LocalAudio``, ``LocalDone``, ``LocalFailed``, ``ProbeDone``) through one callback. When a tier
with a concurrency cap is full, the pure ``TierQueue`` decides which waiting sentence starts next and
which waited too long (``LocalFailed`` with ``busy``: the scheduler moves it on, its breaker
untouched). No decisions are made here.
The engines themselves are built in ``tiers.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from broker import logs
from broker.audio import resample, to_pcm16
from broker.errors import EngineCancelled, EngineError, error_code
from stream_server.core.actions import Sentence
from stream_server.core.tier_queue import TierQueue, TierStart
from synth_worker.engine import CancelToken, Engine, SynthesisRequest

log = logs.get("sesame.gateway")

PROBE_TEXT = "ProbeTier."


@dataclass(frozen=True, slots=True)
class LocalAudio:
    job_id: str
    pcm: bytes


@dataclass(frozen=True, slots=True)
class LocalStarted:  # its slot came: the first-audio bound counts from here, not from the wait
    job_id: str


@dataclass(frozen=True, slots=True)
class LocalDone:
    job_id: str


@dataclass(frozen=True, slots=True)
class LocalFailed:
    job_id: str
    code: str
    busy: bool = False  # the tier could not start it by its queue deadline: busy, not broken


@dataclass(frozen=True, slots=True)
class ProbeDone:
    tier: str
    ok: bool
    reason: str


LocalEvent = LocalStarted | LocalAudio | LocalDone | LocalFailed | ProbeDone
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[None]
    token: CancelToken


class LocalTiers:
    def __init__(
        self,
        engines: dict[str, Engine],
        default_voice: str,
        probe_timeout_s: float,
        spawn: Spawn,
        report: Callable[[LocalEvent], None],
        *,
        caps: Mapping[str, int] | None = None,
        queue_s: float = 1.0,
        last_resort: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engines = engines
        self.default_voice = default_voice
        self.probe_timeout_s = probe_timeout_s
        # caps per tier; queue_s: SESAME_LOCAL_TIER_QUEUE_MS; the last resort waits (text is after it)
        self.queue = TierQueue(caps or {}, queue_s, last_resort)
        self.clock = clock
        self._spawn = spawn
        self._report = report
        self._running: dict[str, _Running] = {}

    def start(self, job_id: str, tier: str, s: Sentence) -> bool:
        """Start ``s`` on ``tier`` (or queue it behind the tier's cap); False when no such engine
        is configured."""
        if tier not in self.engines:
            return False
        self._start(self.queue.offer(job_id, tier, s, self.clock()))
        return True

    def _start(self, starts: list[TierStart]) -> None:
        for st in starts:
            token = CancelToken()
            task = self._spawn(
                self._run(st.job_id, self.engines[st.tier], st.sentence, token),
                f"local:{st.tier}:{st.job_id}",
            )
            self._running[st.job_id] = _Running(task, token)
            self._report(LocalStarted(st.job_id))

    def next_deadline(self) -> float | None:
        return self.queue.next_deadline()

    def handle_timer(self, now: float) -> None:
        for busy in self.queue.handle_timer(now):
            log.info("local_tier_busy", tier=busy.tier, job_id=busy.job_id)
            self._report(LocalFailed(busy.job_id, "tier_busy", busy=True))

    def cancel(self, job_id: str) -> None:
        running = self._running.pop(job_id, None)
        if running is not None:
            running.token.cancel()
            running.task.cancel()
        self._start(self.queue.finished(job_id, self.clock()))

    def cancel_all(self) -> None:
        self.queue.clear()
        for job_id in list(self._running):
            self.cancel(job_id)

    def probe(self, tier: str) -> None:
        self._spawn(self._probe(tier), f"probe:{tier}")

    async def _run(self, job_id: str, engine: Engine, s: Sentence, token: CancelToken) -> None:
        try:
            await self._synthesize(job_id, engine, s, token)
        finally:
            self._start(self.queue.finished(job_id, self.clock()))  # its slot to the next one waiting

    async def _synthesize(self, job_id: str, engine: Engine, s: Sentence, token: CancelToken) -> None:
        request = SynthesisRequest(s.text, s.voice, s.sample_rate)
        try:
            async for chunk in engine.synthesize(request, token):
                if token.cancelled:
                    return
                samples = chunk.samples
                if chunk.sample_rate != s.sample_rate:
                    samples = resample(chunk.samples, chunk.sample_rate, s.sample_rate)
                self._report(LocalAudio(job_id, to_pcm16(samples)))
        except (EngineCancelled, asyncio.CancelledError):
            return
        except EngineError as exc:
            self._running.pop(job_id, None)
            log.warning("local_engine_failed", tier=engine.name, job_id=job_id, code=exc.code, error=str(exc))
            self._report(LocalFailed(job_id, exc.code))
            return
        except Exception as exc:  # an engine bug must not take the gateway down
            self._running.pop(job_id, None)
            log.exception("local_engine_crashed", tier=engine.name, job_id=job_id)
            self._report(LocalFailed(job_id, error_code(exc)))
            return
        self._running.pop(job_id, None)
        self._report(LocalDone(job_id))

    async def _probe(self, tier: str) -> None:
        engine = self.engines.get(tier)
        ok, reason = False, "not_configured"
        if engine is not None:
            try:
                async with asyncio.timeout(self.probe_timeout_s):
                    async for _ in engine.synthesize(
                        SynthesisRequest(PROBE_TEXT, self.default_voice), CancelToken()
                    ):
                        pass
                ok, reason = True, "probe_ok"
            except (EngineError, TimeoutError) as exc:
                reason = error_code(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("probe_crashed", tier=tier)
                reason = error_code(exc)
        self._report(ProbeDone(tier, ok, reason))
