"""Our own decoding loop for Bark's two autoregressive transformers (semantic, coarse).

transformers' ``generate()`` spends most of a Bark step on bookkeeping: it grows a ``DynamicCache``
by concatenation (every layer's keys and values copied at every token), computes the language-model
head over the whole prompt, and runs its logits processors and stopping criteria as separate Python
objects. ``Decoder`` keeps the weights of the ``BarkCausalModel`` that ``BarkModel.from_pretrained``
loaded and replaces only that loop:

- **A static KV cache** (``StaticCache``): keys and values for every layer preallocated once per
  batch shape at Bark's full context (1024 positions); a step writes one position in place.
- **The same arithmetic as transformers' eager attention**, op for op (``att_proj`` split,
  ``q @ k^T / sqrt(d)``, the causal ``masked_fill`` with the model's own ``bias`` buffer, softmax,
  ``@ v``), so on the same kernels greedy tokens are those of ``generate()`` bit for bit
  (tests/synth_worker/test_bark_decode.py checks it); the head runs on the last position only.
- **Rows of different lengths** in one batch: prompts are left-padded; an additive mask hides each
  row's padding and its positions count from its own first token, so a row computes what it would
  alone (up to floating-point summation order).
- **Cancellation between steps**: ``stop`` is called after every token and can end rows or the call.
- **The per-token step on CUDA** without Python overhead, selectable (``StepMode``):
  ``cuda-graph`` captures one step (embedding, every layer over the full static cache with a mask,
  head) in a CUDA graph per batch size and replays it; ``compile`` runs the same step through
  ``torch.compile(mode="reduce-overhead")`` (which uses CUDA graphs underneath). On CPU the step runs
  eagerly and attends to the filled part of the cache only (a view, no copy); ``auto`` picks
  ``cuda-graph`` on CUDA and ``eager`` elsewhere, and a CUDA mode asked for on CPU runs eagerly.

Sampling follows ``GenerationMixin._sample``: float32 logits, the stage's processors, then
``argmax`` (greedy) or one ``torch.multinomial`` over the softmax for the whole batch per step, in
the same order, so a fixed seed draws the same random numbers as ``generate()`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from broker import logs
from synth_worker.bark.static_cache import FullStep, ScoresBuffer, StaticCache, forward
from synth_worker.bark.step_capture import compiled, graphed

if TYPE_CHECKING:
    import torch

log = logs.get("sesame.bark.decode")

StepMode = Literal["auto", "eager", "cuda-graph", "compile"]
STEP_MODES: tuple[StepMode, ...] = ("auto", "eager", "cuda-graph", "compile")

# scores (batch, vocab) float32, step index -> processed scores
Processor = Callable[["torch.Tensor", int], "torch.Tensor"]
# tokens just chosen (batch,), step index -> rows now done (batch,) bool; True ends the call; False:
# no row ends (no device sync)
Stopper = Callable[["torch.Tensor", int], "torch.Tensor | bool"]


def resolve_step_mode(mode: StepMode, device: str) -> StepMode:
    """``auto`` -> ``cuda-graph`` on CUDA, ``eager`` elsewhere; CUDA modes never run on a CPU."""
    if not device.startswith("cuda"):
        if mode in ("cuda-graph", "compile"):
            log.info("bark_step_mode_eager_on_cpu", requested=mode, device=device)
        return "eager"
    return "cuda-graph" if mode == "auto" else mode


class Decoder:
    """The decoding loop of one of Bark's causal transformers; caches (and CUDA graphs) are kept
    per batch size and reused. Not thread-safe: the engine's inference thread owns it."""

    def __init__(self, model: Any, mode: StepMode = "auto") -> None:
        self.model = model
        self.device = str(model.lm_head.weight.device)
        self.mode = resolve_step_mode(mode, self.device)
        self.max_len = int(model.config.block_size)
        self._full: StaticCache | None = None
        self._caches: dict[int, StaticCache] = {}
        self._steps: dict[int, tuple[FullStep, Callable[[], torch.Tensor]]] = {}
        self._scores = ScoresBuffer()  # the prompt pass's attention scores

    def cache(self, batch: int) -> StaticCache:
        """The first ``batch`` rows of one buffer sized for the largest batch seen so far, so the
        memory is that of the largest batch, not of every size (graphs of smaller batches keep
        their views; a larger batch reallocates and drops them)."""
        if self._full is None or self._full.batch < batch:
            self._caches.clear()
            self._steps.clear()
            self._full = None  # free the old buffer before allocating the new one
            self._full = StaticCache.allocate(self.model, batch, self.max_len)
        if batch not in self._caches:
            full = self._full
            self._caches[batch] = StaticCache(full.keys[:, :batch], full.values[:, :batch])
        return self._caches[batch]

    def generate(
        self,
        prompt: torch.Tensor,
        *,
        max_new_tokens: int,
        process: Processor,
        stop: Stopper,
        sample: bool,
        pads: list[int] | None = None,
        pad_token: int | None = None,
    ) -> torch.Tensor:
        """Up to ``max_new_tokens`` tokens (batch, n) after ``prompt``: token ids (batch, seq) or
        input embeddings (batch, seq, hidden), left-padded by ``pads[row]`` positions. A row that
        ``stop`` ends gets ``pad_token`` from then on (as ``generate()`` does)."""
        import torch

        with torch.inference_mode():
            return self._generate(
                prompt, max_new_tokens, process, stop, sample=sample, pads=pads, pad_token=pad_token
            )

    def _generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        process: Processor,
        stop: Stopper,
        *,
        sample: bool,
        pads: list[int] | None,
        pad_token: int | None,
    ) -> torch.Tensor:
        import torch

        embeds = prompt if prompt.dim() == 3 else self.model.input_embeds_layer(prompt)
        batch, seq = int(embeds.shape[0]), int(embeds.shape[1])
        if seq + max_new_tokens > self.max_len + 1:
            raise ValueError(f"prompt {seq} + {max_new_tokens} new tokens exceed {self.max_len} positions")
        pad = torch.tensor(pads or [0] * batch, dtype=torch.long, device=embeds.device)
        padded = bool(pads) and max(pads or [0]) > 0
        cache = self.cache(batch)
        positions = (torch.arange(seq, device=embeds.device)[None] - pad[:, None]).clamp(min=0)
        mask = _pad_mask(pad, seq, cache.keys.dtype) if padded else None
        step = self._stepper(cache, pad, seq, padded)  # first: a CUDA graph capture writes the cache
        logits = forward(
            self.model, embeds, positions=positions, cache=cache, start=0, mask=mask, scores=self._scores
        )
        return _sample_loop(
            logits,
            step,
            max_new_tokens=max_new_tokens,
            process=process,
            stop=stop,
            sample=sample,
            pad_token=pad_token,
        )

    def _stepper(
        self, cache: StaticCache, pad: torch.Tensor, seq: int, padded: bool
    ) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """The per-token step for this call: token ids (batch,), step index -> logits (batch, vocab)."""
        if self.mode == "eager":

            def eager(tokens: torch.Tensor, t: int) -> torch.Tensor:
                start = seq + t
                positions = (start - pad)[:, None]
                mask = _pad_mask(pad, start + 1, cache.keys.dtype) if padded else None
                embeds = self.model.input_embeds_layer(tokens[:, None])
                return forward(self.model, embeds, positions=positions, cache=cache, start=start, mask=mask)

            return eager
        full, run = self._full_step(cache)
        full.pads.copy_(pad)

        def replay(tokens: torch.Tensor, t: int) -> torch.Tensor:
            full.ids.copy_(tokens[:, None])
            full.pos.fill_(seq + t)
            return run()

        return replay

    def _full_step(self, cache: StaticCache) -> tuple[FullStep, Callable[[], torch.Tensor]]:
        batch = cache.batch
        if batch not in self._steps:
            full = FullStep(self.model, cache)
            run = graphed(full) if self.mode == "cuda-graph" else compiled(full)
            self._steps[batch] = (full, run)
        return self._steps[batch]


