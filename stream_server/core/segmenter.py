"""Streaming sentence segmentation: text fragments in, complete sentences out (sans-I/O).

Text arrives in arbitrary pieces (an LLM writes a token at a time, a word may arrive in halves).
``SentenceSegmenter.feed`` returns the sentences that are *certain*; ``flush`` ends the turn and
returns what remains. Where a sentence ends is decided by pysbd (the pragmatic segmenter's rules),
run on *windows* of the text whose ends depend only on the text, so the sentences never depend on
how the text was split into fragments:

    seg = SentenceSegmenter()
    seg.feed("Hello. Wor")  # []  "Hello. World" or "Hello. world"?
    seg.feed("ld again")  # ["Hello."]  pysbd cut the window "Hello. World"
    seg.flush()  # ["World again"]

How a cut is decided (docs/segmentation.md explains the choices):

* The unemitted text is split into *blocks* at hard boundaries: a paragraph break (a blank line)
  and a line break before a list item ("\\n2. ", "\\n- "). A single line break is a space.
* Within a block, the sentence starting at the front is looked at through growing windows: the
  text up to each whitespace (and after each run of full-width stops). A window is looked at once
  the whitespace after it has arrived, so it holds whole words only. pysbd segments the window;
  its first boundary that follows a space (or a full-width stop) is the cut. The last window of a
  block (the whole block) ends the sentence at the block's end if pysbd finds no boundary in it.
* Pieces with no letter or digit ("." of a spaced ellipsis, stray punctuation) join the sentence
  before them (or after them, at the start of a window); a sentence with no letter or digit is
  never emitted (a turn or paragraph of punctuation alone is dropped).
* A cut right after a colon and a possible list marker ("Buy these: 1." | "Milk") is provisional:
  pysbd moves it before the marker once the next marker arrives ("Buy these:" | "1. Milk" |
  "2. Eggs"). It is taken once a window shows the sentence after it ending too, or at the block's
  end (or the length limit). Without the colon the first cut is taken as before: pysbd's list rule
  would also turn "It was 1. Then it was 2." into "It was" | "1. Then it was" | "2.".
* A sentence longer than ``max_length`` characters is cut at its last clause boundary (comma,
  semicolon, colon, em or en dash, followed by whitespace) within the limit, else at its last word
  boundary, else hard at the limit.
* With ``first_chunk_min_chars`` > 0 the first chunk of a turn is cut early at the first clause
  boundary at least that many characters in (before pysbd's first boundary): sooner first audio.
* ``cut_for_deadline()`` cuts a turn's later chunk early, at the best boundary reached, when the
  session's listener would run dry before it is complete (core/deadline_cut.py).

Any split of a text gives the whole text's sentences (tested), whitespace-normalized (lengths too).
"""

from __future__ import annotations

import re

import pysbd

from stream_server.core.deadline_cut import CLOSERS, deadline_boundary
from stream_server.core.list_markers import list_marker_at
from stream_server.core.plain_stop import plain_stop

WIDE_TERMINATORS = frozenset("\u3002\uff01\uff1f")  # ideographic full stop, full-width ! and ?
CLAUSE_MARKS = frozenset(",;:\u2014\u2013")  # comma, semicolon, colon, em dash, en dash
# pysbd is only asked about a window with one of these in the LOOKBACK_WORDS words before its last
# word: it cuts nowhere else, and needs at most two words after a stop ("the U.S. How about").
_CANDIDATE = re.compile(r"[.!?)\uff0e\u3002\uff01\uff1f]")
LOOKBACK_WORDS = 3
# The last window (a block) is asked if a stop, quote or apostrophe not in a word precedes its end.
_INNER_CUT = re.compile(
    r"[.!?)\uff0e\u3002\uff01\uff1f\"\u201c-\u201f\u00ab\u00bb\u300c-\u300f]|\B['\u2018\u2019]|['\u2018\u2019]\B"
)
_WIDE = re.compile("[" + "".join(sorted(WIDE_TERMINATORS)) + "]")
_CLOSING_RUN = ".!?\uff0e\u3002\uff01\uff1f" + CLOSERS + " \n"
DEFAULT_MAX_LENGTH = 200  # the plan's SESAME_MAX_LENGTH
MIN_MAX_LENGTH = 8

