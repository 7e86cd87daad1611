"""Debug stamps of one sentence's path through the gateway, joined by job id (pure).

With SESAME_DEBUG_STAMPS on, the gateway stamps each hop of a sentence with ``time.monotonic()``
(passed in as ``now``): the client's text frame in (``text_in``: the last frame of the session
before the segmenter cut), the cut (``cut``), the job handed to the MQTT publisher
(``job_queued``), its first audio chunk back (``audio_in``) and that chunk queued for the client
(``frame_queued``). The worker stamps its own hops (``broker.messages.WORKER_HOPS``) and returns
them in ``done``; ``take`` gives everything for the one ``hop_stamps`` log line per job that
``bench/ttfa_timeline.py`` reads. Bounded: at most ``limit`` sentences and jobs are held; the
oldest are dropped first. Off (no ``HopStamps`` at all) by default.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from broker.messages import WORKER_HOPS

K = TypeVar("K")
GATEWAY_HOPS = ("text_in", "cut", "job_queued", "audio_in", "frame_queued")


class HopStamps:
    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._text_in: dict[str, float] = {}  # session -> its last text frame
        self._sentences: OrderedDict[tuple[str, int], dict[str, float]] = OrderedDict()
        self._jobs: OrderedDict[str, dict[str, float]] = OrderedDict()

    def text_in(self, session_id: str, now: float) -> None:
        self._text_in[session_id] = now

    def cut(self, session_id: str, seq: int, now: float) -> None:
        stamps = {"cut": now}
        if (last := self._text_in.get(session_id)) is not None:
            stamps["text_in"] = last
        _put(self._sentences, (session_id, seq), stamps, self.limit)

    def job(self, job_id: str, session_id: str, seq: int, now: float) -> None:
        """``job_id`` carries the sentence: its stamps move to the job (a retry starts afresh)."""
        stamps = dict(self._sentences.get((session_id, seq), {}))
        stamps["job_queued"] = now
        _put(self._jobs, job_id, stamps, self.limit)

    def mark(self, job_id: str, hop: str, now: float) -> None:
        """The first time ``hop`` happens to a stamped job (later chunks do not move it)."""
        stamps = self._jobs.get(job_id)
        if stamps is not None:
            stamps.setdefault(hop, now)

    def worker(self, job_id: str, stamps: tuple[float, ...]) -> None:
        held = self._jobs.get(job_id)
        if held is not None and len(stamps) == len(WORKER_HOPS):
            held.update(zip(WORKER_HOPS, stamps, strict=True))

    def take(self, job_id: str, session_id: str, seq: int) -> dict[str, float] | None:
        """Everything stamped for a finished job, in hop order (None if it was not stamped)."""
        self._sentences.pop((session_id, seq), None)
        stamps = self._jobs.pop(job_id, None)
        if stamps is None:
            return None
        order = (*GATEWAY_HOPS[:3], *WORKER_HOPS, *GATEWAY_HOPS[3:])
        return {hop: stamps[hop] for hop in order if hop in stamps}

    def forget_session(self, session_id: str) -> None:
        self._text_in.pop(session_id, None)


def _put(book: OrderedDict[K, dict[str, float]], key: K, value: dict[str, float], limit: int) -> None:
    book[key] = value
    while len(book) > limit:
        book.popitem(last=False)
