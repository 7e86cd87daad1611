"""bench/cluster.py's record of a run (sentences, turns, faults) and its report: the JSON figures and
the table it prints."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field

from _stack import machine

FAULTS = ("broker", "gateway", "worker")


@dataclass
class Sentence:
    turn: int
    text: str
    heard: list[str] = field(default_factory=list)  # engine per delivery ("text" for an error frame)
    texted_at: float | None = None

    @property
    def outcome(self) -> str:
        if not self.heard:
            return "lost"
        return "texted" if self.heard[0] == "text" else "spoken"


@dataclass
class TurnRun:
    number: int
    started_at: float
    ended_at: float | None = None
    sentences: list[Sentence] = field(default_factory=list)
    reconnects: int = 0
    silence_s: float = 0.0
    kind: str = "VoiceClient"  # or "web" (a page of clients/web in Chromium)


@dataclass
class Fault:
    kind: str
    at: float
    target: str
    moved_s: float | None = None
    heal_s: float | None = None


@dataclass
class Run:
    t0: float
    engine: str
    turns: list[TurnRun] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    web_sentences: dict[str, Sentence] = field(default_factory=dict)  # by text, every page's
    web_failures: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0


def tally(turns: list[TurnRun]) -> dict[str, object]:
    sentences = [s for t in turns for s in t.sentences]
    outcomes = Counter(s.outcome for s in sentences)
    return {
        "turns": len(turns),
        "sentences": len(sentences),
        "spoken": outcomes["spoken"],
        "texted": outcomes["texted"],
        "lost": outcomes["lost"],
        "doubled": sum(1 for s in sentences if len(s.heard) > 1),
        "engines": dict(Counter(s.heard[0] for s in sentences if s.heard and s.heard[0] != "text")),
        "reconnected_turns": sum(1 for t in turns if t.reconnects),
        "longest_silence_s": round(max((t.silence_s for t in turns), default=0.0), 3),
    }


def report(run: Run, args: argparse.Namespace) -> dict[str, object]:
    sentences = [s for t in run.turns for s in t.sentences]
    kinds = [kind for kind in ("VoiceClient", "web") if any(t.kind == kind for t in run.turns)]
    return {
        "machine": machine(),
        "config": {
            k: getattr(args, k) for k in ("duration", "rate", "fault_every", "engine", "tiers", "browser")
        },
        **tally(run.turns),  # every client
        "by_client": {kind: tally([t for t in run.turns if t.kind == kind]) for kind in kinds},
        "web_lost": [s.text for s in run.web_sentences.values() if not s.heard],
        "web_doubled": {s.text: s.heard for s in run.web_sentences.values() if len(s.heard) > 1},
        "web_failures": run.web_failures,
        "texted_at_s": [round(s.texted_at - run.t0, 2) for s in sentences if s.texted_at is not None],
        "faults": [
            {
                "kind": f.kind,
                "at_s": round(f.at, 2),
                "target": f.target,
                "moved_s": f.moved_s,
                "heal_s": f.heal_s,
            }
            for f in run.faults
        ],
        "all_healed": len(run.faults) == len(FAULTS) and all(f.heal_s is not None for f in run.faults),
    }


def render(rep: dict[str, object]) -> str:
    lines = [
        "cluster: two gateways behind nginx, two broker nodes, two workers; one of each killed",
        f"machine: {rep['machine']}; config {rep['config']}",
        "",
        "client       turns  sentences  spoken  texted  lost  doubled  reconnected turns"
        "  longest silence (s)",
    ]
    by_client: dict[str, dict[str, object]] = rep["by_client"]  # type: ignore[assignment]
    for kind, row in by_client.items():
        lines.append(
            f"{kind:<11}  {row['turns']:>5}  {row['sentences']:>9}  {row['spoken']:>6}  {row['texted']:>6}  "
            f"{row['lost']:>4}  {row['doubled']:>7}  {row['reconnected_turns']:>17}  "
            f"{row['longest_silence_s']:>19}"
        )
    lines += [f"engines ({kind}): {row['engines']}" for kind, row in by_client.items()]
    for key in ("web_lost", "web_doubled", "web_failures"):
        if rep[key]:
            lines.append(f"{key}: {rep[key]}")
    lines += ["", "fault     at (s)  target   moved (s)  heal (s)"]
    lines += [
        f"{f['kind']:<8}  {f['at_s']:>6}  {f['target']:<7}  {f['moved_s']!s:>9}  {f['heal_s']!s:>8}"
        for f in rep["faults"]  # type: ignore[attr-defined]
    ]
    return "\n".join(lines)
