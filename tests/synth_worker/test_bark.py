"""The Bark engine on the dev checkpoint: every real stage runs; audio is noise but real audio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from broker.audio import rms_dbfs
from broker.errors import EngineCancelled, EngineUnavailable, ProtocolError
from synth_worker.bark.checkpoint import WARM_UP_FRAMES
from synth_worker.bark.engine import BarkEngine
from synth_worker.bark.settings import BarkSettings, semantic_cap
from synth_worker.bark.synthesizer import BarkSynthesizer
from synth_worker.engine import CancelToken, Engine, SynthesisRequest
from tests.conftest import T


@pytest.fixture(scope="module")
def synth(dev_model_dir: Path) -> BarkSynthesizer:
    return BarkSynthesizer.load(BarkSettings(model=str(dev_model_dir), seed=1))


@pytest.fixture
def engine(dev_model_dir: Path) -> Iterator[BarkEngine]:
    e = BarkEngine(BarkSettings(model=str(dev_model_dir), seed=1, max_batch=4))
    yield e
    e.close()


def test_generate_runs_all_stages_and_returns_audio(synth: BarkSynthesizer) -> None:
    (audio,), times = synth.generate(["Hello there."], semantic_caps=[30])  # seed 1: no early end token
    assert synth.sample_rate == 24_000
    assert audio.dtype == np.float32 and audio.ndim == 1
    # 30 semantic tokens at 49.9 Hz -> 75 Hz coarse frames -> 320 samples a frame.
    assert len(audio) == int(30 * 75 / 49.9) * 320
    assert rms_dbfs(audio) > -40.0
    assert times.batch_size == 1 and times.semantic_tokens == 30
    assert min(times.semantic_s, times.coarse_s, times.fine_s, times.codec_s) > 0
    assert times.total_s == pytest.approx(times.semantic_s + times.coarse_s + times.fine_s + times.codec_s)


def test_batch_rows_keep_their_own_lengths(synth: BarkSynthesizer) -> None:
    audio, times = synth.generate(["A longer sentence here.", "Hi."], semantic_caps=[40, 10], speaker=3)
    assert times.batch_size == 2
    assert [len(a) for a in audio] == [int(40 * 75 / 49.9) * 320, int(10 * 75 / 49.9) * 320]


@pytest.fixture(scope="module")
def greedy(dev_model_dir: Path) -> BarkSynthesizer:
    return BarkSynthesizer.load(BarkSettings(model=str(dev_model_dir), temperature=0.0))


@pytest.mark.parametrize("speaker", [None, 3])
def test_a_rows_audio_does_not_depend_on_its_batch_mates(
    greedy: BarkSynthesizer, speaker: int | None
) -> None:
    """Greedy: each row of a batch is bit for bit the audio of its text generated alone. (With
    transformers' fine stage the short row's window held the long row's extra frames.)"""
    texts, caps = ["A much longer sentence, with a few clauses in it.", "Hi."], [60, 12]
    batch, _ = greedy.generate(texts, semantic_caps=caps, speaker=speaker)
    for text, cap, row in zip(texts, caps, batch, strict=True):
        (alone,), _ = greedy.generate([text], semantic_caps=[cap], speaker=speaker)
        assert len(row) == len(alone) and np.array_equal(row, alone), text


def test_warm_up_runs_every_stage_on_a_few_positions(greedy: BarkSynthesizer) -> None:
    model = greedy.model
    seen: dict[str, list[int]] = {"semantic": [], "coarse": [], "fine": [], "codec": []}

    def record(stage: str, dim: int) -> object:
        def hook(module: object, args: tuple[object, ...]) -> None:
            seen[stage].append(args[-1].shape[dim])  # type: ignore[attr-defined]

        return hook

    handles = [
        # the first layer's projection: every decoder (static, generate(), the fine one) runs it
        # once a pass
        model.semantic.layers[0].attn.att_proj.register_forward_pre_hook(record("semantic", 1)),
        model.coarse_acoustics.layers[0].attn.att_proj.register_forward_pre_hook(record("coarse", 1)),
        model.fine_acoustics.layers[0].attn.att_proj.register_forward_pre_hook(record("fine", 1)),
        model.codec_model.decoder.register_forward_pre_hook(record("codec", -1)),
    ]
    try:
        times = greedy.warm_up()
    finally:
        for h in handles:
            h.remove()
    # semantic and coarse: a prompt pass, then one step on the KV cache
    assert len(seen["semantic"]) == 2 and seen["semantic"][0] > 1 and seen["semantic"][1] == 1
    assert len(seen["coarse"]) == 2 and seen["coarse"][0] > 1 and seen["coarse"][1] == 1
    # fine: every codebook it generates (2..7), on a short window instead of Bark's 1024 frames
    assert len(seen["fine"]) == 6 and max(seen["fine"]) <= 2 * WARM_UP_FRAMES
    assert seen["codec"] == [WARM_UP_FRAMES]
    assert min(times.semantic_s, times.coarse_s, times.fine_s, times.codec_s) > 0


def test_semantic_cap_follows_text_length_within_the_bound() -> None:
    s = BarkSettings(semantic_max_tokens=300)
    assert semantic_cap("Hi.", s) < semantic_cap("A sentence of medium length, say this one.", s) <= 300
    assert semantic_cap("word " * 500, s) == 300
    assert semantic_cap("word " * 500, BarkSettings()) == 767  # Bark's context bound


def test_cancelled_row_is_dropped_and_others_finish(synth: BarkSynthesizer) -> None:
    keep, drop = CancelToken(), CancelToken()
    drop.cancel()
    rows, _ = synth.generate_rows(["Stay.", "Go."], cancels=[keep, drop], semantic_caps=[12, 12])
    assert isinstance(rows[0], np.ndarray) and len(rows[0]) > 0
    assert isinstance(rows[1], EngineCancelled)
    with pytest.raises(EngineCancelled):
        synth.generate(["Go."], cancel=drop)


def test_cancel_stops_generation_mid_stage(synth: BarkSynthesizer) -> None:
    token = CancelToken()
    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    with pytest.raises(EngineCancelled):
        synth.generate(["A very long text. " * 30], cancel=token)  # ~767 tokens: seconds of work
    timer.cancel()


def test_unknown_speaker_falls_back_to_unconditional(synth: BarkSynthesizer) -> None:
    assert synth.history_prompt(99) is None
    assert synth.history_prompt("v2/en_speaker_1") is not None
    assert synth.history_prompt(None) is None


@pytest.mark.parametrize("model", ["/nonexistent/bark", "no-such-org/no-such-bark"])
def test_missing_model_is_engine_unavailable(model: str, tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"does not exist|not in"):
        BarkSynthesizer.load(BarkSettings(model=model, cache_dir=str(tmp_path)))


def test_directory_without_config_is_engine_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"config\.json"):
        BarkSynthesizer.load(BarkSettings(model=str(tmp_path)))


