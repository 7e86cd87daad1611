"""Bark's semantic and coarse stages on ``bark_decode.Decoder``, as ``BarkSemanticModel.generate``
and ``BarkCoarseModel.generate`` (transformers 5.24) compute them.

What is reproduced, from transformers' ``modeling_bark.py`` and ``GenerationMixin``:

- **semantic**: text ids + ``text_encoding_offset``, padding -> ``text_pad_token``; the speaker's
  semantic history (last 256, padded with ``semantic_pad_token``) embedded and *added* to the text
  embeddings, then the ``semantic_infer_token``; 257 prompt positions. Processors in generate's
  order: suppress every id outside the semantic vocabulary but the end token, the end-token
  prioritizer (``min_eos_p``), temperature, top-k (generate's default 50 when the config leaves it
  unset), ``log_softmax`` (``renormalize_logits``). A row ends at the end token, at its own cap or
  when cancelled, and is padded with the end token from then on.
- **coarse**: semantic pads -> ``coarse_semantic_pad_token``; output lengths, speaker histories
  (``preprocess_histories``: offsets, trimming, the two-token alignment cut) and the sliding windows
  (``sliding_window_len`` tokens each; every window re-reads up to 256 semantic tokens around its
  place and the last ``max_coarse_history`` coarse tokens, so each is a fresh prompt); processors:
  the alternating codebooks, temperature, top-k, ``log_softmax``.

Every logits processor is written with the same tensor ops as transformers' own, so greedy tokens
match ``generate()`` bit for bit on the same kernels, and a seeded sampler draws the same numbers.
A generation config that asks for a processor not reproduced here (top-p, repetition penalty, ...)
is refused with ``UnsupportedConfig`` rather than silently decoded differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from synth_worker.bark.decode import Decoder, Processor, Stopper
from synth_worker.engine import CancelToken

if TYPE_CHECKING:
    import torch

DEFAULT_TOP_K = 50  # GenerationConfig._get_default_generation_params()["top_k"], applied when unset


class UnsupportedConfig(ValueError):
    """The checkpoint's generation config asks for something these stages do not reproduce."""


@dataclass(frozen=True, slots=True)
class Sampling:
    sample: bool
    temperature: float
    top_k: int | None

    @classmethod
    def of(cls, cfg: Any) -> Sampling:
        """The sampling ``generate()`` would do with ``cfg`` (a Bark semantic/coarse config)."""
        for name, neutral in (
            ("top_p", 1.0),
            ("min_p", None),
            ("typical_p", 1.0),
            ("repetition_penalty", 1.0),
        ):
            value = getattr(cfg, name, None)
            if value is not None and value != neutral:
                raise UnsupportedConfig(
                    f"generation config sets {name}={value}, which the static decoder lacks"
                )
        if getattr(cfg, "num_beams", None) not in (None, 1):
            raise UnsupportedConfig("beam search is not supported by the static decoder")
        top_k = DEFAULT_TOP_K if cfg.top_k is None else int(cfg.top_k)
        temperature = 1.0 if cfg.temperature is None else float(cfg.temperature)
        return cls(bool(cfg.do_sample), temperature, top_k if top_k > 0 else None)

    def warp(self, scores: torch.Tensor) -> torch.Tensor:
        """TemperatureLogitsWarper, TopKLogitsWarper (sampling only), then LogitNormalization."""
        if self.sample:
            if self.temperature != 1.0:
                scores = scores / self.temperature
            if self.top_k is not None:
                import torch

                k = min(self.top_k, scores.size(-1))
                scores = scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], -float("inf"))
        return scores.log_softmax(dim=-1)


def semantic_prompt(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, cfg: Any, history: Any
) -> torch.Tensor:
    """The 257 prompt embeddings of BarkSemanticModel.generate (text + history, infer token)."""
    import torch

    batch = input_ids.shape[0]
    n = cfg.max_input_semantic_length
    ids = input_ids + cfg.text_encoding_offset
    ids = ids.masked_fill((1 - attention_mask).bool(), cfg.text_pad_token)
    if history is not None:
        hist = history["semantic_prompt"][-n:]
        hist = torch.nn.functional.pad(
            hist, (0, n - len(hist)), value=cfg.semantic_pad_token, mode="constant"
        )
    else:
        hist = torch.full((n,), cfg.semantic_pad_token, device=ids.device, dtype=torch.int)
    hist = torch.repeat_interleave(hist[None], batch, dim=0)
    infer = torch.tensor([[cfg.semantic_infer_token]] * batch, dtype=torch.int).to(ids.device)
    embed = model.input_embeds_layer
    return torch.cat([embed(ids[:, :n]) + embed(hist[:, : n + 1]), embed(infer)], dim=1)


