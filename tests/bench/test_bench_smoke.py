"""Every benchmark runs once in its tiny ``--smoke`` form and prints its table.

No timings are asserted (benchmarks measure speed; tests check behaviour): a script must exit 0,
print its header and a table, and not report a failed exactness check where one is run.
"""

from __future__ import annotations

import functools
import subprocess

import pytest

from tests.bench.smoke import run_smoke

# script -> (header it prints, a line of its table's column headings)
BENCHES = {
    "gateway_overhead.py": ("gateway overhead: time to first audio", "time to first audio (ms)"),
    "capacity.py": ("capacity: concurrent real-time websocket sessions", "POST /tts rate/s"),
    "gateway_cpu.py": ("gateway cpu: sessions per core", "sessions  gateway cores"),
    "ready_time.py": ("worker ready time", "configuration"),
    "bark_worker.py": ("bark worker: per-stage time", "checkpoint  measurement"),
    "bark_e2e.py": ("bark end to end: the engine's path against BarkModel.generate()", "variant: stage"),
    "local_engines.py": ("local engines: TTFA, RTF", "cpu s per s of speech"),
    "timer_accuracy.py": ("timer accuracy: how late", "measurement "),
    "segmenter.py": ("segmenter: accuracy on the Golden Rules", "EWT P  EWT R"),
    "stretch.py": ("stretch: WSOLA (gateway) against Rubber Band", "pitch error cents p50"),
    "uptime_store_size.py": ("uptime store size: a simulated year of 10 s samples", "file MB"),
    "ttfa_timeline.py": ("ttfa timeline: where the time to first audio goes", "since sent ms"),
    "piper_clauses.py": ("piper clauses: time to the first samples", "p50 ms  p90 ms  CPU ms/sentence"),
    "piper_threads.py": ("piper threads: first audio and CPU per sentence", "loaded CPU ms/sentence"),
    "abuse.py": ("abuse: polite clients beside an abusive one", "1st prim. turn prim."),
}


@functools.cache
def run(script: str) -> subprocess.CompletedProcess[str]:
    return run_smoke(script, timeout_s=240)


@pytest.mark.parametrize("script", sorted(BENCHES))
def test_bench_smoke_prints_its_table(script: str) -> None:
    header, columns = BENCHES[script]
    done = run(script)
    assert done.returncode == 0, (
        f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    assert header in done.stdout, done.stdout[-2000:]
    lines = done.stdout.splitlines()
    heading = next((i for i, line in enumerate(lines) if columns in line), None)
    assert heading is not None, f"no table in:\n{done.stdout[-2000:]}"
    assert set(lines[heading + 1].replace(" ", "")) == {"-"}, "the heading is followed by a rule"
    assert len(lines) > heading + 2 and lines[heading + 2].strip(), "the table has rows"


def test_bark_end_to_end_smoke_finds_every_variant_exact() -> None:
    """generate(), the engine before issue 20's fine stage and the engine now give the same audio,
    and the kept scores buffer the same logits (the run is shared with the test above)."""
    done = run("bark_e2e.py")
    assert done.returncode == 0, done.stderr[-3000:]
    checks = [line for line in done.stdout.splitlines() if line.rstrip().endswith(("PASS", "FAIL"))]
    assert len(checks) == 4 and all(line.rstrip().endswith("PASS") for line in checks), done.stdout


def test_bark_smoke_checks_that_must_hold() -> None:
    """The exactness checks that hold by construction pass: staged == generate(), bark_fast batching
    == one by one, fp32 teacher forcing reproduces fp32 (the run is shared with the test above)."""
    done = run("bark_worker.py")
    assert done.returncode == 0, done.stderr[-3000:]
    staged = next(line for line in done.stdout.splitlines() if "staged: total" in line)
    assert staged.rstrip().endswith("PASS")
    fast = next(line for line in done.stdout.splitlines() if "bark_fast.fine_generate_rows" in line)
    assert "2/2 PASS" in fast
    noise = next(line for line in done.stdout.splitlines() if "against itself" in line)
    assert noise.rstrip().endswith("100.0%/100.0%/100.0%")
    # the static decoder (CPU: eager) gives generate()'s tokens, and the batch's audio row for row
    static = next(line for line in done.stdout.splitlines() if "static eager: sentence total" in line)
    assert static.rstrip().endswith("bit for bit PASS")
    batch = next(line for line in done.stdout.splitlines() if "batch of 2, static eager" in line)
    assert "2/2 PASS" in batch
