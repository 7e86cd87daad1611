"""The static decoder (synth_worker.bark.decode / bark_stages) against transformers' generate().

On the dev checkpoint, on CPU (the same kernels): greedy tokens are those of
``BarkSemanticModel.generate`` / ``BarkCoarseModel.generate`` bit for bit, and sampled tokens with a
fixed seed too, which is how the distribution is shown unchanged: the same processed scores feed
the same ``torch.multinomial`` call with the same generator state, so the draws are equal.
Caps on new tokens stay small so the file runs in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from broker.errors import EngineUnavailable
from synth_worker.bark.decode import Decoder, resolve_step_mode
from synth_worker.bark.engine import BarkEngine
from synth_worker.bark.settings import BarkSettings
from synth_worker.bark.stages import Sampling, UnsupportedConfig, coarse_generate, semantic_generate
from synth_worker.bark.synthesizer import BarkSynthesizer, encode_texts
from synth_worker.engine import CancelToken

TEXTS = ["A sentence of a few words, for the test.", "Hi."]


@pytest.fixture(scope="module")
def synth(dev_model_dir: Path) -> BarkSynthesizer:
    return BarkSynthesizer.load(BarkSettings(model=str(dev_model_dir), temperature=0.0))


def _configs(synth: BarkSynthesizer, sample: bool, max_new: int) -> tuple[Any, Any]:
    from transformers.models.bark import generation_configuration_bark

    configs: Any = generation_configuration_bark
    gen = synth.model.generation_config
    semantic = configs.BarkSemanticGenerationConfig(**gen.semantic_config)
    coarse = configs.BarkCoarseGenerationConfig(**gen.coarse_acoustics_config)
    for cfg in (semantic, coarse):
        cfg.do_sample, cfg.temperature = sample, (0.7 if sample else 1.0)
    semantic.max_new_tokens = max_new
    return semantic, coarse


def _both(
    synth: BarkSynthesizer, sample: bool, speaker: int | None, seed: int = 7
) -> dict[str, torch.Tensor]:
    """Semantic and coarse tokens from generate() and from the static decoder, same seeds."""
    semantic_cfg, coarse_cfg = _configs(synth, sample, 24)
    enc = encode_texts(synth.tokenizer, TEXTS)
    prompt = synth.history_prompt(speaker)
    model = synth.model
    tokens = [CancelToken(), CancelToken()]
    out: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        torch.manual_seed(seed)
        out["ref_semantic"] = model.semantic.generate(
            enc["input_ids"], history_prompt=prompt, semantic_generation_config=semantic_cfg,
            attention_mask=enc["attention_mask"],
        )  # fmt: skip
        torch.manual_seed(seed)
        out["semantic"] = semantic_generate(
            synth.semantic_decoder, enc["input_ids"], enc["attention_mask"],
            cfg=semantic_cfg, history=prompt, caps=[24, 24], cancels=tokens,
        )  # fmt: skip
        torch.manual_seed(seed + 1)
        out["ref_coarse"], out["ref_lengths"] = model.coarse_acoustics.generate(
            out["ref_semantic"].clone(), history_prompt=prompt, semantic_generation_config=semantic_cfg,
            coarse_generation_config=coarse_cfg, codebook_size=1024, return_output_lengths=True,
        )  # fmt: skip
        torch.manual_seed(seed + 1)
        out["coarse"], out["lengths"] = coarse_generate(
            synth.coarse_decoder, out["ref_semantic"], semantic_cfg=semantic_cfg, coarse_cfg=coarse_cfg,
            codebook_size=1024, history=prompt, cancels=tokens,
        )  # fmt: skip
    return out


@pytest.mark.parametrize("speaker", [None, 3])
@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_tokens_equal_generates_bit_for_bit(
    synth: BarkSynthesizer, sample: bool, speaker: int | None
) -> None:
    out = _both(synth, sample, speaker)
    assert out["semantic"].shape == (2, 24)
    assert torch.equal(out["semantic"], out["ref_semantic"])
    # 24 semantic tokens -> 36 frames x 2 codebooks: one full 60-token window and a second one
    assert out["coarse"].shape == (2, 72) and torch.equal(out["lengths"], out["ref_lengths"])
    assert torch.equal(out["coarse"], out["ref_coarse"])


def test_sampling_is_reproducible_and_follows_the_seed(synth: BarkSynthesizer) -> None:
    first, again, other = _both(synth, True, 3), _both(synth, True, 3), _both(synth, True, 3, seed=8)
    assert torch.equal(first["semantic"], again["semantic"]) and torch.equal(first["coarse"], again["coarse"])
    assert not torch.equal(first["semantic"], other["semantic"])  # the draws do depend on the seed
    greedy = _both(synth, False, 3)
    assert not torch.equal(first["semantic"], greedy["semantic"])  # sampling is not argmax in disguise


def test_processed_scores_match_transformers_processors(synth: BarkSynthesizer) -> None:
    """The warpers, op for op, against transformers' own classes on random scores."""
    from transformers.generation.logits_process import (
        LogitNormalization,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
    )

    scores = torch.randn(3, 500, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros((3, 1), dtype=torch.long)
    expected = scores
    for proc in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), LogitNormalization()):
        expected = proc(ids, expected)
    assert torch.equal(Sampling(True, 0.7, 50).warp(scores), expected)
    assert torch.equal(Sampling(False, 0.7, 50).warp(scores), LogitNormalization()(ids, scores))


