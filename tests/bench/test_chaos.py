"""The chaos harness's smoke run (bench/chaos.py --smoke): every fault once against a real ``up``.

It asserts what must hold whatever the machine's speed: no sentence lost, every fault healed
(Bark spoke again and every worker was ready again). Times to heal are measured, not asserted:
docs/reliability.md has the figures.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import harness_report


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
