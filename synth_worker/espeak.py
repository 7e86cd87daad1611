"""espeak-ng: the offline voice that is always there (Debian package ``espeak-ng``).

One ``espeak-ng --stdout`` process per request; the text goes in on stdin (never as an argument, so
text that starts with '-' is spoken, not parsed as a flag). Starting one (the exec, its data, the
voice) is ~6 ms, most of a short sentence's first audio: after each request the voice's next
process is started and waits for its text (a spare per voice; ``close`` ends them). espeak-ng
writes a WAV whose RIFF and data sizes are placeholders when it streams, so the parser reads the
fmt chunk and takes every byte after the data chunk header.

The audio is streamed as espeak-ng writes it (issue 20): it writes a sentence's audio in pieces as
it makes them, and waiting for the whole WAV put a sentence's whole synthesis and a resampling of
all of it (~3 ms on a core) before its first audio. Each piece is resampled to the request's rate
without seams (``pcm_stream.StreamResampler``: the same samples as one resampling of the whole) and
cut into chunks. Loudness: one gain per espeak-ng voice, measured once on a calibration sentence
(as Piper's, ``broker.audio.voice_gain``), so the level is the project's from the first chunk on and
never moves within a sentence. Cancelling kills the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import numpy as np

from broker import logs
from broker.audio import Samples, rms_dbfs, voice_gain
from broker.errors import EngineError, EngineTimeout, EngineUnavailable, ProtocolError

from .child_priority import DEFAULT_NICE, lower_group, niced
from .engine import CancelToken, EngineChunk, SynthesisRequest
from .pcm_stream import PcmShaper
from .voices import VoiceMap

log = logs.get("sesame.espeak")

BINARY = "espeak-ng"
CALIBRATION = "The quick brown fox jumps over the lazy dog, and then it rests in the shade."
READ_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class WavFormat:
    sample_rate: int
    channels: int
    data_at: int  # where the samples start


@dataclass(frozen=True, slots=True)
class Wav:
    sample_rate: int
    channels: int
    samples: Samples  # mono float32


def wav_format(data: bytes) -> WavFormat | None:
    """The format of a PCM16 WAV's first bytes and where its samples start; None while its header
    is not all there. No size field after the fmt chunk is trusted (streamed WAVs lie about them)."""
    if data[:4] != b"RIFF"[: len(data)] or (len(data) >= 12 and data[8:12] != b"WAVE"):
        raise EngineError("espeak-ng did not write a WAV", code="engine_error")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16:
                raise EngineError("espeak-ng WAV has a short fmt chunk")
            if body + 16 > len(data):
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise EngineError("espeak-ng WAV has data before fmt")
            tag, channels, rate, bits = fmt
            if tag != 1 or bits != 16 or channels < 1 or rate <= 0:
                raise EngineError(f"espeak-ng WAV is not PCM16 (format {tag}, {bits} bits)")
            return WavFormat(rate, channels, body)
        pos = body + size + (size & 1)
    return None


def parse_wav(data: bytes) -> Wav:
    """A whole PCM16 WAV (``wav_format``'s rules)."""
    fmt = wav_format(data)
    if fmt is None:
        raise EngineError(
            "espeak-ng WAV has no data chunk" if len(data) >= 12 else "espeak-ng did not write a WAV"
        )
    return Wav(fmt.sample_rate, fmt.channels, _samples(data[fmt.data_at :], fmt.channels))


def _samples(pcm: bytes, channels: int, gain: float = 1.0) -> Samples:
    """PCM16 (whole frames) -> the first channel as float32, times ``gain``, within [-0.99, 0.99]."""
    usable = len(pcm) - len(pcm) % (2 * channels)
    first = np.frombuffer(pcm[:usable], dtype="<i2").reshape(-1, channels)[:, 0].astype(np.float32)
    first *= np.float32(gain / 32768.0)
    return np.clip(first, -0.99, 0.99, out=first) if gain != 1.0 else first


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
        child_nice: int = DEFAULT_NICE,
    ) -> None:
        self.voices = voices or VoiceMap()
        self.child_nice = child_nice
        self.binary = binary
        self.chunk_ms = chunk_ms
        self.timeout_s = timeout_s
        self.version = ""
        self._gains: dict[str, float] = {}  # espeak-ng voice -> its one gain (``_gain``)
        self._spares: dict[str, asyncio.subprocess.Process] = {}  # voice -> espeak-ng started, waiting
        self._spawning: set[str] = set()

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
        """A first sentence in the default voice, and the gain of every voice in the map measured
        (``_gain``), so that no listener's first audio waits for it. A voice espeak-ng cannot speak
        fails its own requests, as before: only the default voice's failure fails the warm-up."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        async for _ in self.synthesize(SynthesisRequest("Ready.", self.voices.default), CancelToken()):
            pass
        for voice in sorted({v.espeak_voice for v in self.voices.voices.values()} - self._gains.keys()):
            try:
                await self._gain(voice, CancelToken())
            except (EngineError, ProtocolError) as exc:
                log.warning("espeak_voice_unavailable", voice=voice, error=str(exc))
        return loop.time() - start

    def close(self) -> None:
        """The spare processes go (one left behind would end at its stdin's end anyway)."""
        spares, self._spares = self._spares, {}
        for proc in spares.values():
            _kill(proc)

    def synthesize(self, request: SynthesisRequest, cancel: CancelToken) -> AsyncIterator[EngineChunk]:
        return self._synthesize(request, cancel)

    async def _synthesize(
        self, request: SynthesisRequest, cancel: CancelToken
    ) -> AsyncGenerator[EngineChunk, None]:
        voice = self.voices.get(request.voice).espeak_voice
        cancel.check("cancelled before synthesis started")
        gain = self._gains.get(voice) or await self._gain(voice, cancel)
        head, rest, channels, shaper, spoken = b"", b"", 1, None, 0
        async with contextlib.aclosing(self._output(request.text, voice, cancel)) as output:
            async for block in output:
                if shaper is None:  # the header first: the samples start after it
                    head += block
                    if (fmt := wav_format(head)) is None:
                        continue
                    pcm, channels = head[fmt.data_at :], fmt.channels
                    shaper = PcmShaper(fmt.sample_rate, request.sample_rate, self.chunk_ms, loudness=False)
                else:
                    pcm = rest + block
                whole = len(pcm) - len(pcm) % (2 * channels)  # a sample may be split between reads
                pcm, rest = pcm[:whole], pcm[whole:]
                for chunk in shaper.feed(_samples(pcm, channels, gain)):
                    cancel.check()
                    spoken += 1
                    yield chunk
        if shaper is None:
            raise EngineError("espeak-ng did not write a WAV", code="engine_error")
        for chunk in shaper.flush():
            cancel.check()
            spoken += 1
            yield chunk
        if not spoken:
            raise EngineError("espeak-ng produced no audio")

    async def _gain(self, voice: str, cancel: CancelToken) -> float:
        """The gain that brings ``voice``'s calibration sentence to the project's loudness."""
        async with contextlib.aclosing(self._output(CALIBRATION, voice, cancel)) as output:
            wav = parse_wav(b"".join([block async for block in output]))
        gain = self._gains[voice] = voice_gain(rms_dbfs(wav.samples), float(np.max(np.abs(wav.samples))))
        return gain

    async def _output(self, text: str, voice: str, cancel: CancelToken) -> AsyncGenerator[bytes, None]:
        """espeak-ng's output for ``text`` as it writes it, its exit checked at the end (a typed
        error); the process never outlives it, and the voice's spare is started after it."""
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        proc = await self._start(text, voice)
        cancel.on_cancel(lambda: _kill(proc))
        try:
            while block := await self._read(proc, deadline):
                yield block
            await self._exited(proc, voice, cancel, deadline)
        finally:
            await _reap(proc)
        await self._keep_spare(voice)

    async def _start(self, text: str, voice: str) -> asyncio.subprocess.Process:
        """espeak-ng speaking ``text``, given all at once on stdin (a job's text fits in the pipe):
        the voice's spare process if one waits (started and loaded: ~6 ms of a first audio)."""
        proc = self._spares.pop(voice, None)
        if proc is None or proc.returncode is not None:
            proc = await self._spawn(voice)
        assert proc.stdin is not None
        proc.stdin.write(text.encode("utf-8"))
        proc.stdin.close()
        return proc

    async def _keep_spare(self, voice: str) -> None:
        """After a request: espeak-ng started for the voice's next one, waiting for its text."""
        if voice in self._spares or voice in self._spawning:
            return
        self._spawning.add(voice)
        try:
            self._spares[voice] = await self._spawn(voice)
        except EngineUnavailable:
            pass  # the next request starts its own, and says why
        finally:
            self._spawning.discard(voice)

    async def _spawn(self, voice: str) -> asyncio.subprocess.Process:
        if voice.startswith("-") or not voice.strip():
            raise ProtocolError(f"bad espeak-ng voice {voice!r}", code="unknown_voice")
        try:
            argv = [self.path(), "--stdout", "--stdin", "-b", "1", "-v", voice]  # -b 1: UTF-8 input
            proc = await asyncio.create_subprocess_exec(
                *niced(argv, self.child_nice),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own autogroup: below the hops that carry its audio
            )
        except OSError as exc:
            raise EngineUnavailable(f"{self.binary} cannot run: {exc}") from exc
        lower_group(proc.pid, self.child_nice)
        return proc

    async def _read(self, proc: asyncio.subprocess.Process, deadline: float) -> bytes:
        """What espeak-ng has written since the last read (b"": it closed its output)."""
        assert proc.stdout is not None
        try:
            async with asyncio.timeout_at(deadline):
                return await proc.stdout.read(READ_BYTES)
        except TimeoutError as exc:
            raise EngineTimeout(f"espeak-ng took longer than {self.timeout_s}s") from exc

    async def _exited(
        self, proc: asyncio.subprocess.Process, voice: str, cancel: CancelToken, deadline: float
    ) -> None:
        """Its output read to the end: wait for the exit. EngineError (typed) if it failed."""
        assert proc.stderr is not None
        try:
            async with asyncio.timeout_at(deadline):
                err = await proc.stderr.read()
                await proc.wait()
        except TimeoutError as exc:
            raise EngineTimeout(f"espeak-ng took longer than {self.timeout_s}s") from exc
        cancel.check()
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            if "voice does not exist" in message:
                raise EngineError(f"espeak-ng has no voice {voice!r}", code="unknown_voice")
            raise EngineError(f"espeak-ng failed: {message}")


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """No process left behind, whatever ended the request (an error, a cancel, a consumer gone)."""
    _kill(proc)
    await proc.wait()