def test_rows_of_different_prompt_lengths_compute_what_they_would_alone(synth: BarkSynthesizer) -> None:
    """Left padding + mask + per-row positions: each row's greedy tokens equal its own run."""
    decoder = Decoder(synth.model.coarse_acoustics)
    gen = torch.Generator().manual_seed(3)
    long, short = (
        torch.randint(10_000, 12_048, (1, 40), generator=gen),
        torch.randint(10_000, 12_048, (1, 25), generator=gen),
    )
    batch = torch.cat([long, torch.cat([torch.zeros((1, 15), dtype=torch.long), short], 1)])

    def run(prompt: torch.Tensor, pads: list[int] | None) -> torch.Tensor:
        with torch.inference_mode():
            return decoder.generate(
                prompt, max_new_tokens=12, process=lambda s, t: s.log_softmax(-1), stop=lambda x, t: False,
                sample=False, pads=pads,
            )  # fmt: skip

    together = run(batch, [0, 15])
    assert torch.equal(together[0], run(long, None)[0])
    assert torch.equal(together[1], run(short, None)[0])


class CancelAfter(CancelToken):
    """Reads as cancelled from its (n+1)-th read on: a cancel that lands between two given steps
    (the decoders read each token once per step)."""

    def __init__(self, reads: int) -> None:
        super().__init__()
        self.reads_left = reads

    @property
    def cancelled(self) -> bool:
        self.reads_left -= 1
        return self.reads_left < 0 or self.event.is_set()


def test_a_row_cancelled_mid_stage_ends_and_the_other_goes_on(synth: BarkSynthesizer) -> None:
    semantic_cfg, _ = _configs(synth, False, 40)
    enc = encode_texts(synth.tokenizer, TEXTS)
    with torch.inference_mode():
        out = semantic_generate(
            synth.semantic_decoder, enc["input_ids"], enc["attention_mask"], cfg=semantic_cfg, history=None,
            caps=[40, 40], cancels=[CancelToken(), CancelAfter(5)],
        )  # fmt: skip
    assert out.shape == (2, 40)
    assert (out[1, 6:] == semantic_cfg.semantic_pad_token).all()  # padded from the step after the cancel
    assert (out[0] != semantic_cfg.semantic_pad_token).all()


def test_the_coarse_stage_stops_between_steps_once_every_row_is_cancelled(synth: BarkSynthesizer) -> None:
    semantic_cfg, coarse_cfg = _configs(synth, False, 40)
    semantic = torch.randint(0, 10_000, (2, 60), generator=torch.Generator().manual_seed(1))
    token = CancelAfter(10)  # both rows' job (one token: ``all`` stops reading at the first live row)
    with torch.inference_mode():
        out, lengths = coarse_generate(
            synth.coarse_decoder, semantic, semantic_cfg=semantic_cfg, coarse_cfg=coarse_cfg,
            codebook_size=1024, history=None, cancels=[token, token],
        )  # fmt: skip
    assert int(lengths.max()) == 180  # what it would have generated: three windows
    assert out.shape == (2, 11)  # steps 0..10, then the call ended and no window followed


def test_static_and_generate_decoders_give_the_same_audio(
    dev_model_dir: Path, synth: BarkSynthesizer
) -> None:
    other = BarkSynthesizer.load(BarkSettings(model=str(dev_model_dir), temperature=0.0, decoder="generate"))
    for speaker in (None, 2):
        ours, _ = synth.generate(TEXTS, semantic_caps=[30, 10], speaker=speaker)
        theirs, _ = other.generate(TEXTS, semantic_caps=[30, 10], speaker=speaker)
        for a, b in zip(ours, theirs, strict=True):
            assert len(a) > 0 and np.array_equal(a, b)


def test_seeded_sampled_audio_is_the_same_on_both_decoders(dev_model_dir: Path) -> None:
    audio = []
    for decoder in ("static", "generate"):
        s = BarkSynthesizer.load(BarkSettings(model=str(dev_model_dir), seed=11, decoder=decoder))
        (row,), _ = s.generate(["Seeded words."], semantic_caps=[20], speaker=1)
        audio.append(row)
    assert len(audio[0]) > 0 and np.array_equal(audio[0], audio[1])


