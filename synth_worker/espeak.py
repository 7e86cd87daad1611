"""espeak-ng: the offline voice that is always there (Debian package ``espeak-ng``).

One ``espeak-ng --stdout`` process per request; the text goes in on stdin (never as an argument, so
text that starts with '-' is spoken, not parsed as a flag). espeak-ng writes a WAV whose RIFF and
data sizes are placeholders when it streams, so the parser reads the fmt chunk and takes every
byte after the data chunk header. The audio (22 050 Hz) is resampled to the request's rate,
brought to the project's loudness and cut into chunks. Cancelling kills the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from broker import logs
from broker.audio import Samples, chunk_samples, normalize_loudness, resample
from broker.errors import EngineCancelled, EngineError, EngineTimeout, EngineUnavailable, ProtocolError

from .engine import CancelToken, EngineChunk, SynthesisRequest
from .voices import VoiceMap

log = logs.get("sesame.espeak")

BINARY = "espeak-ng"


@dataclass(frozen=True, slots=True)
class Wav:
    sample_rate: int
    channels: int
    samples: Samples  # mono float32


def parse_wav(data: bytes) -> Wav:
    """Parse a PCM16 WAV, trusting no size field after the fmt chunk (streamed WAVs lie about them)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EngineError("espeak-ng did not write a WAV", code="engine_error")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise EngineError("espeak-ng WAV has a short fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise EngineError("espeak-ng WAV has data before fmt")
            tag, channels, rate, bits = fmt
            if tag != 1 or bits != 16 or channels < 1 or rate <= 0:
                raise EngineError(f"espeak-ng WAV is not PCM16 (format {tag}, {bits} bits)")
            payload = data[body:]
            usable = len(payload) - len(payload) % (2 * channels)
            pcm = np.frombuffer(payload[:usable], dtype="<i2").reshape(-1, channels)[:, 0]
            return Wav(rate, channels, pcm.astype(np.float32) / 32768.0)
        pos = body + size + (size & 1)
    raise EngineError("espeak-ng WAV has no data chunk")


class EspeakEngine:
    """The ``Engine`` for espeak-ng. ``binary`` defaults to ``espeak-ng`` on PATH."""

    name = "espeak-ng"

    def __init__(
        self,
        voices: VoiceMap | None = None,
        *,
        binary: str = BINARY,
        chunk_ms: int = 40,
        timeout_s: float = 30.0,
    ) -> None:
        self.voices = voices or VoiceMap()
        self.binary = binary
        self.chunk_ms = chunk_ms
        self.timeout_s = timeout_s
        self.version = ""

    @property
    def model(self) -> str:
        return f"espeak-ng {self.version}".strip()

    def path(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise EngineUnavailable(f"{self.binary} is not installed (Debian package 'espeak-ng')")
        return found

    @property
    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    async def load(self) -> float:
        """Check that the binary runs and note its version. Raises EngineUnavailable."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            proc = await asyncio.create_subprocess_exec(
                self.path(), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            out, _ = await proc.communicate()
        except OSError as exc:
            raise EngineUnavailable(f"{self.binary} cannot run: {exc}") from exc
        if proc.returncode != 0:
            raise EngineUnavailable(f"{self.binary} --version exited {proc.returncode}")
        words = out.decode(errors="replace").split()
        self.version = next((w for w in words if w[:1].isdigit()), "")
        return loop.time() - start

    async def warm_up(self) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async for _ in self.synthesize(SynthesisRequest("Ready.", self.voices.default), CancelToken()):
            pass
        return loop.time() - start

    def close(self) -> None:
        """Nothing held between requests."""

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        return self._synthesize(request, cancel)

    async def _synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        voice = self.voices.get(request.voice).espeak_voice
        if cancel.cancelled:
            raise EngineCancelled("cancelled before synthesis started")
        wav = await self._run(request.text, voice, cancel)
        if wav.samples.size == 0:
            raise EngineError("espeak-ng produced no audio")
        out = normalize_loudness(resample(wav.samples, wav.sample_rate, request.sample_rate))
        for piece in chunk_samples(out, request.sample_rate, self.chunk_ms):
            yield EngineChunk(piece, request.sample_rate)

    async def _run(self, text: str, voice: str, cancel: CancelToken) -> Wav:
        if voice.startswith("-") or not voice.strip():
            raise ProtocolError(f"bad espeak-ng voice {voice!r}", code="unknown_voice")
        try:
            proc = await asyncio.create_subprocess_exec(
                self.path(),
                "--stdout",
                "--stdin",
                "-b",
                "1",  # input is UTF-8
                "-v",
                voice,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise EngineUnavailable(f"{self.binary} cannot run: {exc}") from exc
        # No extra task: the synthesis runs in the caller's task; the cancel token kills the
        # process when the job is cancelled (no polling), which ends communicate().

        def kill_on_cancel() -> None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

        cancel.on_cancel(kill_on_cancel)
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate(text.encode("utf-8"))
        except TimeoutError as exc:
            raise EngineTimeout(f"espeak-ng took longer than {self.timeout_s}s") from exc
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if cancel.cancelled:
            raise EngineCancelled("cancelled")
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            if "voice does not exist" in message:
                raise EngineError(f"espeak-ng has no voice {voice!r}", code="unknown_voice")
            raise EngineError(f"espeak-ng failed: {message}")
        return parse_wav(out)
