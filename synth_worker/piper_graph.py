"""A Piper voice's graph cut in two, so its audio streams as the decoder makes it (#20).

A Piper voice is a VITS model in one ONNX graph: text encoder, duration predictor and flow turn
phoneme ids into a latent ``z`` (192 channels, one frame per ``hop`` samples: 256 for the medium
voices), then the HiFi-GAN decoder (the ``/dec/...`` nodes, about 70 % of the time) turns ``z``
into audio. The decoder is convolutional: a sample depends only on the latent frames within
``overlap`` of its own. So the graph is cut once at load, at the decoder's one input
(``find_cut``), into "ids -> z" and "z -> audio" (``onnx.utils.Extractor``: about 0.25 s for the
packaged voice, not worth a cache), and ``z`` is decoded in pieces (``LatentDecoder.paced``: their sizes
from ``synth_worker.piper_pace``, the decoder's speed measured as it runs), each with
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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from synth_worker.piper_pace import Pace, expected_cost

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


def decode_span(decoder: Any, cut: GraphCut, z: np.ndarray, start: int, end: int) -> np.ndarray:
    """Audio of latent frames ``[start, end)``: the decoder run on them with ``cut.overlap`` frames
    of context either side (fewer at the ends of ``z``, where one pass pads with zeros too)."""
    frames = z.shape[-1]
    lo, hi = max(0, start - cut.overlap), min(frames, end + cut.overlap)
    audio = decoder.run(None, {cut.latent: np.ascontiguousarray(z[..., lo:hi])})[0].reshape(-1)
    return np.asarray(audio[(start - lo) * cut.hop : (end - lo) * cut.hop], dtype=np.float32)


@dataclass(slots=True)
class Playback:
    """When the listener's audio runs out (``time.perf_counter``): the audio before the request
    (its need), then each piece sent extends it."""

    until: float


class LatentDecoder:
    """One copy of the voice's decoder (``session``: ``z -> audio``), with the speed its last runs
    were measured at, and the pace (``synth_worker.piper_pace``) its streamed pieces keep."""

    def __init__(self, session: Any, cut: GraphCut, sample_rate: int) -> None:
        self.session, self.cut = session, cut
        self.pace = Pace(frame_s=cut.hop / sample_rate, overlap=cut.overlap)
        self.cpu_per_frame = 0.0  # CPU seconds a latent frame takes: a moving average of the runs

    def note(self, cpu_s: float, frames: int) -> None:
        if frames > 0 and cpu_s > 0.0:
            now = cpu_s / frames
            self.cpu_per_frame = now if self.cpu_per_frame <= 0.0 else 0.7 * self.cpu_per_frame + 0.3 * now

    def whole(self, z: np.ndarray) -> np.ndarray:
        cpu = time.process_time()
        audio = decode_span(self.session, self.cut, z, 0, z.shape[-1])
        self.note(time.process_time() - cpu, z.shape[-1])
        return audio

    def paced(
        self, z: np.ndarray, encoder_cpu_s: float, encoder_wall_s: float, playback: Playback
    ) -> Iterator[np.ndarray]:
        """The audio of ``z`` in pieces sized by the pace to the audio the listener has left
        (``playback``, extended as each piece is handed on: the consumer writes it between two
        ``next`` calls): the first from the speed expected now (the CPU per frame over the share
        of the cores the encoder just got), each later one from the speed the piece before it was
        decoded at. One piece when all of it is decoded in time (a lookahead sentence)."""
        frames, pace, overlap = z.shape[-1], self.pace, self.cut.overlap
        cost = expected_cost(self.cpu_per_frame, encoder_cpu_s, encoder_wall_s)
        start = 0
        while start < frames:
            ahead = max(0.0, playback.until - time.perf_counter())
            end = start + pace.next_piece(frames - start, ahead, cost)
            wall, cpu = time.perf_counter(), time.process_time()
            audio = decode_span(self.session, self.cut, z, start, end)
            decoded = min(frames, end + overlap) - max(0, start - overlap)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            cost = wall / decoded
            self.note(cpu, decoded)
            yield audio
            playback.until = max(playback.until, time.perf_counter()) + (end - start) * pace.frame_s
            start = end
