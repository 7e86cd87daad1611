"""The hand-written segmenter that stream_server/core/segmenter.py replaced, kept for bench/segmenter.py.

It is the module as it was at commit c58a1c9 (before pysbd), unchanged below this paragraph, so
the benchmark can put the old rules and the new segmenter side by side on the same texts.

Streaming sentence segmentation: text fragments in, complete sentences out (sans-I/O).

Text arrives in arbitrary pieces (an LLM writes a token at a time, a word may arrive in halves).
``SentenceSegmenter.feed`` returns the sentences that are *certain*; ``flush`` ends the turn and
returns what remains. A boundary is decided only from text that later text cannot change, so the
sentences never depend on how the text was split into fragments:

    seg = SentenceSegmenter()
    seg.feed("Hello. W")      # ["Hello."]  "W" shows the "." was not "Hello.5" or "Hello. world"
    seg.feed("orld")          # []
    seg.flush()               # ["World"]

Rules (docs/segmentation.md explains the choices):

* A sentence ends at a run of ``. ! ? …`` plus closing quotes/brackets, followed by whitespace and
  then a character that is not a lowercase letter ("Wait... what?" is one sentence, "Hmm... Okay."
  two). The closing quote stays with its sentence. No whitespace after the run means no end
  ("3.14", "example.com", "a.m").
* A single ``.`` does not end a sentence after a title or similar abbreviation (Mr., Dr., St., vs.,
  e.g., ...), a single letter (initials, "p. 55"), an initialism (U.S., Ph.D.; but a.m./p.m. may
  end one), a number abbreviation before a digit ("No. 5", "Fig. 3") or a list number opening the
  sentence ("1. First item").
* A paragraph break (a blank line) always ends a sentence, and so does a line break before a list
  item ("\\n2. ", "\\n- ").
* Full-width stops (ideographic full stop, full-width ! and ?) need no whitespace after them.
* A sentence longer than ``max_length`` characters is cut at its last clause boundary (comma,
  semicolon, colon, em or en dash, followed by whitespace) within the limit, else at its last word
  boundary, else hard at the limit.
* With ``first_chunk_min_chars`` > 0 the first chunk of a turn is cut early at the first clause
  boundary at least that many characters in, to lower the time to first audio.

Whitespace is normalized: emitted sentences have single spaces and no leading/trailing space.
Lengths are counted on that text (runs of whitespace count as one character, a blank line as two).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TERMINATORS = frozenset(".!?\u2026")  # ... and the ellipsis character
WIDE_TERMINATORS = frozenset("\u3002\uff01\uff1f")  # ideographic full stop, full-width ! and ?
CLOSERS = frozenset("\"'\u201d\u2019\u00bb)]}")  # straight and curly closing quotes, brackets
OPENERS = "\"'\u201c\u2018\u00ab([{"
CLAUSE_MARKS = frozenset(",;:\u2014\u2013")  # comma, semicolon, colon, em dash, en dash
BULLETS = frozenset("-*\u2022")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Never end a sentence after these (compared lowercase, without the final dot).
NEVER_END = _words(
    """mr mrs ms mx messrs mme mlle dr prof st mt rev fr hon gen col capt cmdr lt sgt cpl maj adm gov
    sen rep pres supt insp vs cf viz approx ca esp incl resp dept univ assn bros"""
)
# Do not end a sentence when followed by a digit ("No. 5", "Fig. 3", "pp. 10").
NUMBER_ABBREVIATIONS = _words("no nos nr vol vols ch chap fig figs sec art pt pp op eq ex ref para")
# Initialisms that may end a sentence (other initialisms such as U.S. and e.g. never do).
MAY_END_INITIALISMS = frozenset({"a.m", "p.m"})
INITIALISM = re.compile(r"[A-Za-z]{1,2}(?:\.[A-Za-z]{1,2})+")
_WHITESPACE = re.compile(r"\s+")

DEFAULT_MAX_LENGTH = 200  # the plan's SESAME_MAX_LENGTH
MIN_MAX_LENGTH = 8


def _canonical_space(match: re.Match[str]) -> str:
    newlines = match.group().count("\n")
    return " " if newlines == 0 else "\n" if newlines == 1 else "\n\n"


def _canonical(text: str) -> str:
    """Collapse each whitespace run to " ", "\\n" or "\\n\\n" (a paragraph break).

    Idempotent and compatible with concatenation (canon(canon(a) + b) == canon(a + b)), so the
    buffer reads the same however the text was split.
    """
    return _WHITESPACE.sub(_canonical_space, text)


def _normalize(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class _Cut:
    end: int  # the sentence is buf[pos:end]
    resume: int  # the next sentence starts at or after this index


@dataclass(frozen=True, slots=True)
class _Pending:
    at: int  # no sentence can end before this index; deciding needs text that has not arrived


class _Long:
    """The sentence starting at pos is certainly longer than max_length."""


_LONG = _Long()
_Decision = _Cut | _Pending | _Long


class SentenceSegmenter:
    """Cuts streamed text into sentences for synthesis, one turn at a time.

    ``feed(fragment)`` appends text and returns the sentences that became certain; ``flush()``
    ends the turn and returns the rest; ``reset()`` drops buffered text (barge-in). No sentence
    is longer than ``max_length`` characters.
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH, first_chunk_min_chars: int = 0) -> None:
        if max_length < MIN_MAX_LENGTH:
            raise ValueError(f"max_length must be at least {MIN_MAX_LENGTH}, got {max_length}")
        if first_chunk_min_chars < 0:
            raise ValueError(f"first_chunk_min_chars must be >= 0, got {first_chunk_min_chars}")
        self.max_length = max_length
        self.first_chunk_min_chars = first_chunk_min_chars
        self._buf = ""
        self._first = True

    @property
    def pending(self) -> str:
        """Text received but not yet emitted, whitespace-normalized."""
        return _normalize(self._buf)

    def feed(self, fragment: str) -> list[str]:
        """Append a fragment; return the sentences that are now complete and certain."""
        if not fragment:
            return []
        self._buf = _canonical(self._buf + fragment)
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End the turn: return everything still buffered, as sentences. The next feed starts a turn."""
        out = self._drain(final=True)
        self.reset()
        return out

    def reset(self) -> None:
        """Drop buffered text and start a new turn (barge-in)."""
        self._buf = ""
        self._first = True

    # -- the core -------------------------------------------------------------------------------

    def _drain(self, *, final: bool) -> list[str]:
        buf = self._buf
        n = len(buf)
        out: list[str] = []
        pos = 0
        while True:
            while pos < n and buf[pos].isspace():
                pos += 1
            if pos >= n:
                break
            decision = self._scan(buf, pos)
            if isinstance(decision, _Pending) and not final:
                limit = decision.at
            elif isinstance(decision, _Cut):
                limit = decision.end
            elif isinstance(decision, _Long):
                limit = pos + self.max_length + 1
            else:  # final: the rest of the turn is one sentence
                limit = n
            early = self._early_cut(buf, pos, limit) if self._first and self.first_chunk_min_chars else None
            if early is not None:
                out.append(_normalize(buf[pos:early]))
                pos = early
            elif isinstance(decision, _Long) or (
                (isinstance(decision, _Cut) or final) and len(buf[pos:limit].rstrip()) > self.max_length
            ):
                end = self._length_cut(buf, pos)
                out.append(_normalize(buf[pos:end]))
                pos = end
            elif isinstance(decision, _Cut):
                out.append(_normalize(buf[pos : decision.end]))
                pos = decision.resume
            elif final:
                out.append(_normalize(buf[pos:]))
                pos = n
            else:
                break
            self._first = False
        self._buf = buf[pos:]
        return out

    def _scan(self, buf: str, pos: int) -> _Decision:
        """Find where the sentence starting at ``pos`` ends, if that is certain yet."""
        n = len(buf)
        last = pos + self.max_length  # a sentence reaching this index is too long
        i = pos
        while i < n:
            c = buf[i]
            if i >= last and not c.isspace():
                return _LONG
            if c in TERMINATORS or c in WIDE_TERMINATORS:
                j = i
                while j < n and (buf[j] in TERMINATORS or buf[j] in WIDE_TERMINATORS):
                    if j >= last:
                        return _LONG
                    j += 1
                k = j
                while k < n and buf[k] in CLOSERS:
                    if k >= last:
                        return _LONG
                    k += 1
                if k == n:
                    return _Pending(i)
                if buf[j - 1] in WIDE_TERMINATORS:
                    return _Cut(k, k)
                if not buf[k].isspace():
                    i = k  # "3.14", "a.m", '"Hi."Then': not a boundary
                    continue
                w = k
                while w < n and buf[w].isspace():
                    w += 1
                if buf[k:w] == "\n\n":
                    return _Cut(k, w)
                if w == n:
                    return _Pending(i)
                if self._ends_sentence(buf, pos, i, j, buf[w]):
                    return _Cut(k, w)
                i = k  # continue at the whitespace so a line break is still looked at
                continue
            if c == "\n":
                w = i + 1
                if w < n and buf[w] == "\n":
                    return _Cut(i, w + 1)
                marker = _list_marker(buf, w)
                if marker is None:
                    return _Pending(i)
                if marker:
                    return _Cut(i, w)
                i = w
                continue
            i += 1
        return _Pending(n)

    @staticmethod
    def _ends_sentence(buf: str, pos: int, start: int, stop: int, following: str) -> bool:
        """Does the terminator run buf[start:stop] end the sentence, given the next non-space char?"""
        if following.islower():
            return False  # "e.g. the", "Wait... what?", '"Why?" she asked'
        if buf[start:stop] != ".":
            return True
        t0 = start
        while t0 > pos and not buf[t0 - 1].isspace():
            t0 -= 1
        token = buf[t0:start].lstrip(OPENERS)
        lower = token.lower()
        if lower in NEVER_END:
            return False
        if len(token) == 1 and token.isalpha():
            return False  # an initial ("J. K. Rowling") or "p. 55"
        if INITIALISM.fullmatch(token) and lower not in MAY_END_INITIALISMS:
            return False  # "U.S. Army", "e.g. Paris"
        if lower in NUMBER_ABBREVIATIONS and following.isdigit():
            return False
        # "1. First item": a list number opening the sentence or a line
        return not (token.isdigit() and len(token) <= 3 and (t0 == pos or buf[t0 - 1] == "\n"))

    def _early_cut(self, buf: str, pos: int, limit: int) -> int | None:
        """The first clause boundary at least first_chunk_min_chars in, before ``limit``."""
        lo = pos + max(self.first_chunk_min_chars, 1) - 1
        hi = min(limit, pos + self.max_length, len(buf) - 1)
        for p in range(lo, hi):
            if buf[p] in CLAUSE_MARKS and buf[p + 1].isspace():
                return p + 1
        return None

    def _length_cut(self, buf: str, pos: int) -> int:
        """Where to cut a sentence longer than max_length: clause, else word, else hard boundary.

        Only buf[pos : pos + max_length + 1] is looked at; the caller knows it is all one sentence.
        """
        top = pos + self.max_length  # the cut index is at most this
        for p in range(top - 1, pos, -1):
            if buf[p] in CLAUSE_MARKS and buf[p + 1].isspace():
                return p + 1
        for p in range(top, pos, -1):
            if buf[p].isspace():
                return p
        return top


def _list_marker(buf: str, at: int) -> bool | None:
    """Is there a list item marker ("12. ", "3) ", "- ") at ``at``? None: not known yet."""
    n = len(buf)
    if at >= n:
        return None
    if buf[at] in BULLETS:
        return None if at + 1 >= n else buf[at + 1] == " "
    d = at
    while d < n and d - at < 4 and buf[d].isdigit():
        d += 1
    if d == at or d - at > 3:
        return False
    if d >= n:
        return None
    if buf[d] not in ".)":
        return False
    if d + 1 >= n:
        return None
    return buf[d + 1].isspace()


def segment(text: str, max_length: int = DEFAULT_MAX_LENGTH, first_chunk_min_chars: int = 0) -> list[str]:
    """Split a whole text at once (HTTP requests): the same sentences a stream of it would give."""
    seg = SentenceSegmenter(max_length=max_length, first_chunk_min_chars=first_chunk_min_chars)
    return seg.feed(text) + seg.flush()
