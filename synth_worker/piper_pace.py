"""How a streamed clause is cut into pieces: each piece sized to the decoder's speed measured now,
so that it is decoded before the audio already sent has played (#24). Pure: no clock, no model.

A piece of ``k`` latent frames costs the decoder ``k`` frames plus the overlap of context on each
side (``Pace.overlap``: decoded again and dropped), at ``cost`` seconds of wall time per decoded
frame; it gives the listener ``k * frame_s`` seconds of audio. Fixed piece sizes (16 frames, then
doubling) were right on an idle machine (0.3 ms a frame, 11.6 ms of audio a frame) and wrong on a
loaded one: in CI, at about 3 ms a frame, a 32-frame second piece (56 frames decoded) was still
decoding when the first 16 frames had played, and the page heard the gap (test_browser_loaded).

So the child measures: the first piece is sized from the speed it expects (the decoder's CPU per
frame over the share of the cores the process is getting now), every later piece from the speed
the piece before it was decoded at and the audio the listener has left:

* ``next_piece``: the largest piece whose decoding fits in the audio ahead (less a margin for the
  audio's way to the listener); the whole rest when it fits. Larger is better while the decoder is
  faster than real time: each piece pays the overlap once, and the audio ahead grows with its size.
* Before the first piece, or when even ``least`` frames do not fit (the listener will run dry
  whatever is sent), the next piece is chosen as a first piece is (``first_piece``): the smallest
  from which the rest streams without another gap, or the whole rest in one pass where none does
  (one gap, the shortest end).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pace:
    frame_s: float  # seconds of audio per latent frame (the decoder's hop over the sample rate)
    overlap: int  # latent frames of context decoded again on each side of a piece
    first: int = 16  # the shortest piece that starts a stream (186 ms for a 256-sample hop at 22.05 kHz)
    # A later piece shorter than this gains little on the listener and costs much: it decodes
    # 2 overlaps of context (24 frames for the packaged voice) besides its own frames.
    least: int = 24
    use: float = 0.75  # the share of the audio ahead a piece's decoding may take ...
    # ... less the audio's way to the listener: the worker sends whole 40 ms chunks and its
    # resampler looks 7-13 ms ahead (up to 53 ms of a piece waits for the next one), then the
    # worker, broker, gateway and page each wait for a core on a loaded machine.
    reach_s: float = 0.1

    def budget(self, ahead_s: float, cost: float) -> float:
        """Latent frames the decoder can take before the listener runs dry (``cost``: wall seconds
        per decoded frame; 0: not known yet, taken as no limit)."""
        spare = ahead_s * self.use - self.reach_s
        if cost <= 0.0:
            return float("inf")
        return spare / cost

    def fitting(self, remaining: int, ahead_s: float, cost: float) -> int | None:
        """The largest piece decoded before ``ahead_s`` of audio has played: all ``remaining``
        frames when they fit, else at least ``least``; None when not even that fits."""
        budget = self.budget(ahead_s, cost)
        if remaining + self.overlap <= budget:
            return remaining
        k = int(budget) - 2 * self.overlap
        return k if k >= self.least else None

    def next_piece(self, remaining: int, ahead_s: float, cost: float) -> int:
        """Frames of the next piece of a clause with ``remaining`` frames left to send, while the
        listener has ``ahead_s`` seconds of it to play (0 before the first piece)."""
        k = self.fitting(remaining, ahead_s, cost) if ahead_s > 0.0 else None
        return k if k is not None else self.first_piece(remaining, cost)

    def first_piece(self, remaining: int, cost: float) -> int:
        """The smallest piece (``first``, then each half again as large) from which the rest of
        ``remaining`` streams without running dry at ``cost``; all of it where none does."""
        size = self.first
        while size < remaining:
            if self.streams(remaining - size, size * self.frame_s, cost):
                return size
            size += max(1, size // 2)
        return remaining

    def streams(self, remaining: int, ahead_s: float, cost: float) -> bool:
        """Whether ``remaining`` frames can be sent, each piece the largest that fits, without the
        listener's ``ahead_s`` seconds of audio running out (at a steady ``cost``)."""
        while remaining > 0:
            k = self.fitting(remaining, ahead_s, cost)
            if k is None:
                return False
            ahead_s += k * self.frame_s - (k + 2 * self.overlap) * cost
            remaining -= k
        return True


def expected_cost(cpu_per_frame: float, cpu_s: float, wall_s: float) -> float:
    """Wall seconds per decoded frame the decoder is expected to take now: its CPU per frame (as
    measured on this copy of the voice) over the cores this process got while it ran the encoder
    just now (``cpu_s`` of CPU in ``wall_s``: under 1 when other processes hold the cores). 0 when
    the decoder has not run yet."""
    if cpu_per_frame <= 0.0 or wall_s <= 0.0:
        return 0.0
    share = max(cpu_s / wall_s, 0.05)  # a share under 5 % of a core is a measurement glitch
    return cpu_per_frame / share
