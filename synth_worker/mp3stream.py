"""Decoding an MP3 byte stream while it arrives (edge-tts sends audio-24khz-48kbitrate-mono-mp3).

libsndfile (through soundfile) decodes MP3 from memory but not from a growing stream. MP3 frames
are not independent (the bit reservoir reaches back into earlier frames, the synthesis filterbank
overlaps them), so decoding each new piece on its own would click at every seam. Instead, every
``step_bytes`` of new complete frames, the decoder decodes the whole buffer received so far, cut
at a frame boundary, and hands out only the samples beyond those already handed out. A prefix cut
at a frame boundary decodes to an exact prefix of the full decode (checked against libsndfile's
mpg123 for CBR, VBR and gapless-tagged streams); one frame is still held back until the end in case
a decoder emits a provisional last frame. A sentence is a few tens of kilobytes, so the repeated
decodes cost a few milliseconds per sentence. Decoding is blocking: call ``decode``/``finish`` from
a thread.

The frame scan (MPEG-1/2/2.5 layer III headers, an ID3v2 tag skipped) only decides where to cut;
if the stream is not parseable, nothing is decoded until ``finish``, which decodes everything.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from broker.audio import Samples
from broker.errors import EngineError

_BITRATES_KBPS = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 layer III
    0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2.5 layer III
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}

_EMPTY: Samples = np.zeros(0, dtype=np.float32)


def frame_length(header: bytes) -> tuple[int, int] | None:
    """(bytes, samples) of the layer III frame whose 4-byte header this is, or None if it is not one."""
    if len(header) < 4:
        return None
    h = int.from_bytes(header[:4], "big")
    if h >> 21 != 0x7FF:
        return None
    version = (h >> 19) & 3
    layer = (h >> 17) & 3
    bitrate_index = (h >> 12) & 15
    rate_index = (h >> 10) & 3
    padding = (h >> 9) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _BITRATES_KBPS[version][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    if version == 3:
        return 144 * bitrate // rate + padding, 1152
    return 72 * bitrate // rate + padding, 576


def _id3_size(data: bytes) -> int | None:
    """Bytes taken by a leading ID3v2 tag (0 if none, None if the tag header is not complete yet)."""
    if not data.startswith(b"ID3"):
        return 0 if len(data) >= 3 or not b"ID3".startswith(data) else None
    if len(data) < 10:
        return None
    size = 0
    for b in data[6:10]:
        size = (size << 7) | (b & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


class Mp3StreamDecoder:
    def __init__(self, step_bytes: int = 2048, min_frames: int = 4, holdback_frames: int = 1) -> None:
        self.step_bytes = step_bytes
        self.min_frames = min_frames
        self.holdback_frames = holdback_frames
        self._buf = bytearray()
        self._scan: int | None = None  # offset of the next frame header; None until the ID3 check
        self._frames = 0
        self._frame_samples = 0
        self._complete_end = 0  # end of the last complete frame
        self._decoded_end = 0  # buffer length at the last decode
        self._emitted = 0
        self._unparseable = False
        self.sample_rate = 0

    @property
    def received(self) -> int:
        return len(self._buf)

    def push(self, data: bytes) -> None:
        self._buf += data
        self._advance()

    @property
    def due(self) -> bool:
        """Whether enough new complete frames arrived to make a decode worthwhile."""
        if self._frames < self.min_frames:
            return False
        return self._decoded_end == 0 or self._complete_end - self._decoded_end >= self.step_bytes

    def decode(self) -> Samples:
        """New samples from the complete frames so far (blocking). Empty if none are due."""
        if not self.due:
            return _EMPTY
        end = self._complete_end
        try:
            samples = self._decode(bytes(self._buf[:end]))
        except EngineError:
            return _EMPTY  # a prefix the decoder does not like yet; ``finish`` decides
        self._decoded_end = end
        ready = len(samples) - self.holdback_frames * self._frame_samples
        return self._take(samples, ready)

    def finish(self) -> Samples:
        """Everything not yet handed out, from the whole stream (blocking)."""
        if not self._buf:
            return _EMPTY
        samples = self._decode(bytes(self._buf))
        return self._take(samples, len(samples))

    def _take(self, samples: Samples, ready: int) -> Samples:
        if ready <= self._emitted:
            return _EMPTY
        out = samples[self._emitted : ready]
        self._emitted = ready
        return out

    def _decode(self, data: bytes) -> Samples:
        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, ValueError) as exc:
            raise EngineError(f"undecodable MP3 audio ({len(data)} bytes)", code="bad_audio") from exc
        if self.sample_rate and rate != self.sample_rate:
            raise EngineError(
                f"MP3 sample rate changed mid-stream ({self.sample_rate} -> {rate})", code="bad_audio"
            )
        self.sample_rate = int(rate)
        mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
        return np.ascontiguousarray(mono, dtype=np.float32)

    def _advance(self) -> None:
        if self._unparseable:
            return
        buf = self._buf
        if self._scan is None:
            skip = _id3_size(bytes(buf[:10]))
            if skip is None:
                return
            self._scan = skip
        while self._scan + 4 <= len(buf):
            frame = frame_length(bytes(buf[self._scan : self._scan + 4]))
            if frame is None:
                self._unparseable = True
                return
            size, samples = frame
            if self._scan + size > len(buf):
                return
            if self._frame_samples and samples != self._frame_samples:
                self._unparseable = True
                return
            self._frame_samples = samples
            self._scan += size
            self._frames += 1
            self._complete_end = self._scan
