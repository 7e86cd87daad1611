"""A Piper voice's graph cut in two, so its audio streams as the decoder makes it (#20).

A Piper voice is a VITS model in one ONNX graph: text encoder, duration predictor and flow turn
phoneme ids into a latent ``z`` (192 channels, one frame per ``hop`` samples: 256 for the medium
voices), then the HiFi-GAN decoder (the ``/dec/...`` nodes, about 70 % of the time) turns ``z``
into audio. The decoder is convolutional: a sample depends only on the latent frames within
``overlap`` of its own. So the graph is cut once at load, at the decoder's one input
(``find_cut``), into "ids -> z" and "z -> audio" (``onnx.utils.Extractor``: about 0.25 s for the
packaged voice, not worth a cache), and ``z`` is decoded in chunks (``chunk_spans``), each with
``overlap`` frames of context either side that are decoded and dropped (``decode_span``): every
kept sample saw exactly the inputs it sees in one pass, so the joined chunks equal the one-pass
audio up to float rounding (tests/synth_worker/test_piper_graph.py).

``overlap`` is not a guess: ``find_cut`` walks the decoder's nodes and adds up how far each
convolution reaches to either side (its padding, or the rest of ``(kernel - 1) * dilation``, at its
sample rate; a transposed convolution's ``ceil(kernel / stride)`` input samples), in latent frames,
rounded up: 12 for the packaged voice (140 ms of audio).
A graph of another shape (no ``/dec/`` nodes, more than one input to them, an operator whose
reach is unknown) gives a ``NoCut`` with the reason, and the voice is spoken in one pass.

This module does not import ``piper`` (GPL): only ``onnx`` and ``onnxruntime``. The Piper child
(``synth_worker.piper_child``) uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

DECODER = "/dec/"
IDS_INPUTS = ("input", "input_lengths", "scales")
# Operators the decoder may hold: the convolutions (whose reach is added up) and per-sample ones.
PER_SAMPLE = frozenset({"LeakyRelu", "Relu", "Tanh", "Add", "Sub", "Mul", "Div", "Unsqueeze", "Squeeze"})


@dataclass(frozen=True, slots=True)
class GraphCut:
    latent: str  # the tensor between the two parts: the decoder's one input
    overlap: int  # latent frames of context either side of a chunk for exact audio
    hop: int  # audio samples per latent frame


@dataclass(frozen=True, slots=True)
class NoCut:
    reason: str


@dataclass(frozen=True, slots=True)
class SplitGraph:
    cut: GraphCut
    encoder: bytes  # serialized ONNX: ids, lengths, scales -> latent
    decoder: bytes  # serialized ONNX: latent -> audio


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _one(attrs: dict[str, Any], name: str) -> int:
    values = list(attrs.get(name, [1]))
    return int(values[0]) if len(values) == 1 else -1  # -1: not a 1-D convolution's


def _reach(node: Any, rate: int) -> tuple[float, int] | str:
    """How far (in latent frames) a node's output reaches into its input, and its output's rate
    (samples per latent frame); or why it cannot be told."""
    a = _attrs(node)
    kernel = list(a.get("kernel_shape", []))
    stride, dilation = _one(a, "strides"), _one(a, "dilations")
    pads = list(a.get("pads", [0, 0]))
    if len(kernel) != 1:
        return f"{node.name}: a {node.op_type} that is not 1-D"
    if node.op_type == "Conv":
        if stride != 1 or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return f"{node.name}: a strided or auto-padded Conv"
        span = (kernel[0] - 1) * dilation
        return max(pads[0], span - pads[0]) / rate, rate
    if dilation != 1 or a.get("output_padding") or kernel[0] - pads[0] - pads[1] != stride:
        return f"{node.name}: a ConvTranspose whose output is not {stride} samples per input sample"
    return math.ceil(kernel[0] / stride) / rate, rate * stride


def find_cut(model: Any) -> GraphCut | NoCut:
    """Where ``model`` (an ``onnx.ModelProto`` of a Piper voice) can be cut, and the decoder's
    overlap; or why not."""
    graph = model.graph
    decoder = [n for n in graph.node if n.name.startswith(DECODER)]
    if not decoder:
        return NoCut(f"no {DECODER} nodes (not a VITS decoder)")
    if [i.name for i in graph.input] != list(IDS_INPUTS) or len(graph.output) != 1:
        return NoCut(f"inputs {[i.name for i in graph.input]} and {len(graph.output)} outputs, not Piper's")
    made = {o for n in decoder for o in n.output}
    constant = {i.name for i in graph.initializer}
    constant |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    entry = {i for n in decoder for i in n.input if i and i not in made and i not in constant}
    if len(entry) != 1:
        return NoCut(f"the decoder has {len(entry)} inputs, not one: {sorted(entry)[:4]}")
    latent = entry.pop()
    # every tensor from the latent on: (reach in latent frames, samples per latent frame)
    seen: dict[str, tuple[float, int]] = {latent: (0.0, 1)}
    for node in graph.node:
        moving = [i for i in node.input if i in seen]
        if not moving:
            continue
        if node.op_type == "Constant":
            continue
        reach = max(seen[i][0] for i in moving)
        rates = {seen[i][1] for i in moving}
        if len(rates) != 1:
            return NoCut(f"{node.name}: joins tensors of different rates")
        rate = rates.pop()
        if node.op_type in ("Conv", "ConvTranspose"):
            step = _reach(node, rate)
            if isinstance(step, str):
                return NoCut(step)
            reach, rate = reach + step[0], step[1]
        elif node.op_type not in PER_SAMPLE:
            return NoCut(f"{node.name}: a {node.op_type} after the latent (reach unknown)")
        for out in node.output:
            seen[out] = (reach, rate)
    output = graph.output[0].name
    if output not in seen:
        return NoCut("the output does not come from the decoder")
    reach, hop = seen[output]
    return GraphCut(latent=latent, overlap=math.ceil(reach), hop=hop)


def split(model: Any) -> SplitGraph | NoCut:
    """The two parts of ``model``, serialized for ``onnxruntime.InferenceSession``; or why not."""
    from onnx.utils import Extractor

    cut = find_cut(model)
    if isinstance(cut, NoCut):
        return cut
    extractor = Extractor(model)
    encoder = extractor.extract_model(list(IDS_INPUTS), [cut.latent])
    decoder = extractor.extract_model([cut.latent], [model.graph.output[0].name])
    return SplitGraph(cut, encoder.SerializeToString(), decoder.SerializeToString())


def chunk_spans(frames: int, first: int, most: int) -> list[tuple[int, int]]:
    """Latent frames ``[0, frames)`` in spans: ``first`` frames (the first audio early), then each
    span twice the one before, up to ``most`` (few runs: each decodes twice the overlap again); a
    last piece shorter than ``first`` joins the span before it. Doubling keeps each piece's decoding
    shorter than the audio already sent: a 16-frame first piece then 128 left the listener 186 ms
    of audio while 152 frames decoded, and a loaded machine ran dry (test_browser_loaded)."""
    spans: list[tuple[int, int]] = []
    start, size = 0, max(1, first)
    while start < frames:
        end = min(frames, start + size)
        if spans and end - start < first:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        start, size = end, max(first, min(most, size * 2))
    return spans


def decode_span(decoder: Any, cut: GraphCut, z: np.ndarray, start: int, end: int) -> np.ndarray:
    """Audio of latent frames ``[start, end)``: the decoder run on them with ``cut.overlap`` frames
    of context either side (fewer at the ends of ``z``, where one pass pads with zeros too)."""
    frames = z.shape[-1]
    lo, hi = max(0, start - cut.overlap), min(frames, end + cut.overlap)
    audio = decoder.run(None, {cut.latent: np.ascontiguousarray(z[..., lo:hi])})[0].reshape(-1)
    return np.asarray(audio[(start - lo) * cut.hop : (end - lo) * cut.hop], dtype=np.float32)


def decode_chunks(decoder: Any, cut: GraphCut, z: np.ndarray, first: int, most: int) -> Iterator[np.ndarray]:
    for start, end in chunk_spans(z.shape[-1], first, most):
        yield decode_span(decoder, cut, z, start, end)
