"""The fine stage (synth_worker.bark.fine) against transformers' BarkFineModel.generate, and the whole
engine path against BarkModel.generate().

On the dev checkpoint, on CPU (the same kernels): greedy tokens are generate()'s bit for bit, and
with a fixed seed sampled tokens too, with the random generator left in the same state (the same
number of draws), for a sentence that fits one 1024-frame window (padded) and one that needs
three, with and without a speaker's history. Coarse ids are random: the fine stage reads them as
given, whatever made them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from synth_worker.bark.fine import MIN_ROWS, FineDecoder, fine_generate_rows
from synth_worker.bark.settings import BarkSettings
from synth_worker.bark.synthesizer import BarkSynthesizer, encode_texts


@pytest.fixture(scope="module")
def synth(dev_model_dir: Path) -> BarkSynthesizer:
    return BarkSynthesizer.load(BarkSettings(model=str(dev_model_dir), temperature=0.0))


def _configs(synth: BarkSynthesizer) -> tuple[Any, Any, Any]:
    from transformers.models.bark import generation_configuration_bark

    configs: Any = generation_configuration_bark
    gen = synth.model.generation_config
    return (
        configs.BarkSemanticGenerationConfig(**gen.semantic_config),
        configs.BarkCoarseGenerationConfig(**gen.coarse_acoustics_config),
        configs.BarkFineGenerationConfig(**gen.fine_acoustics_config),
    )


def _coarse(frames: int, rows: int = 1, seed: int = 0) -> torch.Tensor:
    """Offset coarse ids as BarkCoarseModel.generate emits them: codebooks 0 and 1 alternating."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1024, (rows, 2 * frames), generator=gen)
    return 10_000 + codes + (torch.arange(2 * frames) % 2) * 1024


