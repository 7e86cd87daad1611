"""The in-process tiers report when a sentence's slot comes (``LocalStarted``): at once when the tier
has room, only when a slot frees when it is full. The scheduler counts the sentence's first-audio
bound from there, so a sentence waiting for the last resort is not sent as text for its wait."""

from __future__ import annotations

import asyncio

from stream_server.core.actions import Sentence
from stream_server.hub.local_tiers import LocalDone, LocalEvent, LocalStarted, LocalTiers
from synth_worker.espeak import EspeakEngine
from tests.conftest import T


def test_a_queued_sentence_is_reported_started_when_its_slot_comes() -> None:
    async def run() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        both_done = asyncio.Event()

        def report(event: LocalEvent) -> None:
            if isinstance(event, LocalStarted | LocalDone):
                seen.append((type(event).__name__, event.job_id))
            if sum(1 for kind, _ in seen if kind == "LocalDone") == 2:
                both_done.set()

        tasks: set[asyncio.Task[None]] = set()

        def spawn(coro: object, name: str) -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
            tasks.add(task)
            return task

        local = LocalTiers(
            {"espeak-ng": EspeakEngine()}, "maya", 5.0, spawn, report,
            caps={"espeak-ng": 1}, last_resort="espeak-ng",
        )  # fmt: skip
        assert local.start("a", "espeak-ng", Sentence("s1", 0, 0, "One sentence.", "maya"))
        assert local.start("b", "espeak-ng", Sentence("s2", 0, 0, "Another one.", "maya"))
        assert seen == [("LocalStarted", "a")], "b waits for a's slot"
        await asyncio.wait_for(both_done.wait(), 6 * T)
        return seen

    seen = asyncio.run(run())
    assert seen.index(("LocalStarted", "b")) > seen.index(("LocalDone", "a")), seen