def semantic_generate(
    decoder: Decoder,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    cfg: Any,
    history: Any,
    caps: Sequence[int],
    cancels: Sequence[CancelToken],
) -> torch.Tensor:
    """Semantic tokens (batch, longest row), rows past their end padded with the end token."""
    import torch

    model = decoder.model
    device = input_ids.device
    sampling = Sampling.of(cfg)
    vocab = int(model.config.output_vocab_size)
    suppress = list(range(cfg.semantic_vocab_size, cfg.semantic_pad_token))
    suppress += list(range(cfg.semantic_pad_token + 1, vocab))
    suppressed = torch.isin(torch.arange(vocab, device=device), torch.tensor(suppress, device=device))
    eos = int(cfg.eos_token_id)
    min_eos_p = cfg.min_eos_p

    def process(scores: torch.Tensor, t: int) -> torch.Tensor:
        scores = torch.where(suppressed, -float("inf"), scores)
        if min_eos_p:  # BarkEosPrioritizerLogitsProcessor
            probs = torch.nn.functional.softmax(scores.float(), dim=-1)
            early = torch.ones_like(scores) * -float("inf")
            early[:, [eos]] = scores[:, [eos]]
            scores = torch.where(torch.any(probs[:, [eos]] > min_eos_p, dim=1, keepdim=True), early, scores)
        return sampling.warp(scores)

    cap = torch.tensor(list(caps), device=device)

    def stop(tokens: torch.Tensor, t: int) -> torch.Tensor:
        cancelled = torch.tensor([c.cancelled for c in cancels], device=device)
        return (tokens == eos) | (t + 1 >= cap) | cancelled

    prompt = semantic_prompt(model, input_ids, attention_mask, cfg, history)
    return decoder.generate(
        prompt, max_new_tokens=max(caps), process=process, stop=stop, sample=sampling.sample, pad_token=eos
    )


def _alternating(cfg: Any, codebook_size: int, vocab: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """AlternatingCodebooksLogitsProcessor as two masks: even steps keep the first codebook's ids,
    odd steps the second's."""
    import torch

    ids = torch.arange(vocab, device=device)
    first = (ids < cfg.semantic_vocab_size) | (ids >= cfg.semantic_vocab_size + codebook_size)
    second = ids < cfg.semantic_vocab_size + codebook_size
    return first, second


def coarse_generate(
    decoder: Decoder,
    semantic: torch.Tensor,
    *,
    semantic_cfg: Any,
    coarse_cfg: Any,
    codebook_size: int,
    history: Any,
    cancels: Sequence[CancelToken],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse tokens (batch, 2 * frames, offset ids as BarkCoarseModel emits them) and each row's
    length in tokens. Ends early, shorter, once every row is cancelled."""
    import torch
    import torch.nn.functional as F

    model = decoder.model
    pad = coarse_cfg.coarse_semantic_pad_token
    semantic = semantic.masked_fill(semantic == semantic_cfg.semantic_pad_token, pad)
    ratio = coarse_cfg.coarse_rate_hz / semantic_cfg.semantic_rate_hz * coarse_cfg.n_coarse_codebooks
    max_semantic_history = int(np.floor(coarse_cfg.max_coarse_history / ratio))
    lengths = torch.floor((semantic != pad).sum(1) * ratio / coarse_cfg.n_coarse_codebooks)
    lengths = torch.round(lengths * coarse_cfg.n_coarse_codebooks).int()
    max_generated = int(torch.max(lengths).item())
    batch = semantic.shape[0]
    semantic_history, x_coarse = model.preprocess_histories(
        history_prompt=history,
        max_coarse_history=coarse_cfg.max_coarse_history,
        semantic_to_coarse_ratio=ratio,
        batch_size=batch,
        semantic_generation_config=semantic_cfg,
        codebook_size=codebook_size,
    )
    base = semantic_history.shape[1]
    semantic = torch.hstack([semantic_history, semantic])
    n_history = x_coarse.shape[1]
    process, stop, sampling = _coarse_processing(coarse_cfg, semantic_cfg, codebook_size, model, cancels)
    infer = torch.tensor([[coarse_cfg.coarse_infer_token]] * batch, device=semantic.device)
    total = 0
    for _ in range(int(np.ceil(max_generated / coarse_cfg.sliding_window_len))):
        index = base + round(total / ratio)
        window = semantic[:, np.max([0, index - max_semantic_history]) :][
            :, : coarse_cfg.max_coarse_input_length
        ]
        window = F.pad(window, (0, coarse_cfg.max_coarse_input_length - window.shape[-1]), "constant", pad)
        prompt = torch.hstack([window, infer, x_coarse[:, -coarse_cfg.max_coarse_history :]])
        new = decoder.generate(
            prompt,
            max_new_tokens=min(coarse_cfg.sliding_window_len, max_generated - total),
            process=process,
            stop=stop,
            sample=sampling.sample,
        )
        x_coarse = torch.hstack([x_coarse, new])
        total = x_coarse.shape[1] - n_history
        if all(c.cancelled for c in cancels):
            break
    return x_coarse[:, n_history:], lengths


def _coarse_processing(
    coarse_cfg: Any, semantic_cfg: Any, codebook_size: int, model: Any, cancels: Sequence[CancelToken]
) -> tuple[Processor, Stopper, Sampling]:
    sampling = Sampling.of(coarse_cfg)
    vocab = int(model.config.output_vocab_size)
    first, second = _alternating(semantic_cfg, codebook_size, vocab, model.lm_head.weight.device)

    def process(scores: torch.Tensor, t: int) -> torch.Tensor:
        return sampling.warp(scores.masked_fill(second if t % 2 else first, -float("inf")))

    def stop(tokens: torch.Tensor, t: int) -> bool:
        return all(c.cancelled for c in cancels)

    return process, stop, sampling
