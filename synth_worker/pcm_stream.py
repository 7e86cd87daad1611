"""Shaping audio that arrives in pieces (cloud engines) into the chunks an engine yields.

``PcmShaper`` = ``StreamResampler`` -> fixed-length chunks -> ``RunningLoudness``.

Resampling piece by piece with ``resample_poly`` on each piece alone would click at every seam
(each call zero-pads its edges). ``StreamResampler`` keeps enough input context on both sides of
each block, and cuts blocks on the ratio's period, so its output equals one ``resample_poly`` call
over the whole signal (tested to float precision); the price is a few milliseconds of look-ahead.

Loudness: ``broker.audio.normalize_loudness`` needs the whole utterance. A stream only knows what it
has heard so far, so ``RunningLoudness`` derives one gain from the speech heard so far (gated like
ITU-R BS.1770: 40 ms blocks above an absolute floor, then above mean - 20 dB) and holds it through
pauses. The gain falls at once (a 5 ms ramp) when louder speech arrives, and rises by at most a few
dB per chunk, ramped across the chunk, so it neither overshoots nor makes zipper noise.
Before any speech the gain is 1: leading silence and noise are never amplified, and pauses are
not pumped up because gated-out blocks do not feed the estimate. Peaks above 0.8 are soft-limited
instead of clipped, since a stream cannot be rescaled after the fact.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from broker.audio import TARGET_RMS_DBFS, Samples

from .engine import EngineChunk

_EMPTY: Samples = np.zeros(0, dtype=np.float32)


class StreamResampler:
    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = gcd(src_rate, dst_rate)
        self.up = dst_rate // g
        self.down = src_rate // g
        self.passthrough = self.up == self.down
        # resample_poly's default filter is 2 * 10 * max(up, down) + 1 taps at the upsampled rate.
        half_in = -(-10 * max(self.up, self.down) // self.up) + 2
        self.ctx = -(-half_in // self.down) * self.down  # input context, a whole number of periods
        self._buf: Samples = np.zeros(self.ctx, dtype=np.float32)  # starts with zero left context
        self._buf_origin = -self.ctx  # absolute input index of _buf[0]
        self._start = 0  # absolute input index of the next block, a multiple of ``down``
        self._total_in = 0
        self._total_out = 0

    def feed(self, samples: Samples) -> Samples:
        x = np.asarray(samples, dtype=np.float32)
        if self.passthrough:
            return x
        self._buf = np.concatenate([self._buf, x])
        self._total_in += len(x)
        block = (self._total_in - self._start - self.ctx) // self.down * self.down
        if block <= 0:
            return _EMPTY
        lo = self._start - self.ctx - self._buf_origin
        out = self._run(self._buf[lo : lo + self.ctx + block + self.ctx], self.ctx, block)
        self._total_out += len(out)
        self._start += block
        keep_from = self._start - self.ctx - self._buf_origin
        self._buf = self._buf[keep_from:]
        self._buf_origin += keep_from
        return out

    def flush(self) -> Samples:
        """The rest of the signal (the stream ends with zeros, as one whole-signal call would)."""
        if self.passthrough:
            return _EMPTY
        lo = self._start - self.ctx - self._buf_origin
        remaining = self._total_in - self._start
        total = -(-self._total_in * self.up // self.down)  # resample_poly's output length
        out = self._run(self._buf[lo:], self.ctx, remaining)[: total - self._total_out]
        self._total_out = total
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = self._total_in
        return out.astype(np.float32)

    def _run(self, segment: Samples, left: int, length: int) -> Samples:
        from scipy.signal import resample_poly

        if length <= 0:
            return _EMPTY
        y = resample_poly(segment, self.up, self.down)
        first = left * self.up // self.down
        return np.asarray(y[first : first + -(-length * self.up // self.down)], dtype=np.float32)


class RunningLoudness:
    def __init__(
        self,
        sample_rate: int,
        *,
        target_dbfs: float = TARGET_RMS_DBFS,
        max_gain_db: float = 24.0,
        min_gain_db: float = -24.0,
        max_step_db: float = 3.0,
        floor_dbfs: float = -60.0,
        relative_gate_db: float = 20.0,
    ) -> None:
        self.block = max(1, sample_rate * 40 // 1000)
        self.attack = max(1, sample_rate * 5 // 1000)  # ramp length when the gain must drop
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self.min_gain_db = min_gain_db
        self.max_step_db = max_step_db
        self.floor_ms = 10 ** (floor_dbfs / 10)
        self.relative = 10 ** (-relative_gate_db / 10)
        self._blocks: list[float] = []  # mean square of each 40 ms block above the floor
        self._gain_db: float | None = None  # None until speech is heard
        self._last_gain = 1.0

    @property
    def gain_db(self) -> float:
        return 0.0 if self._gain_db is None else self._gain_db

    def process(self, samples: Samples) -> Samples:
        x = np.asarray(samples, dtype=np.float32)
        if len(x) == 0:
            return x
        for i in range(0, len(x), self.block):
            ms = float(np.mean(np.square(x[i : i + self.block], dtype=np.float64)))
            if ms > self.floor_ms:
                self._blocks.append(ms)
        wanted = self._wanted_db()
        ramp_len = len(x)
        if wanted is not None:
            if self._gain_db is None or wanted <= self._gain_db:
                self._gain_db = wanted  # first speech, or louder than thought: follow at once
                ramp_len = min(len(x), self.attack)
            else:
                self._gain_db = min(wanted, self._gain_db + self.max_step_db)  # quieter: rise slowly
        gain = 10 ** (self.gain_db / 20)
        ramp = np.full(len(x), gain, dtype=np.float32)
        ramp[:ramp_len] = np.linspace(self._last_gain, gain, num=ramp_len, dtype=np.float32)
        self._last_gain = gain
        return _soft_limit(x * ramp)

    def _wanted_db(self) -> float | None:
        if not self._blocks:
            return None
        blocks = np.asarray(self._blocks)
        gated = blocks[blocks >= float(np.mean(blocks)) * self.relative]
        level_db = 10 * float(np.log10(float(np.mean(gated))))
        return max(self.min_gain_db, min(self.max_gain_db, self.target_dbfs - level_db))


def _soft_limit(x: Samples, knee: float = 0.8) -> Samples:
    """Identity below the knee, then a tanh curve that approaches 1.0 and never crosses it."""
    mag = np.abs(x)
    over = mag > knee
    if not np.any(over):
        return x.astype(np.float32)
    y = x.copy()
    head = 1.0 - knee
    y[over] = np.sign(x[over]) * (knee + head * np.tanh((mag[over] - knee) / head))
    return y.astype(np.float32)


class PcmShaper:
    """Samples at ``src_rate``, in pieces of any size -> loudness-matched chunks of ``chunk_ms``."""

    def __init__(self, src_rate: int, dst_rate: int, chunk_ms: int = 40, *, loudness: bool = True) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.step = max(1, dst_rate * chunk_ms // 1000)
        self._resampler = StreamResampler(src_rate, dst_rate)
        self._loudness = RunningLoudness(dst_rate) if loudness else None
        self._pending: Samples = _EMPTY

    def feed(self, samples: Samples) -> list[EngineChunk]:
        return self._cut(self._resampler.feed(samples), final=False)

    def flush(self) -> list[EngineChunk]:
        return self._cut(self._resampler.flush(), final=True)

    def _cut(self, fresh: Samples, final: bool) -> list[EngineChunk]:
        buf = np.concatenate([self._pending, fresh]) if len(self._pending) else fresh
        n_full = len(buf) // self.step * self.step
        end = len(buf) if final else n_full
        chunks = [self._chunk(buf[i : min(i + self.step, end)]) for i in range(0, end, self.step)]
        self._pending = _EMPTY if final else buf[n_full:]
        return chunks

    def _chunk(self, samples: Samples) -> EngineChunk:
        shaped = self._loudness.process(samples) if self._loudness is not None else samples
        return EngineChunk(np.asarray(shaped, dtype=np.float32), self.dst_rate)
