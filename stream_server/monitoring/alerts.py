"""Alerts that reach someone: the pure policy core.

``AlertCore`` (pure: no clock, no I/O) is fed what the gateway observes and returns the ``Alert``
notices to send:

- ``primary(up, now)``: the primary voice (the workers: Bark, or Piper) is down; an alert fires
  once it has been down for ``alert_after_s`` (SESAME_ALERT_AFTER, 30 s), a recovery notice when it
  speaks again;
- ``uptime(percent, now)``: the primary's 24 h uptime fell below ``uptime_target``
  (SESAME_UPTIME_TARGET, 99.9);
- ``breaker(tier, available, reason, now)``: a fallback tier's circuit breaker opened / closed;
- ``crash_loop(role, name, looping, restarts, reason, now)``: the supervisor says a child
  crash-loops (an input event; the supervisor counts restarts as ``sesame_restarts_total``).

Each condition has a key; a key fires once per incident (deduplicated) and its recovery notice is
sent only if its alert was. A token bucket (``burst`` notices, one more every ``refill_s``) rate-limits
everything; a notice the limiter refused is counted and named in the next one that goes out.
``next_deadline()`` says when ``handle_timer`` must run (a pending "down longer than" alert).

The notices are posted by ``webhook.WebhookSender`` (its retries: ``delivery.DeliveryCore``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["primary_down", "uptime_low", "breaker_open", "crash_loop"]
State = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertConfig:
    alert_after_s: float = 30.0  # SESAME_ALERT_AFTER
    uptime_target: float = 99.9  # SESAME_UPTIME_TARGET, percent
    burst: int = 10
    refill_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    kind: Kind
    state: State
    at: float  # seconds since the epoch
    summary: str
    details: tuple[tuple[str, str], ...] = ()
    suppressed_before: int = 0  # notices the rate limit refused since the last one sent

    @property
    def text(self) -> str:
        """Slack-compatible text (mrkdwn)."""
        icon = ":red_circle:" if self.state == "firing" else ":large_green_circle:"
        head = "ALERT" if self.state == "firing" else "RECOVERED"
        lines = [f"{icon} *sesame-voice {head}*: {self.summary}"]
        lines += [f"• {k}: {v}" for k, v in self.details]
        if self.suppressed_before:
            lines.append(f"({self.suppressed_before} earlier notice(s) were held back by the rate limit)")
        return "\n".join(lines)

    def payload(self, source: str) -> dict[str, object]:
        return {
            "text": self.text,
            "source": source,
            "alert": {
                "key": self.key,
                "kind": self.kind,
                "state": self.state,
                "at": dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat(),
                "summary": self.summary,
                "details": dict(self.details),
            },
        }


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An incident whose alert went out and whose recovery has not: kept across restarts, so a
    gateway restarted mid-outage neither pages again nor forgets to send the recovery."""

    key: str
    kind: Kind
    since: float
    summary: str


@dataclass(slots=True)
class _Incident:
    kind: Kind
    since: float
    summary: str
    details: tuple[tuple[str, str], ...]
    fired: bool = False  # a firing notice went out (a recovery notice follows it)
    refused: bool = False  # the rate limit refused its notice; it is not tried again


