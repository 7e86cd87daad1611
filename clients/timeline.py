"""A self-contained HTML timeline of one replay (inline SVG and CSS, no external assets, no script).

Per session, two rows on one time axis (the replay clock, seconds):

* **text**: a tick for each fragment sent, a diamond for each flush (end of turn), and a dot where
  each sentence's text became complete;
* **audio**: one bar per sentence while the listener hears it, colored by the engine that spoke it
  (outlined when it came from the cache), red where the listener waits in silence although the text
  is there (the gap before a sentence, stalls inside one).

Hovering any mark shows its details (SVG ``<title>``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

ENGINE_COLORS = {
    "bark": "#4e79a7",
    "espeak-ng": "#59a14f",
    "edge-tts": "#f28e2b",
    "elevenlabs": "#b07aa1",
}
OTHER_COLOR = "#9c755f"
GAP_COLOR = "#e15759"
LABEL_W = 150
PLOT_W = 1000
ROW_H = 18
SESSION_H = 2 * ROW_H + 14
TOP = 40


def _esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def _nice_step(span: float) -> float:
    raw = span / 10 if span > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def _end_time(sessions: Sequence[dict[str, object]]) -> float:
    end = 0.0
    for s in sessions:
        for t, _ in s.get("fragments", []):  # type: ignore[attr-defined]
            end = max(end, float(t))
        for sen in s.get("sentences", []):  # type: ignore[attr-defined]
            for key in ("play_end", "end_t", "start_t"):
                v = sen.get(key)
                if isinstance(v, int | float):
                    end = max(end, float(v))
    return end


def render_html(results: dict[str, object]) -> str:
    sessions = results.get("sessions", [])
    assert isinstance(sessions, list)
    t_end = max(_end_time(sessions), 0.1) * 1.02
    scale = PLOT_W / t_end

    def x(t: float) -> float:
        return LABEL_W + max(0.0, t) * scale

    height = TOP + SESSION_H * len(sessions) + 30
    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + PLOT_W + 20}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
    ]
    step = _nice_step(t_end)
    tick = 0.0
    while tick <= t_end:
        svg.append(
            f'<line x1="{x(tick):.1f}" y1="{TOP - 8}" x2="{x(tick):.1f}" y2="{height - 24}" stroke="#eee"/>'
        )
        svg.append(
            f'<text x="{x(tick):.1f}" y="{TOP - 12}" text-anchor="middle" fill="#666">{tick:g}s</text>'
        )
        tick = round(tick + step, 9)
    for i, s in enumerate(sessions):
        assert isinstance(s, dict)
        y = TOP + i * SESSION_H
        name = _esc(s.get("session"))
        fail = f" ({_esc(s['failure'])})" if s.get("failure") else ""
        svg.append(f'<text x="4" y="{y + ROW_H - 5}" font-weight="bold">{name}{fail}</text>')
        svg.append(f'<text x="{LABEL_W - 6}" y="{y + ROW_H - 5}" text-anchor="end" fill="#666">text</text>')
        svg.append(
            f'<text x="{LABEL_W - 6}" y="{y + 2 * ROW_H - 5}" text-anchor="end" fill="#666">audio</text>'
        )
        svg.append(f'<rect x="{LABEL_W}" y="{y}" width="{PLOT_W}" height="{2 * ROW_H}" fill="#fafafa"/>')
        for t, text in s.get("fragments", []):
            xt = x(float(t))
            svg.append(
                f'<line x1="{xt:.1f}" y1="{y + 3}" x2="{xt:.1f}" y2="{y + ROW_H - 3}" stroke="#888">'
                f"<title>{float(t):.3f}s  {_esc(repr(text))}</title></line>"
            )
        for t in s.get("flushes", []):
            xt, yc = x(float(t)), y + ROW_H / 2
            svg.append(
                f'<path d="M{xt:.1f},{yc - 5} l5,5 l-5,5 l-5,-5 z" fill="#333">'
                f"<title>{float(t):.3f}s  flush (end of turn)</title></path>"
            )
        ya = y + ROW_H
        for sen in s.get("sentences", []):
            _sentence(svg, sen, x, y, ya)
    legend_y = height - 10
    lx = LABEL_W
    for engine, color in [*ENGINE_COLORS.items(), ("gap / stall", GAP_COLOR)]:
        svg.append(f'<rect x="{lx}" y="{legend_y - 9}" width="12" height="10" fill="{color}"/>')
        svg.append(f'<text x="{lx + 16}" y="{legend_y}">{_esc(engine)}</text>')
        lx += 30 + 7 * len(engine)
    svg.append("</svg>")
    return _page(results, "\n".join(svg))


def _sentence(svg: list[str], sen: dict[str, object], x: object, y: float, ya: float) -> None:
    xf = x  # the time -> pixel function
    assert callable(xf)
    ready = sen.get("ready_t")
    if isinstance(ready, int | float):
        svg.append(
            f'<circle cx="{xf(float(ready)):.1f}" cy="{y + ROW_H / 2}" r="3" fill="#1f77b4">'
            f"<title>seq {_esc(sen.get('seq'))} text complete at {float(ready):.3f}s: "
            f"{_esc(sen.get('text'))}</title></circle>"
        )
    gap_from, start, end = sen.get("gap_from"), sen.get("play_start"), sen.get("play_end")
    if isinstance(gap_from, int | float) and isinstance(start, int | float) and start > gap_from:
        svg.append(
            f'<rect x="{xf(float(gap_from)):.1f}" y="{ya + 3}" '
            f'width="{max(1.0, xf(float(start)) - xf(float(gap_from))):.1f}" height="{ROW_H - 6}" '
            f'fill="{GAP_COLOR}" opacity="0.55"><title>gap before seq {_esc(sen.get("seq"))}: '
            f"{1000 * (float(start) - float(gap_from)):.0f} ms</title></rect>"
        )
    if isinstance(start, int | float) and isinstance(end, int | float):
        engine = str(sen.get("engine"))
        color = ENGINE_COLORS.get(engine, OTHER_COLOR)
        stroke = (
            ' stroke="#000" stroke-width="1.5"' if sen.get("cached") else ' stroke="#fff" stroke-width="0.75"'
        )
        ttfa = sen.get("ttfa_s")
        ttfa_txt = f"{1000 * float(ttfa):.0f} ms" if isinstance(ttfa, int | float) else "-"
        svg.append(
            f'<rect x="{xf(float(start)):.1f}" y="{ya + 2}" '
            f'width="{max(1.0, xf(float(end)) - xf(float(start))):.1f}" height="{ROW_H - 4}" '
            f'fill="{color}"{stroke}><title>seq {_esc(sen.get("seq"))} [{_esc(engine)}'
            f"{', cached' if sen.get('cached') else ''}] ttfa {ttfa_txt}, "
            f"{float(end) - float(start):.2f}s audio: {_esc(sen.get('text'))}</title></rect>"
        )
    for a, b in sen.get("stalls", []) or []:  # type: ignore[attr-defined]
        svg.append(
            f'<rect x="{xf(float(a)):.1f}" y="{ya + 2}" width="{max(1.0, xf(float(b)) - xf(float(a))):.1f}" '
            f'height="{ROW_H - 4}" fill="{GAP_COLOR}"><title>stall in seq {_esc(sen.get("seq"))}: '
            f"{1000 * (float(b) - float(a)):.0f} ms</title></rect>"
        )


def _page(results: dict[str, object], svg: str) -> str:
    summary = results.get("summary", {})
    assert isinstance(summary, dict)
    rows = []
    for key, label in (("ttfa_ms", "TTFA (ms)"), ("gap_ms", "gap before sentence (ms)")):
        d = summary.get(key, {})
        if isinstance(d, dict):
            rows.append(
                f"<tr><td>{label}</td>"
                + "".join(f"<td>{_esc(d.get(p))}</td>" for p in ("count", "p50", "p95", "p99", "max"))
                + "</tr>"
            )
    facts = ", ".join(
        f"{_esc(k)}: {_esc(v)}"
        for k, v in summary.items()
        if k
        in (
            "sessions",
            "sentences",
            "engines",
            "cached",
            "fallbacks",
            "errors",
            "stalled_sentences",
            "audio_s",
        )
    )
    title = f"sesame-voice replay: {_esc(results.get('trace'))} x{_esc(results.get('speed'))}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.small {{ color: #666; font-size: 12px; }}
</style></head>
<body>
<h2>{title}</h2>
<p class="small">{_esc(results.get("url"))} &middot; {_esc(results.get("created_at"))} &middot; {facts}</p>
<table><tr><th></th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>
{"".join(rows)}</table>
<p class="small">Rows per session: text sent (ticks: fragments, diamonds: flush, dots: a sentence's text
complete) and audio as the listener hears it (bars by engine, outlined when cached; red: silence while
the text was already there). Hover for details. Time is the replay clock in seconds.</p>
{svg}
</body></html>
"""
