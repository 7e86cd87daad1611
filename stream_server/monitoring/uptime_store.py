"""Persisted uptime: probe samples and incidents in SQLite (stdlib ``sqlite3``) under SESAME_STATE_DIR.

Tables (``uptime.sqlite3``):

- ``samples(path, t, ok, latency_ms)``: raw samples of the last ``RAW_KEEP_S`` (1 h);
- ``minutes(path, minute, n, ok, latency_ms_sum, latency_n)``: samples folded into minute buckets,
  kept ``MINUTE_KEEP_S`` (35 days: the 30 d window and this month's downtime need them);
- ``hours(path, hour, ...)``: the same folded into hour buckets, kept ``HOUR_KEEP_S`` (400 days);
- ``incidents(t, kind, path, text)``: faults, alerts and recoveries (the last ``INCIDENT_KEEP``);
- ``open_alerts(key, kind, since, summary)``: alerts sent whose recovery is not (yet).

``compact(now)`` folds raw samples older than 1 h into minutes and minutes older than 35 d into
hours, in one transaction. A year of 10 s samples of five paths stays a few megabytes (measured in
docs/monitoring.md). Uptime over a window is ``sum(ok) / sum(n)`` across the three tables; a
window boundary is exact to a minute (to an hour beyond 35 d).

A file that is missing or corrupt is recreated with a logged warning (the corrupt one is kept
beside it as ``*.corrupt-<time>``); an error while writing does the same once and the gateway keeps
serving. Every call is synchronous and takes ``now`` (seconds since the epoch); the gateway calls
the writers through ``asyncio.to_thread`` (a lock makes that safe), so the event loop never waits
on the disk.
"""

from __future__ import annotations

import calendar
import datetime as dt
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from broker import logs

log = logs.get("sesame.uptime")

FILE_NAME = "uptime.sqlite3"
RAW_KEEP_S = 3600
MINUTE_KEEP_S = 35 * 86400
HOUR_KEEP_S = 400 * 86400
INCIDENT_KEEP = 500
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}

SCHEMA = """
CREATE TABLE IF NOT EXISTS paths (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    path INTEGER NOT NULL, t REAL NOT NULL, ok INTEGER NOT NULL, latency_ms REAL);
CREATE INDEX IF NOT EXISTS samples_t ON samples (path, t);
CREATE TABLE IF NOT EXISTS minutes (
    path INTEGER NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL, ok INTEGER NOT NULL,
    latency_ms_sum REAL NOT NULL, latency_n INTEGER NOT NULL, PRIMARY KEY (path, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hours (
    path INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL, ok INTEGER NOT NULL,
    latency_ms_sum REAL NOT NULL, latency_n INTEGER NOT NULL, PRIMARY KEY (path, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS open_alerts (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, since REAL NOT NULL, summary TEXT NOT NULL);
"""

INSERT_SAMPLE = "INSERT INTO samples VALUES ((SELECT id FROM paths WHERE name = ?), ?, ?, ?)"
FOLD = """
INSERT INTO {dst} (path, {unit}, n, ok, latency_ms_sum, latency_n)
SELECT path, CAST({src_time} / {div} AS INTEGER) AS b, {n}, {ok}, {lsum}, {ln}
FROM {src} WHERE {src_time} < ? GROUP BY path, b
ON CONFLICT (path, {unit}) DO UPDATE SET n = n + excluded.n, ok = ok + excluded.ok,
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum, latency_n = latency_n + excluded.latency_n
"""
FOLD_SAMPLES = FOLD.format(
    dst="minutes",
    unit="minute",
    src="samples",
    src_time="t",
    div=60,
    n="COUNT(*)",
    ok="SUM(ok)",
    lsum="COALESCE(SUM(latency_ms), 0)",
    ln="COUNT(latency_ms)",
)
FOLD_MINUTES = FOLD.format(
    dst="hours",
    unit="hour",
    src="minutes",
    src_time="minute * 60",
    div=3600,
    n="SUM(n)",
    ok="SUM(ok)",
    lsum="SUM(latency_ms_sum)",
    ln="SUM(latency_n)",
)


