"""A Piper voice's graph cut in two and its decoder run in chunks: the joined chunks are the audio
one pass makes (within float rounding); a graph of another shape is not cut, with the reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synth_worker.piper_graph import (
    GraphCut,
    LatentDecoder,
    NoCut,
    Playback,
    SplitGraph,
    decode_span,
    find_cut,
    split,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")

SENTENCES = (
    "Hello, how are you today?",
    "The weather looks fine this afternoon, so we could take a walk along the river.",
    "The store closes at nine tonight.",
    "First, preheat the oven; then mix the flour, the sugar and the butter.",
)
TOLERANCE = 1e-4  # max abs difference from one pass (samples in [-1, 1]; float rounding is ~1e-6)


def decode_spans(
    decoder: Any, cut: GraphCut, z: np.ndarray, spans: list[tuple[int, int]]
) -> list[np.ndarray]:
    return [decode_span(decoder, cut, z, start, end) for start, end in spans]


def fixed_spans(frames: int, first: int, most: int) -> list[tuple[int, int]]:
    """``[0, frames)`` in spans of ``first`` frames, then each twice the last up to ``most``."""
    spans, start, size = [], 0, first
    while start < frames:
        spans.append((start, min(frames, start + size)))
        start, size = spans[-1][1], min(most, size * 2)
    return spans


@pytest.fixture(scope="module")
def voice() -> tuple[Any, SplitGraph]:
    from synth_worker.piper_process import packaged_model

    model = onnx.load(str(packaged_model().onnx))
    graph = split(model)
    assert isinstance(graph, SplitGraph), graph
    return model, graph


def test_the_packaged_voice_is_cut_at_its_decoders_input(voice: tuple[Any, SplitGraph]) -> None:
    _, graph = voice
    # 12 latent frames: conv_pre 3, ups.0 2, resblocks at 8x 45/8, the rest under one frame.
    assert graph.cut == GraphCut(latent="/Mul_7_output_0", overlap=12, hop=256)


def sessions(graph: SplitGraph, path: str) -> tuple[Any, Any, Any]:
    from synth_worker.piper_child import session

    return session(path, 1), session(graph.encoder, 1), session(graph.decoder, 1)


def test_the_chunks_join_into_the_audio_of_the_whole_model(voice: tuple[Any, SplitGraph]) -> None:
    """Without noise (scales 0, 1, 0) the model is deterministic: the whole graph in one pass next to
    its first part then the decoder in chunks, on several sentences and chunk sizes. With less than
    the computed overlap the joins differ: the overlap is what makes them equal."""
    from piper import PiperVoice

    from synth_worker.piper_process import packaged_model

    path = str(packaged_model().onnx)
    _, graph = voice
    whole, encoder, decoder = sessions(graph, path)
    phonemizer = PiperVoice.load(path)
    short = GraphCut(graph.cut.latent, graph.cut.overlap - 4, graph.cut.hop)
    shortfall = 0.0
    for text in SENTENCES:
        ids = phonemizer.phonemes_to_ids(phonemizer.phonemize(text)[0])
        inputs = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        }
        one_pass = whole.run(None, inputs)[0].reshape(-1)
        latent = encoder.run(None, inputs)[0]
        frames = latent.shape[-1]
        paced = LatentDecoder(decoder, graph.cut, 22050)
        paced.cpu_per_frame = 0.004  # as if measured: with all of a core, a slow decoder (several pieces)
        # As the child streams, and in fixed spans.
        ways = {"paced": list(paced.paced(latent, 0.01, 0.01, Playback(until=time.perf_counter())))}
        lookahead = Playback(until=time.perf_counter() + 10.0)  # needed 10 s from now: one piece
        assert len(list(paced.paced(latent, 0.01, 0.01, lookahead))) == 1
        assert len(ways["paced"]) > 1
        for first, most in ((16, 128), (4, 16), (1, 7)):
            ways[f"{first}/{most}"] = list(
                decode_spans(decoder, graph.cut, latent, fixed_spans(frames, first, most))
            )
        for way, chunks in ways.items():
            joined = np.concatenate(chunks)
            assert joined.shape == one_pass.shape
            diff = np.abs(joined - one_pass)
            assert float(diff.max()) < TOLERANCE, (text, way, float(diff.max()))
            noise = float(np.sum(np.square(joined - one_pass, dtype=np.float64)))
            snr_db = 10 * np.log10(float(np.sum(np.square(one_pass, dtype=np.float64))) / max(noise, 1e-30))
            assert snr_db > 90.0, (text, way, snr_db)
        cut_short = np.concatenate(list(decode_spans(decoder, short, latent, fixed_spans(frames, 16, 128))))
        shortfall = max(shortfall, float(np.max(np.abs(cut_short - one_pass))))
    assert shortfall > 10 * TOLERANCE, "8 frames of context would do: the overlap is not tight"


def tiny_model(nodes: list[Any], inputs: list[str], output: str) -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph)


def test_a_graph_of_another_shape_is_not_cut_and_says_why(voice: tuple[Any, SplitGraph]) -> None:
    from onnx import helper

    piper_inputs = ["input", "input_lengths", "scales"]
    no_decoder = tiny_model(
        [helper.make_node("Identity", ["scales"], ["output"], name="/x")], piper_inputs, "output"
    )
    assert find_cut(no_decoder) == NoCut("no /dec/ nodes (not a VITS decoder)")

    two_inputs = tiny_model(
        [helper.make_node("Add", ["input", "scales"], ["output"], name="/dec/Add")], piper_inputs, "output"
    )
    cut = find_cut(two_inputs)
    assert isinstance(cut, NoCut) and "2 inputs" in cut.reason

    unknown = tiny_model(
        [
            helper.make_node("Relu", ["scales"], ["z"], name="/z"),
            helper.make_node("Constant", [], ["at"], name="/dec/at", value_ints=[0]),
            helper.make_node("Gather", ["z", "at"], ["output"], name="/dec/Gather"),
        ],
        piper_inputs,
        "output",
    )
    cut = find_cut(unknown)
    assert isinstance(cut, NoCut) and "Gather" in cut.reason, cut

    speakers = tiny_model(
        [helper.make_node("Relu", ["sid"], ["output"], name="/dec/x")], [*piper_inputs, "sid"], "output"
    )
    cut = find_cut(speakers)
    assert isinstance(cut, NoCut) and "sid" in cut.reason, cut

    model, _ = voice
    assert isinstance(split(model), SplitGraph)


def test_a_voice_that_cannot_be_cut_is_spoken_whole_and_the_reason_is_logged(
    voice: tuple[Any, SplitGraph], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The packaged voice with its decoder's nodes renamed: a valid model, not of the expected shape.
    The child says why on stderr (the parent logs each line) and speaks each clause in one pass."""
    from synth_worker.piper_child import load_voices
    from synth_worker.piper_process import packaged_model

    model, _ = voice
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    for node in renamed.graph.node:
        node.name = node.name.replace("/dec/", "/vocoder/")
    path = tmp_path / "renamed.onnx"
    onnx.save(renamed, str(path))
    voices = load_voices(str(path), str(packaged_model().config), 1, None, None)
    assert voices.alone.decoder is None
    assert "audio not streamed, each clause in one pass: no /dec/ nodes" in capsys.readouterr().err
    pieces = list(voices.alone.audio(voices.alone.voice.phonemize("Hello there.")[0]))
    assert len(pieces) == 1 and float(np.max(np.abs(pieces[0]))) > 0.05, "one pass, and not silence"
