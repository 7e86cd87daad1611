"""Encoding off the event loop: a bounded pool of threads for the container formats (mp3, ogg/opus,
flac, aac, wav) and for time stretching.

An mp3 of one 12 s sentence at 48 kHz costs ~135 ms of CPU; on the event loop that stalls every
session's frames and heartbeats (bench/loop_lag.py measures it). The encoders (libsndfile, FFmpeg
through PyAV, Rubber Band) release the GIL while they work. The pool has ``SESAME_ENCODE_THREADS``
threads, its own (not asyncio's default executor, which the monitor's disk writes share), so a
burst of long mp3 requests queues here instead of taking every core; each request's own encodes
stay in order because each awaits the last.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")


class EncoderPool:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sesame-encode")

    def submit(self, fn: Callable[..., R], *args: object) -> asyncio.Future[R]:
        """Run ``fn(*args)`` on a pool thread; a future of this event loop."""
        return asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        return await self.submit(fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
