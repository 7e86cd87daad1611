"""The operator's switch over the failover tiers: prefer one, disable or re-enable one. Pure.

SESAME_TIERS fixes which tiers exist and their order at start; the switch changes, at run time,
which of them are used and which comes first (the plan's rollback step 1, "switch to the ElevenLabs
fallback", is ``prefer elevenlabs``):

    prefer TIER    TIER first, the others after it in their configured order
    disable TIER   TIER is skipped (a preferred tier that is disabled stops being preferred)
    enable TIER    TIER is used again
    reset          the configured order, nothing disabled

``TierSwitch.apply(op, tier)`` checks the command (``TierSwitchError`` with a code: unknown_op,
unknown_tier, last_tier: at least one tier stays enabled) and returns what changed, in words, for
the incident log. ``order()`` (every tier, the preferred first) and ``disabled`` are what the
scheduler uses, ``enabled()`` the tiers tried now; ``to_json``/``from_json``
persist the switch (SESAME_STATE_DIR/tier-switch.json) so that a restarted or reloaded gateway
keeps it; a persisted switch that names tiers no longer configured keeps only the ones that are.
``remap_index`` carries a position in one order over to another (sentences in flight, sticky turns).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from broker.errors import ProtocolError
from stream_server.core.failover import Task

Op = Literal["prefer", "disable", "enable", "reset"]
OPS: tuple[Op, ...] = ("prefer", "disable", "enable", "reset")


class TierSwitchError(ProtocolError):
    """A switch command that cannot be carried out (``code`` says why)."""


@dataclass(slots=True)
class TierSwitch:
    configured: tuple[str, ...]
    preferred: str | None = None
    disabled: set[str] = field(default_factory=set)

    def order(self) -> tuple[str, ...]:
        """Every configured tier, the preferred one first (the scheduler skips the disabled ones)."""
        if self.preferred is None:
            return self.configured
        return (self.preferred, *(t for t in self.configured if t != self.preferred))

    def enabled(self) -> tuple[str, ...]:
        """The tiers in the order they are tried now."""
        return tuple(t for t in self.order() if t not in self.disabled)

    @property
    def changed(self) -> bool:
        return self.preferred is not None or bool(self.disabled)

    def apply(self, op: str, tier: str | None = None) -> str:
        """Carry out one command; a sentence saying what changed. Raises TierSwitchError."""
        if op not in OPS:
            raise TierSwitchError(f"unknown operation {op!r}; one of {', '.join(OPS)}", code="unknown_op")
        if op == "reset":
            self.preferred, self.disabled = None, set()
            return f"tiers reset to the configured order {', '.join(self.configured)}"
        if tier not in self.configured:
            raise TierSwitchError(
                f"tier {tier!r} is not configured (SESAME_TIERS: {', '.join(self.configured)})",
                code="unknown_tier",
            )
        if op == "prefer":
            self.preferred = tier
            self.disabled.discard(tier)
        elif op == "enable":
            self.disabled.discard(tier)
        else:
            if not [t for t in self.configured if t != tier and t not in self.disabled]:
                raise TierSwitchError(f"{tier} is the last enabled tier", code="last_tier")
            self.disabled.add(tier)
            if self.preferred == tier:
                self.preferred = None
        return f"operator: {op} {tier}; tiers now {', '.join(self.enabled()) or 'none'}"

    def view(self) -> dict[str, object]:
        """What /api/status and the admin endpoint show."""
        return {
            "configured": list(self.configured),
            "order": list(self.enabled()),
            "preferred": self.preferred,
            "disabled": sorted(self.disabled),
        }

    def to_json(self) -> str:
        return json.dumps({"preferred": self.preferred, "disabled": sorted(self.disabled)})

    @classmethod
    def from_json(cls, configured: tuple[str, ...], text: str) -> TierSwitch:
        """A persisted switch over ``configured``; what it names that is not configured is dropped.
        Raises ValueError on a file that is not a switch."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a tier switch")  # noqa: TRY004 (a bad file, as json.loads says)
        preferred = data.get("preferred")
        disabled = data.get("disabled", [])
        if not isinstance(disabled, list):
            raise ValueError("not a tier switch")  # noqa: TRY004 (a bad file, as json.loads says)
        switch = cls(configured, preferred if preferred in configured else None)
        switch.disabled = {t for t in disabled if t in configured}
        if not switch.enabled():  # never every tier disabled, whatever the file says
            switch.disabled = set()
        return switch


def carry_over(
    old: tuple[str, ...], new: tuple[str, ...], tasks: Iterable[Task], sticky: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """The scheduler's sentences in flight (their ``tier_index``, changed in place) and sticky turns
    (returned) carried from the ``old`` order to the ``new``."""
    for task in tasks:
        task.tier_index = remap_index(old, new, task.tier_index)
    return {s: (turn, remap_index(old, new, i)) for s, (turn, i) in sticky.items()}


def remap_index(old: tuple[str, ...], new: tuple[str, ...], index: int) -> int:
    """A position in ``old`` as a position in ``new``: the same tier where ``new`` has it, else the
    first tier after it in ``old`` that ``new`` has, else past the end (nothing left to try)."""
    for tier in old[index:]:
        if tier in new:
            return new.index(tier)
    return len(new)
