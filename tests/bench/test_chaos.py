"""The chaos harness's smoke run (bench/chaos.py --smoke): every fault once against a real ``up``.

It asserts what must hold whatever the machine's speed: no sentence lost, every fault healed
(Bark spoke again and every worker was ready again). Times to heal are measured, not asserted:
docs/reliability.md has the figures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.bench.smoke import REPO, harness_report


def test_chaos_smoke_loses_nothing_and_heals_every_fault(tmp_path: Path, dev_model_dir: Path) -> None:
    svg = tmp_path / "chaos.svg"
    rep = harness_report(
        "chaos.py",
        "chaos: faults under open-loop websocket turns",
        tmp_path / "chaos.json",
        *("--engine", "bark", "--model", str(dev_model_dir), "--svg", str(svg)),
    )
    assert [f["kind"] for f in rep["faults"]] == ["sigkill", "sigstop", "broker", "reload", "model"]
    assert all(f["heal_s"] is not None for f in rep["faults"])
    assert rep["engines"].get("bark", 0) > 0
    assert {"up", "gateway"} <= {key.split(":")[0] for key in rep["rss"]}  # "name:pid"
    assert [r["done_s"] > 0 and r["ok"] for r in rep["reloads"]] == [True]
    assert svg.read_text().startswith("<svg")


def _chaos_module() -> ModuleType:
    """bench/chaos.py imported as a module (its own helpers beside it on the path)."""
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_chaos", REPO / "bench" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_chaos"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_a_lost_sentence_explains_itself() -> None:
    chaos = _chaos_module()
    run = chaos.Run(t0=100.0, workers=1, engine="piper")
    trace = chaos.TurnTrace(session="s-1", seen=["1.00 ready", "1.50 sentence_start[0] engine=piper"])
    trace.ended = "closed 1012 reconnect"
    run.sentences = [
        chaos.Sentence(0, 0, 1.0, outcome="spoken", engine="piper", start_at=1.5, trace=trace),
        chaos.Sentence(0, 1, 1.0, trace=trace),
    ]
    run.faults = [chaos.Fault("broker", 0.5, "broker"), chaos.Fault("reload", 30.0, "up")]
    log = [
        (101.2, {"event": "job_failed", "session_id": "s-1", "job_id": "j-1"}),
        (101.3, {"event": "job_done", "session_id": "s-2", "job_id": "j-2"}),
    ]
    (lost,) = chaos.unspoken_traces(run, log)
    assert (lost["outcome"], lost["turn"], lost["seq"], lost["session"]) == ("lost", 0, 1, "s-1")
    assert lost["nearest_fault"] == {"kind": "broker", "at_s": 0.5, "target": "broker"}
    assert lost["client_saw"] == trace.seen
    assert lost["ended"] == "closed 1012 reconnect"
    assert lost["gateway_log"] == ["1.20 event=job_failed job_id=j-1"]


def test_a_reload_heals_when_its_last_condition_held_and_its_timeline_says_where_time_went() -> None:
    """A reload is healed at its reload_done line's time (however late the run looked), once a
    worker was heard ready after it and the workers' voice had finished a sentence begun after it;
    a sentence begun but not yet spoken does not count."""
    chaos = _chaos_module()
    run = chaos.Run(t0=100.0, workers=1, engine="piper")
    run.faults = [chaos.Fault("reload", 10.0, "up")]
    run.ready, run.interval = {"worker-1-r1": 18.0}, {"worker-1-r1": 0.5}
    begun = chaos.Sentence(5, 0, 11.0, engine="piper", start_at=11.5)  # no sentence_end yet
    run.sentences = [begun]
    run.reloads_done = [(17.5, True)]
    run.check_heal(17.5)
    assert run.faults[0].healed_at is None
    begun.outcome, begun.end_at = "spoken", 12.0
    run.check_heal(17.5)
    assert run.faults[0].heal_s == 7.5
    log = [
        (110.0, {"event": "reload_started", "surge": 2}),
        (110.1, {"event": "child_restarted", "child": "worker-1-r1", "pid": 7, "reason": "reload"}),
        (111.0, {"event": "worker_starting", "worker_id": "worker-1-r1"}),
        (116.0, {"event": "model_loaded", "worker_id": "worker-1-r1", "load_s": 5.0}),
        (116.2, {"event": "job_done", "worker_id": "worker-1", "job_id": "j"}),
        (117.5, {"event": "reload_done", "ok": True, "seconds": 7.5}),
        (130.0, {"event": "worker_starting", "worker_id": "worker-1-r2"}),  # after it: not its own
    ]
    assert chaos.reload_timeline(log, 100.0, 10.0, 17.5) == [
        "  0.00 reload_started surge=2",
        "  0.10 child_restarted worker-1-r1 pid=7",
        "  1.00 worker_starting worker-1-r1",
        "  6.00 model_loaded worker-1-r1 load_s=5.0",
        "  7.50 reload_done seconds=7.5",
    ]