@dataclass(frozen=True, slots=True)
class Incident:
    at: float
    kind: str  # fault, alert, recovery
    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Window:
    samples: int
    ok: int
    avg_latency_ms: float | None

    @property
    def percent(self) -> float | None:
        return 100.0 * self.ok / self.samples if self.samples else None


def month_start(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    return dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp()


def month_minutes(now: float) -> int:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    return calendar.monthrange(d.year, d.month)[1] * 24 * 60


def _broken(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file (recreate it), not a busy one (another process holds a lock) or a bug."""
    if isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    text = str(exc).lower()
    return not ("locked" in text or "busy" in text)


def _check(db: sqlite3.Connection) -> None:
    row = db.execute("PRAGMA quick_check").fetchone()
    if row is None or row[0] != "ok":
        raise sqlite3.DatabaseError(f"quick_check: {row}")


class UptimeStore:
    def __init__(self, state_dir: Path | str) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._lock = threading.Lock()
        self.recreated = 0  # times the file had to be recreated (missing at start is not counted)
        self.persistent = True  # False: the directory was unusable; history lives in memory
        self._db = self._open()

    # ---- opening and recovering ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                log.warning("uptime_store_missing", path=str(self.path), action="created")
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                return self._recreate(exc)
        except (OSError, sqlite3.OperationalError) as exc:
            # An unusable SESAME_STATE_DIR must not stop the gateway: keep the history in memory.
            log.error("uptime_store_unwritable", path=str(self.path), error=str(exc), kept="in memory")  # noqa: TRY400
            self.persistent = False
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        where = str(self.path) if self.persistent else ":memory:"
        db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=2000")
            _check(db)
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _recreate(self, exc: Exception) -> sqlite3.Connection:
        self.recreated += 1
        if not self.persistent:
            return self._connect()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.warning("uptime_store_corrupt", path=str(self.path), error=str(exc), moved_to=str(aside))
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                p.replace(f"{aside}{suffix}")
        return self._connect()

    def _write(self, sql_calls: list[tuple[str, tuple[object, ...]]]) -> None:
        """Run statements in one transaction; a broken file is recreated once (history lost, logged)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._db.execute("BEGIN")
                    for sql, args in sql_calls:
                        self._db.execute(sql, args)
                    self._db.execute("COMMIT")
                except sqlite3.DatabaseError as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    if attempt == 2 or not _broken(exc):
                        log.error("uptime_store_write_failed", error=str(exc))  # noqa: TRY400
                        return
                    self._db.close()
                    self._db = self._recreate(exc)
                else:
                    return

    def _path_id(self, name: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM paths WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writing ------------------------------------------------------------------------------

    def record(self, path: str, now: float, ok: bool, latency_ms: float | None = None) -> None:
        self._write(
            [
                ("INSERT OR IGNORE INTO paths (name) VALUES (?)", (path,)),
                (INSERT_SAMPLE, (path, now, int(ok), latency_ms)),
            ]
        )

    def incident(self, now: float, kind: str, path: str, text: str) -> None:
        self._write(
            [
                ("INSERT INTO incidents (t, kind, path, text) VALUES (?, ?, ?, ?)", (now, kind, path, text)),
                (
                    "DELETE FROM incidents WHERE id <= (SELECT MAX(id) FROM incidents) - ?",
                    (INCIDENT_KEEP,),
                ),
            ]
        )

    def save_open_alerts(self, alerts: list[tuple[str, str, float, str]]) -> None:
        """Replace the open alerts (key, kind, since, summary)."""
        self._write(
            [
                ("DELETE FROM open_alerts", ()),
                *(("INSERT INTO open_alerts VALUES (?, ?, ?, ?)", row) for row in alerts),
            ]
        )

    def open_alerts(self) -> list[tuple[str, str, float, str]]:
        with self._lock:
            rows = self._db.execute("SELECT key, kind, since, summary FROM open_alerts").fetchall()
        return [(str(k), str(kind), float(t), str(s)) for k, kind, t, s in rows]

    def compact(self, now: float) -> None:
        raw_before = (now - RAW_KEEP_S) // 60 * 60  # whole minutes: a minute is in one table only
        minute_before = (now - MINUTE_KEEP_S) // 60 * 60  # whole minutes
        self._write(
            [
                (FOLD_SAMPLES, (raw_before,)),
                ("DELETE FROM samples WHERE t < ?", (raw_before,)),
                (FOLD_MINUTES, (minute_before,)),
                ("DELETE FROM minutes WHERE minute * 60 < ?", (minute_before,)),
                ("DELETE FROM hours WHERE hour * 3600 < ?", (now - HOUR_KEEP_S,)),
            ]
        )

    # ---- reading ------------------------------------------------------------------------------

    def window(self, path: str, now: float, seconds: float) -> Window:
        return self.since(path, now - seconds)

    def since(self, path: str, start: float) -> Window:
        pid = self._path_id(path)
        if pid is None:
            return Window(0, 0, None)
        sql = """
            SELECT COALESCE(SUM(n), 0), COALESCE(SUM(ok), 0), COALESCE(SUM(ls), 0), COALESCE(SUM(ln), 0)
            FROM (
                SELECT COUNT(*) AS n, SUM(ok) AS ok, SUM(latency_ms) AS ls, COUNT(latency_ms) AS ln
                    FROM samples WHERE path = ?1 AND t >= ?2
                UNION ALL SELECT SUM(n), SUM(ok), SUM(latency_ms_sum), SUM(latency_n)
                    FROM minutes WHERE path = ?1 AND minute * 60 >= ?2
                UNION ALL SELECT SUM(n), SUM(ok), SUM(latency_ms_sum), SUM(latency_n)
                    FROM hours WHERE path = ?1 AND hour * 3600 >= ?2
            )"""
        with self._lock:
            n, ok, ls, ln = self._db.execute(sql, (pid, start)).fetchone()
        return Window(int(n), int(ok), float(ls) / ln if ln else None)

    def uptimes(self, path: str, now: float) -> dict[str, float | None]:
        """Percent up over 1 h, 24 h, 7 d and 30 d (None: no samples in that window)."""
        return {name: self.window(path, now, secs).percent for name, secs in WINDOWS.items()}

    def downtime_minutes(self, path: str, start: float, end: float | None = None) -> float:
        """Minutes down since ``start``: each minute bucket counts its failed share of a minute;
        raw samples count their failed share of the minutes they cover."""
        pid = self._path_id(path)
        if pid is None:
            return 0.0
        end_clause = "" if end is None else " AND minute * 60 < ?3"
        with self._lock:
            (minutes,) = self._db.execute(
                f"SELECT COALESCE(SUM(CAST(n - ok AS REAL) / n), 0) FROM minutes "
                f"WHERE path = ?1 AND minute * 60 >= ?2{end_clause}",
                (pid, start) if end is None else (pid, start, end),
            ).fetchone()
            raw = self._db.execute(
                "SELECT CAST(t / 60 AS INTEGER) AS m, COUNT(*), SUM(ok) FROM samples "
                "WHERE path = ? AND t >= ? GROUP BY m",
                (pid, start),
            ).fetchall()
        raw_down: float = sum(float(n - ok) / n for _, n, ok in raw if n)
        return float(minutes) + raw_down

    def month(self, path: str, now: float, target: float) -> dict[str, float]:
        """This calendar month (UTC): downtime minutes and the budget the target allows."""
        budget = month_minutes(now) * (1.0 - target / 100.0)
        down = self.downtime_minutes(path, month_start(now))
        return {
            "downtimeMinutes": round(down, 2),
            "budgetMinutes": round(budget, 2),
            "budgetLeftMinutes": round(budget - down, 2),
        }

    def incidents(self, limit: int = 50) -> list[Incident]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t, kind, path, text FROM incidents ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Incident(float(t), str(k), str(p), str(x)) for t, k, p, x in rows]

    def size_bytes(self) -> int:
        return sum(
            Path(f"{self.path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{self.path}{s}").exists()
        )
