"""Stochastic depth: the layer (torchvision's), and the schedule every family uses."""
from __future__ import annotations

from collections.abc import Sequence

from torchvision.ops import StochasticDepth

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


class DropPath(StochasticDepth):
    """Drop a residual branch per sample with probability ``p`` in training: torchvision's ``StochasticDepth``
    in ``"row"`` mode (timm's ``DropPath`` draws the same mask and scales by ``1 / (1 - p)`` alike)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__(p, "row")
