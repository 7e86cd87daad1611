"""A window whose one sentence end is plain, cut without asking pysbd (issue 20).

pysbd costs ~60 us a call whatever the window's length (its ~90 rules run each time), and the
window that ends a turn's first sentence is most often plain: ordinary words, one stop after a word
of three or more lowercase letters, one space, one capitalized word ("Good morning. The"). There
pysbd always cuts after the stop; it is asked wherever anything else could matter: a digit, a
quote, an apostrophe, a bracket, a colon or another stop anywhere in the window; a stop after an
abbreviation pysbd knows (its own list: "etc. The", "approx. Ten") or a word of roman-numeral
letters ("iii. The"); a next word that is not a capitalized lowercase word ("I", "USA", "iPhone").
Checked against pysbd on 110 000 generated windows (`tests/stream_server/test_plain_stop.py` keeps
a sample of the kinds) and by the segmenter's property tests.
"""

from __future__ import annotations

import re

from pysbd.lang.english import English

_ABBREVIATIONS = frozenset(a.lower() for a in English.Abbreviation.ABBREVIATIONS)
_PLAIN = re.compile(r"[A-Za-z ,]*(?<![^ ])([a-z]{3,})([.!?]) ([A-Z][a-z]+)")
_ROMAN = re.compile(r"[ivxlcdm]+")


def plain_stop(window: str) -> int | None:
    """Where the next sentence starts in a plain window (pysbd's one boundary), else None: ask pysbd."""
    match = _PLAIN.fullmatch(window)
    if match is None:
        return None
    word, stop = match.group(1), match.group(2)
    if stop == "." and (word in _ABBREVIATIONS or _ROMAN.fullmatch(word)):
        return None
    return match.start(3)
