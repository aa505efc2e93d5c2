"""Stochastic depth: the layer (torchvision's ``stochastic_depth`` in "row" mode), and the schedule every family
uses."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DropPath", "drop_path_schedule"]


def drop_path_schedule(drop_path_rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Drop-path rates rising linearly from 0 at the first block to ``drop_path_rate`` at the last, over
    ``sum(depths)`` blocks in order, split into groups of ``depths`` (one list per stage, say)."""
    n = sum(depths)
    rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
    groups, start = [], 0
    for depth in depths:
        groups.append(rates[start:start + depth])
        start += depth
    return groups


class DropPath(nn.Module):
    """Drop a residual branch per sample with probability ``p`` in training: the same draw and scaling as
    torchvision's ``StochasticDepth(p, "row")`` and timm's ``DropPath`` (tests/test_libraries.py checks both on one
    seed), written here because importing ``torchvision.ops`` costs about a second (it loads ``torch._dynamo``) and
    ``import hgzoo`` stays light."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"
