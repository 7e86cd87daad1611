"""Sentence segmentation: accuracy on two public test sets, and the cost per streamed fragment.

Segmenters, on the same texts:

* **sesame** (``stream_server.core.segmenter``): pysbd on text-determined windows, streaming;
* **rules**: the hand-written scanner it replaced (``bench/_rules_segmenter.py``), streaming;
* **pysbd** 0.3.4 and **blingfire** (``pip install -e .[bench]``), whole text only: they are not
  streaming segmenters. A "streamed" row for them re-runs the library on the growing buffer after
  every fragment and emits every sentence but the last (the obvious wrapper), to show why that
  is not enough.

Test sets:

* **golden**: the 48 English Golden Rules (bench/data/golden_rules_en.json): a case is right when
  the sentences are exactly the expected ones;
* **ewt**: the test part of Universal Dependencies English Web Treebank (r2.16, CC BY-SA 4.0;
  bench/data/ud_english_ewt_test.jsonl, one paragraph a line as its list of sentences, 854
  paragraphs, 2077 sentences): each paragraph's sentences joined with spaces; boundary precision,
  recall and F1 (a boundary is the number of letters and digits before it, so whitespace and
  dropped punctuation do not matter), and how many paragraphs come out exactly right;
* **lists+names**: the project's own 53 held-out cases (bench/data/golden_lists_names_en.json):
  enumerated lists (numbers, letters, roman numerals, bullets) and abbreviations before a
  capitalized name, scored like the Golden Rules.

"sesame at the gateway's settings" is the same segmenter with ``max_length`` 200 and the first
chunk cut at 20 characters (``SESAME_FIRST_CHUNK_MIN_CHARS``): the sentences a client sees on /ws.

"streamed" feeds the text in random fragments of 1-8 characters (seeded); ``max_length`` is 1000
for accuracy so the long-sentence rule does not count. The cost table streams the EWT text in
fragments of about one LLM token (a word and its leading space) at the shipped ``max_length`` 200
and reports microseconds per fragment.

``--ttfa 0,20,40`` adds the first-chunk comparison: for each ``SESAME_FIRST_CHUNK_MIN_CHARS``
value a local stack (mosquitto, the gateway with ``SESAME_TIERS=workers`` and the cache off, one
espeak-ng worker) replays every trace in clients/traces/ in real time (``clients.replay``), and the
deadlines are generous (ack and stall 20 s) so that a busy machine measures the segmenter, not
failover. The table gives the time from a turn's first fragment to its first audio (the listener's wait), the
per-sentence TTFA and gap as the replay measures them, and stalls.

    .venv/bin/python bench/segmenter.py [--json OUT] [--smoke] [--ttfa 0,20,40] [--traces GLOB]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pysbd

from bench import _rules_segmenter
from bench._segmenter_waits import Streaming, held_back, held_row, ttfa, ttfa_row
from bench._stack import machine
from clients.stats import table
from stream_server.core import segmenter as sesame

HEADER = "segmenter: accuracy on the Golden Rules and UD English EWT, and cost per fragment"
DATA = Path(__file__).resolve().parent / "data"
ACCURACY_MAX = 1000


Whole = Callable[[str], list[str]]


def load_golden() -> list[tuple[str, list[str]]]:
    cases = json.loads((DATA / "golden_rules_en.json").read_text(encoding="utf-8"))["cases"]
    return [(c["text"], c["sentences"]) for c in cases]


def load_lists_names() -> list[tuple[str, list[str]]]:
    cases = json.loads((DATA / "golden_lists_names_en.json").read_text(encoding="utf-8"))["cases"]
    return [(c["text"], c["sentences"]) for c in cases]


def load_ewt() -> list[list[str]]:
    lines = (DATA / "ud_english_ewt_test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def fragments(text: str, rnd: random.Random, most: int = 8) -> list[str]:
    out, i = [], 0
    while i < len(text):
        k = rnd.randint(1, most)
        out.append(text[i : i + k])
        i += k
    return out


def tokens(text: str) -> list[str]:
    """About one LLM token a fragment: each word with the space before it."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def stream(make: Callable[[], Streaming], parts: Iterable[str]) -> list[str]:
    seg = make()
    out = [s for p in parts for s in seg.feed(p)]
    return out + seg.flush()