_WHITESPACE = re.compile(r"\s+")
_NOT_CANONICAL = re.compile(r"[^\S ]| \s")  # whitespace other than lone spaces
# A window ends at whitespace, or after a run of full-width stops (and closing quotes).
_WINDOW_END = re.compile(rf"\s|[\u3002\uff01\uff1f]+[{re.escape(CLOSERS)}]*")
# A list item's marker alone ("a.", "• 9.", "2)", "(b)") is not a sentence: it joins the item.
_LIST_MARKER = re.compile(r"[-*\u2022\u2043]? ?\(?(?:\d{1,3}|[A-Za-z]|[ivxIVX]{1,4})[.)]{1,2}")
# A sentence ending in a colon and what pysbd may read as the first marker of a list ("these: 1.",
# "steps: a.", "one: (b)"): a number of one or two digits, a lowercase letter or roman numeral,
# with "." or ")". Only after a colon: pysbd also reads consecutive numbers that end sentences
# ("It was 1. Then it was 2.") as a list, and those sentences are kept.
_ENDS_WITH_MARKER = re.compile(r":\s*[-\u2022\u2043(]?(?:\d{1,2}|[a-z]|[ivx]{2,4})(?:\.\)?|\))$")
_CLAUSE = re.compile(r"[,;:\u2014\u2013](?=\s)")


def _canonical_space(match: re.Match[str]) -> str:
    newlines = match.group().count("\n")
    return " " if newlines == 0 else "\n" if newlines == 1 else "\n\n"


def _canonical(text: str) -> str:
    """Collapse each whitespace run to " ", "\\n" or "\\n\\n" (a paragraph break). Idempotent and
    compatible with concatenation (canon(canon(a) + b) == canon(a + b)): the buffer reads the same
    however the text was split."""
    if _NOT_CANONICAL.search(text) is None:
        return text  # lone spaces only, as most text is: no call back per space (issue 20)
    return _WHITESPACE.sub(_canonical_space, text)


def _normalize(text: str) -> str:
    return " ".join(text.split())


def _speakable(text: str) -> bool:
    return any(c.isalnum() for c in text)


