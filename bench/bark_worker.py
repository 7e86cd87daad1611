"""Bark on the worker's path: per-stage time and real-time factor, against plain
``BarkModel.generate()``, and speed-ups that keep what is computed, each with its check.

For each checkpoint (``dev``: the tiny random-weight model the tests use; ``bark-small``: random
weights with bark-small's sizes, built by ``synth_worker.devmodel``), greedy decoding throughout
(``do_sample=False``, fine stage argmax), speaker ``v2/en_speaker_0`` of the checkpoint:

1. **baseline**: ``BarkModel.generate()`` with the semantic cap the engine uses;
   **staged**: the four stages run one by one (the engine's way: ``synth_worker.bark.synthesizer``), timed;
   check: the same audio as ``generate()`` (and as ``BarkSynthesizer.generate_rows``), bit for bit.
2. **semantic cap**: ``generate()`` with its default length (up to 768 semantic tokens; random
   weights never emit the end token) against the engine's cap; check: the capped semantic tokens are
   a prefix of the uncapped ones.
3. **batching** jobs that arrive together (texts of different lengths): one by one, then one batch
   with transformers' own fine stage (what the engine did before), then with
   ``synth_worker.bark.fine.fine_generate_rows`` (what the engine does); check: every row's
   semantic, coarse and fine tokens equal the one-by-one run's.
4. **reduced precision** (bf16; on CUDA also fp16) of the three token models, codec in fp32; check:
   teacher-forced top-1 agreement of each stage with the fp32 run, tolerance >= 99% per stage
   (fp32 against itself gives 100%). Free-running token agreement is shown too.
5. **fine window**: the fine stage pads every sentence to 1024 frames; trimmed to the sentence it is
   cheaper, but the fine model attends to the padding, so its tokens change: shown, not adopted.
6. **static decoder** (``synth_worker.bark.decode``, the engine's default) next to ``generate()``
   (``SESAME_BARK_DECODER=generate``) in the same run, interleaved: semantic and coarse time, the
   whole sentence's RTF (fine and codec as in 1), time per semantic token after the prompt, each
   step mode (CPU: ``eager``; CUDA: ``eager``, ``cuda-graph``, ``compile``); check: tokens equal to
   ``generate()``'s bit for bit, else teacher-forced top-1 >= 99.9% per stage. Then time to first
   audio (the engine's ``generate_rows``, batch 1: no audio leaves before the sentence's fine stage)
   for a ~2 s clause and a ~4 s sentence (100 and 200 semantic tokens), a batch (CUDA: 8) with
   both decoders, and peak memory (CUDA: allocator peak per run; CPU: the process's peak RSS).

    .venv/bin/python bench/bark_worker.py [--device auto|cpu|cuda] [--sizes dev,bark-small]
                                          [--repeats N] [--batch 4] [--only static] [--ttfa-small]
                                          [--json OUT] [--smoke]

On CPU the bark-small part is cut short (a 24-token sentence, one repeat, no batching, no uncapped
run and no time-to-first-audio runs unless ``--ttfa-small``: each bark-small generation takes most of
a minute there); on CUDA everything runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench._bark import (
    DecodeRun,
    StageRun,
    decode_stages,
    ensure_checkpoint,
    greedy_configs,
    peak_memory_mb,
    plain_generate,
    run_stages,
    sync,
    tf_coarse,
    tf_fine,
    tf_semantic,
    token_agreement,
)
from bench._stack import REPO, machine
from broker import logs
from clients.stats import table
from synth_worker.bark.fast import reduced_precision
from synth_worker.bark.fine import FineDecoder, fine_generate_rows
from synth_worker.bark.settings import MAX_SEMANTIC_TOKENS, BarkSettings, semantic_cap
from synth_worker.bark.synthesizer import BarkSynthesizer
from synth_worker.engine import CancelToken

HEADER = "bark worker: per-stage time, real-time factor and exact speed-ups (greedy, random weights)"
MAIN_TEXT = "Hello there, how are you today?"
BATCH_TEXTS = (
    "Hi.",
    "Hello there, how are you today?",
    "The weather is mild, with a light breeze from the west.",
    "Your package should arrive on Thursday.",
    "Thanks for waiting.",
    "The museum opens at nine every morning.",
    "Would you like me to set a timer?",
    "It may rain later this evening.",
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SPEAKER = 0
PAD = 10_000  # semantic pad / end token
TF_TOLERANCE = 0.99
STAGE_KEYS = ("semantic", "coarse", "semantic cpu", "coarse cpu")
TF_STATIC = 0.999  # the static decoder where kernels differ (CUDA graphs, compile)
TTFA_TOKENS = {"2 s clause": 100, "4 s sentence": 200}  # semantic tokens at 49.9 Hz
TTFA_TEXTS = {"2 s clause": "Sure, I can help with that.", "4 s sentence": MAIN_TEXT}


@dataclass(slots=True)
class Report:
    rows: list[list[object]] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)

    def row(
        self,
        size: str,
        what: str,
        seconds: float | None = None,
        audio_s: float | None = None,
        speedup: str = "",
        *,
        check: str = "",
        result: str = "",
    ) -> None:
        rtf = f"{seconds / audio_s:.2f}" if seconds is not None and audio_s else ""
        sys.stderr.write(
            f"  [{size}] {what.strip()}: {'' if seconds is None else f'{seconds:.3f} s '}"
            f"{speedup} {check} {result}\n"
        )
        self.rows.append(
            [
                size,
                what,
                "" if seconds is None else f"{seconds:.3f}",
                "" if audio_s is None else f"{audio_s:.2f}",
                rtf,
                speedup,
                check,
                result,
            ]
        )


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def stage_medians(runs: list[StageRun]) -> dict[str, float]:
    return {k: median([r.times[k] for r in runs]) for k in ("semantic", "coarse", "fine", "codec")}


def bench_size(size: str, path: Path, args: argparse.Namespace, rep: Report) -> None:
    settings = BarkSettings(model=str(path), device=args.device, temperature=0.0)
    t0 = time.perf_counter()
    synth = BarkSynthesizer.load(settings)
    load_s = time.perf_counter() - t0
    device, model, tok = synth.device, synth.model, synth.tokenizer
    on_cuda = device.startswith("cuda")
    small_cpu = size == "bark-small" and not on_cuda
    prompt = synth.history_prompt(SPEAKER)
    rate = synth.sample_rate
    repeats = 1 if (small_cpu or args.smoke) else args.repeats
    only_static = args.only == "static"  # sections 1 and 6 only, section 6 with --repeats
    rep.row(size, f"load (from_pretrained, to {device}; torch threads {torch.get_num_threads()})", load_s)
    t0 = time.perf_counter()
    synth.warm_up()
    rep.row(size, "warm-up (the worker's: each stage once, a few positions)", time.perf_counter() - t0)
    cap = args.semantic_tokens or (24 if small_cpu else semantic_cap(MAIN_TEXT, settings))

    # 1. baseline generate() vs the staged pipeline ------------------------------------------------
    base_t, staged = [], []
    base_audio = np.zeros(0, dtype=np.float32)
    for _ in range(repeats):
        base_audio, t = plain_generate(model, tok, MAIN_TEXT, cap, device=device, prompt=prompt)
        base_t.append(t)
        staged.append(run_stages(model, tok, [MAIN_TEXT], [cap], device=device, prompt=prompt))
    ref = staged[-1]
    audio_s = len(ref.audio[0]) / rate
    same = len(base_audio) == len(ref.audio[0]) and bool(np.array_equal(base_audio, ref.audio[0]))
    engine_rows, _ = synth.generate_rows(
        [MAIN_TEXT], speaker=SPEAKER, cancels=[CancelToken()], semantic_caps=[cap]
    )
    engine_same = isinstance(engine_rows[0], np.ndarray) and bool(
        np.array_equal(engine_rows[0], ref.audio[0])
    )
    base = median(base_t)
    rep.row(size, f"BarkModel.generate(), {cap} semantic tokens (baseline)", base, audio_s, "1.00x")
    med = stage_medians(staged)
    for stage in ("semantic", "coarse", "fine", "codec"):
        rep.row(
            size,
            f"  staged: {stage}",
            med[stage],
            audio_s,
            f"{100 * med[stage] / sum(med.values()):.0f}% of total",
        )
    total = sum(med.values())
    rep.row(
        size,
        "  staged: total (the engine's path)",
        total,
        audio_s,
        f"{base / total:.2f}x",
        check="audio == generate() and == engine",
        result="PASS" if same and engine_same else "FAIL",
    )
    rep.data[size] = {
        "device": device,
        "cap": cap,
        "audio_s": audio_s,
        "baseline_s": base_t,
        "stages": med,
        "load_s": load_s,
        "same_audio": same,
        "engine_same_audio": engine_same,
    }

    # 2. the semantic cap --------------------------------------------------------------------------
    if not small_cpu and not args.smoke and not only_static:
        uncapped = run_stages(
            model, tok, [MAIN_TEXT], [MAX_SEMANTIC_TOKENS + 1], device=device, prompt=prompt
        )
        u_sem = uncapped.semantic_row(0, PAD)
        prefix = u_sem[:cap] == ref.semantic_row(0, PAD)
        rep.row(
            size,
            f"generate() default length: {len(u_sem)} semantic tokens",
            uncapped.total_s,
            len(uncapped.audio[0]) / rate,
            f"cap: {uncapped.total_s / total:.1f}x",
            check="capped tokens = prefix of uncapped",
            result="PASS" if prefix else "FAIL",
        )
        rep.data[size]["uncapped"] = {"seconds": uncapped.total_s, "tokens": len(u_sem), "prefix": prefix}  # type: ignore[index]

    # 3. batching ------------------------------------------------------------------------------------
    batches = [] if small_cpu else ([2] if args.smoke else args.batch)
    all_singles: list[StageRun] = []  # one-by-one runs, shared by the batch sizes (same texts first)
    for b in [] if only_static else batches:
        texts = [BATCH_TEXTS[i % len(BATCH_TEXTS)] for i in range(b)]
        caps = [semantic_cap(t, settings) for t in texts]
        while len(all_singles) < b:
            i = len(all_singles)
            all_singles.append(run_stages(model, tok, [texts[i]], [caps[i]], device=device, prompt=prompt))
        singles = all_singles[:b]
        one_by_one = sum(s.total_s for s in singles)
        audio_b = sum(len(s.audio[0]) for s in singles) / rate
        rep.row(size, f"batch of {b} jobs, one by one", one_by_one, audio_b, "1.00x")
        for label, fine_rows in (
            ("one batch, transformers' fine stage (engine before)", False),
            ("one batch, engine: bark_fast.fine_generate_rows", True),
        ):
            fine = synth.fine_decoder if fine_rows else None
            run = run_stages(model, tok, texts, caps, device=device, prompt=prompt, fine=fine)
            same_rows = sum(_row_equal(run, i, one) for i, one in enumerate(singles))
            rep.row(
                size,
                f"  {label}",
                run.total_s,
                audio_b,
                f"{one_by_one / run.total_s:.2f}x",
                check="rows' tokens == one by one",
                result=f"{same_rows}/{b} {'PASS' if same_rows == b else 'FAIL'}",
            )
            rep.data[size][f"batch{b}_{'rows' if fine_rows else 'engine'}"] = {  # type: ignore[index]
                "seconds": run.total_s,
                "one_by_one_s": one_by_one,
                "rows_equal": same_rows,
            }

    # 4. reduced precision ---------------------------------------------------------------------------
    dtypes = [DTYPES[d] for d in (args.dtypes or ("bf16,fp16" if on_cuda else "bf16")).split(",") if d]
    dtypes = [] if only_static else dtypes
    tf_ref = None
    if not small_cpu and not only_static:
        tf_ref = _teacher_forced(model, tok, ref, prompt=prompt, device=device)
        rep.row(
            size,
            "fp32 teacher-forced against itself (noise floor)",
            check="top-1 sem/coarse/fine",
            result=_tf_text(tf_ref),
        )
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        low = reduced_precision(copy.deepcopy(model), dtype)
        runs = [
            run_stages(low, tok, [MAIN_TEXT], [cap], device=device, prompt=prompt) for _ in range(repeats)
        ]
        lmed = stage_medians(runs)
        ltotal = sum(lmed.values())
        tf = _teacher_forced(low, tok, ref, prompt=prompt, device=device)
        ok = all(v is None or v >= TF_TOLERANCE for v in tf)
        for stage in ("semantic", "coarse", "fine"):
            rep.row(size, f"{name}: {stage}", lmed[stage], audio_s, f"{med[stage] / lmed[stage]:.2f}x")
        free = runs[-1]
        agree = (
            token_agreement(free.semantic, ref.semantic),
            token_agreement(free.coarse, ref.coarse),
            token_agreement(free.fine, ref.fine),
        )
        rep.row(
            size,
            f"{name}: total (codec fp32)",
            ltotal,
            audio_s,
            f"{total / ltotal:.2f}x",
            check=f"teacher-forced top-1 >= {TF_TOLERANCE:.0%}",
            result=f"{_tf_text(tf)} {'PASS' if ok else 'FAIL'}",
        )
        rep.row(
            size,
            f"{name}: free-running tokens equal to fp32",
            check="sem/coarse/fine (one early flip changes the rest)",
            result=f"{agree[0]:.0%}/{agree[1]:.0%}/{agree[2]:.0%}",
        )
        mixed = lmed["semantic"] + lmed["coarse"] + med["fine"] + med["codec"]
        rep.row(
            size,
            f"{name} semantic + coarse, fp32 fine (derived from the rows above)",
            mixed,
            audio_s,
            f"{total / mixed:.2f}x",
            check=f"teacher-forced top-1 >= {TF_TOLERANCE:.0%}",
            result=f"{_tf_text((tf[0], tf[1], None))} "
            f"{'PASS' if min(tf[0], tf[1]) >= TF_TOLERANCE else 'FAIL'}",
        )
        rep.data[size][name] = {"stages": lmed, "teacher_forced": tf, "free_running": agree, "pass": ok}  # type: ignore[index]
        del low
        if on_cuda:
            torch.cuda.empty_cache()

    # 5. fine window trimmed to the sentence (changes tokens) ---------------------------------------
    if not only_static:
        _fine_trim(size, model, ref, rep, prompt=prompt, device=device, fine_s=med["fine"])

    # 6. the static decoder next to generate() ------------------------------------------------------
    static_repeats = args.repeats if only_static and not args.smoke else repeats
    static = StaticBench(size, synth, rep, prompt=prompt, cap=cap, repeats=static_repeats, ref=ref)
    static.stages(fine_codec_s=med["fine"] + med["codec"], audio_s=audio_s)
    if (not small_cpu or args.ttfa_small) and not args.smoke:
        static.ttfa(list(TTFA_TOKENS))
    static.batch(batches[-1:] if batches else [])
    static.memory()


class StaticBench:
    """Section 6: the static decoder, in each step mode this device has, next to ``generate()``.

    Every synthesizer here shares the one loaded model (``BarkSynthesizer`` with other settings
    around the same weights), so the decoders compete on the same tensors in the same process."""

    def __init__(
        self,
        size: str,
        synth: BarkSynthesizer,
        rep: Report,
        *,
        prompt: dict[str, torch.Tensor] | None,
        cap: int,
        repeats: int,
        ref: StageRun,
    ) -> None:
        self.size, self.synth, self.rep = size, synth, rep
        self.prompt, self.cap, self.repeats, self.ref = prompt, cap, repeats, ref
        self.on_cuda = synth.device.startswith("cuda")
        self.generate = self._with(decoder="generate")
        self.modes: dict[str, BarkSynthesizer] = {}
        self.best = "eager"
        self.data: dict[str, object] = {}
        rep.data[size]["static"] = self.data  # type: ignore[index]
        for mode in ("eager", "cuda-graph", "compile") if self.on_cuda else ("eager",):
            try:
                candidate = self._with(step_mode=mode)
                t0 = time.perf_counter()
                candidate.warm_up()  # on CUDA: captures (or compiles) the batch-1 step
                rep.row(size, f"static {mode}: warm-up (batch-1 step ready)", time.perf_counter() - t0)
                self.modes[mode] = candidate
            except Exception as exc:  # reported in the table; the other modes still run
                rep.row(size, f"static {mode}", check="runs", result=f"unavailable: {exc}"[:90])

    def _with(self, **changes: object) -> BarkSynthesizer:
        s = self.synth
        return BarkSynthesizer(replace(s.settings, **changes), s.model, s.tokenizer, s.model_dir, s.device)  # type: ignore[arg-type]

    def _reset_peak(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def stages(self, *, fine_codec_s: float, audio_s: float) -> None:
        """Semantic and coarse, each decoder in turn, ``repeats`` rounds; medians. Per-token times
        from ``StepClock`` (the median gap between two generated tokens, prompt passes excluded)."""
        runs: dict[str, list[DecodeRun]] = {"generate": [], **{m: [] for m in self.modes}}
        for _ in range(self.repeats):
            for name, synth in [("generate", self.generate), *self.modes.items()]:
                runs[name].append(decode_stages(synth, [MAIN_TEXT], [self.cap], prompt=self.prompt))
        base: dict[str, float] = {}
        fastest = float("inf")
        cpu_note = "" if self.on_cuda else ", CPU time"
        for name, done in runs.items():
            stats = {k: median([r.times[k] for r in done]) for k in STAGE_KEYS}
            stats |= {f"{k} step": median([r.step_s[k] for r in done]) for k in ("semantic", "coarse")}
            stats["total"] = stats["semantic"] + stats["coarse"] + fine_codec_s
            base = base or stats
            check, result, tf = ("", "", None) if name == "generate" else self._exactness(done[-1])
            label = "generate()" if name == "generate" else f"static {name}"
            for key, what in (
                ("semantic", "semantic"),
                ("coarse", "coarse"),
                *(
                    ()
                    if self.on_cuda
                    else (
                        ("semantic cpu", "semantic, process CPU time"),
                        ("coarse cpu", "coarse, process CPU time"),
                    )
                ),
                ("semantic step", f"time per semantic token (median step{cpu_note})"),
                ("coarse step", f"time per coarse token (median step{cpu_note})"),
                ("total", "sentence total (fine + codec as in 1)"),
            ):
                audio = None if key.endswith(("step", "cpu")) else audio_s
                last = key == "total"
                speed = f"{base[key] / stats[key]:.2f}x"
                self.rep.row(
                    self.size,
                    f"{label}: {what}",
                    stats[key],
                    audio,
                    speed,
                    check=check
                    if last
                    else (f"{1000 * stats[key]:.2f} ms a token" if key.endswith("step") else ""),
                    result=result if last else "",
                )
            self.data[name] = {**stats, "check": result, "teacher_forced": tf}
            if name != "generate" and stats["semantic"] + stats["coarse"] < fastest:
                fastest, self.best = stats["semantic"] + stats["coarse"], name

    def _exactness(self, run: DecodeRun) -> tuple[str, str, tuple[float, float] | None]:
        ref = self.ref
        same = torch.equal(run.semantic.cpu(), ref.semantic.cpu()) and torch.equal(
            run.coarse.cpu(), ref.coarse.cpu()
        )
        if same:
            return "sem/coarse tokens == generate()", "bit for bit PASS", None
        sem = ref.semantic_row(0, PAD)
        model, device = self.synth.model, self.synth.device
        mine = run.semantic[0].tolist()
        tf = (
            tf_semantic(
                model, self.synth.tokenizer, MAIN_TEXT, mine[: len(sem)], prompt=self.prompt, device=device
            ),
            tf_coarse(model, mine[: len(sem)], run.coarse, run.lengths[0], prompt=self.prompt, device=device),
        )
        ok = min(tf) >= TF_STATIC
        text = f"{100 * tf[0]:.2f}%/{100 * tf[1]:.2f}% {'PASS' if ok else 'FAIL'}"
        return f"not bit-equal; teacher-forced top-1 >= {TF_STATIC:.1%}", text, tf

    def ttfa(self, labels: list[str]) -> None:
        """Request to first audio through the engine's synthesizer, batch 1: no audio leaves before
        the whole sentence's fine stage, so this is the sentence's wall time."""
        rate = self.synth.sample_rate
        for label in labels if self.modes else []:
            n = TTFA_TOKENS[label]
            took: dict[str, float] = {}
            for name, synth in (
                ("generate()", self.generate),
                (f"static {self.best}", self.modes[self.best]),
            ):
                self._reset_peak()
                t0 = time.perf_counter()
                rows, _ = synth.generate_rows(
                    [TTFA_TEXTS[label]], speaker=SPEAKER, cancels=[CancelToken()], semantic_caps=[n]
                )
                sync(synth.device)
                took[name] = time.perf_counter() - t0
                audio = len(rows[0]) / rate if isinstance(rows[0], np.ndarray) else None
                speed = f"{took['generate()'] / took[name]:.2f}x"
                peak = f"peak {peak_memory_mb(synth.device):.0f} MB"
                rep_name = f"time to first audio, {label} ({n} tokens): {name}"
                self.rep.row(self.size, rep_name, took[name], audio, speed, check=peak)
            self.data[f"ttfa {label}"] = took

    def batch(self, sizes: list[int]) -> None:
        for b in sizes if self.modes else []:
            texts = [BATCH_TEXTS[i % len(BATCH_TEXTS)] for i in range(b)]
            caps = [semantic_cap(t, self.synth.settings) for t in texts]
            out: dict[str, tuple[float, list[object]]] = {}
            for name, synth in (
                ("generate()", self.generate),
                (f"static {self.best}", self.modes[self.best]),
            ):
                self._reset_peak()
                t0 = time.perf_counter()
                rows, _ = synth.generate_rows(
                    texts, speaker=SPEAKER, cancels=[CancelToken() for _ in texts], semantic_caps=caps
                )
                sync(synth.device)
                out[name] = (time.perf_counter() - t0, list(rows))
                audio = sum(len(r) for r in rows if isinstance(r, np.ndarray)) / self.synth.sample_rate
                pairs = zip(out["generate()"][1], rows, strict=True)
                same = sum(
                    isinstance(a, np.ndarray) and isinstance(c, np.ndarray) and bool(np.array_equal(a, c))
                    for a, c in pairs
                )
                self.rep.row(
                    self.size,
                    f"batch of {b}, {name} (RTF: wall / all rows' audio)",
                    out[name][0],
                    audio,
                    f"{out['generate()'][0] / out[name][0]:.2f}x",
                    check=f"rows' audio == generate()'s; peak {peak_memory_mb(synth.device):.0f} MB",
                    result=f"{same}/{b} {'PASS' if same == b else 'FAIL'}",
                )
            self.data[f"batch{b}"] = {k: v[0] for k, v in out.items()}

    def memory(self) -> None:
        what = (
            "CUDA allocator peak since the last run"
            if self.on_cuda
            else "process peak RSS (whole run so far)"
        )
        self.rep.row(self.size, f"peak memory: {what}", check=f"{peak_memory_mb(self.synth.device):.0f} MB")


def _row_equal(run: StageRun, i: int, one: StageRun) -> bool:
    n = one.lengths[0]
    return (
        run.lengths[i] == n
        and run.semantic_row(i, PAD) == one.semantic_row(0, PAD)
        and bool(torch.equal(run.coarse[i, : 2 * n].cpu(), one.coarse[0, : 2 * n].cpu()))
        and bool(torch.equal(run.fine[i, :, :n].long().cpu(), one.fine[0, :, :n].long().cpu()))
    )


def _teacher_forced(
    model: object, tok: object, ref: StageRun, *, prompt: object, device: str
) -> tuple[float, float, float | None]:
    sem = ref.semantic_row(0, PAD)
    return (
        tf_semantic(model, tok, MAIN_TEXT, sem, prompt=prompt, device=device),  # type: ignore[arg-type]
        tf_coarse(model, sem, ref.coarse, ref.lengths[0], prompt=prompt, device=device),  # type: ignore[arg-type]
        tf_fine(model, ref.coarse, ref.fine, ref.lengths[0], prompt=prompt, device=device),
    )  # type: ignore[arg-type]


def _tf_text(tf: tuple[float, float, float | None]) -> str:
    return "/".join("-" if v is None else f"{100 * v:.1f}%" for v in tf)


def _fine_trim(
    size: str, model: object, ref: StageRun, rep: Report, *, prompt: object, device: str, fine_s: float
) -> None:
    cfg = greedy_configs(model, 1)
    n_hist = 0 if prompt is None else min(prompt["fine_prompt"].shape[1], cfg.fine.max_fine_history_length)  # type: ignore[index]
    window = min(cfg.fine.max_fine_input_length, -(-(n_hist + ref.lengths[0]) // 64) * 64)
    fine_cfg = copy.deepcopy(cfg.fine)
    fine_cfg.max_fine_input_length = window
    with torch.inference_mode():
        sync(device)
        t0 = time.perf_counter()
        trimmed = fine_generate_rows(
            FineDecoder(model.fine_acoustics),  # type: ignore[attr-defined]
            ref.coarse,
            ref.lengths,
            semantic_config=cfg.semantic,
            coarse_config=cfg.coarse,
            fine_config=fine_cfg,
            codebook_size=cfg.codebook_size,
            history_prompt=prompt,
            temperature=None,
        )  # type: ignore[arg-type]
        sync(device)
        took = time.perf_counter() - t0
    n = ref.lengths[0]
    agree = token_agreement(trimmed[0, 2:, :n], ref.fine[0, 2:, :n])
    rep.row(
        size,
        f"fine window {window} frames instead of {cfg.fine.max_fine_input_length}",
        took,
        None,
        f"{fine_s / took:.2f}x (fine stage)",
        check="fine tokens == 1024-frame window",
        result=f"{agree:.0%} {'PASS' if agree == 1.0 else 'FAIL: not exact, not adopted'}",
    )
    rep.data[size]["fine_trim"] = {"window": window, "seconds": took, "agreement": agree}  # type: ignore[index]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=HEADER)
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    ap.add_argument("--sizes", default="dev,bark-small")
    ap.add_argument("--models", type=Path, default=REPO / ".models", help="where checkpoints are built/kept")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median)")
    ap.add_argument("--batch", help="batch sizes to try (default: 4,8 on CUDA, 4 on CPU)")
    ap.add_argument(
        "--dtypes", help="reduced precisions to try: bf16, fp16 (default: both on CUDA, bf16 on CPU)"
    )
    ap.add_argument(
        "--semantic-tokens", type=int, help="semantic tokens per sentence (default: the engine's cap)"
    )
    ap.add_argument(
        "--ttfa-small", action="store_true", help="time to first audio for bark-small on CPU too (minutes)"
    )
    ap.add_argument(
        "--only",
        choices=["static"],
        help="static: sections 1 and 6 only, section 6 with --repeats everywhere",
    )
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="dev checkpoint, one repeat, batch 2, no time to first audio (for the test suite)",
    )
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    args.batch = [int(b) for b in (args.batch or ("4,8" if cuda else "4")).split(",") if b.strip()]
    logs.configure(os.environ.get("LOG_LEVEL", "WARNING"))
    sizes = ["dev"] if args.smoke else [s.strip() for s in args.sizes.split(",") if s.strip()]
    rep = Report()
    started = time.time()
    for size in sizes:
        path, built = ensure_checkpoint(args.models / size, size)
        if built:
            sys.stderr.write(f"built the {size} checkpoint in {built:.1f} s\n")
        bench_size(size, path, args, rep)
        if args.json_out:  # after every checkpoint, so a run cut short keeps what it measured
            args.json_out.write_text(
                json.dumps({"machine": machine(), "rows": rep.rows, "data": rep.data}, indent=1, default=str)
                + "\n"
            )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(HEADER)
    print(
        f"machine: {machine()}; GPU: {gpu}; torch {torch.__version__}; "
        f"transformers {__import__('transformers').__version__}; {time.time() - started:.0f} s"
    )
    print(
        f"texts: {MAIN_TEXT!r} (batches: {len(BATCH_TEXTS)} short sentences); speaker v2/en_speaker_0; greedy"
    )
    print(
        table(
            ["checkpoint", "measurement", "seconds", "audio s", "RTF", "speed-up", "check", "result"],
            rep.rows,
            align="llrrrrll",
        )
    )
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"machine": machine(), "gpu": gpu, "rows": rep.rows, "data": rep.data}, indent=1, default=str
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