class Rerun:
    """A whole-text segmenter re-run on the growing buffer; all sentences but the last are final."""

    def __init__(self, whole: Whole) -> None:
        self.whole = whole
        self.buf = ""

    def feed(self, fragment: str) -> list[str]:
        self.buf += fragment
        found = self.whole(self.buf)
        if len(found) < 2:
            return []
        done = found[:-1]
        for s in done:  # drop what was emitted from the buffer
            at = self.buf.find(s)
            self.buf = self.buf[at + len(s) :] if at >= 0 else self.buf
        return done

    def flush(self) -> list[str]:
        out = self.whole(self.buf) if self.buf.strip() else []
        self.buf = ""
        return out


def pysbd_whole() -> Whole:
    seg = pysbd.Segmenter(language="en", clean=False)
    return lambda text: [s.strip() for s in seg.segment(text) if s.strip()]


def blingfire_whole() -> Whole | None:
    try:
        import blingfire
    except ImportError:
        return None
    return lambda text: [s for s in blingfire.text_to_sentences(text).split("\n") if s.strip()]


def contenders() -> dict[str, tuple[Whole, Callable[[], Streaming]]]:
    """name -> (whole-text function, streaming factory)."""
    out: dict[str, tuple[Whole, Callable[[], Streaming]]] = {
        "sesame (pysbd windows)": (
            lambda t: sesame.segment(t, max_length=ACCURACY_MAX),
            lambda: sesame.SentenceSegmenter(max_length=ACCURACY_MAX),
        ),
        "sesame at the gateway's settings": (
            lambda t: sesame.segment(t, max_length=200, first_chunk_min_chars=20),
            lambda: sesame.SentenceSegmenter(max_length=200, first_chunk_min_chars=20),
        ),
        "rules (before)": (
            lambda t: _rules_segmenter.segment(t, max_length=ACCURACY_MAX),
            lambda: _rules_segmenter.SentenceSegmenter(max_length=ACCURACY_MAX),
        ),
    }
    whole = pysbd_whole()
    out["pysbd 0.3.4"] = (whole, lambda: Rerun(pysbd_whole()))
    bling = blingfire_whole()
    if bling is not None:
        out["blingfire 0.1.8"] = (bling, lambda: Rerun(bling))
    return out


def alnum_boundaries(sentences: list[str]) -> set[int]:
    out, count = set(), 0
    for s in sentences[:-1]:
        count += sum(c.isalnum() for c in s)
        out.add(count)
    return out


def norm(sentences: list[str]) -> list[str]:
    return [" ".join(s.split()) for s in sentences if s.strip()]


Cases = list[tuple[str, list[str]]]


def accuracy(golden: Cases, ewt: list[list[str]], ours: Cases) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, (whole, make) in contenders().items():
        for mode in ("whole", "streamed"):
            rnd = random.Random(7)

            def run(text: str, whole: Whole = whole, make: Callable[[], Streaming] = make) -> list[str]:
                return norm(whole(text) if mode == "whole" else stream(make, fragments(text, rnd)))  # noqa: B023

            right = sum(run(text) == expected for text, expected in golden)
            own = sum(run(text) == expected for text, expected in ours)
            hit = pred = gold = exact = 0
            for sentences in ewt:
                got = run(" ".join(sentences))
                b_got, b_gold = alnum_boundaries(got), alnum_boundaries(sentences)
                hit += len(b_got & b_gold)
                pred += len(b_got)
                gold += len(b_gold)
                exact += got == sentences
            p, r = hit / max(pred, 1), hit / max(gold, 1)
            f1 = 2 * p * r / max(p + r, 1e-9)
            rows.append({
                "segmenter": name, "mode": mode, "golden": right, "golden_of": len(golden),
                "ours": own, "ours_of": len(ours),
                "ewt_p": p, "ewt_r": r, "ewt_f1": f1, "ewt_exact": exact, "ewt_paragraphs": len(ewt),
            })  # fmt: skip
    return rows