class SentenceSegmenter:
    """Cuts streamed text into sentences for synthesis, one turn at a time.

    ``feed(fragment)`` appends text and returns the sentences that became certain; ``flush()``
    ends the turn and returns the rest; ``reset()`` drops buffered text (barge-in). No sentence
    is longer than ``max_length`` characters, and every sentence has a letter or digit.
    """

    _plain_stop = staticmethod(plain_stop)  # a window cut without asking pysbd (core/plain_stop.py)

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH, first_chunk_min_chars: int = 0) -> None:
        if max_length < MIN_MAX_LENGTH:
            raise ValueError(f"max_length must be at least {MIN_MAX_LENGTH}, got {max_length}")
        if first_chunk_min_chars < 0:
            raise ValueError(f"first_chunk_min_chars must be >= 0, got {first_chunk_min_chars}")
        self.max_length = max_length
        self.first_chunk_min_chars = first_chunk_min_chars
        self._pysbd = pysbd.Segmenter(language="en", clean=False)
        self._buf = ""  # canonical unemitted text; starts with a non-space character or is empty
        self._first = True
        self._seen = 0  # windows of the front sentence ending at or before this gave no cut
        self._provisional: int | None = None  # a cut after a possible list marker, not yet taken

    @property
    def pending(self) -> str:
        """Text received but not yet emitted, whitespace-normalized."""
        return _normalize(self._buf)

    def feed(self, fragment: str = "", *, most: int | None = None) -> list[str]:
        """Append a fragment; return the sentences that are now complete and certain, at most
        ``most`` of them (``feed()`` cuts the rest)."""
        if fragment:
            self._buf = _canonical(self._buf + fragment)
        return self._drain(final=False, most=most)

    def flush(self) -> list[str]:
        """End the turn: return everything still buffered, as sentences. The next feed starts a turn."""
        out = self._drain(final=True)
        self.reset()
        return out

    def reset(self) -> None:
        """Drop buffered text and start a new turn (barge-in)."""
        self._buf = ""
        self._first = True
        self._seen = 0
        self._provisional = None

    def cut_for_deadline(self) -> list[str]:
        """The playback-deadline cut (core/deadline_cut.py; a turn's later chunks only): the
        sentence it gives, if a boundary reached is good enough."""
        text = self._buf[: self._block(final=False)[0]].rstrip()
        end = deadline_boundary(text, self._boundaries(text)) if text and not self._first else None
        if not end:
            return []
        sentence, self._buf = _normalize(self._buf[:end]), self._buf[end:].lstrip()
        self._seen, self._provisional = 0, None
        return [sentence] if _speakable(sentence) else []

    # -- the core -------------------------------------------------------------------------------

    def _drain(self, *, final: bool, most: int | None = None) -> list[str]:
        out: list[str] = []
        while most is None or len(out) < most:
            self._buf = self._buf.lstrip()
            if not self._buf:
                break
            cut = self._decide(final=final)
            if cut is None:
                break
            end, resume = cut
            sentence = _normalize(self._buf[:end])
            if _speakable(sentence):
                out.append(sentence)
                self._first = False
            self._buf = self._buf[resume:]
            self._seen = 0
            self._provisional = None
        return out

    def _decide(self, *, final: bool) -> tuple[int, int] | None:
        """Where the sentence at the front of the buffer ends, as (end, resume); None: not yet."""
        buf = self._buf
        top = self.max_length
        stop, block_end = self._block(final=final)
        body = len(buf[:stop].rstrip())  # the known part of the front block, without trailing space
        last = body if block_end is not None and body <= top else None  # the whole block: a window
        horizon = self._first_possible_cut(min(body, top))
        # Windows ending before the horizon are not looked at: none can cut, none ends the block.
        for match in _WINDOW_END.finditer(buf, max(self._seen + 1, horizon - 1), min(stop, top + 1)):
            end = match.start() if match.group().isspace() else match.end()
            if end > min(body, top) or (end == body and last is not None) or end == len(buf):
                break  # past the block, the whole block (below), or a full-width run that may go on
            if end >= horizon and (cut := self._window(end, is_last=False)) is not None:
                return cut
            self._seen = end
        if last is not None:
            assert block_end is not None
            cut = self._window(last, is_last=True)
            return cut if cut is not None else (last, block_end)
        if body > top:
            end = self._provisional if self._provisional is not None else self._length_cut(buf)
            return end, end
        return None

    def _first_possible_cut(self, limit: int) -> int:
        """No window ending before this can cut (``_window`` would say None): it has no stop or
        bracket before its last word, no full-width stop, no first-chunk clause. Most sentences
        have their one stop in their last word: ~10 windows not asked (issue 20: most of a
        ``speak``'s cut). ``limit + 1`` when none up to ``limit`` can."""
        buf, horizon = self._buf, limit + 1
        if (stop := _CANDIDATE.search(buf, 0, limit)) is not None:
            horizon = stop.start() + 1  # a window's candidates lie before its last space
        if (wide := _WIDE.search(buf, 0, limit)) is not None:
            horizon = min(horizon, wide.start() + 1)
        if self._first and self.first_chunk_min_chars:
            clause = _CLAUSE.search(buf, self.first_chunk_min_chars - 1, limit + 1)
            if clause is not None:
                horizon = min(horizon, clause.start())
        return horizon

    def _pysbd_could_cut_before(self, window: str, at: int) -> bool:
        """pysbd cuts only after a stop, quote or apostrophe not in a word: with none before ``at``, none."""
        return _INNER_CUT.search(window, 0, at) is not None

    def _block(self, *, final: bool) -> tuple[int, int | None]:
        """How far the front block is known to reach, and where the next block starts if known.
        Looks no further than max_length + 2 characters: a longer block is cut by length anyway."""
        buf = self._buf
        horizon = min(len(buf), self.max_length + 2)
        at = buf.find("\n", 0, horizon)
        while at != -1:
            if at + 1 >= len(buf):
                return (at, len(buf)) if final else (at, None)
            if buf[at + 1] == "\n":
                return at, at + 2
            marker = list_marker_at(buf, at + 1)
            if marker is None and not final:
                return at, None
            if marker:
                return at, at + 1
            at = buf.find("\n", at + 1, horizon)
        if final and len(buf) <= horizon:
            return len(buf), len(buf)
        return horizon, None

    def _window(self, end: int, *, is_last: bool) -> tuple[int, int] | None:
        """The cut the window buf[:end] gives, if it gives one."""
        window = self._buf[:end]
        early = self._early_cut(window)
        if early is not None and not self._pysbd_could_cut_before(window, early):
            return early, early
        inner = is_last and _INNER_CUT.search(window.rstrip(_CLOSING_RUN)) is not None
        asks = inner or early is not None or _recent_candidate(window)
        plain = self._plain_stop(window) if asks else None
        bounds = [plain] if plain else self._boundaries(window) if asks else []
        first = bounds[0] if bounds else None
        if early is not None and (first is None or early < first):
            return early, early
        if first is not None and not is_last and _after_marker(window, bounds):
            if self._provisional is None:
                self._provisional = first
            return None  # the next marker may still move the cut before this one
        if first is not None:
            return first, first
        if _after_wide(window):
            return end, end  # a full-width stop needs no space after it
        return None

    def _boundaries(self, window: str) -> list[int]:
        """pysbd's sentence starts in ``window`` (after the first), pieces with no letter or digit
        joined to a neighbour. Single line breaks are spaces here (the block rules handle them)."""
        window = window.replace("\n", " ")
        segments = self._pysbd.segment(window)
        bounds: list[int] = []
        cursor = start = 0  # the current sentence starts at window[start]; pieces end at cursor
        speakable = False  # the current sentence has a letter or digit
        for piece in segments:
            text = piece.strip()
            if not text:
                continue
            at = window.find(text, cursor)
            if at < 0:
                continue  # pysbd rewrote the text here: no boundary can be placed on it
            if (
                speakable
                and _speakable(text)
                and (window[at - 1] == " " or _after_wide(window[:at]))
                and not _LIST_MARKER.fullmatch(window[start:at].strip())
            ):
                bounds.append(at)
                start = at
            speakable = speakable or _speakable(text)
            cursor = at + len(text)
        return bounds

    def _early_cut(self, window: str) -> int | None:
        """The first-chunk cut: the first clause boundary at least first_chunk_min_chars in."""
        if not (self._first and self.first_chunk_min_chars):
            return None
        match = _CLAUSE.search(self._buf, self.first_chunk_min_chars - 1, len(window) + 1)
        return match.end() if match else None

    def _length_cut(self, buf: str) -> int:
        """Where to cut a sentence longer than max_length: clause, else word, else hard boundary.

        Only buf[: max_length + 1] is looked at; the caller knows it is all one sentence.
        """
        top = self.max_length  # the cut index is at most this
        for p in range(top - 1, 0, -1):
            if buf[p] in CLAUSE_MARKS and buf[p + 1].isspace():
                return p + 1
        for p in range(top, 0, -1):
            if buf[p].isspace():
                return p
        return top


