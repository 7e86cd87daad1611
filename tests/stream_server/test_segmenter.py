"""The streaming sentence segmenter: table-driven cases, streaming behaviour, hypothesis properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_server.core import segmenter as seg_module
from stream_server.core.segmenter import SentenceSegmenter, segment

CASES: list[tuple[str, list[str]]] = [
    ("Hello. World.", ["Hello.", "World."]),
    ("Hello world", ["Hello world"]),
    ("  Hello   there.\tHow are\nyou?  ", ["Hello there.", "How are you?"]),
    # abbreviations
    ("Mr. Smith went to Washington. He said hi.", ["Mr. Smith went to Washington.", "He said hi."]),
    (
        "Dr. Who met Mrs. Hudson on St. James Street. Then they left.",
        ["Dr. Who met Mrs. Hudson on St. James Street.", "Then they left."],
    ),
    ("I live in the U.S. Army base. Fine.", ["I live in the U.S. Army base.", "Fine."]),
    ("Bring fruit, e.g. Apples. Okay.", ["Bring fruit, e.g. Apples.", "Okay."]),
    ("It is big, i.e. Huge. Yes.", ["It is big, i.e. Huge.", "Yes."]),
    ("Apples, pears, etc. Then we left.", ["Apples, pears, etc.", "Then we left."]),
    ("Apples, pears, etc. and plums.", ["Apples, pears, etc. and plums."]),
    ("Cats vs. Dogs is a film. Yes.", ["Cats vs. Dogs is a film.", "Yes."]),
    ("See p. 55 for details. Thanks.", ["See p. 55 for details.", "Thanks."]),
    ("It is No. 5 on the list. Great.", ["It is No. 5 on the list.", "Great."]),
    ("No. I refuse.", ["No.", "I refuse."]),
    ("We meet at 10 a.m. tomorrow. Bring coffee.", ["We meet at 10 a.m. tomorrow.", "Bring coffee."]),
    ("We meet at 10 a.m. Bring coffee.", ["We meet at 10 a.m.", "Bring coffee."]),
    ("J. K. Rowling wrote it. True.", ["J. K. Rowling wrote it.", "True."]),
    # numbers, decimals, addresses
    ("Pi is 3.14 roughly. Yes.", ["Pi is 3.14 roughly.", "Yes."]),
    ("It costs $3.50. Cheap!", ["It costs $3.50.", "Cheap!"]),
    ("I counted to 3. Then I stopped.", ["I counted to 3.", "Then I stopped."]),
    ("Visit example.com today. Now.", ["Visit example.com today.", "Now."]),
    # ellipses: an ellipsis before a lowercase word continues the sentence
    ("Wait... what? Okay.", ["Wait... what?", "Okay."]),
    ("Hmm... Okay then.", ["Hmm...", "Okay then."]),
    ("Hmm\u2026 Okay.", ["Hmm\u2026 Okay."]),  # pysbd: the ellipsis character never ends one
    # quotes stay with their sentence
    ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
    ('"Why?" she asked. Then she left.', ['"Why?" she asked.', "Then she left."]),
    ("He yelled (loudly!) and ran. Gone.", ["He yelled (loudly!) and ran.", "Gone."]),
    ("Hello!! Really?! Yes.", ["Hello!!", "Really?!", "Yes."]),
    # lists and paragraphs
    ("1. First item", ["1. First item"]),
    ("1. First item. 2. Second item.", ["1. First item.", "2. Second item."]),
    ("Steps:\n1. Mix the flour.\n2. Bake it.", ["Steps:", "1. Mix the flour.", "2. Bake it."]),
    ("You need:\n- eggs\n- milk", ["You need:", "- eggs", "- milk"]),
    ("First line\n\nSecond line", ["First line", "Second line"]),
    ("Same\nsentence.", ["Same sentence."]),
    # a short piece of pysbd's answer ("I") is placed where it is, not at an earlier "I"
    ("Tell me if I can. I will.", ["Tell me if I can.", "I will."]),
    # full-width terminators need no space
    ("\u4f60\u597d\u3002\u4e16\u754c\u3002", ["\u4f60\u597d\u3002", "\u4e16\u754c\u3002"]),
    ("", []),
    ("   \n\n  ", []),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_cases(text: str, expected: list[str]) -> None:
    assert segment(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_cases_char_by_char(text: str, expected: list[str]) -> None:
    seg = SentenceSegmenter()
    out = [s for ch in text for s in seg.feed(ch)]
    assert out + seg.flush() == expected


def test_emits_as_soon_as_certain() -> None:
    seg = SentenceSegmenter()
    assert seg.feed("Hello.") == []
    assert seg.feed(" ") == []  # could still be "Hello. world" or "Hello.\n\n"
    assert seg.feed("W") == []
    assert seg.feed("orld") == []  # "Hello. World" or "Hello. Worldwide": pysbd reads whole words
    assert seg.feed(" ") == ["Hello."]
    assert seg.pending == "World"
    assert seg.flush() == ["World"]
    assert seg.pending == ""


def test_never_cuts_inside_an_ellipsis() -> None:
    seg = SentenceSegmenter()
    assert seg.feed("Wait.") == []
    assert seg.feed(".") == []
    assert seg.feed(". ") == []
    assert seg.feed("what? ") == []
    assert seg.feed("Ok") == []
    assert seg.feed(" ") == ["Wait... what?"]


def test_waits_for_a_closing_quote() -> None:
    seg = SentenceSegmenter()
    assert seg.feed('He said "Stop.') == []
    assert seg.feed('" ') == []
    assert seg.feed("Then ") == ['He said "Stop."']


def test_abbreviation_is_not_emitted_early() -> None:
    seg = SentenceSegmenter()
    assert seg.feed("Call Mr. ") == []
    assert seg.feed("Smith now. ") == []
    assert seg.feed("Go") == []
    assert seg.feed(" ") == ["Call Mr. Smith now."]


def test_paragraph_break_ends_a_sentence_at_once() -> None:
    seg = SentenceSegmenter()
    assert seg.feed("A heading\n") == []
    assert seg.feed("\n") == ["A heading"]


def test_flush_ends_the_turn_and_reset_drops_text() -> None:
    seg = SentenceSegmenter(first_chunk_min_chars=4)
    assert seg.feed("Well, I think so. Sure, fine. ") == ["Well,", "I think so."]
    assert seg.flush() == ["Sure, fine."]
    assert seg.feed("Okay, next turn. ") == ["Okay,"]  # a new turn cuts its first chunk early again
    assert seg.feed("X ") == ["next turn."]
    seg.reset()
    assert seg.pending == ""
    assert seg.flush() == []


LONG = (
    "This sentence keeps going for quite a while, adding clause after clause; it never seems to stop "
    "and it will certainly need to be cut somewhere sensible before it reaches the limit."
)


def test_long_sentence_is_cut_at_a_clause_boundary() -> None:
    out = segment(LONG, max_length=60)
    assert out == [
        "This sentence keeps going for quite a while,",
        "adding clause after clause;",
        "it never seems to stop and it will certainly need to be cut",
        "somewhere sensible before it reaches the limit.",
    ]
    assert all(len(s) <= 60 for s in out)


def test_long_sentence_without_clauses_is_cut_at_a_word_boundary() -> None:
    words = "one two three four five six seven eight nine ten eleven twelve"
    assert segment(words, max_length=20) == [
        "one two three four",
        "five six seven eight",
        "nine ten eleven",
        "twelve",
    ]


def test_long_word_is_cut_hard() -> None:
    assert segment("x" * 50, max_length=20) == ["x" * 20, "x" * 20, "x" * 10]


def test_long_sentence_cut_is_emitted_before_the_sentence_ends() -> None:
    seg = SentenceSegmenter(max_length=30)
    assert seg.feed("Here is a long sentence, with a clause") == ["Here is a long sentence,"]


def test_first_chunk_is_cut_early() -> None:
    text = "Well, I think that, in general, this works. Yes, indeed."
    assert segment(text, first_chunk_min_chars=10) == [
        "Well, I think that,",
        "in general, this works.",
        "Yes, indeed.",
    ]
    assert segment(text, first_chunk_min_chars=1) == [
        "Well,",
        "I think that, in general, this works.",
        "Yes, indeed.",
    ]
    assert segment(text, first_chunk_min_chars=0) == [
        "Well, I think that, in general, this works.",
        "Yes, indeed.",
    ]
    assert segment("Short one. Then, a clause.", first_chunk_min_chars=3) == ["Short one.", "Then, a clause."]


def test_first_chunk_cut_is_emitted_while_streaming() -> None:
    seg = SentenceSegmenter(first_chunk_min_chars=10)
    assert seg.feed("Well, I think that,") == []  # the space after the comma is not there yet
    assert seg.feed(" in") == ["Well, I think that,"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_length"):
        SentenceSegmenter(max_length=2)
    with pytest.raises(ValueError, match="first_chunk_min_chars"):
        SentenceSegmenter(first_chunk_min_chars=-1)


# -- properties ---------------------------------------------------------------------------------

PIECES = [
    "Mr.",
    "Mrs.",
    "Dr.",
    "St.",
    "U.S.",
    "e.g.",
    "i.e.",
    "etc.",
    "vs.",
    "p.",
    "55",
    "No.",
    "5",
    "a.m.",
    "p.m.",
    "3.14",
    "1.",
    "2)",
    "1.)",
    "a.",
    "b)",
    "(c)",
    "ii.",
    "- 2.",
    "-",
    "...",
    "\u2026",
    ".",
    "!",
    "?",
    "?!",
    '"',
    "'",
    "\u201d",
    ")",
    "(",
    ",",
    ";",
    ":",
    "\u2014",
    "\u2013",
    "\u3002",
    "Hello",
    "world",
    "Then",
    "what",
    "A",
    "b",
    "x" * 12,
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\u00a0",
]
pieces = st.one_of(st.sampled_from(PIECES), st.text(alphabet="aB .,!?\n\"'1", max_size=6))
texts = st.lists(pieces, max_size=40).map("".join)


@st.composite
def split_text(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


def stream(seg: SentenceSegmenter, parts: list[str]) -> list[str]:
    out = [s for part in parts for s in seg.feed(part)]
    return out + seg.flush()


FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
max_lengths = st.integers(8, 60)
first_chunks = st.sampled_from([0, 0, 1, 5, 12, 30])


@FAST
@given(split_text(), max_lengths, first_chunks)
def test_split_independence(case: tuple[str, list[str]], max_length: int, first: int) -> None:
    text, parts = case
    whole = segment(text, max_length=max_length, first_chunk_min_chars=first)
    assert stream(SentenceSegmenter(max_length, first), parts) == whole


class AskingEveryWindow(SentenceSegmenter):
    """The segmenter without its three shortcuts (issue 20): every window asked, pysbd asked about
    every first-chunk cut and every plain window. The shortcuts may only save time, never move a cut."""

    _plain_stop = staticmethod(lambda window: None)

    def _first_possible_cut(self, limit: int) -> int:
        return 0

    def _pysbd_could_cut_before(self, window: str, at: int) -> bool:
        return True


@FAST
@given(split_text(), max_lengths, first_chunks)
def test_the_shortcuts_cut_where_asking_every_window_cuts(
    case: tuple[str, list[str]], max_length: int, first: int
) -> None:
    _, parts = case
    slow = stream(AskingEveryWindow(max_length, first), parts)
    assert stream(SentenceSegmenter(max_length, first), parts) == slow


def test_a_sentence_with_its_stop_in_its_last_word_asks_no_window() -> None:
    asked: list[int] = []

    class Counting(SentenceSegmenter):
        def _window(self, end: int, *, is_last: bool) -> tuple[int, int] | None:
            asked.append(end)
            return super()._window(end, is_last=is_last)

    seg = Counting(200, 20)
    assert stream(seg, ["I found three restaurants nearby that are open late."]) == [
        "I found three restaurants nearby that are open late."
    ]
    assert len(asked) == 1  # the block's own window only; each of its 8 word ends was skipped


@FAST
@given(texts, max_lengths, first_chunks)
def test_char_by_char_equals_whole(text: str, max_length: int, first: int) -> None:
    whole = segment(text, max_length=max_length, first_chunk_min_chars=first)
    assert stream(SentenceSegmenter(max_length, first), list(text)) == whole


@FAST
@given(texts, max_lengths, first_chunks)
def test_output_is_the_input(text: str, max_length: int, first: int) -> None:
    out = segment(text, max_length=max_length, first_chunk_min_chars=first)
    assert all(s and s == " ".join(s.split()) for s in out)
    assert all(any(c.isalnum() for c in s) for s in out)  # never a sentence of punctuation alone
    assert [c for c in "".join(out) if c.isalnum()] == [c for c in text if c.isalnum()]
    rest = iter("".join(text.split()))
    assert all(c in rest for c in "".join("".join(out).split()))  # only punctuation is ever dropped
    # spaces are kept exactly when every word is speakable and no cut falls inside a word
    words = text.split()
    if all(len(w) <= max_length and any(c.isalnum() for c in w) for w in words) and "\u3002" not in text:
        assert " ".join(out) == " ".join(words)


@FAST
@given(texts, max_lengths, first_chunks)
def test_no_sentence_is_longer_than_max_length(text: str, max_length: int, first: int) -> None:
    out = segment(text, max_length=max_length, first_chunk_min_chars=first)
    assert all(len(s) <= max_length for s in out)


@FAST
@given(split_text())
def test_state_carries_across_turns(case: tuple[str, list[str]]) -> None:
    _, parts = case
    seg = SentenceSegmenter(max_length=40, first_chunk_min_chars=5)
    first = stream(seg, parts)
    assert stream(seg, parts) == first  # flush left nothing behind


def test_many_fragments_stay_fast() -> None:
    """A long answer streamed a character at a time: linear work, not quadratic (no timing assert)."""
    seg = SentenceSegmenter()
    sentence = "Mr. Smith arrived at 5 p.m. and said, quite calmly, that the U.S. office was closed."
    text = " ".join([sentence] * 200)
    out = [s for ch in text for s in seg.feed(ch)] + seg.flush()
    assert out == [sentence] * 200


def test_full_width_stop_after_a_closing_quote_cuts_without_a_space() -> None:
    seg = SentenceSegmenter()
    assert seg.feed("\u4ed6\u8bf4\u300c\u597d\u3002\u300d") == []  # the run may go on
    assert seg.feed("\u7136\u540e") == ["\u4ed6\u8bf4\u300c\u597d\u3002\u300d"]


def test_punctuation_alone_is_never_a_sentence() -> None:
    assert segment("Hello. . . . World.") == ["Hello.", ". . . World."]
    assert segment("Yes!\n\n...\n\n?!") == ["Yes!"]
    assert segment("...") == []
    seg = SentenceSegmenter()
    assert seg.feed(". . . ") == []
    assert seg.flush() == []


def test_a_list_marker_stays_with_its_item() -> None:
    assert segment("a. The first item b. The second item") == ["a. The first item", "b. The second item"]
    assert segment("\u2022 9. The first item \u2022 10. The second") == [
        "\u2022 9. The first item",
        "\u2022 10. The second",
    ]


def test_a_list_after_text_starts_at_its_first_marker() -> None:
    # pysbd reads "1." before a capital as a sentence end until the next marker arrives; the cut
    # after a possible marker waits for it (or for the sentence after it to end)
    seg = SentenceSegmenter()
    assert seg.feed("Buy these: 1. Milk ") == []
    assert seg.feed("2. Eggs ") == ["Buy these:", "1. Milk"]
    assert seg.flush() == ["2. Eggs"]
    assert segment("Pick one: a. tea b. coffee") == ["Pick one:", "a. tea", "b. coffee"]


def test_a_cut_after_a_colon_and_a_number_waits_for_the_next_sentence_to_end() -> None:
    seg = SentenceSegmenter()
    assert seg.feed("The total: 3. Then I stopped. ") == []
    assert seg.feed("It ") == ["The total: 3.", "Then I stopped."]


def test_sentences_ending_in_consecutive_numbers_are_not_a_list() -> None:
    # pysbd reads "0." and "1." as list markers here ("This is sentence number" | "0. This is ...")
    seg = SentenceSegmenter()
    assert seg.feed("I counted to 3. Then ") == ["I counted to 3."]
    text = "This is sentence number 0. This is sentence number 1. This is sentence number 2."
    assert segment(text) == [f"This is sentence number {i}." for i in range(3)]
    assert segment("We have 2. The rest were sold.") == ["We have 2.", "The rest were sold."]


def test_a_provisional_cut_is_kept_when_the_sentence_grows_too_long() -> None:
    text = "The total: 2. " + "and then more words " * 12
    out = segment(text, max_length=60)
    assert out[0] == "The total: 2."
    assert all(len(s) <= 60 for s in out)


@pytest.mark.parametrize("marker", ["a.", "b)", "(c)", "ii.", "IV.", "B.", "1.)", "12."])
def test_a_line_break_before_any_list_marker_ends_a_sentence(marker: str) -> None:
    assert segment(f"Steps:\n{marker} Mix it") == ["Steps:", f"{marker} Mix it"]
    seg = SentenceSegmenter()
    assert [s for ch in f"Steps:\n{marker} Mix it" for s in seg.feed(ch)] == ["Steps:"]


@pytest.mark.parametrize("line", ["ab. no", "(ab) no", "1234. no", "iiiii. no", "a.b no", "(a. no"])
def test_a_line_break_before_other_words_is_a_space(line: str) -> None:
    word = line.split(maxsplit=1)[0]
    assert segment(f"Steps\n{line}")[0].startswith(f"Steps {word}")  # no cut at the line break


# -- the last window without pysbd (issue 20: the cut of a plain sentence in microseconds) ----------

WORDS = ["Mr", "Dr", "Jan", "Drum", "Inc", "U", "S", "Then", "don't", "O'Neil", "5'", "'90s", "x"]
plain_pieces = st.one_of(
    st.sampled_from([*PIECES, *WORDS, "\u00ab", "\u00bb", "\u201c", "\u2018", "\u2019", "-", "$", "2"]),
    st.text(alphabet="aB -,;:'\"\u201d\u2019$1\n", max_size=6),
)


@FAST
@given(st.lists(plain_pieces, min_size=1, max_size=14).map("".join))
def test_a_block_pysbd_could_not_cut_is_not_given_to_it(text: str) -> None:
    """The last window skips pysbd when the text ahead of its closing run has no stop, quote or
    loose apostrophe: then pysbd finds no boundary in it either."""
    seg = SentenceSegmenter()
    window = " ".join(text.split())
    if not window or seg_module._INNER_CUT.search(window.rstrip(seg_module._CLOSING_RUN)):
        return
    assert seg._boundaries(window) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('She said "fine-" Jan agreed', ['She said "fine-"', "Jan agreed"]),
        ("Hello, how are you today?", ["Hello, how are you today?"]),
        ("I don't know O'Neil", ["I don't know O'Neil"]),
    ],
)
def test_pysbd_still_cuts_where_a_quote_lets_it(text: str, expected: list[str]) -> None:
    assert segment(text) == expected
