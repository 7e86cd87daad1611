"""Audio frames (binary, never JSON or base64) and sample conversion.

Frame layout, little-endian, 16-byte header then payload (the same on MQTT and the websocket):

    offset size field
    0      2    magic  b"SV"
    2      1    version (1)
    3      1    encoding: 0 pcm16, 1 wav, 2 ogg/opus, 3 mp3, 4 flac
    4      4    seq: the sentence (job) sequence number within its session
    8      4    index: the chunk number within the sentence, from 0
    12     4    sample_rate in Hz
    16     ...  payload (for pcm16: mono signed 16-bit samples)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from math import gcd

import numpy as np
import numpy.typing as npt

from .errors import ProtocolError

MAGIC = b"SV"
VERSION = 1
HEADER = struct.Struct("<2sBBIII")
HEADER_SIZE = HEADER.size  # 16
MAX_FRAME_BYTES = 1 << 20

Samples = npt.NDArray[np.float32]


class Encoding(IntEnum):
    PCM16 = 0
    WAV = 1
    OPUS = 2
    MP3 = 3
    FLAC = 4


@dataclass(frozen=True, slots=True)
class AudioFrame:
    seq: int
    index: int
    sample_rate: int
    payload: bytes
    encoding: Encoding = Encoding.PCM16

    @property
    def samples(self) -> int:
        return len(self.payload) // 2 if self.encoding is Encoding.PCM16 else 0

    def to_bytes(self) -> bytes:
        return (
            HEADER.pack(MAGIC, VERSION, self.encoding, self.seq, self.index, self.sample_rate) + self.payload
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> AudioFrame:
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise ProtocolError("audio frame shorter than its header", code="bad_audio_frame")
        if len(data) > MAX_FRAME_BYTES:
            raise ProtocolError("audio frame too large", code="bad_audio_frame")
        magic, version, encoding, seq, index, rate = HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise ProtocolError("not a sesame audio frame (magic/version)", code="bad_audio_frame")
        try:
            enc = Encoding(encoding)
        except ValueError as exc:
            raise ProtocolError(f"unknown audio encoding {encoding}", code="bad_audio_frame") from exc
        payload = data[HEADER_SIZE:]
        if enc is Encoding.PCM16 and len(payload) % 2:
            raise ProtocolError("pcm16 payload has an odd length", code="bad_audio_frame")
        if not 1000 <= rate <= 192_000:
            raise ProtocolError("audio frame sample rate out of range", code="bad_audio_frame")
        return cls(seq=seq, index=index, sample_rate=rate, payload=payload, encoding=enc)


def pcm16_frame(seq: int, index: int, sample_rate: int, pcm: bytes) -> bytes:
    """``AudioFrame(seq, index, sample_rate, pcm).to_bytes()`` without the object (once a frame)."""
    return HEADER.pack(MAGIC, VERSION, Encoding.PCM16, seq, index, sample_rate) + pcm


def to_pcm16(samples: Samples) -> bytes:
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def from_pcm16(payload: bytes) -> Samples:
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32767.0


def resample(samples: Samples, src_rate: int, dst_rate: int) -> Samples:
    """Polyphase resampling (scipy), exact for rational ratios such as 22050 -> 24000."""
    if src_rate == dst_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly  # local: scipy is heavy to import

    g = gcd(src_rate, dst_rate)
    out: Samples = resample_poly(samples, dst_rate // g, src_rate // g).astype(np.float32)
    return out


def chunk_samples(samples: Samples, sample_rate: int, chunk_ms: int) -> list[Samples]:
    step = max(1, sample_rate * chunk_ms // 1000)
    return [samples[i : i + step] for i in range(0, len(samples), step)]


TARGET_RMS_DBFS = -20.0


def normalize_loudness(
    samples: Samples, target_dbfs: float = TARGET_RMS_DBFS, max_gain_db: float = 24.0
) -> Samples:
    """Bring RMS to one level so a switch between engines is not jarring; never amplify silence."""
    x = np.asarray(samples, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    if rms < 1e-5:
        return x
    gain_db = min(max_gain_db, target_dbfs - 20 * np.log10(rms))
    y = x * np.float32(10 ** (gain_db / 20))
    peak = float(np.max(np.abs(y)))
    return y / np.float32(peak / 0.99) if peak > 0.99 else y


def voice_gain(rms_dbfs: float, peak: float, max_gain_db: float = 24.0) -> float:
    """One gain for all of a voice's audio (Piper, espeak-ng): the one that brings the raw output of
    its calibration sentence (RMS in dBFS, peak) to the project's loudness (``TARGET_RMS_DBFS``, as
    ``normalize_loudness``), lowered if that would push its peak past 0.95. A constant gain, so the
    level never jumps within a sentence."""
    gain = 10 ** (min(max_gain_db, TARGET_RMS_DBFS - rms_dbfs) / 20)
    return min(gain, 0.95 / peak) if peak > 0 else gain


def rms_dbfs(samples: Samples) -> float:
    x = np.asarray(samples, dtype=np.float64)
    rms = float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    return -120.0 if rms <= 1e-6 else 20 * float(np.log10(rms))