def _recent_candidate(window: str) -> bool:
    """Is there a possible sentence end in the LOOKBACK_WORDS words before the last word?

    (pysbd cuts only after a stop, and a cut inside the last word is not taken.)"""
    start = stop = max(window.rfind(" "), window.rfind("\n"))
    for _ in range(LOOKBACK_WORDS):
        if start <= 0:
            break
        start = max(window.rfind(" ", 0, start), window.rfind("\n", 0, start))
    return stop > 0 and _CANDIDATE.search(window, max(start, 0), stop) is not None


def _after_wide(text: str) -> bool:
    """Does ``text`` end with a full-width stop (and closing quotes)?"""
    return text.rstrip(CLOSERS)[-1:] in WIDE_TERMINATORS


def _after_marker(window: str, bounds: list[int]) -> bool:
    """Is the first cut provisional: right after a possible list marker, with no later sentence
    of the window to confirm it (a later piece that is only a marker, "2.", confirms nothing)?"""
    if not _ENDS_WITH_MARKER.search(window[: bounds[0]].rstrip()):
        return False
    return all(_LIST_MARKER.fullmatch(window[b:].strip()) for b in bounds[1:])


def segment(text: str, max_length: int = DEFAULT_MAX_LENGTH, first_chunk_min_chars: int = 0) -> list[str]:
    """Split a whole text at once (HTTP requests): the same sentences a stream of it would give."""
    seg = SentenceSegmenter(max_length=max_length, first_chunk_min_chars=first_chunk_min_chars)
    return seg.feed(text) + seg.flush()
