"""FLOPs of one forward pass, as torch counts them (``python -m hgzoo models --flops`` and the benchmark tables)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops"]


def count_flops(model: nn.Module, size: int = 224) -> int:
    """FLOPs of one forward pass at ``size``x``size`` (torch's count: one multiply-add = 2 FLOPs)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()
