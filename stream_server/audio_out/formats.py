"""Audio for HTTP answers: streaming encoders and OpenAI's SSE framing. Pure.

Nothing here touches a socket or a clock: an encoder is fed float samples as they arrive and hands
back the bytes that are ready, so ``POST /v1/audio/speech`` can send the first sentence while later
ones are still being synthesized.

Formats (OpenAI's ``response_format`` names):

- ``pcm``: raw signed 16-bit little-endian mono samples, as OpenAI sends them (no header).
- ``wav``: a RIFF header whose sizes are 0xFFFFFFFF (the length is not known while streaming; every
  decoder we tried, and OpenAI's own streamed WAV, read it to the end of the stream), then PCM16.
- ``mp3`` (LAME), ``opus`` (libopus in Ogg) and ``aac`` (FFmpeg's native AAC encoder in ADTS):
  encoded with PyAV, whose wheels bundle FFmpeg with these encoders. libsndfile (soundfile) has no
  AAC encoder at all, and it writes a whole file at a time; PyAV muxes packet by packet into a
  non-seekable sink, so each packet's bytes can go out at once. Ogg Opus only exists at 8, 12,
  16, 24 and 48 kHz.
- ``flac`` is sent whole, at the end: a streamed FLAC cannot know its length, and its STREAMINFO
  then says 0 samples, which libsndfile-based readers (Python's soundfile among them) cannot read.

Speed (pitch-preserving time-stretch) is ``stretch.py``.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from broker.audio import Samples, to_pcm16
from broker.errors import ProtocolError

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_FORMATS: tuple[SpeechFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# PyAV muxer and encoder for each format.
_AV_FORMATS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
}


class StreamEncoder(Protocol):
    """Fed mono float samples in order; returns the encoded bytes ready so far."""

    def encode(self, samples: Samples) -> bytes: ...

    def finish(self) -> bytes: ...


class PcmEncoder:
    def encode(self, samples: Samples) -> bytes:
        return to_pcm16(samples)

    def finish(self) -> bytes:
        return b""


def wav_stream_header(sample_rate: int) -> bytes:
    """A RIFF/WAVE PCM16 mono header for a stream of unknown length (sizes 0xFFFFFFFF)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", unknown))
    )


class WavEncoder:
    def __init__(self, sample_rate: int) -> None:
        self._header: bytes | None = wav_stream_header(sample_rate)

    def encode(self, samples: Samples) -> bytes:
        head, self._header = self._header or b"", None
        return head + to_pcm16(samples)

    def finish(self) -> bytes:
        head, self._header = self._header or b"", None
        return head


class FlacEncoder:
    """The whole FLAC file at ``finish`` (libsndfile), with its length in STREAMINFO."""

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._parts: list[Samples] = []

    def encode(self, samples: Samples) -> bytes:
        self._parts.append(np.asarray(samples, dtype=np.float32))
        return b""

    def finish(self) -> bytes:
        import io

        import soundfile as sf

        buf = io.BytesIO()
        audio = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)
        self._parts.clear()
        sf.write(buf, audio, self._rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()


class _Sink:
    """The write-only, non-seekable file PyAV muxes into (so muxers never seek back)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class AvEncoder:
    """mp3 / opus / aac through PyAV (FFmpeg), packet by packet."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        import av

        muxer, codec = _AV_FORMATS[fmt]
        self._av = av
        self._sink = _Sink()
        self._rate = sample_rate
        options = {"page_duration": "100000"} if muxer == "ogg" else {}  # Ogg pages of 100 ms
        self._container = av.open(
            self._sink,
            mode="w",
            format=muxer,
            buffer_size=4096,
            options=options,
            container_options={"flush_packets": "1"},
        )
        stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        self._stream = stream
        self._closed = False

    def encode(self, samples: Samples) -> bytes:
        x = np.asarray(samples, dtype=np.float32)
        if len(x) == 0:
            return self._sink.take()
        pcm = np.frombuffer(to_pcm16(x), dtype="<i2").reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = self._rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        if not self._closed:
            self._closed = True
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return self._sink.take()


def stream_encoder(fmt: str, sample_rate: int) -> StreamEncoder:
    """The encoder for one of SPEECH_FORMATS; ProtocolError for another name or an Opus rate."""
    if fmt == "pcm":
        return PcmEncoder()
    if fmt == "wav":
        return WavEncoder(sample_rate)
    if fmt == "flac":
        return FlacEncoder(sample_rate)
    if fmt not in _AV_FORMATS:
        raise ProtocolError(
            f"response_format must be one of {', '.join(SPEECH_FORMATS)}", code="bad_response_format"
        )
    if fmt == "opus" and sample_rate not in OPUS_RATES:
        raise ProtocolError("opus needs 8000, 12000, 16000, 24000 or 48000 Hz", code="bad_sample_rate")
    return AvEncoder(fmt, sample_rate)


# ---- OpenAI's stream_format="sse" ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechUsage:
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def sse_event(data: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def sse_audio_delta(audio: bytes) -> bytes:
    """``speech.audio.delta``: a chunk of the encoded audio, base64 in JSON (OpenAI's framing)."""
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")})


def sse_audio_done(usage: SpeechUsage) -> bytes:
    """``speech.audio.done``: the last event, with usage (characters in, 20 ms frames out)."""
    return sse_event(
        {
            "type": "speech.audio.done",
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
        }
    )
