"""Latency statistics and the listener's playout clock, shared by ``loadtest``, ``replay`` and ``bench/``.

Pure: no clock, no I/O. Times are plain floats (seconds) handed in by the caller.

``Playout`` models a client that starts playing when its first audio arrives (optionally after a
pre-buffer) and then plays without pause. Audio that arrives after everything received so far has
finished playing leaves a gap the listener hears: an *underrun*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear between closest ranks
    (numpy's default method). NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if n == 1:
        return float(sorted_values[0])
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


def median_interval(sorted_values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of already sorted values: the order
    statistics ``n/2 -+ z*sqrt(n)/2`` (the binomial count of values below the median, normal
    approximation; z=1.96: 95%). A bench's median moves between runs by about this much: a target
    is shown met only when the interval's far end meets it. NaN for fewer than 2 values."""
    n = len(sorted_values)
    if n < 2:
        return math.nan, math.nan
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    return float(sorted_values[lo]), float(sorted_values[hi])


@dataclass(frozen=True, slots=True)
class Summary:
    """count, mean, p50/p95/p99 and max of a set of values (seconds, or whatever was passed)."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        data = sorted(float(v) for v in values if v is not None and not math.isnan(v))
        if not data:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            count=len(data),
            mean=sum(data) / len(data),
            p50=percentile(data, 50),
            p95=percentile(data, 95),
            p99=percentile(data, 99),
            max=data[-1],
        )

    def to_dict(self, scale: float = 1.0, digits: int = 2) -> dict[str, float | int | None]:
        """JSON-ready (NaN becomes null); ``scale=1000`` gives milliseconds."""

        def num(v: float) -> float | None:
            return None if math.isnan(v) else round(v * scale, digits)

        return {
            "count": self.count,
            "mean": num(self.mean),
            "p50": num(self.p50),
            "p95": num(self.p95),
            "p99": num(self.p99),
            "max": num(self.max),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object], scale: float = 1.0) -> Summary:
        def num(key: str) -> float:
            v = data.get(key)
            return math.nan if v is None else float(v) / scale  # type: ignore[arg-type]

        count = data.get("count", 0)
        return cls(
            int(count) if isinstance(count, int | float) else 0,
            num("mean"),
            num("p50"),
            num("p95"),
            num("p99"),
            num("max"),
        )


@dataclass(frozen=True, slots=True)
class Played:
    """Where one piece of audio lands on the listener's clock."""

    start: float  # when it starts playing
    end: float  # when it finishes
    gap: float  # silence heard right before it (0 when it follows on seamlessly); 0 for the first piece


class Playout:
    """A listener's audio clock for one stream of audio (one turn, or one session).

    ``prebuffer_s``: playback starts this long after the first audio arrives (a jitter buffer).
    ``min_gap_s``: a gap shorter than this is not counted as an underrun (its time still is).
    """

    def __init__(self, prebuffer_s: float = 0.0, min_gap_s: float = 0.0) -> None:
        if prebuffer_s < 0 or min_gap_s < 0:
            raise ValueError("prebuffer_s and min_gap_s must not be negative")
        self.prebuffer_s = prebuffer_s
        self.min_gap_s = min_gap_s
        self.first_arrival: float | None = None
        self.end: float | None = None  # when everything received so far finishes playing
        self.underruns = 0
        self.gap_s = 0.0  # total silence inside the stream (not counting before the first audio)
        self.max_gap_s = 0.0
        self.audio_s = 0.0

    @property
    def started(self) -> bool:
        return self.end is not None

    def audio(self, arrival: float, duration_s: float) -> Played:
        """Audio of ``duration_s`` seconds arrived at ``arrival``."""
        if duration_s < 0:
            raise ValueError("duration must not be negative")
        self.audio_s += duration_s
        if self.end is None:
            self.first_arrival = arrival
            start = arrival + self.prebuffer_s
            self.end = start + duration_s
            return Played(start, self.end, 0.0)
        if arrival > self.end:
            gap = arrival - self.end
            self.gap_s += gap
            self.max_gap_s = max(self.max_gap_s, gap)
            if gap > self.min_gap_s:
                self.underruns += 1
            start = arrival
        else:
            gap = 0.0
            start = self.end
        self.end = start + duration_s
        return Played(start, self.end, gap)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "", align: str = "") -> str:
    """A plain text table. ``align`` has one letter per column, ``l`` or ``r``; by default the first
    column is left-aligned and the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    sides = align or "l" + "r" * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, sides, strict=True)]
        return indent + "  ".join(parts).rstrip()

    sep = indent + "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])
