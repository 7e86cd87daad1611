"""``BarkEngine`` (the ``Engine`` protocol) owns one synthesizer and one dedicated inference thread:
inference never runs on the event loop. Concurrent ``synthesize`` calls made while the thread is
busy are coalesced into one batch (up to ``max_batch``, same speaker) when it frees up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from broker import logs
from broker.audio import Samples, chunk_samples
from broker.errors import EngineCancelled, EngineError
from synth_worker.bark.checkpoint import StageTimes
from synth_worker.bark.inference_thread import InferenceThread
from synth_worker.bark.settings import BarkSettings, Speaker
from synth_worker.bark.synthesizer import BarkSynthesizer, finish_audio
from synth_worker.engine import CancelToken, EngineChunk, SynthesisRequest
from synth_worker.voices import VoiceMap

log = logs.get("sesame.bark")


@dataclass(slots=True)
class _Pending:
    text: str
    speaker: Speaker
    sample_rate: int
    cancel: CancelToken
    future: asyncio.Future[Samples]


@dataclass(slots=True)
class BatchStats:
    """What the last finished batch cost; the worker reads it for its RTF."""

    times: StageTimes | None = None
    audio_s: float = 0.0
    batches: int = 0


@dataclass(slots=True)
class _Queue:
    pending: list[_Pending] = field(default_factory=list)
    busy: bool = False


class BarkEngine:
    """The ``Engine`` for Bark: one model, one inference thread, optional batching of concurrent calls."""

    name = "bark"

    def __init__(
        self,
        settings: BarkSettings | None = None,
        voices: VoiceMap | None = None,
        *,
        default_speaker: Speaker = None,
    ) -> None:
        self.settings = settings or BarkSettings()
        self.voices = voices or VoiceMap()
        self.default_speaker = default_speaker
        self.stats = BatchStats()
        self._synth: BarkSynthesizer | None = None
        self._load_lock = threading.Lock()
        self._thread = InferenceThread("bark-inference")
        self._queue = _Queue()
        self._batches: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def loaded(self) -> bool:
        return self._synth is not None

    def _ensure_loaded(self) -> BarkSynthesizer:
        with self._load_lock:
            if self._synth is None:
                self._synth = BarkSynthesizer.load(self.settings)
            return self._synth

    async def load(self) -> float:
        """Load the model on the inference thread; returns seconds taken. Raises EngineUnavailable."""
        start = time.perf_counter()
        await self._thread.run(self._ensure_loaded)
        return time.perf_counter() - start

    async def warm_up(self) -> float:
        """``BarkSynthesizer.warm_up`` on the inference thread (every stage once, on a few positions);
        returns seconds taken."""
        synth = await self._thread.run(self._ensure_loaded)
        start = time.perf_counter()
        await self._thread.run(synth.warm_up)
        return time.perf_counter() - start

    def speaker_for(self, voice: str) -> Speaker:
        entry = self.voices.get(voice)  # unknown voice -> ProtocolError("unknown_voice")
        if self.default_speaker is not None and entry.name == self.voices.default:
            return self.default_speaker
        return entry.bark_speaker

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        return self._synthesize(request, cancel)

    async def _synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        speaker = self.speaker_for(request.voice)
        cancel.check("cancelled before synthesis started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Samples] = loop.create_future()
        self._queue.pending.append(_Pending(request.text, speaker, request.sample_rate, cancel, future))
        loop.call_soon(self._dispatch)  # calls made in this loop iteration join the same batch
        try:
            samples = await future
        except asyncio.CancelledError:
            cancel.cancel()  # the thread stops at its next check
            raise
        for piece in chunk_samples(samples, request.sample_rate, self.settings.chunk_ms):
            yield EngineChunk(piece, request.sample_rate)

    def _dispatch(self) -> None:
        queue = self._queue
        if queue.busy:
            return
        for p in [p for p in queue.pending if p.cancel.cancelled or p.future.done()]:
            queue.pending.remove(p)
            if not p.future.done():
                p.future.set_exception(EngineCancelled("cancelled while queued"))
        if not queue.pending:
            return
        speaker = queue.pending[0].speaker
        batch = [p for p in queue.pending if p.speaker == speaker][: max(1, self.settings.max_batch)]
        for p in batch:
            queue.pending.remove(p)
        queue.busy = True
        task = asyncio.get_running_loop().create_task(self._run_batch(batch), name="bark-batch")
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            results = await self._thread.run(lambda: self._generate(batch))
            for p, result in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(result, BaseException):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        finally:
            self._queue.busy = False
            self._dispatch()

    def _generate(self, batch: list[_Pending]) -> list[Samples | EngineError]:
        """On the inference thread: generate, then resample + normalize each row."""
        synth = self._ensure_loaded()
        rows, times = synth.generate_rows(
            [p.text for p in batch], speaker=batch[0].speaker, cancels=[p.cancel for p in batch]
        )
        out: list[Samples | EngineError] = []
        audio_s = 0.0
        for p, row in zip(batch, rows, strict=True):
            if isinstance(row, EngineError):
                out.append(row)
                continue
            audio_s += len(row) / synth.sample_rate
            out.append(finish_audio(row, synth.sample_rate, p.sample_rate))
        self.stats.times, self.stats.audio_s = times, audio_s
        self.stats.batches += 1
        log.debug(
            "bark_batch",
            batch=len(batch),
            semantic_tokens=times.semantic_tokens,
            semantic_s=round(times.semantic_s, 3),
            coarse_s=round(times.coarse_s, 3),
            fine_s=round(times.fine_s, 3),
            codec_s=round(times.codec_s, 3),
            audio_s=round(audio_s, 3),
        )
        return out

    def close(self) -> None:
        for p in self._queue.pending:
            if not p.future.done():
                p.future.set_exception(EngineCancelled("engine closed"))
        self._queue.pending.clear()
        self._thread.close()
