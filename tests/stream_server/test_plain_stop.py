"""A plain window is cut where pysbd cuts it, without asking pysbd (stream_server/core/plain_stop.py):
on generated plain windows the cut is pysbd's first boundary, and every kind of window where
anything else could matter is left to pysbd."""

from __future__ import annotations

import random

import pytest

from stream_server.core.plain_stop import plain_stop
from stream_server.core.segmenter import SentenceSegmenter

WORDS = ["good", "morning", "weather", "today", "mild", "breeze", "west", "thanks", "waiting", "found"]
WORDS += ["package", "left", "warehouse", "should", "arrive", "train", "city", "leaves", "great", "bees"]
CAPS = ["The", "It", "Bees", "Later", "Could", "Everyone", "Drink", "Entry", "Would", "Here"]


def pysbds_cut(window: str) -> int | None:
    bounds = SentenceSegmenter()._boundaries(window)
    return bounds[0] if bounds else None


def test_on_generated_plain_windows_the_cut_is_pysbds() -> None:
    rng = random.Random(20)
    cut = 0
    for _ in range(1500):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        before = " ".join(words[:-1]).capitalize()
        if before and rng.random() < 0.2:
            before = before.replace(" ", ", ", 1)
        window = f"{before} {words[-1]}" if before else words[-1].capitalize()
        window += f"{rng.choice('..!?')} {rng.choice(CAPS)}"
        ours = plain_stop(window)
        cut += ours is not None
        assert ours is None or ours == pysbds_cut(window), window
    assert cut > 1000  # the generated windows are mostly plain: the rule was exercised


@pytest.mark.parametrize(
    "window",
    [
        "We bought apples, pears etc. The",  # an abbreviation pysbd knows
        "Please see the fig. Three",
        "It was part iii. The",  # roman numerals
        "Call me at five p.m. The",  # a stop inside the word
        "It is 5. The",  # a digit
        'He said "fine." Then',  # a quote
        "It's late. The",  # an apostrophe
        "Buy these: milk. The",  # a colon
        "Wait. What? The",  # two stops
        "It was good. I",  # the next word is not a capitalized lowercase word
        "It was good. USA",
        "It was good. iPhone",
        "It was good (mostly). The",
        "It was good.  The",
        "Oh. The",  # a word of fewer than three letters
    ],
)
def test_a_window_where_anything_else_could_matter_is_left_to_pysbd(window: str) -> None:
    assert plain_stop(window) is None


def test_a_plain_window_is_cut_after_its_stop() -> None:
    assert plain_stop("Good morning. The") == len("Good morning. ")
    assert plain_stop("That is a great question! Bees") == len("That is a great question! ")
    assert pysbds_cut("Good morning. The") == len("Good morning. ")
