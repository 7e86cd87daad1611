"""Pitch-preserving time-stretch for OpenAI's ``speed``: WSOLA in numpy (pure, permissive).

``time_stretch(samples, rate, speed)`` returns ``round(len / speed)`` samples of the same speech,
faster or slower, at the same pitch. WSOLA (waveform-similarity overlap-add, Verhelst and Roelands
1993) cuts the input into overlapping frames and lays them out at a different hop; before each frame
is added it is slid by up to ``SEARCH_S`` so that its waveform lines up with the natural
continuation of the frame before it (the offset with the highest normalized cross-correlation).
Pitch periods are therefore repeated or skipped whole, never smeared: no phasiness, no change of
pitch or formants. It works on any mono signal but is tuned for speech (30 ms frames, 45 ms above
2.5x, and a search wide enough for one period of a 70 Hz voice).

It replaced Rubber Band (through pedalboard, GPL-3.0), so the gateway process loads no GPL code for
``speed``: the duration is exact to the sample, the pitch is kept as well or better from 0.25x to
2x, with less CPU when speeding up. docs/benchmarks.md ("speed") has the measurements;
``bench/stretch.py`` makes them.
"""

from __future__ import annotations

import numpy as np

from broker.audio import Samples
from broker.errors import ProtocolError

MIN_SPEED, MAX_SPEED = 0.25, 4.0
FRAME_S = 0.030  # frame length; frames overlap by half (Hann windows sum to one)
FAST_FRAME_S = 0.045  # above FAST_SPEED: longer frames keep more of each period train
FAST_SPEED = 2.5
SEARCH_S = 0.015  # how far a frame may slide to line up with the one before it
_EPS = 1e-12


def check_speed(speed: float) -> float:
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ProtocolError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}", code="bad_speed")
    return float(speed)


def time_stretch(samples: Samples, sample_rate: int, speed: float, search_s: float = SEARCH_S) -> Samples:
    """Play ``speed`` times faster (0.25-4.0) at the same pitch: exactly round(len / speed) samples.

    ``search_s`` 0 makes it plain overlap-add (OLA, the baseline the benchmark compares with)."""
    check_speed(speed)
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if speed == 1.0 or len(x) == 0:
        return x
    out_len = max(1, round(len(x) / speed))
    frame_s = FAST_FRAME_S if speed > FAST_SPEED else FRAME_S
    frame = max(4, 2 * round(frame_s * sample_rate / 2))
    hop = frame // 2  # synthesis hop
    search = round(search_s * sample_rate)
    window = np.hanning(frame + 1)[:frame].astype(np.float64)  # periodic Hann: sums to 1 at hop
    frames = out_len // hop + 2
    # The input, padded so that every frame and every slide of it stays inside.
    pad = frame + search
    tail = int(frames * hop * speed) + frame + 2 * search + hop
    xp = np.zeros(pad + max(len(x), tail) + pad, dtype=np.float64)
    xp[pad : pad + len(x)] = x
    y = np.zeros(frames * hop + frame, dtype=np.float64)
    weight = np.zeros_like(y)
    prev = -1  # where the previous frame was taken from, in xp
    for k in range(frames):
        nominal = pad + round(k * hop * speed) - hop  # frame k is centred on input k * hop * speed
        start = nominal
        if prev >= 0 and search:
            start += _best_offset(xp, prev + hop, nominal, frame, search)
        y[k * hop : k * hop + frame] += window * xp[start : start + frame]
        weight[k * hop : k * hop + frame] += window
        prev = start
    out = y[hop : hop + out_len] / np.maximum(weight[hop : hop + out_len], 1e-3)
    stretched: Samples = out.astype(np.float32)
    return stretched


def _best_offset(xp: np.ndarray, natural: int, nominal: int, frame: int, search: int) -> int:
    """The slide in [-search, search] of the frame at ``nominal`` whose waveform best matches the
    natural continuation of the previous frame (``xp[natural : natural + frame]``)."""
    template = xp[natural : natural + frame]
    if not np.any(np.abs(template) > _EPS):
        return 0  # silence before: keep the nominal place
    region = xp[nominal - search : nominal + search + frame]
    corr = np.correlate(region, template, mode="valid")  # one value per slide
    energy = np.convolve(region * region, np.ones(frame), mode="valid")
    return int(np.argmax(corr / np.sqrt(energy + _EPS))) - search