def _both(
    synth: BarkSynthesizer, coarse: torch.Tensor, speaker: int | None, temperature: float | None
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """transformers' fine tokens and ours from the same seed, and one draw after each."""
    semantic_cfg, coarse_cfg, fine_cfg = _configs(synth)
    prompt = synth.history_prompt(speaker)
    frames = coarse.shape[1] // 2
    with torch.inference_mode():
        torch.manual_seed(3)
        ref = synth.model.fine_acoustics.generate(
            coarse, history_prompt=prompt, semantic_generation_config=semantic_cfg,
            coarse_generation_config=coarse_cfg, fine_generation_config=fine_cfg, codebook_size=1024,
            temperature=temperature,
        )  # fmt: skip
        after_ref = float(torch.rand(1))
        torch.manual_seed(3)
        ours = fine_generate_rows(
            synth.fine_decoder, coarse, [frames] * coarse.shape[0], semantic_config=semantic_cfg,
            coarse_config=coarse_cfg, fine_config=fine_cfg, codebook_size=1024, history_prompt=prompt,
            temperature=temperature,
        )  # fmt: skip
        after_ours = float(torch.rand(1))
    return ref, ours, after_ref, after_ours


@pytest.mark.parametrize("frames", [36, 1600], ids=["one-window", "three-windows"])
@pytest.mark.parametrize("speaker", [None, 3])
@pytest.mark.parametrize("temperature", [None, 0.7], ids=["greedy", "sampled"])
def test_fine_tokens_equal_transformers_bit_for_bit(
    synth: BarkSynthesizer, frames: int, speaker: int | None, temperature: float | None
) -> None:
    ref, ours, after_ref, after_ours = _both(synth, _coarse(frames), speaker, temperature)
    assert ours.shape == (1, 8, frames)
    assert torch.equal(ours.long(), ref.long())
    assert torch.equal(
        ours[0, :2].long(), _coarse(frames).view(-1, 2).T - 10_000 - torch.tensor([[0], [1024]])
    )
    assert after_ours == after_ref  # the same number of draws: later sampling is unchanged too


def test_a_batch_of_equal_rows_is_transformers_batch(synth: BarkSynthesizer) -> None:
    """Rows of one length: transformers' own batched fine stage, bit for bit, greedy and sampled."""
    for temperature in (None, 0.7):
        ref, ours, after_ref, after_ours = _both(synth, _coarse(50, rows=3), 2, temperature)
        assert torch.equal(ours.long(), ref.long()) and after_ours == after_ref


def test_rows_of_a_batch_are_what_they_are_alone(synth: BarkSynthesizer) -> None:
    semantic_cfg, coarse_cfg, fine_cfg = _configs(synth)
    long, short = _coarse(120, seed=1), _coarse(30, seed=2)
    batch = torch.cat([long, torch.cat([short, torch.full((1, 180), 10_000)], dim=1)])
    prompt = synth.history_prompt(1)

    def run(coarse: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return fine_generate_rows(
                synth.fine_decoder, coarse, lengths, semantic_config=semantic_cfg, coarse_config=coarse_cfg,
                fine_config=fine_cfg, codebook_size=1024, history_prompt=prompt,
            )  # fmt: skip

    together = run(batch, [120, 30])
    assert torch.equal(together[0], run(long, [120])[0])
    assert torch.equal(together[1, :, :30], run(short, [30])[0])
    assert not together[1, :, 30:].any()  # past its length a row holds 0


@pytest.mark.parametrize("rows", [(0, 1024), (45, 1024), (45, 81), (1000, 1024), (7, 8), (1023, 1024)])
def test_logits_for_a_row_range_are_the_full_forwards_rows(
    synth: BarkSynthesizer, rows: tuple[int, int]
) -> None:
    """The last layer and the head on part of the positions (a one-row range is widened)."""
    model = synth.model.fine_acoustics
    x = torch.randint(0, 1025, (2, 1024, 8), generator=torch.Generator().manual_seed(4), dtype=torch.int32)
    decoder = FineDecoder(model)
    with torch.inference_mode():
        for codebook in (2, 7):
            full = model(codebook, x).logits
            assert torch.equal(decoder.logits(codebook, x, rows), full[:, rows[0] : rows[1]])


def test_row_subsets_of_a_matrix_product_keep_their_bits() -> None:
    """What trimming the last layer rests on, at bark-small's sizes: a row of a product does not
    depend on the other rows computed with it (MIN_ROWS rows or more; one row is a matrix-vector
    product, which rounds differently)."""
    gen = torch.Generator().manual_seed(5)
    weight, bias = torch.randn(2304, 768, generator=gen) * 0.02, torch.randn(2304, generator=gen)
    x = torch.randn(1, 1024, 768, generator=gen)
    keys = torch.randn(1, 12, 1024, 64, generator=gen)
    full, scores = (
        torch.nn.functional.linear(x, weight, bias),
        torch.matmul(x.view(1, 1024, 12, 64).transpose(1, 2), keys.transpose(-1, -2)),
    )
    for lo, hi in [(0, MIN_ROWS), (512, 1024), (45, 45 + MIN_ROWS), (1008, 1024), (300, 333)]:
        assert torch.equal(torch.nn.functional.linear(x[:, lo:hi], weight, bias), full[:, lo:hi])
        q = x[:, lo:hi].reshape(1, hi - lo, 12, 64).transpose(1, 2)
        assert torch.equal(torch.matmul(q, keys.transpose(-1, -2)), scores[:, :, lo:hi])


def test_the_scores_buffer_is_kept_and_grows_for_a_larger_batch(synth: BarkSynthesizer) -> None:
    decoder = FineDecoder(synth.model.fine_acoustics)
    x = torch.full((1, 64, 8), 1024, dtype=torch.int32)
    like = torch.zeros(1)
    with torch.inference_mode():
        decoder.logits(2, x, (0, 64))
        first = decoder.scores.view((1, 2, 64, 64), like).data_ptr()
        decoder.logits(3, x, (0, 64))
        assert decoder.scores.view((1, 2, 64, 64), like).data_ptr() == first
        decoder.logits(2, x.expand(3, -1, -1), (0, 64))  # grows it
        grown = decoder.scores.view((3, 2, 64, 64), like).data_ptr()
        decoder.logits(2, x.expand(2, -1, -1), (0, 64))
        assert decoder.scores.view((2, 2, 64, 64), like).data_ptr() == grown  # smaller: reused


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_the_engine_speaks_what_bark_model_generate_speaks(dev_model_dir: Path, sample: bool) -> None:
    """End to end, one sentence with a speaker: the engine's audio (static decoder, this fine stage,
    the codec) equals ``BarkModel.generate()``'s, sample for sample; sampled with the same seed."""
    settings = BarkSettings(model=str(dev_model_dir), temperature=0.7 if sample else 0.0, seed=13)
    synth = BarkSynthesizer.load(settings)
    (ours,), _ = synth.generate(["Words for the whole path."], semantic_caps=[40], speaker=2)
    enc = encode_texts(synth.tokenizer, ["Words for the whole path."])
    kwargs: dict[str, Any] = (
        {"do_sample": True, "temperature": 0.7} if sample else {"do_sample": False, "fine_temperature": None}
    )
    with torch.inference_mode():
        torch.manual_seed(13)
        theirs = synth.model.generate(
            enc["input_ids"], attention_mask=enc["attention_mask"], history_prompt=synth.history_prompt(2),
            semantic_max_new_tokens=40, **kwargs,
        )  # fmt: skip
    theirs_np = theirs[0].float().numpy().reshape(-1).astype(np.float32)
    assert len(ours) == int(40 * 75 / 49.9) * 320
    assert np.array_equal(ours, theirs_np)
