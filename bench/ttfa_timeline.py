"""Where the time to first audio goes: a per-hop timeline of one sentence, Piper, Bark or espeak-ng.

A stack on loopback (mosquitto, the gateway with SESAME_DEBUG_STAMPS=true, cache off, only the
worker tier; one worker) and a pool of listening ``/ws`` sessions (``bench/_listening.py``: each
sentence is spoken alone, as the first sentence of a turn on a session whose earlier audio has played
out, so the gateway's lookahead never holds it; one warm-up turn per session first). Every process
stamps its hops with ``time.monotonic()`` (one clock for all processes of one Linux machine); the
gateway logs one ``hop_stamps`` line per job, joined by job id with the worker's stamps (returned
in its ``done``); this script adds the client's two ends and joins by session and sentence number:

    client_sent  text_in  cut  job_queued  worker_received  engine_started  first_samples
    first_published  audio_in  frame_queued  client_first_frame

It prints, for each hop, the median and p90 of the time since the previous hop and the median
time since ``client_sent``, and writes an SVG (``--svg``, default bench/out/ttfa_timeline-ENGINE.svg)
of the median hop times as one bar.

    .venv/bin/python bench/ttfa_timeline.py [--engine piper|bark|espeak-ng] [--sentences 20]
                                            [--sessions 8] [--worker-env K=V ...] [--svg OUT] [--smoke]
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench._listening import ListeningSessions
from bench._stack import REPO, Stack, machine
from bench.ttfa_vs_wyoming import SENTENCES, parse_env
from clients.stats import percentile, table
from tests.support.localstack import Event

HEADER = "ttfa timeline: where the time to first audio goes, hop by hop"
HOPS = (
    "client_sent",
    "text_in",
    "cut",
    "job_queued",
    "worker_received",
    "engine_started",
    "first_samples",
    "first_published",
    "audio_in",
    "frame_queued",
    "client_first_frame",
)
WHAT = {
    "text_in": "websocket frame read by the gateway",
    "cut": "segmenter cut the sentence",
    "job_queued": "job handed to the MQTT publisher",
    "worker_received": "job read by the worker",
    "engine_started": "engine asked to speak",
    "first_samples": "engine's first audio chunk",
    "first_published": "first chunk published (PUBACK)",
    "audio_in": "first chunk read by the gateway",
    "frame_queued": "frame queued for the websocket",
    "client_first_frame": "first audio frame at the client",
}
COLORS = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)

Stamps = dict[str, float]


async def speak_all(
    ws_url: str, voice: str, texts: list[str], sessions: int
) -> dict[tuple[str, int], Stamps]:
    """Each text alone, as a first sentence on a listening session (bench/_listening.py); per
    (session, sentence seq): the client's send and first-frame times."""
    out: dict[tuple[str, int], Stamps] = {}
    async with ListeningSessions(ws_url, sessions, voice) as pool:
        for text in texts:
            turn = await pool.speak(text)
            out[(turn.session_id, turn.seq)] = {"client_sent": turn.sent, "client_first_frame": turn.first}
    return out


def run(engine: str, texts: list[str], worker_env: dict[str, str], sessions: int) -> list[Stamps]:
    env = {"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false", "SESAME_DEBUG_STAMPS": "true"}
    model_dir = None
    if engine == "bark":
        from bench._bark import ensure_checkpoint

        model_dir, _ = ensure_checkpoint(REPO / ".models" / "dev", "dev")
    with Stack(env, model_dir=model_dir) as stack:
        wenv = {"SESAME_HEARTBEAT_INTERVAL_MS": "500", **worker_env}
        stack.start_worker(f"{engine}-1", engine, **wenv)  # type: ignore[arg-type]
        voice = "miles" if engine == "piper" else "maya"
        warmup = texts[: min(len(texts), sessions)]  # each session's first turn warms the path up
        client = uvloop.run(speak_all(stack.ws_url, voice, [*warmup, *texts], sessions))
        for key in list(client)[: len(warmup)]:
            del client[key]
        rows: list[Stamps] = []

        def joined(event: Event) -> bool:  # a sentence's hop_stamps line joined to its turn
            key = (str(event.get("session_id")), event.get("seq"))
            hops = event.get("hops")
            turn = client.get(key) if isinstance(key[1], int) else None  # type: ignore[arg-type]
            if event.get("event") == "hop_stamps" and isinstance(hops, dict) and turn is not None:
                rows.append({**turn, **{k: float(v) for k, v in hops.items()}})
            return len(rows) == len(client)

        stack.gateway.wait_for(joined, 30, "hop_stamps of every turn")
    return rows