def test_cuda_step_modes_never_run_on_a_cpu() -> None:
    assert resolve_step_mode("cuda-graph", "cpu") == "eager"
    assert resolve_step_mode("compile", "cpu") == "eager"
    assert resolve_step_mode("auto", "cpu") == "eager"
    assert resolve_step_mode("auto", "cuda:0") == "cuda-graph"
    assert resolve_step_mode("compile", "cuda") == "compile"


def test_a_generation_config_it_cannot_reproduce_is_refused(synth: BarkSynthesizer) -> None:
    semantic_cfg, _ = _configs(synth, True, 8)
    semantic_cfg.top_p = 0.9
    with pytest.raises(UnsupportedConfig, match="top_p"):
        Sampling.of(semantic_cfg)
    enc = encode_texts(synth.tokenizer, ["Hi."])
    with pytest.raises(EngineUnavailable, match="top_p"):
        synth._semantic(enc, semantic_cfg, None, [8], [CancelToken()])


def test_prompt_too_long_for_the_context_is_a_value_error(synth: BarkSynthesizer) -> None:
    with pytest.raises(ValueError, match="exceed"):
        synth.coarse_decoder.generate(
            torch.zeros((1, 1000), dtype=torch.long), max_new_tokens=60, process=lambda s, t: s,
            stop=lambda x, t: False, sample=False,
        )  # fmt: skip


def test_one_cache_buffer_serves_every_batch_size_up_to_the_largest(synth: BarkSynthesizer) -> None:
    decoder = Decoder(synth.model.semantic)
    two = decoder.cache(2)
    one = decoder.cache(1)
    assert one.keys.data_ptr() == two.keys.data_ptr() and one.batch == 1 and two.batch == 2
    four = decoder.cache(4)  # larger: one new buffer, the smaller sizes become views of it
    assert four.batch == 4 and decoder.cache(1).keys.data_ptr() == four.keys.data_ptr()
    assert four.max_len == synth.model.semantic.config.block_size


@pytest.mark.parametrize("pads", [None, [0, 9]])
def test_the_cuda_step_computes_the_eager_steps_tokens(
    synth: BarkSynthesizer, pads: list[int] | None
) -> None:
    """``FullStep`` (what a CUDA graph or torch.compile replays: the whole static cache, the mask
    built from the position tensors, the write by ``index_copy_``) run eagerly on the CPU, against
    the eager step: the same greedy tokens."""
    from synth_worker.bark.static_cache import FullStep

    model = synth.model.coarse_acoustics
    prompt = torch.randint(10_000, 12_048, (2, 30), generator=torch.Generator().manual_seed(4))
    if pads:
        prompt[1, : pads[1]] = 0

    def run(decoder: Decoder) -> torch.Tensor:
        return decoder.generate(
            prompt, max_new_tokens=20, process=lambda s, t: s.log_softmax(-1), stop=lambda x, t: False,
            sample=False, pads=pads,
        )  # fmt: skip

    full_path = Decoder(model)
    full_path.mode = "cuda-graph"  # the replay path, with the step run as is instead of captured
    step = FullStep(model, full_path.cache(2))
    full_path._steps[2] = (step, step)
    assert torch.equal(run(full_path), run(Decoder(model)))


def test_the_decoder_settings_come_from_the_environment() -> None:
    from broker.errors import ConfigError
    from synth_worker.config import WorkerConfig
    from synth_worker.worker.process import worker_engine

    default = WorkerConfig.from_env({})
    assert (default.bark_decoder, default.bark_step) == ("static", "auto")
    config = WorkerConfig.from_env({"SESAME_BARK_DECODER": "Generate", "SESAME_BARK_STEP": "cuda-graph"})
    engine = worker_engine(config)
    try:
        assert isinstance(engine, BarkEngine)
        settings = engine.settings
        assert (settings.decoder, settings.step_mode) == ("generate", "cuda-graph")
    finally:
        engine.close()
    for env in ({"SESAME_BARK_DECODER": "fast"}, {"SESAME_BARK_STEP": "graphs"}):
        with pytest.raises(ConfigError, match=next(iter(env))):
            WorkerConfig.from_env(env)


def test_the_compiled_step_traces_as_one_graph(synth: BarkSynthesizer) -> None:
    """What ``SESAME_BARK_STEP=compile`` hands to torch.compile traces without a graph break
    (``fullgraph=True``; the eager backend here: inductor and CUDA graphs need a GPU) and computes
    the eager step's logits."""
    from synth_worker.bark.static_cache import FullStep

    model = synth.model.coarse_acoustics
    with torch.inference_mode():
        step = FullStep(model, Decoder(model).cache(2))
        step.pos.fill_(3)
        expected = step()
        compiled = torch.compile(step.__call__, backend="eager", fullgraph=True, dynamic=False)
        assert torch.equal(compiled(), expected)
