"""Bark end to end on one sentence: the engine's path against ``BarkModel.generate()``, in process
CPU time and wall time, stage by stage.

Three variants, greedy, speaker ``v2/en_speaker_0`` of the checkpoint, the same text and semantic
cap, run in turn in one process (the order rotates every round, so load that comes and goes on a
shared machine falls on each in turn):

- ``generate()``: ``BarkModel.generate()``, as documented (one call; its total only);
- ``before``: the engine as it was before issue 20's fine stage: semantic and coarse on the static
  decoder (``BarkSynthesizer._semantic``/``_coarse``), transformers' ``BarkFineModel.generate``,
  ``codec_decode``;
- ``engine``: the engine now: the same semantic and coarse, ``synth_worker.bark.fine``, codec.

Then one coarse prompt pass of 887 positions (``--prompt-pass``; a window whose history is full: 256
semantic, the infer token, 630 coarse, as every window has with a real speaker's prompt and the
later windows of a long sentence have without one), transformers' eager attention (fresh tensors)
against the static decoder's (``static_cache.attend`` on a kept buffer), alternating; check: the
same logits bit for bit.

CPU time (``time.process_time``: every thread of this process, user and system) is the figure to
read on a shared machine: other processes do not inflate it, while they do inflate wall time.
Checks: each variant's audio equals ``generate()``'s sample for sample, and the engine's
``BarkSynthesizer.generate_rows`` gives that audio too.

    .venv/bin/python bench/bark_e2e.py [--sizes dev,bark-small] [--rounds 2] [--semantic-tokens N]
                                       [--models DIR] [--prompt-pass N] [--json OUT] [--smoke]

bark-small (random weights, bark-small's sizes, built by ``synth_worker.devmodel`` when missing) takes
about 70 s of CPU time a round at the default 24 semantic tokens on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench._bark import ensure_checkpoint, greedy_configs, plain_generate
from bench._stack import REPO, machine
from broker import logs
from clients.stats import table
from synth_worker.bark.fine import fine_generate_rows
from synth_worker.bark.settings import BarkSettings
from synth_worker.bark.static_cache import ScoresBuffer, StaticCache, forward
from synth_worker.bark.synthesizer import BarkSynthesizer, encode_texts
from synth_worker.engine import CancelToken

TEXT = "Hello there, how are you today?"
SPEAKER = 0
STAGES = ("semantic", "coarse", "fine", "codec")
VARIANTS = ("generate()", "before", "engine")
Run = tuple[np.ndarray, dict[str, float]]  # audio, {"<stage>"/"total": CPU s, "wall": s}


def clocked(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def staged(synth: BarkSynthesizer, cap: int, *, transformers_fine: bool) -> Run:
    """The engine's four calls for one row, each timed (``generate_rows`` without its bookkeeping)."""
    model, prompt = synth.model, synth.history_prompt(SPEAKER)
    cfg = greedy_configs(model, cap)
    enc = encode_texts(synth.tokenizer, [TEXT])
    cpu: dict[str, float] = {}
    wall = 0.0
    with torch.inference_mode():
        semantic, cpu["semantic"], w = clocked(
            lambda: synth._semantic(enc, cfg.semantic, prompt, [cap], [CancelToken()])
        )
        wall += w
        (coarse, lengths), cpu["coarse"], w = clocked(
            lambda: synth._coarse(
                semantic, (cfg.semantic, cfg.coarse, cfg.codebook_size), prompt, [CancelToken()]
            )
        )
        wall += w
        frames = [int(n) for n in (lengths // cfg.coarse.n_coarse_codebooks).tolist()]
        configs = {
            "semantic_config": cfg.semantic,
            "coarse_config": cfg.coarse,
            "fine_config": cfg.fine,
            "codebook_size": cfg.codebook_size,
            "history_prompt": prompt,
            "temperature": None,
        }
        if transformers_fine:
            configs["semantic_generation_config"] = configs.pop("semantic_config")
            configs["coarse_generation_config"] = configs.pop("coarse_config")
            configs["fine_generation_config"] = configs.pop("fine_config")
            fine, cpu["fine"], w = clocked(lambda: model.fine_acoustics.generate(coarse, **configs))
        else:
            fine, cpu["fine"], w = clocked(
                lambda: fine_generate_rows(synth.fine_decoder, coarse, frames, **configs)
            )
        wall += w
        audio, cpu["codec"], w = clocked(lambda: model.codec_decode(fine.long(), torch.tensor(frames)))
        wall += w
    cpu["total"], cpu["wall"] = sum(cpu[s] for s in STAGES), wall
    return audio[0].float().numpy().reshape(-1).astype(np.float32), cpu


def whole(synth: BarkSynthesizer, cap: int) -> Run:
    prompt = synth.history_prompt(SPEAKER)
    c0 = time.process_time()
    audio, wall = plain_generate(synth.model, synth.tokenizer, TEXT, cap, device="cpu", prompt=prompt)
    return audio, {"total": time.process_time() - c0, "wall": wall}


def prompt_pass(synth: BarkSynthesizer, size: str, positions: int, rounds: int) -> list[list[object]]:
    """One coarse prompt pass of ``positions``, without and with the kept scores buffer."""
    model = synth.model.coarse_acoustics
    cache = StaticCache.allocate(model, 1, int(model.config.block_size))
    ids = torch.randint(10_000, 12_048, (1, positions), generator=torch.Generator().manual_seed(0))
    cpu: dict[str, list[float]] = {"fresh tensors": [], "kept buffer": []}
    logits: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        embeds = model.input_embeds_layer(ids)
        where = torch.arange(positions)[None]
        for r in range(rounds + 1):  # the first round warms both up and is not counted
            for name, scores in (("fresh tensors", None), ("kept buffer", ScoresBuffer()))[
                :: 1 - 2 * (r % 2)
            ]:
                logits[name], c, _ = clocked(
                    lambda s=scores: forward(  # type: ignore[misc]
                        model, embeds, positions=where, cache=cache, start=0, mask=None, scores=s
                    )
                )
                cpu[name] += [c] if r else []
    same = torch.equal(logits["fresh tensors"], logits["kept buffer"])
    base = float(np.median(cpu["fresh tensors"]))
    return [
        [
            size,
            f"coarse prompt pass, {positions} positions: {name}",
            f"{float(np.median(c)):.3f}",
            "",
            f"{float(np.median(c)) / base:.3f}",
            "",
            f"logits equal {'PASS' if same else 'FAIL'}" if name == "kept buffer" else "",
        ]
        for name, c in cpu.items()
    ]


def bench_size(size: str, path: Path, args: argparse.Namespace) -> tuple[list[list[object]], dict[str, Any]]:
    synth = BarkSynthesizer.load(BarkSettings(model=str(path), device="cpu", temperature=0.0))
    synth.warm_up()
    cap = args.semantic_tokens or (24 if size == "bark-small" else 150)
    variants: dict[str, Callable[[], Run]] = {
        "generate()": lambda: whole(synth, cap),
        "before": lambda: staged(synth, cap, transformers_fine=True),
        "engine": lambda: staged(synth, cap, transformers_fine=False),
    }
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    audio: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        for name in order:
            audio[name], times = variants[name]()
            runs[name].append(times)
            sys.stderr.write(
                f"  [{size}] round {r + 1} {name}: cpu {times['total']:.2f} s, wall {times['wall']:.2f} s\n"
            )
    rows_, _ = synth.generate_rows([TEXT], speaker=SPEAKER, cancels=[CancelToken()], semantic_caps=[cap])
    ref = audio["generate()"]
    same = {n: bool(np.array_equal(a, ref)) for n, a in audio.items()}
    product_same = isinstance(rows_[0], np.ndarray) and bool(np.array_equal(rows_[0], ref))
    med = {n: {k: float(np.median([t[k] for t in ts])) for k in ts[0]} for n, ts in runs.items()}
    base = med["generate()"]
    seconds = len(ref) / synth.sample_rate
    out: list[list[object]] = []
    for name in VARIANTS:
        m = med[name]
        for stage in (s for s in STAGES if s in m):
            before = med["before"].get(stage, m[stage])
            out.append([size, f"{name}: {stage}", f"{m[stage]:.3f}", "", f"{m[stage] / before:.3f}", "", ""])
        check = "audio == generate()" + (" and == generate_rows()" if name == "engine" else "")
        ok = same[name] and (product_same if name == "engine" else True)
        out.append(
            [
                size,
                f"{name}: total",
                f"{m['total']:.3f}",
                f"{m['wall']:.3f}",
                f"{m['total'] / base['total']:.3f}",
                f"{m['wall'] / base['wall']:.3f}",
                f"{check} {'PASS' if ok else 'FAIL'}",
            ]
        )
    if args.prompt_pass:
        out += prompt_pass(synth, size, args.prompt_pass, args.rounds)
    data = {"cap": cap, "audio_s": seconds, "threads": torch.get_num_threads(), "runs": runs, "medians": med}
    return out, data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", default="dev,bark-small")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the three variants (median)")
    ap.add_argument("--semantic-tokens", type=int, help="semantic cap (default: 24 bark-small, 150 dev)")
    ap.add_argument("--models", type=Path, default=REPO / ".models", help="where checkpoints are built/kept")
    ap.add_argument("--prompt-pass", type=int, default=887, help="positions of the prompt pass (0: none)")
    ap.add_argument("--json", type=Path, dest="json_out")
    ap.add_argument("--smoke", action="store_true", help="dev checkpoint, one round, 30 tokens (tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes, args.rounds, args.semantic_tokens, args.prompt_pass = "dev", 1, 30, 300
    logs.configure(os.environ.get("LOG_LEVEL", "WARNING"))
    started = time.time()
    rows: list[list[object]] = []
    data: dict[str, Any] = {}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        path, _ = ensure_checkpoint(args.models / size, size)
        size_rows, data[size] = bench_size(size, path, args)
        rows += size_rows
    print("bark end to end: the engine's path against BarkModel.generate() (greedy, random weights, CPU)")
    print(
        f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"transformers {__import__('transformers').__version__}; {args.rounds} rounds; "
        f"{time.time() - started:.0f} s"
    )
    print(f"text: {TEXT!r}; speaker v2/en_speaker_0; medians; 'x before' of a stage: against 'before'")
    headers = ["checkpoint", "variant: stage", "CPU s", "wall s", "CPU x ref", "wall x ref", "check"]
    print(table(headers, rows, align="llrrrrl"))
    print(
        "x ref: a stage against 'before', a total against generate(), the kept buffer against fresh "
        "tensors (below 1: faster)"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps({"machine": machine(), "data": data}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
