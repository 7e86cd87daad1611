"""Record live sessions' text as a replay trace (``SESAME_RECORD_DIR``; off when unset).

One new JSONL file per gateway run, ``trace-<UTC time>-<gateway id>.jsonl`` in the directory, in the
format ``sesame-voice replay`` reads (clients/trace.py):

    {"meta": {"recorded_by": "sesame-voice gateway", "gateway_id": "gw-1", "started_at": "..."}}
    {"session": "5f0c...", "t": 0.0, "text": "Hel"}
    {"session": "5f0c...", "t": 0.21, "flush": true}

``t`` is seconds since the first recorded event, on the clock the hub passes in (``now``). Only text
and turn ends are written (``text``, ``flush``, ``speak`` = text + flush); no audio, no voice.

Bounds: the file stops growing at ``max_bytes`` (default 64 MB); later events are counted in
``dropped`` and the first drop is logged. A write error (disk full) is logged once and stops the
recording: a recorder must never take the gateway down. Writes are buffered and flushed at each
turn end and at least once a second, so a crash loses at most about a second of trace.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from broker import logs
from broker.wire import Message

log = logs.get("sesame.recorder")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
FLUSH_EVERY_S = 1.0


class Recorder:
    def __init__(
        self, directory: str | Path, gateway_id: str = "gateway", *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.path, self._file = self._create(f"trace-{stamp}-{gateway_id}")
        self.bytes = 0
        self.events = 0
        self.dropped = 0
        self._t0: float | None = None
        self._last_flush = 0.0
        self._write(
            {
                "meta": {
                    "recorded_by": "sesame-voice gateway",
                    "gateway_id": gateway_id,
                    "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            }
        )
        log.info("recording_sessions", path=str(self.path), max_bytes=max_bytes)

    def _create(self, stem: str) -> tuple[Path, IO[str] | None]:
        """A new file, never one another recorder is writing (a second run in the same second with
        the same SESAME_GATEWAY_ID gets ``-2``, ``-3``...)."""
        for n in range(1, 1000):
            path = self.directory / (f"{stem}.jsonl" if n == 1 else f"{stem}-{n}.jsonl")
            try:
                return path, path.open("x", encoding="utf-8")
            except FileExistsError:
                continue
        raise FileExistsError(f"no free trace file name for {stem} in {self.directory}")

    @classmethod
    def from_config(cls, record_dir: str | None, gateway_id: str) -> Recorder | None:
        """A recorder when ``record_dir`` (SESAME_RECORD_DIR) is set, else None."""
        return cls(record_dir, gateway_id) if record_dir else None

    @property
    def active(self) -> bool:
        return self._file is not None

    def record(self, session_id: str, now: float, text: str | None = None, flush: bool = False) -> None:
        """Append a text fragment and/or a turn end of ``session_id`` seen at ``now`` (seconds)."""
        if self._t0 is None:
            self._t0 = now
        t = round(max(0.0, now - self._t0), 4)
        if text:
            self._event({"session": session_id, "t": t, "text": text})
        if flush:
            self._event({"session": session_id, "t": t, "flush": True})
            self._flush()
        elif now - self._last_flush >= FLUSH_EVERY_S:
            self._last_flush = now
            self._flush()

    def record_message(self, session_id: str, now: float, msg: Message) -> None:
        """Record a decoded client message: ``text``, ``flush`` and ``speak``; others are ignored."""
        match msg.type:
            case "text":
                self.record(session_id, now, text=getattr(msg, "text", None))
            case "speak":
                self.record(session_id, now, text=getattr(msg, "text", None), flush=True)
            case "flush":
                self.record(session_id, now, flush=True)
            case _:
                return

    def close(self) -> None:
        if self._file is not None:
            self._flush()
            self._file.close()
            self._file = None
            log.info("recording_closed", path=str(self.path), events=self.events, dropped=self.dropped)

    def _event(self, obj: dict[str, object]) -> None:
        if self._write(obj):
            self.events += 1

    def _write(self, obj: dict[str, object]) -> bool:
        if self._file is None:
            self.dropped += 1
            return False
        line = json.dumps(obj, ensure_ascii=False) + "\n"
        size = len(line.encode("utf-8"))
        if self.bytes + size > self.max_bytes:
            if self.dropped == 0:
                log.warning("recording_full", path=str(self.path), max_bytes=self.max_bytes)
            self.dropped += 1
            return False
        try:
            self._file.write(line)
        except OSError as exc:
            self._fail(exc)
            return False
        self.bytes += size
        return True

    def _flush(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        log.error("recording_failed", path=str(self.path), error=str(exc))
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