@dataclass(slots=True)
class AlertCore:
    config: AlertConfig = field(default_factory=AlertConfig)
    incidents: dict[str, _Incident] = field(default_factory=dict)
    suppressed: int = 0  # total refused by the rate limit
    _tokens: float = -1.0
    _refilled_at: float = 0.0
    _pending_suppressed: int = 0
    _primary_down_since: float | None = None

    # ---- queries ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        incident = self.incidents.get("primary_down")
        if incident is not None and not (incident.fired or incident.refused) and self._primary_down_since:
            return self._primary_down_since + self.config.alert_after_s
        return None

    def open_alerts(self) -> list[OpenAlert]:
        return [OpenAlert(k, i.kind, i.since, i.summary) for k, i in self.incidents.items() if i.fired]

    def restore(self, alerts: list[OpenAlert]) -> None:
        """Take back the alerts that were open when the gateway stopped."""
        for a in alerts:
            self.incidents[a.key] = _Incident(a.kind, a.since, a.summary, (), fired=True)
            if a.key == "primary_down":
                self._primary_down_since = a.since

    def active(self) -> list[tuple[str, float, str]]:
        """(key, since, summary) of every open incident."""
        return [(k, i.since, i.summary) for k, i in self.incidents.items()]

    # ---- events -------------------------------------------------------------------------------

    def primary(self, up: bool, now: float, reason: str = "") -> list[Alert]:
        if up:
            self._primary_down_since = None
            return self._resolve("primary_down", now, "Maya's primary voice (the workers) is speaking again")
        if self._primary_down_since is None:
            self._primary_down_since = now
            self.incidents["primary_down"] = _Incident(
                "primary_down",
                now,
                "Maya lost her primary voice (the workers); listeners hear a fallback voice",
                (("reason", reason or "unknown"),),
            )
        return self.handle_timer(now)

    def uptime(self, percent: float, now: float) -> list[Alert]:
        target = self.config.uptime_target
        if percent >= target:
            return self._resolve("uptime_low", now, f"24 h uptime is back at {percent:.3f}%")
        details = (("uptime_24h", f"{percent:.3f}%"), ("target", f"{target}%"))
        return self._open(
            "uptime_low", "uptime_low", now, f"24 h uptime {percent:.3f}% is below {target}%", details
        )

    def breaker(self, tier: str, available: bool, reason: str, now: float) -> list[Alert]:
        key = f"breaker_open:{tier}"
        if available:
            return self._resolve(key, now, f"fallback tier {tier} is available again")
        summary = f"circuit breaker opened: fallback tier {tier} is skipped"
        return self._open(key, "breaker_open", now, summary, (("tier", tier), ("reason", reason)))

    def crash_loop(
        self, role: str, name: str, *, looping: bool, restarts: int, reason: str, now: float
    ) -> list[Alert]:
        key = f"crash_loop:{role}:{name}"
        if not looping:
            return self._resolve(key, now, f"{role} {name} is stable again")
        details = (("role", role), ("name", name), ("restarts", str(restarts)), ("reason", reason))
        return self._open(key, "crash_loop", now, f"{role} {name} is crash-looping", details)

    def handle_timer(self, now: float) -> list[Alert]:
        incident = self.incidents.get("primary_down")
        since = self._primary_down_since
        if incident is None or incident.fired or incident.refused or since is None:
            return []
        if now < since + self.config.alert_after_s:
            return []
        details = (*incident.details, ("down_for", f"{now - since:.0f} s"))
        return self._fire("primary_down", incident, now, details)

    # ---- internals ----------------------------------------------------------------------------

    def _open(
        self, key: str, kind: Kind, now: float, summary: str, details: tuple[tuple[str, str], ...]
    ) -> list[Alert]:
        if key in self.incidents:
            return []  # deduplicated: one notice per incident
        incident = self.incidents[key] = _Incident(kind, now, summary, details)
        return self._fire(key, incident, now, details)

    def _fire(
        self, key: str, incident: _Incident, now: float, details: tuple[tuple[str, str], ...]
    ) -> list[Alert]:
        if not self._take(now):
            incident.refused = True  # not tried again, so a refused alert cannot turn into a storm
            self._refuse()
            return []
        incident.fired = True
        return [self._notice(key, incident.kind, "firing", now, summary=incident.summary, details=details)]

    def _resolve(self, key: str, now: float, summary: str) -> list[Alert]:
        incident = self.incidents.pop(key, None)
        if incident is None or not incident.fired:
            return []
        if not self._take(now):
            self._refuse()
            return []
        details = (("was", incident.summary), ("lasted", f"{now - incident.since:.0f} s"))
        return [self._notice(key, incident.kind, "resolved", now, summary=summary, details=details)]

    def _notice(
        self,
        key: str,
        kind: Kind,
        state: State,
        now: float,
        *,
        summary: str,
        details: tuple[tuple[str, str], ...],
    ) -> Alert:
        held, self._pending_suppressed = self._pending_suppressed, 0
        return Alert(key, kind, state, now, summary, details, held)

    def _refuse(self) -> None:
        self.suppressed += 1
        self._pending_suppressed += 1

    def _take(self, now: float) -> bool:
        cap = float(self.config.burst)
        if self._tokens < 0:
            self._tokens, self._refilled_at = cap, now
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(cap, self._tokens + elapsed / self.config.refill_s)
        self._refilled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
