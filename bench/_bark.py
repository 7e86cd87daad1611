"""Bark pipeline pieces for bench/bark_worker.py: the four stages run one by one with every stage's
tokens kept (greedy), and teacher-forced checks of each stage.

``run_stages`` mirrors ``synth_worker.bark.synthesizer.BarkSynthesizer.generate_rows`` (same tokenizer call,
same generation configs, per-row semantic caps) but returns the tokens as well as the audio, and can
run the fine stage through ``synth_worker.bark.fine.fine_generate_rows``. The benchmark checks that
it gives the synthesizer's audio before using it.

Teacher forcing: given a reference run's tokens, each stage's model is run once over the reference
input plus the reference tokens, and its argmax at every generated position (within the tokens that
stage may emit) is compared with the reference token. A model in reduced precision is judged this
way, stage by stage, without one early flip changing everything after it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.models.bark import generation_configuration_bark as gcb

from synth_worker.bark.fine import FineDecoder, fine_generate_rows
from synth_worker.bark.synthesizer import encode_texts as encode
from synth_worker.devmodel import SIZES, build_dev_model, built_by_this_builder


def ensure_checkpoint(path: Path, size: str) -> tuple[Path, float]:
    """A random-weight checkpoint of ``size`` (``synth_worker.devmodel.SIZES``) at ``path``, built
    when missing or written by an older builder; returns it and the seconds spent building (0 when
    it was there)."""
    if (path / "model.safetensors").is_file() and built_by_this_builder(path):
        return path, 0.0
    spec = SIZES[size]
    start = time.perf_counter()
    build_dev_model(
        path,
        hidden=int(spec["hidden"]),
        layers=int(spec["layers"]),
        heads=int(spec["heads"]),
        codec="tiny" if spec["codec"] == "tiny" else "default",
    )
    return path, time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class Configs:
    semantic: Any
    coarse: Any
    fine: Any
    codebook_size: int


def greedy_configs(model: Any, max_new_tokens: int) -> Configs:
    gen = model.generation_config
    semantic = gcb.BarkSemanticGenerationConfig(**gen.semantic_config)
    coarse = gcb.BarkCoarseGenerationConfig(**gen.coarse_acoustics_config)
    fine = gcb.BarkFineGenerationConfig(**gen.fine_acoustics_config)
    for cfg in (semantic, coarse):
        cfg.do_sample = False
        cfg.temperature = 1.0
    fine.temperature = None
    semantic.max_new_tokens = max_new_tokens
    return Configs(semantic, coarse, fine, int(gen.codebook_size))


class _Caps(StoppingCriteria):
    def __init__(self, prompt_len: int, caps: Sequence[int]) -> None:
        self.prompt_len, self.caps = prompt_len, list(caps)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        n = input_ids.shape[1] - self.prompt_len
        return torch.tensor([n >= c for c in self.caps], dtype=torch.bool, device=input_ids.device)


@dataclass(slots=True)
class StageRun:
    semantic: torch.Tensor  # (batch, tokens): semantic ids, pad (10 000) past each row's end
    coarse: torch.Tensor  # (batch, 2 * frames) offset ids
    lengths: list[int]  # each row's coarse length in frames
    fine: torch.Tensor  # (batch, 8, frames)
    audio: list[np.ndarray]
    times: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.times.values())

    def semantic_row(self, i: int, pad: int) -> list[int]:
        row = self.semantic[i].tolist()
        return row[: row.index(pad)] if pad in row else row


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_stages(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    caps: Sequence[int],
    *,
    device: str,
    prompt: dict[str, torch.Tensor] | None,
    fine: FineDecoder | None = None,
) -> StageRun:
    """Greedy semantic -> coarse -> fine -> codec, timed stage by stage; the fine stage through
    ``fine`` (the engine's ``fine_generate_rows``) when given, else transformers' own."""
    cfg = greedy_configs(model, max(caps))
    enc = encode(tokenizer, texts)
    times: dict[str, float] = {}
    with torch.inference_mode():
        sync(device)
        t0 = time.perf_counter()
        semantic = model.semantic.generate(
            enc["input_ids"].to(device),
            history_prompt=prompt,
            semantic_generation_config=cfg.semantic,
            attention_mask=enc["attention_mask"].to(device),
            stopping_criteria=StoppingCriteriaList([_Caps(cfg.semantic.max_input_semantic_length + 1, caps)]),
        )
        sync(device)
        times["semantic"] = time.perf_counter() - t0
        kept = semantic.clone()  # coarse generation rewrites pads in place
        t0 = time.perf_counter()
        coarse, out_lengths = model.coarse_acoustics.generate(
            semantic,
            history_prompt=prompt,
            semantic_generation_config=cfg.semantic,
            coarse_generation_config=cfg.coarse,
            codebook_size=cfg.codebook_size,
            return_output_lengths=True,
        )
        sync(device)
        times["coarse"] = time.perf_counter() - t0
        lengths = (out_lengths // cfg.coarse.n_coarse_codebooks).tolist()
        t0 = time.perf_counter()
        if fine is not None:
            tokens = fine_generate_rows(
                fine,
                coarse,
                lengths,
                semantic_config=cfg.semantic,
                coarse_config=cfg.coarse,
                fine_config=cfg.fine,
                codebook_size=cfg.codebook_size,
                history_prompt=prompt,
                temperature=None,
            )
        else:
            tokens = model.fine_acoustics.generate(
                coarse,
                history_prompt=prompt,
                semantic_generation_config=cfg.semantic,
                coarse_generation_config=cfg.coarse,
                fine_generation_config=cfg.fine,
                codebook_size=cfg.codebook_size,
            )
        sync(device)
        times["fine"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        audio = model.codec_decode(tokens.long(), torch.tensor(lengths, device=tokens.device))
        sync(device)
        times["codec"] = time.perf_counter() - t0
    waves = [a.float().cpu().numpy().reshape(-1).astype(np.float32) for a in audio]
    return StageRun(kept, coarse, [int(n) for n in lengths], tokens, waves, times)


def plain_generate(
    model: Any,
    tokenizer: Any,
    text: str,
    cap: int | None,
    *,
    device: str,
    prompt: dict[str, torch.Tensor] | None,
) -> tuple[np.ndarray, float]:
    """``BarkModel.generate()`` as documented, greedy; ``cap`` None leaves the semantic length to
    the model (up to its 768-token default)."""
    enc = encode(tokenizer, [text])
    kwargs: dict[str, Any] = {"do_sample": False, "fine_temperature": None}
    if cap is not None:
        kwargs["semantic_max_new_tokens"] = cap
    with torch.inference_mode():
        sync(device)
        t0 = time.perf_counter()
        audio = model.generate(
            enc["input_ids"].to(device),
            attention_mask=enc["attention_mask"].to(device),
            history_prompt=prompt,
            **kwargs,
        )
        sync(device)
        took = time.perf_counter() - t0
    return audio[0].float().cpu().numpy().reshape(-1).astype(np.float32), took


# --- teacher forcing --------------------------------------------------------------------------------


def tf_semantic(
    model: Any,
    tokenizer: Any,
    text: str,
    tokens: Sequence[int],
    *,
    prompt: dict[str, torch.Tensor] | None,
    device: str,
) -> float:
    """Share of the reference semantic tokens the model's argmax reproduces, given the reference
    prefix at every step."""
    if not tokens:
        return 1.0
    cfg = greedy_configs(model, len(tokens)).semantic
    sem = model.semantic
    enc = encode(tokenizer, [text])
    ids = enc["input_ids"].to(device) + cfg.text_encoding_offset
    ids = ids.masked_fill((1 - enc["attention_mask"].to(device)).bool(), cfg.text_pad_token)
    n_in = cfg.max_input_semantic_length
    if prompt is not None:
        hist = prompt["semantic_prompt"][-n_in:]
        hist = F.pad(hist, (0, n_in - len(hist)), value=cfg.semantic_pad_token)
    else:
        hist = torch.full((n_in,), cfg.semantic_pad_token, device=device, dtype=torch.int)
    ref = torch.tensor([tokens], device=device)
    with torch.inference_mode():
        emb = sem.input_embeds_layer
        prefix = torch.cat(
            [
                emb(ids[:, :n_in]) + emb(hist[None, : n_in + 1]),
                emb(torch.tensor([[cfg.semantic_infer_token]], device=device)),
            ],
            dim=1,
        )
        full = torch.cat([prefix, emb(ref[:, :-1])], dim=1)
        logits = sem(inputs_embeds=full, use_cache=False).logits[0, n_in:, : cfg.semantic_vocab_size + 1]
        pred = logits.float().argmax(-1)
    return float((pred == ref[0]).float().mean())


def tf_coarse(
    model: Any,
    semantic_tokens: Sequence[int],
    coarse: torch.Tensor,
    n_frames: int,
    *,
    prompt: dict[str, torch.Tensor] | None,
    device: str,
) -> float:
    """Share of the reference coarse tokens reproduced, window by window as BarkCoarseModel builds them."""
    cfg = greedy_configs(model, max(1, len(semantic_tokens)))
    sc, cc, cm = cfg.semantic, cfg.coarse, model.coarse_acoustics
    ratio = cc.coarse_rate_hz / sc.semantic_rate_hz * cc.n_coarse_codebooks
    max_sem_hist = int(np.floor(cc.max_coarse_history / ratio))
    sem = torch.tensor([list(semantic_tokens)], device=device)
    x_sem_hist, x_coarse = cm.preprocess_histories(
        history_prompt=prompt,
        max_coarse_history=cc.max_coarse_history,
        semantic_to_coarse_ratio=ratio,
        batch_size=1,
        semantic_generation_config=sc,
        codebook_size=cfg.codebook_size,
    )
    base = x_sem_hist.shape[1]
    sem = torch.hstack([x_sem_hist.to(sem.dtype), sem])
    ref = coarse[0, : n_frames * cc.n_coarse_codebooks].to(device)
    total, hits, done = len(ref), 0, 0
    with torch.inference_mode():
        while done < total:
            idx = base + round(done / ratio)
            window = sem[:, max(0, idx - max_sem_hist) :][:, : cc.max_coarse_input_length]
            window = F.pad(
                window,
                (0, cc.max_coarse_input_length - window.shape[-1]),
                "constant",
                cc.coarse_semantic_pad_token,
            )
            inp = torch.hstack(
                [
                    window,
                    torch.tensor([[cc.coarse_infer_token]], device=device),
                    x_coarse[:, -cc.max_coarse_history :].to(window.dtype),
                ]
            )
            n = min(cc.sliding_window_len, total - done)
            new = ref[done : done + n][None].to(inp.dtype)
            logits = (
                cm(torch.hstack([inp, new[:, :-1]]), use_cache=False).logits[0, inp.shape[1] - 1 :].float()
            )
            for k in range(n):
                # transformers' AlternatingCodebooksLogitsProcessor: the first codebook's ids, then
                # everything from the second codebook's first id up (it leaves the ids above open)
                lo = sc.semantic_vocab_size + (k % 2) * cfg.codebook_size
                hi = lo + cfg.codebook_size if k % 2 == 0 else logits.shape[-1]
                hits += int(int(logits[k, lo:hi].argmax()) + lo == int(new[0, k]))
            x_coarse = torch.hstack([x_coarse.to(new.dtype), new])
            done += n
    return hits / total if total else 1.0


def tf_fine(
    model: Any,
    coarse: torch.Tensor,
    fine: torch.Tensor,
    n_frames: int,
    *,
    prompt: dict[str, torch.Tensor] | None,
    device: str,
) -> float | None:
    """Share of the reference fine tokens (codebooks 2-7, real frames) reproduced, each codebook
    predicted from the reference codebooks before it. None when the row needs several windows."""
    cfg = greedy_configs(model, 1)
    sc, cc, fc, cb = cfg.semantic, cfg.coarse, cfg.fine, cfg.codebook_size
    frames = torch.remainder(
        coarse[0:1, : n_frames * 2].view(1, -1, 2).to(device) - sc.semantic_vocab_size, cb
    )
    x = F.pad(frames, (0, fc.n_fine_codebooks - cc.n_coarse_codebooks), "constant", cb)
    n_hist = 0
    if prompt is not None:
        hist = prompt["fine_prompt"].T[None][:, -fc.max_fine_history_length :, :]
        n_hist = hist.shape[1]
        x = torch.cat([hist.to(x.dtype), x], dim=1)
    if x.shape[1] > fc.max_fine_input_length:
        return None
    x = F.pad(x, (0, 0, 0, fc.max_fine_input_length - x.shape[1]), "constant", cb)
    ref = fine[0, :, :n_frames].to(device)
    hits = total = 0
    with torch.inference_mode():
        for codebook in range(cc.n_coarse_codebooks, fc.n_fine_codebooks):
            logits = model.fine_acoustics(codebook, x).logits[0, n_hist:, :cb].float()
            pred = logits.argmax(-1)
            hits += int((pred[:n_frames] == ref[codebook]).sum())
            total += n_frames
            x[0, n_hist:, codebook] = pred.to(x.dtype)  # as BarkFineModel.generate writes it (padding too)
            x[0, n_hist : n_hist + n_frames, codebook] = ref[codebook].to(x.dtype)  # teacher forcing
    return hits / total if total else 1.0


# --- comparisons --------------------------------------------------------------------------------------


def token_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of equal positions over the shorter of two token tensors (flattened per row)."""
    a, b = a.reshape(-1).cpu(), b.reshape(-1).cpu()
    n = min(len(a), len(b))
    return float((a[:n] == b[:n]).float().mean()) if n else 1.0


def snr_db(ref: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-noise ratio of ``other`` against ``ref`` (dB); inf when identical."""
    n = min(len(ref), len(other))
    if n == 0:
        return float("nan")
    noise = float(np.sum((ref[:n].astype(np.float64) - other[:n]) ** 2))
    signal = float(np.sum(ref[:n].astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)


# --- the static decoder (synth_worker.bark.decode) ---------------------------------------------------


@dataclass(slots=True)
class DecodeRun:
    """Semantic and coarse tokens from one decoder, with each stage's wall time."""

    semantic: torch.Tensor  # (batch, tokens), pad past each row's end
    coarse: torch.Tensor  # (batch, 2 * frames) offset ids
    lengths: list[int]  # coarse frames per row
    times: dict[str, float] = field(default_factory=dict)  # wall s by stage; "<stage> cpu": process CPU s
    step_s: dict[str, float] = field(default_factory=dict)  # median seconds per token, by stage


class StepClock:
    """A cancel token that notes when it is read. Both decoders read every row's token once per
    generated token (the static loop's ``stop``, generate()'s stopping criteria), so the median gap
    between reads is the time per token: forward, logits processing, pick, stop check, without the
    prompt pass (one gap per window, outvoted). On CUDA the semantic stage syncs every token (its
    end-token check); the coarse stage need not, so there the gaps approach the device's step time
    once the launch queue is full. ``clock``: wall time on CUDA; on a CPU the process's CPU time,
    which a machine shared with other work does not inflate."""

    def __init__(self, clock: Any = time.perf_counter) -> None:
        from synth_worker.engine import CancelToken

        self.token = CancelToken()
        self.clock = clock
        self.reads: list[float] = []

    @property
    def cancelled(self) -> bool:
        self.reads.append(self.clock())
        return self.token.cancelled

    def cancel(self) -> None:
        self.token.cancel()

    def median_gap(self, since: int = 0) -> float:
        gaps = np.diff(np.asarray(self.reads[since:]))
        return float(np.median(gaps)) if len(gaps) else float("nan")


def decode_stages(
    synth: Any, texts: Sequence[str], caps: Sequence[int], *, prompt: dict[str, torch.Tensor] | None
) -> DecodeRun:
    """Greedy semantic + coarse through ``synth``'s configured decoder (``BarkSynthesizer._semantic``
    and ``_coarse``: the engine's own calls), timed."""
    device = synth.device
    cfg = greedy_configs(synth.model, max(caps))
    enc = encode(synth.tokenizer, texts)
    clock = StepClock(time.perf_counter if device.startswith("cuda") else time.process_time)
    cancels = [clock] + [StepClock() for _ in texts[1:]]  # row 0's reads time the steps
    times: dict[str, float] = {}
    with torch.inference_mode():
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        semantic = synth._semantic(enc, cfg.semantic, prompt, caps, cancels)
        sync(device)
        times["semantic"], times["semantic cpu"] = time.perf_counter() - t0, time.process_time() - c0
        semantic_reads = len(clock.reads)
        kept = semantic.clone()
        t0, c0 = time.perf_counter(), time.process_time()
        coarse, lengths = synth._coarse(
            semantic, (cfg.semantic, cfg.coarse, cfg.codebook_size), prompt, cancels
        )
        sync(device)
        times["coarse"], times["coarse cpu"] = time.perf_counter() - t0, time.process_time() - c0
    frames = (lengths // cfg.coarse.n_coarse_codebooks).tolist()
    steps = {
        "semantic": StepClock.median_gap(_upto(clock, semantic_reads)),
        "coarse": clock.median_gap(semantic_reads),
    }
    return DecodeRun(kept, coarse, [int(n) for n in frames], times, steps)


def _upto(clock: StepClock, n: int) -> StepClock:
    head = StepClock()
    head.reads = clock.reads[:n]
    return head


def peak_memory_mb(device: str) -> float:
    """CUDA: the allocator's peak since the last reset; CPU: the process's peak RSS."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
