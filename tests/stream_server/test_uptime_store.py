"""The persisted uptime store: windows, compaction, the month's downtime budget, corrupt files."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from stream_server.monitoring.uptime_store import FILE_NAME, UptimeStore, month_minutes, month_start

# 2026-03-10 12:00:00 UTC: a 31-day month
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()


def fill(store: UptimeStore, path: str, start: float, end: float, ok: bool, *, step: float = 10.0) -> int:
    t, n = start, 0
    while t < end:
        store.record(path, t, ok, 120.0 if ok else None)
        t += step
        n += 1
    return n


def test_rolling_windows_from_raw_samples(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    fill(store, "workers", NOW - 3600, NOW - 1800, True)
    fill(store, "workers", NOW - 1800, NOW, False)
    up = store.uptimes("workers", NOW)
    assert up["1h"] == pytest.approx(50.0)
    assert up["24h"] == pytest.approx(50.0)
    assert store.uptimes("espeak-ng", NOW) == {"1h": None, "24h": None, "7d": None, "30d": None}
    assert store.window("workers", NOW, 3600).avg_latency_ms == pytest.approx(120.0)


def test_compaction_keeps_every_figure(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    # two days: the first 30 minutes of the first day down, the rest up
    fill(store, "workers", NOW - 2 * 86400, NOW - 2 * 86400 + 1800, False)
    fill(store, "workers", NOW - 2 * 86400 + 1800, NOW, True)
    before = (store.uptimes("workers", NOW), store.downtime_minutes("workers", NOW - 3 * 86400))
    store.compact(NOW)
    with sqlite3.connect(store.path) as db:
        raw = db.execute("SELECT COUNT(*), MIN(t) FROM samples").fetchone()
        minutes = db.execute("SELECT COUNT(*) FROM minutes").fetchone()[0]
    assert raw[0] <= 361 and raw[1] >= NOW - 3600 - 60  # only the last hour stays raw
    assert minutes >= 47 * 60 - 1
    after = (store.uptimes("workers", NOW), store.downtime_minutes("workers", NOW - 3 * 86400))
    assert after[0] == pytest.approx(before[0])
    assert after[1] == pytest.approx(before[1]) == pytest.approx(30.0)
    store.compact(NOW)  # idempotent
    assert store.uptimes("workers", NOW) == pytest.approx(after[0])


def test_old_minutes_fold_into_hours(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    old = NOW - 40 * 86400
    fill(store, "workers", old, old + 7200, False, step=60.0)
    store.compact(NOW)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM minutes").fetchone()[0] == 0
        assert db.execute("SELECT SUM(n), SUM(ok) FROM hours").fetchone() == (120, 0)
    assert store.window("workers", NOW, 41 * 86400).percent == 0.0
    assert store.uptimes("workers", NOW)["30d"] is None


def test_downtime_this_month_against_the_budget(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    fill(store, "workers", month_start(NOW) - 3600, month_start(NOW), False)  # last month: not counted
    fill(store, "workers", NOW - 7200, NOW - 7200 + 600, False)  # 10 minutes down
    fill(store, "workers", NOW - 7200 + 600, NOW, True)
    store.compact(NOW)
    month = store.month("workers", NOW, 99.9)
    assert month["downtimeMinutes"] == pytest.approx(10.0)
    assert month_minutes(NOW) == 31 * 24 * 60
    assert month["budgetMinutes"] == pytest.approx(44.64)
    assert month["budgetLeftMinutes"] == pytest.approx(34.64)


def test_history_survives_a_restart(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    fill(store, "workers", NOW - 600, NOW, False)
    store.incident(NOW - 300, "alert", "workers", "Maya lost her primary voice")
    store.close()
    again = UptimeStore(tmp_path)
    assert again.uptimes("workers", NOW)["1h"] == 0.0
    (incident,) = again.incidents()
    assert (incident.kind, incident.path, incident.text) == (
        "alert",
        "workers",
        "Maya lost her primary voice",
    )
    assert again.recreated == 0


def test_incidents_are_bounded_newest_first(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    for i in range(520):
        store.incident(float(i), "fault", "edge-tts", f"n{i}")
    rows = store.incidents(limit=1000)
    assert len(rows) == 500
    assert rows[0].text == "n519"


def test_a_corrupt_file_is_recreated_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from structlog.testing import capture_logs

    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 200)
    with capture_logs() as logs:
        store = UptimeStore(tmp_path)
    assert store.recreated == 1
    assert any(e["event"] == "uptime_store_corrupt" and e["log_level"] == "warning" for e in logs)
    assert list(tmp_path.glob(f"{FILE_NAME}.corrupt-*"))
    store.record("workers", NOW, True)
    assert store.uptimes("workers", NOW)["1h"] == 100.0


def test_a_missing_file_is_created_with_a_warning(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        store = UptimeStore(tmp_path / "new" / "dir")
    assert store.path.exists()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["uptime_store_missing"]


def test_a_file_broken_while_running_is_recreated_and_writes_go_on(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    store.record("workers", NOW, True)
    with sqlite3.connect(store.path) as db:  # another hand drops the table under us
        db.execute("DROP TABLE samples")
    store.record("workers", NOW + 10, False)  # must not raise
    assert store.recreated == 1
    assert store.uptimes("workers", NOW + 10)["1h"] == 0.0


def test_an_unusable_state_dir_keeps_history_in_memory(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with capture_logs() as logs:
        store = UptimeStore(blocker / "state")
    assert not store.persistent
    assert any(e["event"] == "uptime_store_unwritable" for e in logs)
    store.record("workers", NOW, False)
    assert store.uptimes("workers", NOW)["1h"] == 0.0


def test_open_alerts_are_kept_across_a_restart(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path)
    store.save_open_alerts([("primary_down", "primary_down", NOW, "Maya lost her voice")])
    store.save_open_alerts([("primary_down", "primary_down", NOW, "Maya lost her voice")])
    store.close()
    assert UptimeStore(tmp_path).open_alerts() == [
        ("primary_down", "primary_down", NOW, "Maya lost her voice")
    ]
    store = UptimeStore(tmp_path)
    store.save_open_alerts([])
    assert store.open_alerts() == []
