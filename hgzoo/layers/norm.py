"""Frozen BatchNorm (torchvision's), and converting a model's BatchNorms to it and back; the norms without running
statistics that ``norm_layer=`` names (timm's GroupNorm, GroupNorm1 and LayerNorm2d, which take the channel count
first)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FrozenBatchNorm2d", "GroupNorm", "GroupNorm1", "LayerNorm2d", "freeze_batch_norm",  # noqa: F822
           "unfreeze_batch_norm"]  # (FrozenBatchNorm2d: module __getattr__)

# FrozenBatchNorm2d is torchvision's (re-exported as hgzoo.layers.FrozenBatchNorm2d): eps 1e-5 as BatchNorm2d's,
# every tensor a buffer, and a BatchNorm2d's state dict loads into it (its loader drops num_batches_tracked).
# It is imported on first use: importing torchvision.ops costs about a second (torch._dynamo), and `import hgzoo`
# stays light.


def _frozen_bn() -> type[nn.Module]:
    from torchvision.ops import FrozenBatchNorm2d

    return FrozenBatchNorm2d


def __getattr__(name: str) -> Any:
    if name == "FrozenBatchNorm2d":
        return _frozen_bn()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GroupNorm(nn.GroupNorm):
    """timm's ``GroupNorm``: the channel count first, 32 groups; where 32 does not divide the channels (PP-HGNetV2's
    and PP-LCNetV2's narrow layers), their greatest common divisor (timm's raises there)."""

    def __init__(self, num_channels: int, num_groups: int = 32, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(math.gcd(num_groups, num_channels), num_channels, eps=eps, affine=affine)


class GroupNorm1(nn.GroupNorm):
    """timm's ``GroupNorm1``: one group (each sample normalized over all its channels and pixels)."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(1, num_channels, eps=eps, affine=affine)


class LayerNorm2d(nn.LayerNorm):
    """timm's ``LayerNorm2d``: LayerNorm over the channels of each pixel of an NCHW map."""

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Return ``module`` with every BatchNorm2d replaced by a FrozenBatchNorm2d (in place for children)."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = _frozen_bn()(module.num_features, module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen.to(module.running_mean.device)
    for name, child in module.named_children():
        new = freeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def unfreeze_batch_norm(module: nn.Module) -> nn.Module:
    """Inverse of :func:`freeze_batch_norm`: FrozenBatchNorm2d back to trainable BatchNorm2d."""
    if isinstance(module, _frozen_bn()):
        bn = nn.BatchNorm2d(module.weight.shape[0], module.eps)  # torchvision's keeps no num_features
        with torch.no_grad():
            bn.weight.copy_(module.weight)
            bn.bias.copy_(module.bias)
            bn.running_mean.copy_(module.running_mean)
            bn.running_var.copy_(module.running_var)
        return bn.to(module.running_mean.device)
    for name, child in module.named_children():
        new = unfreeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module