def summarize(rows: list[Stamps]) -> list[tuple[str, float, float, float]]:
    """(hop, median since the hop before it, p90 of that, median since client_sent) in seconds; a
    hop not stamped (a worker that does not stamp) is left out and its time counts to the next."""
    out = []
    for i, hop in enumerate(HOPS[1:], start=1):
        steps = []
        for r in rows:
            prev = next((h for h in reversed(HOPS[:i]) if h in r), None)
            if hop in r and prev is not None:
                steps.append(r[hop] - r[prev])
        steps.sort()
        total = sorted(r[hop] - r["client_sent"] for r in rows if hop in r)
        if steps:
            out.append((hop, percentile(steps, 50), percentile(steps, 90), percentile(total, 50)))
    return out


def svg(title: str, summary: list[tuple[str, float, float, float]]) -> str:
    """Two bars of the median hop times: all hops, then all but the engine's own (to the scale of
    what is left, so the path's hops can be seen next to the synthesis)."""
    width, left, bar_h = 900, 20, 30
    rows = [("all hops", 50, summary), ("without first_samples", 50 + bar_h + 30, summary)]
    height = 50 + 2 * (bar_h + 30) + 20 * len(summary) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        ' font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="24" font-size="14">{html.escape(title)}</text>',
    ]
    for name, bar_y, _ in rows:
        shown = [s for s in summary if name == "all hops" or s[0] != "first_samples"]
        total = sum(max(0.0, s[1]) for s in shown) or 1.0
        scale = (width - 2 * left) / total
        parts.append(f'<text x="{left}" y="{bar_y - 4}">{name}: {total * 1000:.1f} ms</text>')
        x = float(left)
        for hop, med, _p90, _cum in shown:
            w = max(0.0, med) * scale
            color = COLORS[HOPS.index(hop) % len(COLORS)]
            parts.append(f'<rect x="{x:.1f}" y="{bar_y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            if w > 28:
                parts.append(f'<text x="{x + 3:.1f}" y="{bar_y + 19}" fill="#fff">{med * 1000:.1f}</text>')
            x += w
    for i, (hop, med, _p90, _cum) in enumerate(summary):
        y = 50 + 2 * (bar_h + 30) + 20 * i
        color = COLORS[HOPS.index(hop) % len(COLORS)]
        parts.append(f'<rect x="{left}" y="{y - 11}" width="12" height="12" fill="{color}"/>')
        label = f"{hop}: {WHAT.get(hop, hop)} (+{med * 1000:.1f} ms median)"
        parts.append(f'<text x="{left + 18}" y="{y}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--engine", choices=("piper", "bark", "espeak-ng"), default="piper")
    ap.add_argument("--sentences", type=int, default=20)
    ap.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE for the worker")
    ap.add_argument("--sessions", type=int, default=8, help="listening websocket sessions (default 8)")
    ap.add_argument("--svg", type=Path)
    ap.add_argument("--smoke", action="store_true", help="3 sentences")
    a = ap.parse_args(argv)
    n = 3 if a.smoke else a.sentences
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    worker_env = parse_env(a.worker_env)
    rows = run(a.engine, texts, worker_env, a.sessions)
    summary = summarize(rows)
    print(HEADER)
    print(f"machine: {machine()}; engine {a.engine}; {len(rows)} sentences alone; worker env {worker_env}")
    print(
        table(
            ["hop", "what", "median ms", "p90 ms", "since sent ms"],
            [
                [hop, WHAT.get(hop, hop), f"{med * 1000:.2f}", f"{p90 * 1000:.2f}", f"{cum * 1000:.1f}"]
                for hop, med, p90, cum in summary
            ],
        )
    )
    out = a.svg or REPO / "bench" / "out" / f"ttfa_timeline-{a.engine}.svg"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg(f"time to first audio, {a.engine}: median per hop (ms)", summary))
    print(f"svg written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
