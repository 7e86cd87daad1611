"""Uptime store size: a simulated year of 10 s probe samples, compacted as the gateway does.

Five paths (workers, elevenlabs, edge-tts, espeak-ng, service) get one sample every 10 s, with a
short outage now and then. Each simulated day's samples go into the ``samples`` table in one
transaction (the same rows ``UptimeStore.record`` writes) and ``compact`` runs at the end of the day
(the gateway compacts every few minutes; the end state is the same). The table shows the file size
after 1, 30, 90 and 365 days, and the rows per table.

    .venv/bin/python bench/uptime_store_size.py [--days 365] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_server.monitoring.uptime_store import UptimeStore

HEADER = "uptime store size: a simulated year of 10 s samples"
PATHS = ("workers", "elevenlabs", "edge-tts", "espeak-ng", "service")
STEP_S = 10
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()


def simulate_day(store: UptimeStore, day: int) -> None:
    t0 = START + day * 86400
    rows = []
    for path in PATHS:
        for i in range(86400 // STEP_S):
            t = t0 + i * STEP_S
            ok = not (day % 7 == 3 and 36_000 <= i * STEP_S < 36_300)  # a 5 min outage each week
            rows.append((path, t, int(ok), 800.0 if ok else None))
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO paths (name) VALUES (?)", [(p,) for p in PATHS])
    db.executemany("INSERT INTO samples VALUES ((SELECT id FROM paths WHERE name = ?), ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.close()
    store.compact(t0 + 86400)


def rows(store: UptimeStore) -> dict[str, int]:
    with sqlite3.connect(store.path) as db:
        return {
            t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("samples", "minutes", "hours")
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--smoke", action="store_true", help="three days only")
    args = parser.parse_args()
    days = 3 if args.smoke else args.days
    marks = {d for d in (1, 3, 30, 90, 365) if d <= days} | {days}
    with tempfile.TemporaryDirectory() as tmp:
        store = UptimeStore(tmp)  # (logs that it created the file)
        print(HEADER)
        print(f"paths: {len(PATHS)}, one sample per {STEP_S} s each; {days} simulated days")
        cols = ("days", "file MB", "samples", "minutes", "hours", "30d uptime", "s/day")
        heading = "  ".join(f"{c:>{w}}" for c, w in zip(cols, (5, 8, 8, 8, 6, 10, 6), strict=True))
        print(heading)
        print("-" * len(heading))
        started = time.perf_counter()
        for day in range(days):
            simulate_day(store, day)
            if day + 1 in marks:
                store.compact(START + (day + 1) * 86400)
                with sqlite3.connect(store.path) as db:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                r = rows(store)
                up = store.uptimes("workers", START + (day + 1) * 86400)["30d"]
                per_day = (time.perf_counter() - started) / (day + 1)
                print(
                    f"{day + 1:>5}  {store.size_bytes() / 1e6:>8.2f}  {r['samples']:>8}  {r['minutes']:>8}  "
                    f"{r['hours']:>6}  {up or 0:>9.3f}%  {per_day:>6.2f}"
                )
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