def cost(ewt: list[list[str]], repeats: int) -> list[dict[str, object]]:
    text = " ".join(" ".join(p) for p in ewt)
    parts = tokens(text)
    makers: dict[str, Callable[[], Streaming]] = {
        "sesame (pysbd windows)": sesame.SentenceSegmenter,
        "rules (before)": _rules_segmenter.SentenceSegmenter,
    }
    rows: list[dict[str, object]] = []
    for name, make in makers.items():
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            stream(make, parts)
            best = min(best, time.perf_counter() - t0)
        rows.append({"segmenter": name, "fragments": len(parts), "us_per_fragment": best / len(parts) * 1e6})
    # re-running pysbd on a growing buffer, for scale (a few hundred fragments are enough)
    few = parts[: min(len(parts), 400)]
    t0 = time.perf_counter()
    stream(lambda: Rerun(pysbd_whole()), few)
    rows.append({
        "segmenter": "pysbd re-run per fragment", "fragments": len(few),
        "us_per_fragment": (time.perf_counter() - t0) / len(few) * 1e6,
    })  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--smoke", action="store_true", help="a few cases of each set (for the test suite)")
    ap.add_argument(
        "--ttfa", help="SESAME_FIRST_CHUNK_MIN_CHARS values to replay the traces with, e.g. 0,20,40"
    )
    ap.add_argument("--traces", default="*.jsonl", help="which clients/traces/ files --ttfa replays (a glob)")
    args = ap.parse_args()
    golden, ewt, ours = load_golden(), load_ewt(), load_lists_names()
    if args.smoke:
        golden, ewt, ours = golden[:6], ewt[:12], ours[::9]
    print(HEADER)
    acc = accuracy(golden, ewt, ours)
    print()
    print(
        table(
            ["segmenter", "mode", "golden rules", "lists+names", "EWT P", "EWT R", "EWT F1", "EWT exact"],
            [
                [
                    r["segmenter"],
                    r["mode"],
                    f"{r['golden']}/{r['golden_of']}",
                    f"{r['ours']}/{r['ours_of']}",
                    f"{r['ewt_p']:.3f}",
                    f"{r['ewt_r']:.3f}",
                    f"{r['ewt_f1']:.3f}",
                    f"{r['ewt_exact']}/{r['ewt_paragraphs']}",
                ]
                for r in acc
            ],
            align="llrrrrrr",
        )
    )
    costs = cost(ewt, repeats=1 if args.smoke else 3)
    print()
    print(
        table(
            ["streaming cost", "fragments", "us per fragment"],
            [[r["segmenter"], r["fragments"], f"{r['us_per_fragment']:.1f}"] for r in costs],
        )
    )
    held = held_back()
    print("\nthe segmenter alone on the traces' timing (clients/traces/*.jsonl), max_length 200")
    headers = ["segmenter", "first_chunk_min_chars", "turns", "first cut p50 ms", "p95"]
    headers += ["first chunk chars p50", "held back p50 ms", "p95", "sentences"]
    print(table(headers, [held_row(r) for r in held]))
    waits = ttfa([int(v) for v in args.ttfa.split(",")], args.traces) if args.ttfa else []
    if waits:
        print(f"\nfirst-chunk cut, traces replayed in real time into a local stack (espeak-ng), {machine()}")
        print(table(["first_chunk_min_chars", "turns", "turn wait p50 ms", "p95", "TTFA p50 ms", "p95",
                     "gap p95 ms", "stalled", "sentences"], [ttfa_row(r) for r in waits]))  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"accuracy": acc, "cost": costs, "held": held, "ttfa": waits}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
