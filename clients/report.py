"""Reports of the load tester and the replay: JSON-ready results and the tables printed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from clients.load_requests import RunResult
from clients.replay_analysis import Finding, SentenceResult, SessionResult, summarize
from clients.stats import Summary, table

# --- the replay ----------------------------------------------------------------------------------------


def render_comparison(findings: Sequence[Finding], old_name: str) -> str:
    rows = [
        [f.metric, _num(f.old), _num(f.new), f.change, "REGRESSION" if f.regression else "ok"]
        for f in findings
    ]
    return table([f"vs {old_name}", "old", "new", "change", ""], rows)


def _num(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")


def render_summary(results: dict[str, object]) -> str:
    s = results["summary"]
    assert isinstance(s, dict)
    rows = []
    for name, key in (("ttfa (last fragment -> audio)", "ttfa_ms"), ("gap before sentence", "gap_ms")):
        d = s[key]
        rows.append([name, d["count"], *(_ms(d[p]) for p in ("p50", "p95", "p99", "max"))])
    lines = [
        f"replay {results['trace']}  speed x{results['speed']}  {s['sessions']} sessions  "
        f"{s['sentences']} sentences  {s['audio_s']} s audio",
        table(["per sentence (ms)", "count", "p50", "p95", "p99", "max"], rows),
        f"engines: {_counts(s['engines'])}   cached: {s['cached']}   fallbacks: {_counts(s['fallbacks'])}",
        f"stalled sentences: {s['stalled_sentences']} ({s['stall_ms']} ms)   errors: {_counts(s['errors'])}"
        f"   unmatched sentences: {s['unmatched']}",
    ]
    return "\n".join(lines)


def results_dict(
    trace_name: str,
    speed: float,
    url: str,
    sessions: Sequence[SessionResult],
    meta: dict[str, object] | None = None,
) -> dict[str, object]:
    def sentence(s: SentenceResult) -> dict[str, object]:
        d = asdict(s)
        d["stall_s"] = round(s.stall_s, 4)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}

    return {
        "trace": trace_name,
        "speed": speed,
        "url": url,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trace_meta": meta or {},
        "summary": summarize(sessions),
        "sessions": [
            {
                "session": r.session,
                "failure": r.failure,
                "turns": r.turns,
                "errors": r.errors,
                "fragments": [[round(t, 4), text] for t, text in r.fragments],
                "flushes": [round(t, 4) for t in r.flushes],
                "sentences": [sentence(s) for s in r.sentences],
            }
            for r in sessions
        ],
    }


# --- the load tester -----------------------------------------------------------------------------------


def report(result: RunResult) -> dict[str, object]:
    """Everything the run measured, JSON-ready; latencies in milliseconds."""
    cfg, outs = result.config, result.outcomes
    ok = [o for o in outs if o.error is None]
    errors = Counter(o.error for o in outs if o.error is not None)
    codes = Counter(code for o in outs for code in o.errors)
    engines = Counter(e for o in outs for e in o.engines)
    fallbacks = Counter(f for o in outs for f in o.fallbacks)
    done = [o for o in outs if o.total_s is not None]

    def summary(attr: str, only_ok: bool = True) -> dict[str, float | int | None]:
        pool = ok if only_ok else done
        return Summary.of(getattr(o, attr) for o in pool if getattr(o, attr) is not None).to_dict(1000.0)

    latency: dict[str, object] = {
        "ttfa": summary("ttfa_s"),
        "ttfa_from_schedule": summary("ttfa_sched_s"),
        "total": summary("total_s"),
        "start_lag": Summary.of(o.start_lag_s for o in outs).to_dict(1000.0),
    }
    if cfg.mode == "ws":
        latency["connect"] = summary("connect_s")
    ws_sessions = [o for o in outs if o.audio_s > 0]
    return {
        "config": {k: v for k, v in asdict(cfg).items() if k != "texts"} | {"texts": len(cfg.texts)},
        "scheduled": result.scheduled,
        "started": len(outs),
        "completed": len(done),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "dropped_by_cap": result.dropped_by_cap,
        "offered_rate": round(result.scheduled / result.schedule_s, 3),
        "achieved_rate": round(len(ok) / result.wall_s, 3) if result.wall_s > 0 else None,
        "wall_s": round(result.wall_s, 3),
        "latency_ms": latency,
        "errors_by_kind": dict(errors.most_common()),
        "error_codes": dict(codes.most_common()),
        "engines": dict(engines.most_common()),
        "fallbacks": dict(fallbacks.most_common()),
        "restarts": sum(o.restarts for o in outs),
        "audio_s": round(sum(o.audio_s for o in outs), 3),
        "underruns": {
            "sessions": sum(1 for o in ws_sessions if o.underruns),
            "of_sessions": len(ws_sessions),
            "events": sum(o.underruns for o in outs),
            "silence_ms": round(sum(o.gap_s for o in outs) * 1000, 1),
            "prebuffer_ms": round(cfg.prebuffer_s * 1000, 1),
        }
        if cfg.mode == "ws"
        else None,
    }


def render(rep: dict[str, object]) -> str:
    """The summary table printed at the end of a run."""
    cfg = rep["config"]
    assert isinstance(cfg, dict)
    lat = rep["latency_ms"]
    assert isinstance(lat, dict)
    lines = [
        f"sesame-voice loadtest  mode={cfg['mode']}  url={cfg['url']}  rate={cfg['rate']}/s  "
        f"duration={cfg['duration_s']}s  concurrency={cfg['concurrency']}  arrivals={cfg['arrivals']}",
        f"requests: scheduled {rep['scheduled']}  started {rep['started']}  ok {rep['ok']}  "
        f"errors {rep['errors']}  dropped_by_cap {rep['dropped_by_cap']}  offered {rep['offered_rate']}/s  "
        f"achieved {rep['achieved_rate']}/s",
        "",
    ]
    names = {
        "ttfa": "ttfa (send->audio)" if cfg["mode"] == "ws" else "ttfb (schedule->byte)",
        "ttfa_from_schedule": "ttfa (schedule->audio)",
        "connect": "connect (schedule->ready)",
        "total": "total (schedule->end)",
        "start_lag": "client start lag",
    }
    rows = []
    for key in ("connect", "ttfa", "ttfa_from_schedule", "total", "start_lag"):
        s = lat.get(key)
        if not isinstance(s, dict) or (key == "ttfa_from_schedule" and cfg["mode"] == "tts"):
            continue
        rows.append([names[key], s["count"], *(_ms(s[p]) for p in ("p50", "p95", "p99", "max"))])
    lines.append(table(["latency (ms)", "count", "p50", "p95", "p99", "max"], rows))
    lines.append("")
    lines.append("errors by kind: " + _counts(rep["errors_by_kind"]))
    if rep.get("error_codes"):
        lines.append("error codes:    " + _counts(rep["error_codes"]))
    if cfg["mode"] == "ws":
        lines.append("engines:        " + _counts(rep["engines"], share=True))
        lines.append("fallbacks:      " + _counts(rep["fallbacks"]) + f"  (restarts {rep['restarts']})")
        u = rep["underruns"]
        assert isinstance(u, dict)
        lines.append(
            f"underruns:      {u['sessions']} of {u['of_sessions']} sessions  ({u['events']} gaps, "
            f"{u['silence_ms']} ms silence, prebuffer {u['prebuffer_ms']} ms)"
        )
    lines.append(f"audio received: {rep['audio_s']} s")
    return "\n".join(lines)


def _ms(v: object) -> str:
    return "-" if v is None else f"{float(v):.1f}"  # type: ignore[arg-type]


def _counts(counts: object, share: bool = False) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    total = sum(counts.values())
    return ", ".join(f"{k} {v}" + (f" ({100 * v / total:.1f}%)" if share else "") for k, v in counts.items())


# --- command line ------------------------------------------------------------------------------------