async def test_engine_streams_resampled_normalized_chunks(engine: BarkEngine) -> None:
    assert isinstance(engine, Engine)
    await engine.load()
    chunks = [c async for c in engine.synthesize(SynthesisRequest("Hello.", "maya", 16_000), CancelToken())]
    audio = np.concatenate([c.samples for c in chunks])
    assert {c.sample_rate for c in chunks} == {16_000}
    assert all(len(c.samples) == 640 for c in chunks[:-1])  # 40 ms at 16 kHz
    assert rms_dbfs(audio) == pytest.approx(-20.0, abs=1.5)  # the project's loudness
    assert 0.3 < len(audio) / 16_000 < 3.0


async def test_concurrent_requests_share_a_batch(engine: BarkEngine) -> None:
    await engine.load()

    async def speak(text: str) -> int:
        req = SynthesisRequest(text, "maya", 24_000)
        return sum([len(c.samples) async for c in engine.synthesize(req, CancelToken())])

    lengths = await asyncio.gather(speak("One."), speak("Two two."), speak("Three three."))
    assert engine.stats.batches == 1 and engine.stats.times is not None
    assert engine.stats.times.batch_size == 3
    assert lengths[0] < lengths[2]


async def test_event_loop_stays_free_while_generating(engine: BarkEngine) -> None:
    await engine.load()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    req = SynthesisRequest("Hello there.", "maya", 24_000)
    async with asyncio.timeout(4 * T):
        n = sum([len(c.samples) async for c in engine.synthesize(req, CancelToken())])
    ticker.cancel()
    assert n > 0 and ticks >= 20  # the loop kept running while the thread generated


async def test_unknown_voice_and_pre_cancelled_requests(engine: BarkEngine) -> None:
    with pytest.raises(ProtocolError) as info:
        async for _ in engine.synthesize(SynthesisRequest("Hi.", "nobody"), CancelToken()):
            pass
    assert info.value.code == "unknown_voice"
    token = CancelToken()
    token.cancel()
    with pytest.raises(EngineCancelled):
        async for _ in engine.synthesize(SynthesisRequest("Hi.", "maya"), token):
            pass


def test_default_speaker_overrides_the_default_voice_only(dev_model_dir: Path) -> None:
    e = BarkEngine(BarkSettings(model=str(dev_model_dir)), default_speaker=15)
    try:
        assert e.speaker_for("maya") == 15 and e.speaker_for("miles") == 6
    finally:
        e.close()