def _pad_mask(pad: torch.Tensor, keys: int, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 1, 1, keys) additive: the minimum over each row's left padding, 0 elsewhere."""
    import torch

    hidden = torch.arange(keys, device=pad.device)[None] < pad[:, None]
    return torch.where(hidden, torch.finfo(dtype).min, 0.0).to(dtype)[:, None, None, :]


def _sample_loop(
    logits: torch.Tensor,
    step: Callable[[torch.Tensor, int], torch.Tensor],
    *,
    max_new_tokens: int,
    process: Processor,
    stop: Stopper,
    sample: bool,
    pad_token: int | None,
) -> torch.Tensor:
    """GenerationMixin._sample's loop: process, pick, pad finished rows, stop, step."""
    import torch

    out: list[torch.Tensor] = []
    unfinished = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
    for t in range(max_new_tokens):
        scores = process(logits, t)
        if sample:
            probs = torch.nn.functional.softmax(scores, dim=-1)
            tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            tokens = torch.argmax(scores, dim=-1)
        if pad_token is not None:
            tokens = torch.where(unfinished, tokens, pad_token)
        out.append(tokens)
        done = stop(tokens, t)
        if done is True:
            break
        if not isinstance(done, bool):
            unfinished = unfinished & ~done
            if not bool(unfinished.any()):
                break
        if t + 1 < max_new_tokens:
            logits = step(tokens, t)
    if not out:
        return torch.zeros((logits.shape[0], 0), dtype=torch.long, device=logits.device)
    return torch.stack(out, dim=1)
