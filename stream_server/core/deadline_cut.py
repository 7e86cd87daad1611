"""The playback-deadline cut: where a turn's text is cut before its sentence is complete. Pure.

Text streamed word by word (an LLM, the web page) can arrive slower than a sentence's audio plays
out: a short sentence ("Good morning.", 0.7 s) before a long one whose words take 1.5 s more to
arrive leaves the listener in silence. So when the listener is playing and will have played
everything (the audio still coming included) before the pending text could be cut and synthesized
(core/playback.py, ``runs_dry`` with ``deadline_lead_s``: 0.35 s for a chunk's way to its first
audio and a word's arrival to spare, plus 0.15 s per second of its expected audio), the session
has the segmenter cut the pending text (a turn's later chunks only; the first has
``first_chunk_min_chars``) at the best boundary reached, in this order:

1. a sentence end pysbd sees in it, the next sentence's first word maybe still growing;
2. the text's end after a stop (and closing quotes) after a letter ("costs 3." may go on as 3.5);
3. its last clause mark (comma, semicolon, colon, dash) followed by a space;
4. its last word boundary with at least ``DEADLINE_MIN_WORDS`` words before it (the last word may
   still be growing, so it stays);

else nothing yet. Text that arrives faster than speech keeps the audio ahead longer than the lead,
so nothing is cut: a seam in a sentence's prosody only where a gap would have been heard.
"""

from __future__ import annotations

import re

DEADLINE_MIN_WORDS = 3
_STOPS = ".!?\u2026\u3002\uff01\uff1f"
CLOSERS = "\"'\u201d\u2019\u00bb)]}\u300d\u300f\uff09"  # closing quotes and brackets (the segmenter's too)
_ENDS_WITH_STOP = re.compile(rf"[^\W\d][{_STOPS}]+[{re.escape(CLOSERS)}]*$")
_CLAUSE = re.compile(r"[,;:\u2014\u2013](?=\s)")


def deadline_boundary(text: str, sentence_ends: list[int]) -> int | None:
    """Where to cut ``text`` (whitespace-normalized, one block) now; ``sentence_ends``: where pysbd
    starts a new sentence in it. None: no boundary good enough yet."""
    if sentence_ends:
        return sentence_ends[0]
    if _ENDS_WITH_STOP.search(text):
        return len(text)
    if clauses := [m.end() for m in _CLAUSE.finditer(text)]:
        return clauses[-1]
    words = text.split(" ")
    if len(words) > DEADLINE_MIN_WORDS:
        return len(text) - len(words[-1]) - 1
    return None
