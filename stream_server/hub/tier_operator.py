"""The operator's tier switch in the gateway: the pure ``TierSwitch`` (core/tier_switch.py), the
scheduler it steers, and the file that keeps it (SESAME_STATE_DIR/tier-switch.json), so that a
reloaded or restarted gateway starts with the operator's last word. Until ``reset`` it stays.

The admin route (http/routes_admin.py) calls ``apply`` and then ``save`` (in a thread: a file
write); the monitor records each change as an ``operator`` incident.
"""

from __future__ import annotations

import os
from pathlib import Path

from broker import logs
from stream_server.core.scheduler import Scheduler
from stream_server.core.tier_switch import TierSwitch

log = logs.get("sesame.tiers")

FILE_NAME = "tier-switch.json"


class TierOperator:
    def __init__(self, scheduler: Scheduler, path: Path | None) -> None:
        self.scheduler = scheduler
        self.path = path
        self.switch = self._load()
        if self.switch.changed:
            log.warning("tier_switch_restored", path=str(path), **self.switch.view())
        self._steer()

    def apply(self, op: str, tier: str | None) -> str:
        """One command (``TierSwitchError`` when it cannot be done); what changed, in words."""
        text = self.switch.apply(op, tier)
        self._steer()
        log.warning("tier_switch", op=op, tier=tier, **self.switch.view())
        return text

    def save(self) -> None:
        """Write the switch where the next gateway finds it (blocking: run it in a thread)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(self.switch.to_json())
        tmp.replace(self.path)

    def _load(self) -> TierSwitch:
        configured = self.scheduler.config.tiers
        if self.path is None or not self.path.exists():
            return TierSwitch(configured)
        try:
            return TierSwitch.from_json(configured, self.path.read_text())
        except (OSError, ValueError) as exc:
            log.error("tier_switch_unreadable", path=str(self.path), error=str(exc))  # noqa: TRY400
            return TierSwitch(configured)

    def _steer(self) -> None:
        self.scheduler.set_tiers(self.switch.order(), frozenset(self.switch.disabled))
