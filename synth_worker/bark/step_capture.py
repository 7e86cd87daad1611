"""The per-token step on CUDA without Python overhead: captured in a CUDA graph, or compiled."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from broker import logs
from synth_worker.bark.static_cache import FullStep

if TYPE_CHECKING:
    import torch

log = logs.get("sesame.bark.decode")


def graphed(full: FullStep) -> Callable[[], torch.Tensor]:
    """Capture ``full`` in a CUDA graph (after warm-up runs on a side stream); returns replay."""
    import torch

    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            full()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = full()
    log.info("bark_step_graphed", batch=full.cache.batch, max_len=full.cache.max_len)

    def replay() -> torch.Tensor:
        graph.replay()
        return logits.clone()

    return replay


def compiled(full: FullStep) -> Callable[[], torch.Tensor]:
    """``full`` through ``torch.compile(mode="reduce-overhead")``: static shapes, one graph."""
    import torch
    import torch._dynamo

    # the cache is written in place every step: static addresses let the CUDA graphs that
    # reduce-overhead records keep that mutation instead of falling back to eager
    for t in (full.cache.keys, full.cache.values, full.ids, full.pos, full.pads, full.keys_at):
        torch._dynamo.mark_static_address(t)
    compiled = torch.compile(full.__call__, mode="reduce-overhead", fullgraph=True, dynamic=False)

    def run() -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        logits: torch.Tensor = compiled()
        return logits.clone()

    return run
