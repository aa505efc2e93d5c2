"""Feature-pyramid outputs for detection and segmentation: FeatureInfo and the features-only wrapper."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FeatureInfo", "FeatureListNet", "resolve_out_indices"]


def resolve_out_indices(out_indices: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    """``None``: all; an int ``k``: the last ``k``; a sequence: those indices (negative ones count from the end)."""
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int):
        if not 1 <= out_indices <= n:
            raise ValueError(f"out_indices={out_indices} asks for the last {out_indices} of {n} feature levels")
        return tuple(range(n - out_indices, n))
    out = []
    for i in out_indices:
        if not -n <= i < n:
            raise ValueError(f"out_index {i} is not valid; valid indices are 0..{n - 1} (or -{n}..-1)")
        out.append(i % n)
    if len(set(out)) != len(out) or out != sorted(out):
        raise ValueError(f"out_indices {tuple(out_indices)} must be distinct and in increasing order")
    return tuple(out)


class FeatureInfo:
    """Channels and reductions (integer strides) of the feature levels a model returns."""

    def __init__(self, info: list[dict], out_indices: Sequence[int]) -> None:
        self.info = [dict(info[i]) for i in out_indices]
        self.out_indices = tuple(out_indices)

    def channels(self) -> list[int]:
        return [int(f["num_chs"]) for f in self.info]

    def reduction(self) -> list[int]:
        return [int(f["reduction"]) for f in self.info]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self.info]

    def __len__(self) -> int:
        return len(self.info)

    def __getitem__(self, i: int) -> dict:
        return self.info[i]

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"


class FeatureListNet(nn.Module):
    """A classifier turned backbone: ``forward(x)`` returns the feature maps at ``out_indices``.

    The wrapped model must implement ``forward_stages(x, mode)`` (one tensor per entry of its
    ``feature_levels(mode)``). The classifier head is removed, so no head parameter is left dangling
    (pretrained weights are loaded before wrapping, and the head weights are dropped knowingly).
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None,
                 feature_mode: str | None = None) -> None:
        super().__init__()
        levels = model.feature_levels(feature_mode)
        self.out_indices = resolve_out_indices(out_indices, len(levels))
        self.feature_info = FeatureInfo(levels, self.out_indices)
        self.feature_mode = feature_mode
        model.head = nn.Identity()
        self.model = model

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model.forward_stages(x, self.feature_mode, max(self.out_indices))
        return [feats[i] for i in self.out_indices]
