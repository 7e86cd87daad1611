"""transformers ``StoppingCriteria`` for the ``generate`` decoder: per-row caps and cancellation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synth_worker.engine import CancelToken

if TYPE_CHECKING:
    import torch


def row_stopper(prompt_len: int, caps: Sequence[int], cancels: Sequence[CancelToken]) -> Any:
    """A StoppingCriteria: a row is done at its own token cap or when its job is cancelled."""
    import torch
    from transformers import StoppingCriteria

    class RowStop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            generated = input_ids.shape[1] - prompt_len
            done = [generated >= cap or c.cancelled for cap, c in zip(caps, cancels, strict=True)]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RowStop()


def all_cancelled_stopper(cancels: Sequence[CancelToken]) -> Any:
    """A StoppingCriteria that ends a generation once every row's job is cancelled."""
    import torch
    from transformers import StoppingCriteria

    class AllCancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            stop = all(c.cancelled for c in cancels)
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return AllCancelled()
