# ruff: noqa: E501  (prose kept in whole lines of the source text)
"""Write the replay traces shipped in clients/traces/ (``python -m clients.traces.make_traces``).

The text is public-domain prose: articles of the Universal Declaration of Human Rights (1948) and
opening paragraphs of Project Gutenberg books. Each turn is streamed the way an LLM writes it:

* tokens of about 4 characters (a word with its leading space; longer words cut into 3-5
  character pieces; some punctuation as its own token);
* a first token 300-600 ms after the turn starts (the model's time to first token);
* a steady rate per session drawn from 30-60 tokens/s, each gap jittered (log-normal, sigma 0.35),
  with an occasional hiccup of 100-300 ms (2% of tokens);
* ``flush`` 5 ms after the last token;
* the next turn of a session starts when the previous answer would have been spoken (its length at
  15 characters per second of speech) plus the user's reply, 1.5-3 s.

Everything is drawn from ``random.Random(seed)``: the same seed writes the same files.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEECH_CHARS_PER_S = 15.0

UDHR = {
    1: "All human beings are born free and equal in dignity and rights. They are endowed with reason and "
    "conscience and should act towards one another in a spirit of brotherhood.",
    2: "Everyone is entitled to all the rights and freedoms set forth in this Declaration, without distinction "
    "of any kind, such as race, colour, sex, language, religion, political or other opinion, national or "
    "social origin, property, birth or other status.",
    3: "Everyone has the right to life, liberty and security of person.",
    4: "No one shall be held in slavery or servitude; slavery and the slave trade shall be prohibited in all "
    "their forms.",
    5: "No one shall be subjected to torture or to cruel, inhuman or degrading treatment or punishment.",
}

BOOKS = {
    "pride_and_prejudice": (
        "Jane Austen, Pride and Prejudice (1813), Project Gutenberg #1342",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
        "want of a wife. However little known the feelings or views of such a man may be on his first entering "
        "a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is "
        "considered the rightful property of some one or other of their daughters.",
    ),
    "moby_dick": (
        "Herman Melville, Moby-Dick (1851), Project Gutenberg #2701",
        "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little or no money in my "
        "purse, and nothing particular to interest me on shore, I thought I would sail about a little and see "
        "the watery part of the world. It is a way I have of driving off the spleen and regulating the "
        "circulation.",
    ),
    "jane_eyre": (
        "Charlotte Bront\u00eb, Jane Eyre (1847), Project Gutenberg #1260",
        "There was no possibility of taking a walk that day. We had been wandering, indeed, in the leafless "
        "shrubbery an hour in the morning; but since dinner (Mrs. Reed, when there was no company, dined early) "
        "the cold winter wind had brought with it clouds so sombre, and a rain so penetrating, that further "
        "out-door exercise was now out of the question.",
    ),
    "tale_of_two_cities": (
        "Charles Dickens, A Tale of Two Cities (1859), Project Gutenberg #98",
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
        "it was the season of Darkness, it was the spring of hope, it was the winter of despair.",
    ),
    "alice": (
        "Lewis Carroll, Alice's Adventures in Wonderland (1865), Project Gutenberg #11",
        "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to "
        "do: once or twice she had peeped into the book her sister was reading, but it had no pictures or "
        "conversations in it, \u201cand what is the use of a book,\u201d thought Alice \u201cwithout pictures "
        "or conversations?\u201d",
    ),
    "frankenstein": (
        "Mary Shelley, Frankenstein (1818), Project Gutenberg #84",
        "You will rejoice to hear that no disaster has accompanied the commencement of an enterprise which you "
        "have regarded with such evil forebodings. I arrived here yesterday, and my first task is to assure my "
        "dear sister of my welfare and increasing confidence in the success of my undertaking.",
    ),
    "sherlock": (
        "Arthur Conan Doyle, A Scandal in Bohemia (1891), Project Gutenberg #1661",
        "To Sherlock Holmes she is always the woman. I have seldom heard him mention her under any other name. "
        "In his eyes she eclipses and predominates the whole of her sex.",
    ),
    "metamorphosis": (
        "Franz Kafka, Metamorphosis (1915), tr. David Wyllie, Project Gutenberg #5200",
        "One morning, when Gregor Samsa woke from troubled dreams, he found himself transformed in his bed into "
        "a horrible vermin. He lay on his armour-like back, and if he lifted his head a little he could see his "
        "brown belly, slightly domed and divided by arches into stiff sections.",
    ),
}
UDHR_SOURCE = "Universal Declaration of Human Rights (United Nations, 1948), Articles 1-5"


@dataclass(frozen=True, slots=True)
class Turn:
    text: str


def tokenize(text: str, rng: random.Random) -> list[str]:
    """Pieces of about 4 characters that join back to ``text`` exactly."""
    tokens: list[str] = []
    for word in re.findall(r"\s*\S+", text):
        lead = word[: len(word) - len(word.lstrip())]
        core = word.lstrip()
        tail = ""
        if len(core) > 1 and core[-1] in ",.;:!?\u201d\u2014" and rng.random() < 0.5:
            core, tail = core[:-1], core[-1]
        piece = lead
        while len(core) > 6:
            n = rng.randint(3, 5)
            tokens.append(piece + core[:n])
            piece, core = "", core[n:]
        tokens.append(piece + core)
        if tail:
            tokens.append(tail)
    assert "".join(tokens) == text
    return tokens


def stream_turn(
    session: str, text: str, start: float, tokens_per_s: float, rng: random.Random
) -> tuple[list[dict[str, object]], float]:
    """Events of one streamed answer; returns them and the time of its flush."""
    t = start + rng.uniform(0.3, 0.6)
    events: list[dict[str, object]] = []
    for i, token in enumerate(tokenize(text, rng)):
        if i:
            t += rng.lognormvariate(0.0, 0.35) / tokens_per_s
            if rng.random() < 0.02:
                t += rng.uniform(0.1, 0.3)
        events.append({"session": session, "t": round(t, 4), "text": token})
    t += 0.005
    events.append({"session": session, "t": round(t, 4), "flush": True})
    return events, t


def conversation(session: str, turns: list[str], start: float, rng: random.Random) -> list[dict[str, object]]:
    rate = rng.uniform(30.0, 60.0)
    events: list[dict[str, object]] = []
    t = start
    for text in turns:
        evs, flushed = stream_turn(session, text, t, rate, rng)
        events += evs
        t = flushed + len(text) / SPEECH_CHARS_PER_S + rng.uniform(1.5, 3.0)
    return events


def write(path: Path, meta: dict[str, object], events: list[dict[str, object]]) -> None:
    events.sort(key=lambda e: (float(e["t"]), str(e["session"])))  # type: ignore[arg-type]
    lines = [json.dumps({"meta": meta}, ensure_ascii=False)] + [
        json.dumps(e, ensure_ascii=False) for e in events
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build(out: Path, seed: int) -> list[Path]:
    rng = random.Random(seed)
    made = "clients/traces/make_traces.py"
    paths = []

    p = out / "udhr_two_turns.jsonl"
    events = conversation(
        "udhr", [" ".join(UDHR[i] for i in (1, 2, 3)), " ".join(UDHR[i] for i in (4, 5))], 0.0, rng
    )
    write(
        p,
        {
            "name": "udhr_two_turns",
            "made_by": made,
            "seed": seed,
            "sources": [UDHR_SOURCE],
            "sessions": 1,
            "turns": 2,
        },
        events,
    )
    paths.append(p)

    p = out / "gutenberg_three_turns.jsonl"
    keys = ["pride_and_prejudice", "moby_dick", "jane_eyre"]
    events = conversation("reader", [BOOKS[k][1] for k in keys], 0.0, rng)
    write(
        p,
        {
            "name": "gutenberg_three_turns",
            "made_by": made,
            "seed": seed,
            "sources": [BOOKS[k][0] for k in keys],
            "sessions": 1,
            "turns": 3,
        },
        events,
    )
    paths.append(p)

    p = out / "gutenberg_eight_sessions.jsonl"
    keys = [
        "tale_of_two_cities",
        "alice",
        "frankenstein",
        "sherlock",
        "metamorphosis",
        "pride_and_prejudice",
        "moby_dick",
        "jane_eyre",
    ]
    events = []
    for i, k in enumerate(keys):
        events += conversation(f"s{i + 1}-{k.split('_')[0]}", [BOOKS[k][1]], rng.uniform(0.0, 3.0), rng)
    write(
        p,
        {
            "name": "gutenberg_eight_sessions",
            "made_by": made,
            "seed": seed,
            "sources": [BOOKS[k][0] for k in keys],
            "sessions": len(keys),
            "turns": 1,
        },
        events,
    )
    paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    for path in build(args.out, args.seed):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
