"""The scale-out harness's smoke run (bench/cluster.py --smoke): two gateways behind nginx, two
broker nodes, two workers, and one of each SIGKILLed under open-loop turns.

It asserts what must hold whatever the machine's speed: no sentence lost, none heard twice, the
link of every process on the dead node moved to the other, and every fault healed. Times are
measured, not asserted: docs/scaling.md has the figures.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.smoke import harness_report


def test_cluster_smoke_loses_nothing_doubles_nothing_and_heals(tmp_path: Path) -> None:
    rep = harness_report(
        "cluster.py", "cluster: two gateways behind nginx", tmp_path / "cluster.json", logs=tmp_path / "logs"
    )
    assert rep["doubled"] == 0, rep
    assert [f["kind"] for f in rep["faults"]] == ["broker", "gateway", "worker"]
    [broker] = [f for f in rep["faults"] if f["kind"] == "broker"]
    assert broker["moved_s"] is not None, rep["faults"]
