"""Crash loops from the supervisor's state, as events for the alert policy. Pure.

``sesame-voice up``'s supervisor writes its state as JSON (SESAME_SUPERVISOR_STATE; see
``sesame_voice/children.py``): ``restarts`` as ``[{role, reason, count}]`` and ``children`` as
``[{name, role, running, pid, worker_id, crash_loop}]``. ``CrashWatch.update`` is given each state
read and returns a ``CrashLoop`` event when a child starts or stops crash-looping; malformed
entries are skipped (the file is another process's, read while it may be rewritten).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CrashLoop:
    role: str
    name: str
    looping: bool
    restarts: int  # restarts of this role so far
    reason: str  # the role's most frequent restart reason


class CrashWatch:
    def __init__(self) -> None:
        self.looping: set[str] = set()

    def update(self, state: object) -> list[CrashLoop]:
        if not isinstance(state, dict) or "error" in state:
            return []  # unreadable or not supervised: no news (never "recovered")
        counts, reasons = _restarts(state.get("restarts"))
        events = []
        for name, role, looping in _children(state.get("children")):
            if looping != (name in self.looping):
                (self.looping.add if looping else self.looping.discard)(name)
                reason = reasons[role].most_common(1)[0][0] if reasons.get(role) else "exit"
                events.append(CrashLoop(role, name, looping, counts.get(role, 0), reason))
        return events


def _children(entries: object) -> list[tuple[str, str, bool]]:
    return [
        (e["name"], e["role"], e.get("crash_loop") is True)
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("role"), str)
    ]


def _restarts(entries: object) -> tuple[dict[str, int], dict[str, Counter[str]]]:
    counts: dict[str, int] = {}
    reasons: dict[str, Counter[str]] = {}
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict):
            continue
        role, reason, count = e.get("role"), e.get("reason"), e.get("count")
        if isinstance(role, str) and isinstance(reason, str) and isinstance(count, int):
            counts[role] = counts.get(role, 0) + count
            reasons.setdefault(role, Counter())[reason] += count
    return counts, reasons
