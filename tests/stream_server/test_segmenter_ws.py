"""The golden sets streamed through ``/ws`` as an LLM would send them (fragments of 1-8 characters,
then ``flush``): the sentences a client sees are the expected ones, as the segmenter gives them on
the whole text.

The gateway has no voice at all (``SESAME_TIERS=workers`` and no worker), so every sentence comes
back at once as ``error`` ``speech_unavailable`` carrying its text (``sentence_start`` carries it
when a voice speaks): the test reads segmentation through the real session path without paying for
synthesis. ``SESAME_FIRST_CHUNK_MIN_CHARS=0`` (the early first chunk splits a sentence on purpose;
docs/segmentation.md) and ``SESAME_MAX_LENGTH=1000`` (rule 45 is 230 characters).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from broker.launcher import Mosquitto
from tests.conftest import Service, T
from tests.stream_server.test_segmenter_golden import CASES, KNOWN_MISSES, OURS
from tests.wsclient import collect, send


@pytest.fixture(scope="module")
def gateway() -> Iterator[Service]:
    env = {
        "SESAME_TIERS": "workers",  # and no worker: every sentence is an error with its text
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_FIRST_CHUNK_MIN_CHARS": "0",
        "SESAME_MAX_LENGTH": "1000",
        "SESAME_LOOKAHEAD": "8",
    }
    with Mosquitto() as broker:
        svc = Service(broker, None, env)
        try:
            yield svc
        finally:
            svc.close()


def fragments(text: str, rnd: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        k = rnd.randint(1, 8)
        out.append(text[i : i + k])
        i += k
    return out


async def test_both_golden_sets_stream_through_ws_as_whole(gateway: Service) -> None:
    cases = [(f"rule{r}", t, KNOWN_MISSES.get(r, e)) for r, t, e in CASES]
    cases += [(f"{kind}{n}", t, e) for n, kind, t, e in OURS]
    rnd = random.Random(22)
    wrong: dict[str, list[str]] = {}
    async with connect(gateway.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for name, text, expected in cases:
            for part in fragments(text, rnd):
                await send(ws, type="text", text=part)
            await send(ws, type="flush")
            turn = await collect(ws, 30 * T)
            by_seq = {m["seq"]: m["text"] for m in turn.of("sentence_start")}  # a restart repeats a seq
            by_seq |= {m["seq"]: m["text"] for m in turn.of("error") if m.get("text")}
            got = [str(by_seq[seq]) for seq in sorted(by_seq)]  # type: ignore[type-var]
            if got != expected:
                wrong[name] = got
    assert wrong == {}
    assert len(cases) == 48 + len(OURS)
